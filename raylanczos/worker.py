"""One shard's worker, and the in-process Hessian built from such workers.

:class:`ShardWorker` is an ordinary class: the Ray layer (:mod:`raylanczos.distributed`)
wraps it with ``ray.remote`` in one place, and :class:`LocalHessian` uses it directly,
without Ray, as the single-process reference and the benchmark floor.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from raylanczos.backends import make_backend
from raylanczos.data import Shard, ShardPlan
from raylanczos.problem import ProblemSource, build_problem, ensure_on_path


#: A worker process that dies (SIGKILL, out of memory, lost node) is restarted this many
#: times and its call retried; a worker whose factory raises is not restarted.
DEFAULT_MAX_RESTARTS = 3
#: Seconds to wait for a worker to start, or to answer one step, before giving up.
DEFAULT_TIMEOUT_S = 3600.0


class NonFiniteHVPError(RuntimeError):
    """A Hessian-vector product with NaN or infinite entries (names worker, shard, rows)."""


@dataclass(frozen=True)
class PartialHVP:
    """A worker's answer for one step: Σ_b |b|·H_b v (float64[n]), its example count, seconds."""

    product: np.ndarray
    count: int
    seconds: float


class ShardWorker:
    """Computes the partial HVP of one shard of a problem.

    Args:
      source: the problem, its factory, or the factory's ``"module:function"`` path
        (imported here, after ``sys_path`` entries are added to ``sys.path``).
      shard: the rows or files this worker owns.
      compute_dtype: None (the model's dtype) or ``"float64"``.
      sys_path: extra import-path entries (the driver's cwd and PYTHONPATH).
      cpu_slot: ``(first, count)``: pin this process to ``count`` of its allowed cores,
        from index ``first`` (see :func:`pin_to_cores`), before the framework starts its
        thread pools; None leaves the process unpinned.
    """

    def __init__(
        self,
        source: ProblemSource,
        shard: Shard,
        *,
        compute_dtype: str | None = None,
        sys_path: Sequence[str] = (),
        cpu_slot: tuple[int, int] | None = None,
    ):
        if cpu_slot is not None:
            pin_to_cores(*cpu_slot)
        ensure_on_path(list(sys_path))
        self.shard = shard
        problem = build_problem(source)
        self.backend_name = problem.backend
        arrays = problem.data.read(shard)
        self.backend = make_backend(problem, arrays, compute_dtype=compute_dtype)

    def describe(self) -> dict[str, Any]:
        """Where this worker runs and what it holds (JSON-ready)."""
        return {
            "worker": self.shard.worker,
            "shard": self.shard.to_json(),
            "num_params": self.backend.num_params,
            "num_examples": self.backend.num_examples,
            "compute_dtype": str(self.backend.dtype),
            "backend": self.backend_name,
            "training": self.backend.training,
            "sums_on_device": self.backend.accumulates_on_device,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "cores": sorted(os.sched_getaffinity(0)),
        }

    def parameter_layout(self) -> list[dict[str, Any]]:
        """The flat vector's layout: ``[{"name", "shape", "offset", "size"}, ...]`` (JSON-ready).

        JAX: ``ravel_pytree`` order, named by pytree paths; Keras: ``trainable_variables``
        order, named by variable paths. Read it back with :func:`raylanczos.split_vector`.
        """
        return self.backend.layout.to_json()

    def warm_up(self) -> float:
        """One HVP of the zero vector, so that compilation (every batch shape) happens at
        start-up rather than in the first Lanczos step; returns its seconds."""
        start = time.perf_counter()
        self.backend.hvp_sum(np.zeros(self.backend.num_params))
        return time.perf_counter() - start

    def partial_hvp(self, vector: np.ndarray) -> PartialHVP:
        """This shard's Σ_b |b|·H_b v for ``vector`` float64[n]; raises on non-finite output."""
        start = time.perf_counter()
        product, count = self.backend.hvp_sum(vector)
        seconds = time.perf_counter() - start
        if not np.all(np.isfinite(product)):
            raise NonFiniteHVPError(self._locate_non_finite(vector))
        return PartialHVP(product, count, seconds)

    def _locate_non_finite(self, vector: np.ndarray) -> str:
        where = f"worker {self.shard.worker}, {self.shard.describe()}"
        for first, stop, product in self.backend.batch_hvps(vector):
            bad = product.size - int(np.count_nonzero(np.isfinite(product)))
            if bad:
                return (
                    f"non-finite Hessian-vector product on {where}: {bad} NaN/inf entries from the batch of "
                    f"{self.shard.locate(first, stop)} (check that batch's data and the model's weights)"
                )
        return f"non-finite Hessian-vector product on {where} (the sum over batches overflowed)"


def pin_to_cores(first: int, count: int) -> list[int]:
    """Restrict this process to ``count`` of the cores it may use, from index ``first``.

    Indexes wrap around the sorted allowed set, so slots beyond the machine's cores share
    cores instead of failing. XLA and TensorFlow size their thread pools from this set,
    so pin before importing them: a worker then uses the CPUs it reserved, and workers
    on one node (and the driver's re-orthogonalisation) do not fight over cores.
    Returns the cores chosen.
    """
    allowed = sorted(os.sched_getaffinity(0))
    cores = sorted({allowed[(first + i) % len(allowed)] for i in range(max(count, 1))})
    os.sched_setaffinity(0, cores)
    return cores


def reduce_partials(partials: Sequence[PartialHVP], num_examples: int) -> np.ndarray:
    """Hv = (Σ_k partial_k) / N in float64, summed in worker order (deterministic)."""
    counted = sum(p.count for p in partials)
    if counted != num_examples:
        raise RuntimeError(f"workers covered {counted} examples, the dataset has {num_examples}")
    total = partials[0].product.copy()
    for partial in partials[1:]:
        total += partial.product
    total /= num_examples
    return total


class LocalHessian:
    """The full-batch Hessian as a float64 matvec, computed in this process (no Ray).

    ``plan`` defaults to one shard with every example. Same reduction as the
    distributed operator, so results agree with it to rounding of the shard sums.
    """

    def __init__(self, source: ProblemSource, *, plan: ShardPlan | None = None, compute_dtype: str | None = None):
        problem = build_problem(source)
        self.num_examples = problem.num_examples
        plan = (plan or ShardPlan.balanced(self.num_examples, 1)).validate(problem.data)
        self.workers = [ShardWorker(problem, shard, compute_dtype=compute_dtype) for shard in plan.shards]
        self.dim = self.workers[0].backend.num_params

    def matvec(self, vector: np.ndarray) -> np.ndarray:
        return reduce_partials([w.partial_hvp(vector) for w in self.workers], self.num_examples)
