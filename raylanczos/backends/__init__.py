"""Backends: the curvature-vector products of one shard, in the problem's framework.

Every backend is built from a :class:`~raylanczos.Problem`, a shard's arrays and the
operator to multiply by, and is a :class:`ShardBackend`:

- ``num_params``: n, the length of the flat parameter vector;
- ``num_examples``, ``batch_sizes``: the shard's examples and its batches' sizes;
- ``dtype``: the compute dtype (numpy);
- ``layout``: the flat vector's :class:`~raylanczos.layout.ParameterLayout` (named blocks);
- ``training``: the Keras training mode (bool), None for JAX;
- ``accumulates_on_device``: whether the batches' products are summed in float64 on the
  device (else on the host), and ``accumulation_note``: why not, when not;
- ``product_sum(vectors)``: for a block of B vectors float64 (B, n), the float64 (B, n)
  sums Σ_b |b| · C_b v over the shard's batches, where C_b is the operator of the batch's
  mean loss (the Hessian H_b, or the Gauss–Newton matrix G_b), computed for all B vectors
  in one pass over each batch;
- ``batch_products(vectors)``: the per-batch (first row, stop row, float64 (B, n))
  products, for diagnostics such as :meth:`ShardBackend.first_non_finite_batch`.

Frameworks are imported only inside the backend that needs them: ``"jax"`` imports JAX
(:mod:`raylanczos.backends.jax`), ``"keras"`` imports TensorFlow and Keras
(:mod:`raylanczos.backends.tf`) and never JAX.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np

from raylanczos.choices import BACKENDS, COMPUTE_DTYPES, check_choice
from raylanczos.problem.data import Batch
from raylanczos.problem.definition import Problem, ProblemError, install_hint
from raylanczos.problem.layout import ParameterLayout


class ShardBackend:
    """What every backend shares: the block's shape check, the batch bookkeeping and the
    search for a non-finite batch. Subclasses set the attributes listed in the module
    docstring and implement :meth:`_block_sum` and :meth:`_batch_block_products`."""

    num_params: int
    num_examples: int
    batch_sizes: list[int]
    dtype: np.dtype
    layout: ParameterLayout
    training: bool | None
    operator: str
    accumulates_on_device: bool
    accumulation_note: str = ""

    def product_sum(self, vectors: np.ndarray) -> tuple[np.ndarray, int]:
        """Σ_b |b| · C_b v for each row v of ``vectors`` float64 (B, n): (float64 (B, n), examples)."""
        return self._block_sum(self.check_block(vectors)), self.num_examples

    def batch_products(self, vectors: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
        """(first row, stop row, C_b v as float64 (B, n)) per batch, rows relative to the shard."""
        first = 0
        for size, product in zip(self.batch_sizes, self._batch_block_products(self.check_block(vectors))):
            yield first, first + size, product
            first += size

    def first_non_finite_batch(self, vectors: np.ndarray) -> tuple[int, int, int] | None:
        """``(first row, stop row, non-finite entries)`` of the first batch whose product
        has NaN or infinite entries, or None when every batch's product is finite."""
        for first, stop, product in self.batch_products(vectors):
            bad = product.size - int(np.count_nonzero(np.isfinite(product)))
            if bad:
                return first, stop, bad
        return None

    def check_block(self, vectors: np.ndarray) -> np.ndarray:
        """``vectors`` as float64 (B, n), or ``ValueError`` quoting the shape received."""
        block = np.asarray(vectors, dtype=np.float64)
        if block.ndim != 2 or block.shape[1] != self.num_params or block.shape[0] == 0:
            raise ValueError(f"expected a block of vectors of shape (B, {self.num_params}), got shape {block.shape}")
        return block

    def _block_sum(self, vectors: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def _batch_block_products(self, vectors: np.ndarray) -> Iterator[np.ndarray]:  # pragma: no cover - interface
        raise NotImplementedError


def make_backend(
    problem: Problem,
    arrays: Batch,
    *,
    compute_dtype: str | None = None,
    operator: str = "hessian",
    on_host: bool = False,
) -> ShardBackend:
    """The backend for ``problem.backend`` over one shard's ``arrays``.

    ``compute_dtype`` None computes in the model's dtype; ``"float64"`` is the validation
    mode. ``operator`` is ``"hessian"`` or ``"ggn"`` (the generalised Gauss–Newton matrix,
    which needs a problem with ``predict`` and ``output_loss``). ``on_host`` keeps the
    backend on the CPU even where an accelerator is visible (the driver's checks).
    """
    check_choice("compute_dtype", compute_dtype, COMPUTE_DTYPES)
    problem.check_operator(operator)
    try:
        if problem.backend == "jax":
            from raylanczos.backends.jax import JaxBackend as backend_class, host_placement
        elif problem.backend == "keras":
            from raylanczos.backends.tf import KerasBackend as backend_class, host_placement
        else:
            raise ProblemError(f"unknown backend {problem.backend!r}; expected one of {BACKENDS}")
    except ModuleNotFoundError as err:
        needed = (err.name or str(err)).split(".")[0]
        raise ProblemError(f"the {problem.backend} backend needs {needed}, which is not installed{install_hint(err)}") from err
    with host_placement() if on_host else contextlib.nullcontext():
        return backend_class(problem, arrays, compute_dtype=compute_dtype, operator=operator)
