"""One shard's worker: builds the problem and its backend for a shard of the data and
answers each pass with the shard's partial products.

:class:`ShardWorker` is an ordinary class: the Ray layer (:mod:`raylanczos.distributed.workers`)
wraps it with ``ray.remote`` in one place, and :class:`~raylanczos.operators.local.LocalHessian`
uses it directly, without Ray, as the single-process reference and the benchmark floor.

A worker reports what goes wrong as data, not as an exception: a factory that raises,
a loss that fails, a non-finite product. Each answer carries ``error`` (one line naming
the worker, its shard and the cause), so the driver prints that line instead of a remote
traceback; only a worker process that dies is Ray's to report.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from raylanczos.backends import ShardBackend, make_backend
from raylanczos.backends.base import FormTimer
from raylanczos.distributed.policy import pin_to_cores
from raylanczos.errors import exception_line
from raylanczos.operators.contract import NodeSumInfo, PartialInfo
from raylanczos.outputs.progress import quiet_framework_logs
from raylanczos.problem.data import Shard
from raylanczos.problem.definition import ProblemSource, build_problem, ensure_on_path


class ShardWorker:
    """Computes the partial products of one shard of a problem.

    Args:
      source: the problem, its factory, or the factory's ``"module:function"`` path
        (imported here, after ``sys_path`` entries are added to ``sys.path``).
      shard: the rows or files this worker owns.
      compute_dtype: None (the model's dtype) or ``"float64"``.
      operator: ``"hessian"``, ``"ggn"`` or ``"preconditioned"``.
      arguments: keyword arguments for the factory (a sweep point), or None.
      sys_path: extra import-path entries (the driver's cwd and PYTHONPATH).
      cpu_slot: ``(first, count)``: pin this process to ``count`` of its allowed cores,
        from index ``first`` (see :func:`~raylanczos.policy.pin_to_cores`), before the
        framework starts its thread pools; None leaves the process unpinned.
      devices: G, the devices the model is sharded over (JAX; see
        :mod:`raylanczos.backends.jax_sharding`): the process must see at least G.

    A failure while starting is kept (``start_error``) and reported by every call.
    """

    def __init__(
        self,
        source: ProblemSource,
        shard: Shard,
        *,
        compute_dtype: str | None = None,
        operator: str = "hessian",
        arguments: Mapping[str, Any] | None = None,
        sys_path: Sequence[str] = (),
        cpu_slot: tuple[int, int] | None = None,
        devices: int = 1,
    ):
        self.shard = shard
        self.source, self.compute_dtype, self.operator, self.devices = source, compute_dtype, operator, devices
        self.device_memory: dict[str, Any] | None = None
        self.backend: ShardBackend | None = None
        self.start_error = ""
        self.backend_name = ""
        self._arrays: Any = None
        self._dataset: Any = None
        if cpu_slot is not None:
            pin_to_cores(*cpu_slot)
        quiet_framework_logs()
        ensure_on_path(list(sys_path))
        self.load_point(arguments)

    def load_point(self, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
        """Rebuild the problem with the factory's ``arguments`` (a sweep point): new
        parameters and loss, and the shard's data read again only if the dataset differs
        (its description); returns :meth:`describe`, with ``reused_data``."""
        self.start_error, reused, self.device_memory = "", False, None
        self._form_seconds: dict[str, float] = {}
        self.arguments = dict(arguments) if arguments else None
        try:
            problem = build_problem(self.source, arguments)
            self.backend_name = problem.backend
            dataset = problem.data.describe()
            reused = self._arrays is not None and dataset == self._dataset
            if not reused:
                self._arrays, self._dataset = problem.data.read(self.shard), dataset
            self.backend = make_backend(
                problem, self._arrays, compute_dtype=self.compute_dtype, operator=self.operator, devices=self.devices
            )
        except Exception as err:  # noqa: BLE001 - reported by every later call, as one line
            self.backend = None
            self.start_error = self._error_line(err)
        return dict(self.describe(), reused_data=reused)

    @property
    def where(self) -> str:
        return f"worker {self.shard.worker} ({self.shard.describe()})"

    def describe(self) -> dict[str, Any]:
        """Where this worker runs and what it holds (JSON-ready); ``error`` when it failed."""
        info: dict[str, Any] = {
            "worker": self.shard.worker,
            "shard": self.shard.to_json(),
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "cores": sorted(os.sched_getaffinity(0)),
            "error": self.start_error,
        }
        if self.backend is not None:
            info.update(
                num_params=self.backend.num_params,
                num_examples=self.backend.num_examples,
                compute_dtype=str(self.backend.dtype),
                backend=self.backend_name,
                operator=self.backend.operator,
                training=self.backend.training,
                sums_on_device=self.backend.accumulates_on_device,
                accumulation_note=self.backend.accumulation_note,
                devices=self.backend.devices,
                product_form=self.backend.product_form,
            )
        if self.device_memory is not None:
            info["device_memory"] = self.device_memory
        return info

    def time_product_forms(
        self, block_size: int, measure: Callable[[str, Callable[[], Any]], float] | None = None,
        forms: Sequence[str] | None = None,
    ) -> tuple[dict[str, float], str]:
        """Seconds per block of ``block_size`` tangents on this shard's first batch, by
        product form of ``forms`` (default: every form of the backend;
        :meth:`~raylanczos.backends.base.ShardBackend.time_product_forms`), and the error
        line ("" when none). ``measure`` is the timer; None: a
        :class:`~raylanczos.backends.base.FormTimer` that knows the fastest form this worker
        timed before, so that a slower one is given up at once."""
        if self.backend is None:
            return {}, self.start_error
        try:
            timer = measure or FormTimer(min(self._form_seconds.values(), default=math.inf))
            times = self.backend.time_product_forms(block_size, timer, forms)
        except Exception as err:  # noqa: BLE001 - one line for the driver
            return {}, self._error_line(err)
        self._form_seconds.update(times)
        return times, ""

    def time_default_product_form(self, block_size: int) -> tuple[dict[str, float], str]:
        """:meth:`time_product_forms` of the backend's default form alone (none without a choice)."""
        return self.time_product_forms(block_size, forms=self.backend.product_forms[:1] if self.backend is not None else [])

    def time_other_product_forms(self, block_size: int) -> tuple[dict[str, float], str]:
        """:meth:`time_product_forms` of the forms not timed yet, returned with the seconds of
        those timed before, in the backend's order."""
        if self.backend is None:
            return {}, self.start_error
        forms = self.backend.product_forms
        _, error = self.time_product_forms(block_size, forms=[form for form in forms if form not in self._form_seconds])
        return {form: self._form_seconds[form] for form in forms if form in self._form_seconds}, error

    def warm_up(self, block_size: int, product_form: str | None = None) -> PartialInfo:
        """One pass over a block of ``block_size`` zero vectors in ``product_form`` (None: the
        backend's default), so that compilation (every batch shape) happens at start-up
        rather than in the first Lanczos step. A model sharded over several devices first
        measures its compiled product's memory per device (:attr:`device_memory`, in
        :meth:`describe`) and refuses a product that does not fit a device."""
        if self.backend is None:
            return PartialInfo(0, 0.0, self.start_error)
        start = time.perf_counter()
        try:
            if product_form is not None:
                self.backend.use_product_form(product_form)
            self.device_memory = self.backend.device_memory(block_size)
        except Exception as err:  # noqa: BLE001 - one line for the driver
            return PartialInfo(0, time.perf_counter() - start, self._error_line(err))
        info = self.partial_products(np.zeros((block_size, self.backend.num_params)), self.arguments, product_form)[0]
        return dataclasses.replace(info, seconds=time.perf_counter() - start)

    def partial_products(
        self, vectors: np.ndarray, arguments: Mapping[str, Any] | None = None, product_form: str | None = None
    ) -> tuple[PartialInfo, np.ndarray | None]:
        """This shard's Σ_b |b|·C_b v for each row of ``vectors`` (B, n): (info, float64 (B, n)).

        ``arguments`` are the factory arguments of the point the products are for, and
        ``product_form`` the run's form (None: the backend's default): a worker that Ray
        restarted from its first point's constructor moves to them first. The products are
        None when the pass failed (``info.error`` says why).
        """
        if (dict(arguments) if arguments else None) != self.arguments:
            self.load_point(arguments)
        if self.backend is None:
            return PartialInfo(0, 0.0, self.start_error), None
        start = time.perf_counter()
        try:
            if product_form is not None:
                self.backend.use_product_form(product_form)
            products, count = self.backend.product_sum(vectors)
        except Exception as err:  # noqa: BLE001 - one line for the driver
            return PartialInfo(0, time.perf_counter() - start, self._error_line(err)), None
        seconds = time.perf_counter() - start
        if not np.all(np.isfinite(products)):
            return PartialInfo(count, seconds, self._locate_non_finite(vectors)), None
        return PartialInfo(count, seconds), products

    def node_sum(
        self, vectors: np.ndarray, fetch_members: Callable[[], Sequence[np.ndarray | None]], own_index: int,
        arguments: Mapping[str, Any] | None = None, product_form: str | None = None,
    ) -> tuple[NodeSumInfo, np.ndarray | None]:
        """This worker's partial products plus those of the other workers of its node group.

        ``fetch_members()`` gives the group's other partials in group order (None for a
        member whose pass failed); it is called after this worker's own products, so that
        the fetch overlaps the members' work. ``own_index`` is this worker's place among
        them: the sum runs over the group in fixed order, so it does not depend on where the
        group's workers run. A group of one returns its own partial without a copy (0 s of
        node sum).
        """
        own, products = self.partial_products(vectors, arguments, product_form)
        members = list(fetch_members())
        if own.error or products is None:
            return NodeSumInfo(own.count, own.seconds, 0.0, own.error), None
        if any(member is None for member in members):
            return NodeSumInfo(own.count, own.seconds, 0.0), None  # the member's own answer names its error
        if not members:  # a node of one worker: its partial is the node's sum, as it is
            return NodeSumInfo(own.count, own.seconds, 0.0), products
        start = time.perf_counter()
        ordered = [*members[:own_index], products, *members[own_index:]]
        total = ordered[0].copy()
        for member in ordered[1:]:
            total += member
        return NodeSumInfo(own.count, own.seconds, time.perf_counter() - start), total

    def parameter_layout(self) -> list[dict[str, Any]]:
        """The flat vector's layout: ``[{"name", "shape", "offset", "size"}, ...]`` (JSON-ready)."""
        return self.backend.layout.to_json() if self.backend is not None else []

    def _locate_non_finite(self, vectors: np.ndarray) -> str:
        where = f"worker {self.shard.worker}, {self.shard.describe()}"
        found = self.backend.first_non_finite_batch(vectors)
        if found is None:
            return f"non-finite product on {where} (the sum over batches overflowed)"
        first, stop, bad = found
        return (
            f"non-finite product on {where}: {bad} NaN/inf entries from the batch of "
            f"{self.shard.locate(first, stop)} (check that batch's data and the model's weights)"
        )

    def _error_line(self, err: BaseException) -> str:
        return f"{self.where} failed: {exception_line(err)}"
