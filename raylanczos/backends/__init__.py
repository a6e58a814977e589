"""Backends: the curvature-vector products of one shard, in the problem's framework.

Every backend is built from a :class:`~raylanczos.Problem`, a shard's arrays and the
operator to multiply by, and is a :class:`ShardBackend` (:mod:`raylanczos.backends.base`):

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

The base class owns the loop over the batches, their weighting and the float64 sums; a
framework's backend gives the product on one batch. Frameworks are imported only inside
the backend that needs them: ``"jax"`` imports JAX (:mod:`raylanczos.backends.jax`),
``"keras"`` imports TensorFlow and Keras (:mod:`raylanczos.backends.tf`) and never JAX.
"""

from __future__ import annotations

import contextlib

from raylanczos.backends.base import ShardBackend
from raylanczos.choices import BACKENDS, COMPUTE_DTYPES, check_choice
from raylanczos.problem.data import Batch
from raylanczos.problem.definition import Problem, ProblemError, install_hint

__all__ = ["ShardBackend", "make_backend"]


def make_backend(
    problem: Problem,
    arrays: Batch,
    *,
    compute_dtype: str | None = None,
    operator: str = "hessian",
    on_host: bool = False,
    devices: int = 1,
) -> ShardBackend:
    """The backend for ``problem.backend`` over one shard's ``arrays``.

    ``compute_dtype`` None computes in the model's dtype; ``"float64"`` is the validation
    mode. ``operator`` is ``"hessian"``, ``"ggn"`` (the generalised Gauss–Newton matrix,
    which needs a problem with ``predict`` and ``output_loss``) or ``"preconditioned"``
    (D^{-1/2} H D^{-1/2}, which needs a problem with a ``preconditioner`` D). ``on_host`` keeps the
    backend on the CPU even where an accelerator is visible (the driver's checks).
    ``devices`` G > 1 shards a JAX model over the process's first G devices
    (:class:`~raylanczos.backends.jax_sharding.ShardedJaxBackend`); a Keras model stays on one.
    """
    check_choice("compute_dtype", compute_dtype, COMPUTE_DTYPES)
    problem.check_operator(operator)
    problem.check_devices(devices)
    backend = _backend_class(problem)
    if devices > 1:
        from raylanczos.backends.jax_sharding import ShardedJaxBackend

        return ShardedJaxBackend(problem, arrays, compute_dtype=compute_dtype, operator=operator, devices=devices)
    with backend.host_placement() if on_host else contextlib.nullcontext():
        return backend(problem, arrays, compute_dtype=compute_dtype, operator=operator)


def _backend_class(problem: Problem) -> type[ShardBackend]:
    """The backend class of ``problem.backend``, its module imported now (and only it); a
    framework that is not installed is named with the extra that installs it."""
    try:
        if problem.backend == "jax":
            from raylanczos.backends.jax import JaxBackend

            return JaxBackend
        if problem.backend == "keras":
            from raylanczos.backends.tf import KerasBackend

            return KerasBackend
    except ModuleNotFoundError as err:
        needed = (err.name or str(err)).split(".")[0]
        raise ProblemError(f"the {problem.backend} backend needs {needed}, which is not installed{install_hint(err)}") from err
    raise ProblemError(f"unknown backend {problem.backend!r}; expected one of {BACKENDS}")
