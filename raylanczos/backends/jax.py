"""JAX backend: Hessian- and Gauss–Newton-vector products over one shard's batches.

The flat parameter vector is ``jax.flatten_util.ravel_pytree(params)``: leaves in pytree
flattening order, each raveled in C order, named by their pytree paths
(:func:`pytree_layout`). For a batch b with mean loss L_b and a block of B tangents
V = [v₁ … v_B],

    H_b v = d/dε ∇L_b(θ + ε v) |_{ε=0}              (``jax.jvp`` of ``jax.grad``),
    G_b v = J_bᵀ ∇²ℓ_b(f_b) J_b v                    (``jvp``, output-space HVP, ``vjp``),

with f_b = ``predict(θ, b)`` and ℓ_b = ``output_loss(·, b)``. The B products share one
pass over the batch, in one of three *product forms* (:data:`~raylanczos.choices.JAX_PRODUCT_FORMS`,
:meth:`JaxBackend.use_product_form`):

- ``"jvp-grad"`` (the default): ``jax.vmap`` of the product over the tangents, with θ and
  the batch unbatched, so the forward and backward computation at θ is done once (B = 1
  runs the plain product);
- ``"linearize"``: ``jax.linearize`` of the gradient at θ, then ``jax.vmap`` of the linear
  map. On jax 0.10.2 (CPU) XLA compiles it to the same program as ``"jvp-grad"`` for B > 1
  (the same bits; docs/benchmarks.md), and to another one for B = 1;
- ``"map"``: ``jax.lax.map`` of the product over the tangents, one after another in one
  program: each tangent's matrix products keep their unbatched shapes, and the block's
  intermediates are one tangent's (faster for a wide MLP on a CPU, much slower for a conv
  net's convolutions in a loop body; docs/benchmarks.md).

The program is compiled once per
batch shape (a full batch and, at most, one ragged last batch) and block size, and adds
the batch's products to the shard's float64 sums Σ_b |b| · C_b v on the device, in the
same program. The host only dispatches (asynchronously) and copies the sums back once per
pass, so it does no per-batch work competing with the device or with XLA's CPU threads.
(A ``lax.scan`` over the batches would make it one dispatch, but XLA on the CPU ran the
digits conv net's convolutions 30× slower inside the loop body: 19.8 s per HVP against
0.66 s.)
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import jax
import jax.extend as jex
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from raylanczos.backends.base import ShardBackend
from raylanczos.cache import compilation_cache_dir
from raylanczos.choices import JAX_PRODUCT_FORMS, check_choice
from raylanczos.errors import exception_line
from raylanczos.problem.data import Batch
from raylanczos.problem.definition import Problem, ProblemError
from raylanczos.problem.layout import ParameterLayout, unique_names


class JaxBackend(ShardBackend):
    """Products of one shard of a JAX :class:`~raylanczos.Problem`.

    Args:
      problem: ``problem.params`` is a pytree of floating arrays and ``problem.loss_fn``
        returns the batch's mean loss as a scalar.
      arrays: the shard's examples (mapping of arrays, first axis = examples).
      compute_dtype: None or ``"float32"`` computes in the parameters' dtype (float32 for
        most models); ``"float64"`` casts parameters and floating data to float64 and
        runs with ``jax_enable_x64`` (validation mode).
      operator: ``"hessian"``, ``"ggn"`` (needs ``problem.predict`` and ``output_loss``) or
        ``"preconditioned"`` (needs ``problem.preconditioner``, a pytree like ``params``).

    Attributes:
      layout: the flat vector's :class:`~raylanczos.layout.ParameterLayout` (pytree paths).
      training: None: a JAX loss has no training mode of its own.
      accumulates_on_device: True when :meth:`product_sum` adds each batch's products to
        float64 sums on the device; False for a loss that would build float64 arrays if
        traced with 64-bit types enabled, whose products are then summed on the host
        (``accumulation_note`` says so).
    """

    training = None
    product_forms = JAX_PRODUCT_FORMS

    def __init__(self, problem: Problem, arrays: Batch, *, compute_dtype: str | None = None, operator: str = "hessian"):
        use_compilation_cache()
        self._x64 = compute_dtype == "float64"
        self._treedef = jax.tree_util.tree_structure(problem.params)
        with self._product_scope():
            flat, unravel = self._flat_params(problem, compute_dtype)
            self.layout = pytree_layout(unravel(flat))
            self.dtype = np.dtype(flat.dtype)
            self.num_params = int(flat.size)
            self._params, unravel = self._placed_params(problem, flat, unravel)
            self._set_operator(problem, operator)
            cast_to = np.dtype(np.float64) if self._x64 else None
            self._batches = [self._put_batch(batch) for batch in self._split_batches(arrays, problem.batch_size, cast_to)]
            self._check_loss(problem, unravel)
            product = _product_function(problem, unravel, operator)
            self.accumulation_note = self._host_sum_reason(product)
            self.accumulates_on_device = not self.accumulation_note
            self._forms = {
                "jvp-grad": _blocked(product), "linearize": _linearized(problem, unravel, operator), "map": _mapped(product),
            }
            self._programs: dict[str, tuple[Callable, Callable | None]] = {}
            self.use_product_form(self.product_forms[0])

    def use_product_form(self, form: str) -> None:
        """Compute the products of a block in ``form`` from now on (one of
        :attr:`product_forms`); its programs are jitted the first time it is chosen and kept."""
        if form not in self._programs:
            check_choice("product_form", form, self.product_forms)
            block = self._forms[form]
            adding = self._jit_adding(_adding(block)) if self.accumulates_on_device else None
            self._programs[form] = (self._jit_product(block), adding)
        self._block_product, self._add_products = self._programs[form]
        self.product_form = form

    # Where the parameters, batches and programs live: one device here; several in
    # :class:`raylanczos.backends.jax_sharding.ShardedJaxBackend`.

    def _placed_params(self, problem: Problem, flat: jax.Array, unravel: Callable) -> tuple[Any, Callable]:
        """The parameters as the products take them, and the map from those to the loss's
        pytree: here the flat vector float[n] and ``unravel``."""
        return flat, unravel

    def _put_batch(self, batch: Batch) -> Batch:
        return jax.device_put(batch)

    def _jit_product(self, block_product: Callable) -> Callable:
        return jax.jit(block_product)

    def _jit_adding(self, add_products: Callable) -> Callable:
        return jax.jit(add_products, donate_argnums=0)

    def _flat_params(self, problem: Problem, compute_dtype: str | None) -> tuple[jax.Array, Callable]:
        leaves = jax.tree_util.tree_leaves(problem.params)
        if not leaves:
            raise ProblemError("params has no arrays: there is nothing to differentiate")
        for path, leaf in jax.tree_util.tree_flatten_with_path(problem.params)[0]:
            dtype = jnp.asarray(leaf).dtype
            if not jnp.issubdtype(dtype, jnp.floating):
                raise ProblemError(f"params must be floating-point arrays, found dtype {dtype} at params{jax.tree_util.keystr(path)}")
            bad = int(np.size(leaf) - np.count_nonzero(np.isfinite(np.asarray(leaf))))
            if bad:
                raise ProblemError(f"params{jax.tree_util.keystr(path)} has {bad} non-finite (NaN or inf) values")
        model_dtype = jnp.result_type(*leaves)
        dtype = {"float64": jnp.float64, "float32": jnp.float32}.get(compute_dtype, model_dtype)
        params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), problem.params)
        return ravel_pytree(params)

    def _check_loss(self, problem: Problem, unravel: Callable) -> None:
        """Trace the loss on the first batch (no computation): it must run and return a scalar."""
        batch = self._batches[0]
        try:
            shape = jax.eval_shape(lambda p: problem.loss_fn(unravel(p), batch), self._params).shape
        except Exception as err:  # noqa: BLE001 - any failure is the loss's, reported in one line
            raise ProblemError(
                f"loss_fn failed on the first batch ({_describe_batch(batch)}): {exception_line(err, first_line=True)}"
            ) from err
        if shape != ():
            raise ProblemError(
                f"loss_fn must return a scalar (the mean loss over the batch), got an array of shape {shape}"
            )

    @staticmethod
    def host_placement() -> contextlib.AbstractContextManager:
        """Arrays made in this context live on the host CPU."""
        return jax.default_device(jax.devices("cpu")[0])

    def _parameter_arrays(self, structure: Any) -> list[np.ndarray]:
        """The leaves of a pytree with the parameters' structure, in ``ravel_pytree`` order."""
        leaves, treedef = jax.tree_util.tree_flatten(structure)
        if treedef != self._treedef:
            raise ProblemError(
                f"the preconditioner's pytree structure differs from the parameters': {treedef} against "
                f"{self._treedef}; give a pytree like params, or one flat array of {self.num_params} entries"
            )
        return [np.asarray(leaf) for leaf in leaves]

    def _tangents(self, block: np.ndarray) -> jax.Array:
        return jnp.asarray(block, dtype=self.dtype)

    def _batch_product(self, tangents: jax.Array, batch: Batch) -> jax.Array:
        return self._block_product(self._params, tangents, batch)

    def _add_batch(self, total: jax.Array, size: int, tangents: jax.Array, batch: Batch) -> jax.Array:
        return self._add_products(total, np.float64(size), self._params, tangents, batch)

    def _zero_sums(self, shape: tuple[int, int]) -> jax.Array:
        return jnp.zeros(shape, dtype=jnp.float64)

    def _to_host(self, products: jax.Array) -> np.ndarray:
        return np.asarray(products, dtype=np.float64)

    def _summing_scope(self) -> contextlib.AbstractContextManager:
        """64-bit types on, for the float64 sums (the products keep the model's dtype)."""
        return jax.enable_x64(True)

    def _host_sum_reason(self, product: Callable) -> str:
        """Why the batch sums cannot be kept on the device ("" when they can).

        The device sums are float64, so their program is traced with 64-bit types
        enabled; a loss that builds arrays of the default dtype (``jnp.ones(())``, say)
        would then compute in float64. Such a program has float64 values where the
        model's dtype has none: its products are summed on the host instead.
        """
        if self.dtype == np.float64:
            return ""
        with jax.enable_x64(True):
            traced = jax.make_jaxpr(product)(self._params, self._params, self._batches[0])
        if np.dtype(np.float64) in jaxpr_dtypes(traced.jaxpr):
            return "sums on the host: the loss builds float64 arrays when traced with 64-bit types"
        return ""

    def _product_scope(self) -> contextlib.AbstractContextManager:
        """64-bit types on in the float64 mode (``compute_dtype="float64"``)."""
        return jax.enable_x64(True) if self._x64 else contextlib.nullcontext()



