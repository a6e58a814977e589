"""Backends: the Hessian-vector product of one shard, in the problem's framework.

Every backend is built from a :class:`~raylanczos.Problem` and a shard's arrays, and has

- ``num_params``: n, the length of the flat parameter vector;
- ``num_examples``, ``batch_sizes``: the shard's examples and its batches' sizes;
- ``dtype``: the compute dtype (numpy);
- ``layout``: the flat vector's :class:`~raylanczos.layout.ParameterLayout` (named blocks);
- ``training``: the Keras training mode (bool), None for JAX;
- ``accumulates_on_device``: whether ``hvp_sum`` sums the batches' products in float64
  on the device (else on the host);
- ``hvp_sum(vector) -> (float64[n], count)``: Σ_b |b| · H_b v over the shard's batches,
  where H_b is the Hessian of the batch's mean loss, accumulated in float64;
- ``batch_hvps(vector)``: the per-batch (first row, stop row, float64[n]) products, for
  diagnostics.

Frameworks are imported only inside the backend that needs them: ``"jax"`` imports JAX
(:mod:`raylanczos.backends.jax`), ``"keras"`` imports TensorFlow and Keras
(:mod:`raylanczos.backends.tf`) and never JAX.
"""

from __future__ import annotations

from typing import Any

from raylanczos.data import Batch
from raylanczos.problem import Problem, ProblemError

COMPUTE_DTYPES = (None, "float32", "float64")


def make_backend(problem: Problem, arrays: Batch, *, compute_dtype: str | None = None) -> Any:
    """The backend for ``problem.backend`` over one shard's ``arrays``.

    ``compute_dtype`` None computes in the model's dtype; ``"float64"`` is the validation mode.
    """
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, got {compute_dtype!r}")
    if problem.backend == "jax":
        from raylanczos.backends.jax import JaxBackend

        return JaxBackend(problem, arrays, compute_dtype=compute_dtype)
    if problem.backend == "keras":
        from raylanczos.backends.tf import KerasBackend

        return KerasBackend(problem, arrays, compute_dtype=compute_dtype)
    raise ProblemError(f"unknown backend {problem.backend!r}")
