"""The batch loop every backend shares.

A shard's product is a sum over its batches, Σ_b |b| · C_b V for a block V of B vectors,
where C_b is the operator of batch b's *mean* loss. For the preconditioned operator,
C_b = D^{-1/2} H_b D^{-1/2}: the base class scales the block by d^{-1/2} before the
batches and the sums after them, so a framework only ever multiplies by H_b. :class:`ShardBackend` owns that loop:
the order of the batches, the weighting by batch size |b| (exact for a ragged last batch),
the float64 accumulation, the choice between summing on the device and on the host, and
the search for a batch whose product is not finite. A framework's backend supplies only
the per-batch pieces (:meth:`~ShardBackend._tangents`, :meth:`~ShardBackend._batch_product`,
:meth:`~ShardBackend._add_batch`, ...), as curvlinops' base operator owns the data loop and
its subclasses give the product on one batch.

This module imports numpy only: no framework.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from raylanczos.problem.data import Batch, BatchPlan
from raylanczos.problem.definition import Problem
from raylanczos.problem.layout import ParameterLayout
from raylanczos.problem.preconditioner import flat_preconditioner, inverse_sqrt_scaling

#: Timed calls of each product form's block (after one that compiles), at the warm-up.
FORM_REPEATS = 3
#: A form's timed call this many times the fastest form's median so far ends its timing: it cannot win.
FORM_GIVE_UP = 2.0


class FormTimer:
    """The default timer of :meth:`ShardBackend.time_product_forms`: ``timer(form, run)`` is
    the median seconds of up to :data:`FORM_REPEATS` calls of ``run()``, after one that
    compiles (not counted). A form whose timed call takes more than :data:`FORM_GIVE_UP`
    times the fastest median so far is not called again (a form in a loop body can be
    many times slower: the warm-up need not pay for it three times). ``fastest``: the
    fastest median known already (another form's, timed before)."""

    def __init__(self, fastest: float = math.inf) -> None:
        self.fastest = fastest

    def __call__(self, form: str, run: Callable[[], Any]) -> float:
        run()
        seconds: list[float] = []
        while len(seconds) < FORM_REPEATS and (not seconds or seconds[-1] <= FORM_GIVE_UP * self.fastest):
            start = time.perf_counter()
            run()
            seconds.append(time.perf_counter() - start)
        median = statistics.median(seconds)
        self.fastest = min(self.fastest, median)
        return median


class ShardBackend:
    """The curvature-vector products of one shard, batch by batch.

    Subclasses set the attributes below and :attr:`_batches` (with
    :meth:`_split_batches`), and implement the per-batch hooks.

    Attributes:
      num_params: n, the length of the flat parameter vector.
      num_examples: the shard's examples; ``batch_sizes``: its batches' sizes, in order.
      dtype: the compute dtype (numpy).
      layout: the flat vector's :class:`~raylanczos.problem.layout.ParameterLayout`.
      training: the Keras training mode (bool), None for JAX.
      operator: ``"hessian"``, ``"ggn"`` or ``"preconditioned"``.
      scaling: d^{-1/2}, float64[n], for the preconditioned operator; None otherwise.
      devices: G, the devices the products run on (1; several for a model sharded over a
        worker's devices, :mod:`raylanczos.backends.jax_sharding`).
      accumulates_on_device: True: :meth:`product_sum` adds each batch's products to a
        float64 sum where they are computed (:meth:`_add_batch`) and copies the sum to the
        host once; False: each batch's products are copied to the host and summed there
        in float64. ``accumulation_note`` says why not on the device, when not.
      product_forms: the forms a block's products can be computed in, the default first
        (JAX: :data:`~raylanczos.choices.JAX_PRODUCT_FORMS`; empty where there is no
        choice), and ``product_form`` the one in use (None without a choice); see
        :meth:`use_product_form` and :meth:`time_product_forms`.
    """

    num_params: int
    num_examples: int
    batch_sizes: list[int]
    dtype: np.dtype
    layout: ParameterLayout
    training: bool | None
    operator: str
    accumulates_on_device: bool
    accumulation_note: str = ""
    scaling: np.ndarray | None = None
    devices: int = 1
    product_forms: tuple[str, ...] = ()
    product_form: str | None = None
    #: The shard's batches, in order, as the framework holds them.
    _batches: list[Any]

    def product_sum(self, vectors: np.ndarray) -> tuple[np.ndarray, int]:
        """Σ_b |b| · C_b v for each row v of ``vectors`` float64 (B, n): (float64 (B, n), examples)."""
        block = self._scaled(self.check_block(vectors))
        if self.accumulates_on_device:
            return self._scaled(self._device_sum(block)), self.num_examples
        total = np.zeros(block.shape, dtype=np.float64)
        for size, products in zip(self.batch_sizes, self._host_products(block)):
            total += size * products
        return self._scaled(total), self.num_examples

    def batch_products(self, vectors: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
        """(first row, stop row, C_b v as float64 (B, n)) per batch, rows relative to the shard."""
        first = 0
        for size, products in zip(self.batch_sizes, self._host_products(self._scaled(self.check_block(vectors)))):
            yield first, first + size, self._scaled(products)
            first += size

    def first_non_finite_batch(self, vectors: np.ndarray) -> tuple[int, int, int] | None:
        """``(first row, stop row, non-finite entries)`` of the first batch whose product
        has NaN or infinite entries, or None when every batch's product is finite."""
        for first, stop, products in self.batch_products(vectors):
            bad = products.size - int(np.count_nonzero(np.isfinite(products)))
            if bad:
                return first, stop, bad
        return None

    def use_product_form(self, form: str) -> None:
        """Compute a block's products in ``form`` (one of :attr:`product_forms`) from now on."""
        raise ValueError(f"product_form {form!r} has no meaning here: this backend computes its products one way")

    def time_product_forms(
        self, block_size: int, measure: Callable[[str, Callable[[], Any]], float] | None = None,
        forms: Sequence[str] | None = None,
    ) -> dict[str, float]:
        """Seconds per block of ``block_size`` tangents on the first (largest) batch, per
        form of ``forms`` (default: all of :attr:`product_forms`; empty without a choice);
        the form in use is kept.

        ``measure(form, run)`` gives a form's seconds per block, ``run()`` computing the
        block's products and copying them to the host; a new :class:`FormTimer` by default.
        """
        block = np.random.default_rng(0).standard_normal((block_size, self.num_params))
        kept, times, measure = self.product_form, {}, measure or FormTimer()
        with self._product_scope():
            tangents = self._tangents(block)
            for form in self.product_forms if forms is None else forms:
                self.use_product_form(form)
                times[form] = measure(form, lambda: self._to_host(self._batch_product(tangents, self._batches[0])))
        if kept is not None:
            self.use_product_form(kept)
        return times

    def device_memory(self, block_size: int) -> dict[str, Any] | None:
        """What the compiled product of a block of ``block_size`` vectors needs per device,
        checked against the device's memory, for a model sharded over several devices; None
        on one device (not measured)."""
        return None

    def check_block(self, vectors: np.ndarray) -> np.ndarray:
        """``vectors`` as float64 (B, n), or ``ValueError`` quoting the shape received."""
        block = np.asarray(vectors, dtype=np.float64)
        if block.ndim != 2 or block.shape[1] != self.num_params or block.shape[0] == 0:
            raise ValueError(f"expected a block of vectors of shape (B, {self.num_params}), got shape {block.shape}")
        return block

    def _scaled(self, block: np.ndarray) -> np.ndarray:
        """``block`` (B, n) times d^{-1/2} row by row for the preconditioned operator, else as it is."""
        return block if self.scaling is None else block * self.scaling

    def _set_operator(self, problem: Problem, operator: str) -> None:
        """``operator``, and for ``"preconditioned"`` the :attr:`scaling` from the problem's D
        (flattened like the parameters, and checked: a ``ProblemError`` names the first
        entry that is not positive and finite)."""
        self.operator = operator
        if operator == "preconditioned":
            diagonal = problem.preconditioner
            # One array (numpy or the framework's) is a flat D; anything else is shaped like the parameters.
            diagonal = np.asarray(diagonal) if hasattr(diagonal, "ndim") else self._parameter_arrays(diagonal)
            self.scaling = inverse_sqrt_scaling(flat_preconditioner(diagonal, self.layout), self.layout)

    def _split_batches(self, arrays: Batch, batch_size: int, cast_to: np.dtype | None) -> list[Batch]:
        """The shard's ``arrays`` in batches of ``batch_size`` (the last may be smaller),
        floating arrays cast to ``cast_to`` (None: as they are); sets ``batch_sizes`` and
        ``num_examples``."""
        plan = BatchPlan(cast_floating(arrays, cast_to), batch_size)
        self.batch_sizes = plan.sizes
        self.num_examples = sum(plan.sizes)
        return list(plan)

    def _device_sum(self, block: np.ndarray) -> np.ndarray:
        """Σ_b |b| · C_b V summed in float64 where the products are computed, copied to the host once."""
        with self._summing_scope():
            tangents = self._tangents(block)
            total = self._zero_sums(block.shape)
            for size, batch in zip(self.batch_sizes, self._batches):
                total = self._add_batch(total, size, tangents, batch)
            return self._to_host(total)

    def _host_products(self, block: np.ndarray) -> Iterator[np.ndarray]:
        """Each batch's C_b V as float64 (B, n) on the host. The next batch is dispatched
        before the last one's products are copied, so an asynchronous framework computes
        while the host copies."""
        with self._product_scope():
            tangents = self._tangents(block)
            pending = None
            for batch in self._batches:
                products = self._batch_product(tangents, batch)
                if pending is not None:
                    yield self._to_host(pending)
                pending = products
            yield self._to_host(pending)

    # What a framework's backend implements: where its arrays live, and the per-batch hooks.

    @staticmethod
    def host_placement() -> contextlib.AbstractContextManager:
        """A context in which the framework's arrays are made on the host CPU."""
        raise NotImplementedError  # pragma: no cover - interface

    def _parameter_arrays(self, structure: Any) -> list[np.ndarray]:
        """The arrays of ``structure`` (shaped like the parameters), in the flat vector's order."""
        raise NotImplementedError  # pragma: no cover - interface

    def _tangents(self, block: np.ndarray) -> Any:
        """The float64 (B, n) block as the framework's input to the products."""
        raise NotImplementedError  # pragma: no cover - interface

    def _batch_product(self, tangents: Any, batch: Any) -> Any:
        """C_b V on one batch, (B, n), in the framework (computed, or dispatched)."""
        raise NotImplementedError  # pragma: no cover - interface

    def _add_batch(self, total: Any, size: int, tangents: Any, batch: Any) -> Any:
        """``total + size · C_b V`` in float64, in the framework (for :attr:`accumulates_on_device`)."""
        raise NotImplementedError  # pragma: no cover - interface

    def _zero_sums(self, shape: tuple[int, int]) -> Any:
        """A float64 array of zeros of ``shape`` in the framework, where :meth:`_add_batch` adds."""
        raise NotImplementedError  # pragma: no cover - interface

    def _to_host(self, products: Any) -> np.ndarray:
        """A framework's (B, n) array as float64 numpy."""
        raise NotImplementedError  # pragma: no cover - interface

    def _summing_scope(self) -> contextlib.AbstractContextManager:
        """The framework setting :meth:`_device_sum` runs in."""
        return contextlib.nullcontext()

    def _product_scope(self) -> contextlib.AbstractContextManager:
        """The framework setting :meth:`_host_products` runs in."""
        return contextlib.nullcontext()


def cast_floating(arrays: Mapping[str, np.ndarray], dtype: np.dtype | None) -> Batch:
    """``arrays`` with every floating array cast to ``dtype`` (None: unchanged); others as they are."""
    if dtype is None:
        return dict(arrays)
    return {k: (v.astype(dtype) if np.issubdtype(v.dtype, np.floating) else v) for k, v in arrays.items()}