def use_compilation_cache() -> None:
    """Keep compiled products in raylanczos' cache directory (see :mod:`raylanczos.cache`),
    so that a later run of the same model on this machine starts without compiling. Every
    program is cached, however fast it compiled; the numbers do not change."""
    directory = compilation_cache_dir()
    if directory is None or jax.config.jax_compilation_cache_dir:
        return
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

def _product_function(problem: Problem, unravel: Callable, operator: str) -> Callable:
    """``(flat params, tangent, batch) -> C_b v`` for the Hessian (also the preconditioned
    operator's, whose scaling the base class applies) or the Gauss–Newton matrix."""
    if operator != "ggn":

        def flat_loss(p: jax.Array, batch: Batch) -> jax.Array:
            return problem.loss_fn(unravel(p), batch)

        def hessian_product(p: jax.Array, v: jax.Array, batch: Batch) -> jax.Array:
            return jax.jvp(lambda q: jax.grad(flat_loss)(q, batch), (p,), (v,))[1]

        return hessian_product

    predict, output_loss = problem.predict, problem.output_loss

    def ggn_product(p: jax.Array, v: jax.Array, batch: Batch) -> jax.Array:
        outputs, pullback = jax.vjp(lambda q: predict(unravel(q), batch), p)
        tangent_outputs = jax.jvp(lambda q: predict(unravel(q), batch), (p,), (v,))[1]
        curvature = jax.jvp(jax.grad(lambda f: output_loss(f, batch)), (outputs,), (tangent_outputs,))[1]
        return pullback(curvature)[0]

    return ggn_product


def _linearized(problem: Problem, unravel: Callable, operator: str) -> Callable:
    """``(p, V, batch) -> C_b V`` in the ``"linearize"`` form: ``jax.linearize`` of the
    gradient (or of the model's outputs and of the output loss's gradient, for the
    Gauss–Newton matrix) at p once, then the linear maps ``jax.vmap``-ed over the B tangents
    (V's leaves (B, *shape)); the products are shaped as V."""
    if operator != "ggn":

        def gradient(q: Any, batch: Batch) -> Any:
            return jax.grad(lambda r: problem.loss_fn(unravel(r), batch))(q)

        def hessian_block(p: Any, tangents: Any, batch: Batch) -> Any:
            linear = jax.linearize(lambda q: gradient(q, batch), p)[1]
            return jax.vmap(linear)(tangents)

        return hessian_block

    predict, output_loss = problem.predict, problem.output_loss

    def ggn_block(p: Any, tangents: Any, batch: Batch) -> Any:
        outputs, jacobian = jax.linearize(lambda q: predict(unravel(q), batch), p)
        curvature = jax.linearize(jax.grad(lambda f: output_loss(f, batch)), outputs)[1]
        pullback = jax.linear_transpose(jacobian, p)
        return jax.vmap(lambda v: pullback(curvature(jacobian(v)))[0])(tangents)

    return ggn_block


def _mapped(product: Callable) -> Callable:
    """``(p, V, batch) -> C_b V`` in the ``"map"`` form: ``jax.lax.map`` of ``product`` over
    the B tangents (V's leaves (B, *shape)), one after another in one program, each
    tangent's matrix products in their unbatched shapes."""

    def mapped_block(p: Any, tangents: Any, batch: Batch) -> Any:
        return jax.lax.map(lambda v: product(p, v, batch), tangents)

    return mapped_block


def _blocked(product: Callable) -> Callable:
    """``(p, V, batch) -> C_b V`` for a block V (B, n) of tangents: ``jax.vmap`` over them,
    or the plain product for B = 1 (the same program, and so the same bits, as one vector).
    ``p`` and V may be pytrees (V's leaves (B, *shape)); the products are shaped as V."""
    vectorized = jax.vmap(product, in_axes=(None, 0, None))

    def block_product(p: Any, tangents: Any, batch: Batch) -> Any:
        if jax.tree_util.tree_leaves(tangents)[0].shape[0] == 1:
            single = product(p, jax.tree_util.tree_map(lambda t: t[0], tangents), batch)
            return jax.tree_util.tree_map(lambda c: c[None], single)
        return vectorized(p, tangents, batch)

    return block_product


def _adding(block: Callable) -> Callable:
    """``(total, size, p, V, batch) -> total + size · C_b V`` in float64 for ``block``, a
    product of a block of tangents ``(p, V, batch) -> C_b V`` (``total`` and V arrays, or
    pytrees of the same structure)."""

    def add_products(total: Any, size: jax.Array, p: Any, tangents: Any, batch: Batch) -> Any:
        return jax.tree_util.tree_map(lambda t, c: t + size * c.astype(jnp.float64), total, block(p, tangents, batch))

    return add_products


def jaxpr_dtypes(jaxpr: Any) -> set[np.dtype]:
    """Every dtype a traced program computes, its sub-programs (jit, custom rules, loops) included."""
    found = {np.dtype(var.aval.dtype) for var in jaxpr.invars if hasattr(var.aval, "dtype")}
    for equation in jaxpr.eqns:
        found |= {np.dtype(var.aval.dtype) for var in equation.outvars if hasattr(var.aval, "dtype")}
        for param in equation.params.values():
            for sub in param if isinstance(param, (list, tuple)) else (param,):
                if isinstance(sub, jex.core.ClosedJaxpr):
                    found |= jaxpr_dtypes(sub.jaxpr)
                elif isinstance(sub, jex.core.Jaxpr):
                    found |= jaxpr_dtypes(sub)
    return found


def _describe_batch(batch: Batch) -> str:
    return ", ".join(f"{k!r} {tuple(v.shape)} {v.dtype}" for k, v in batch.items())


def pytree_layout(params) -> ParameterLayout:
    """Blocks in ``ravel_pytree`` order, named ``keystr(path, simple=True, separator="/")``.

    A list of ``{"w", "b"}`` dicts gives ``"0/b", "0/w", "1/b", ...`` (dict keys sorted, as
    JAX flattens them); a bare array is named ``"params"``.
    """
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    names = [jax.tree_util.keystr(path, simple=True, separator="/") or "params" for path, _ in leaves]
    return ParameterLayout.from_shapes(zip(unique_names(names), (np.shape(leaf) for _, leaf in leaves)))
