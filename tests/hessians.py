"""Dense float64 reference Hessians and Gauss–Newton matrices of JAX problems, for tests."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from raylanczos.examples import digits
from raylanczos.problem.data import ShardPlan


def dense_hessian(problem, chunk: int = 512) -> np.ndarray:
    """∇²L(θ) in float64 over the whole dataset (n × n), column by column: H eᵢ by
    forward-over-reverse, ``chunk`` columns at a time (3.5× faster than ``jax.hessian`` for
    the 2,410-parameter digits MLP, and the same to 1e-15)."""
    with jax.enable_x64(True):
        flat, unravel, batch = _float64(problem)
        gradient = jax.grad(lambda q: problem.loss_fn(unravel(q), batch))
        columns = jax.jit(jax.vmap(lambda e: jax.jvp(gradient, (flat,), (e,))[1]))
        identity = np.eye(flat.size)
        return np.concatenate([np.asarray(columns(identity[i : i + chunk])) for i in range(0, flat.size, chunk)])


def dense_ggn(problem) -> np.ndarray:
    """G = (1/N) Σᵢ Jᵢᵀ ∇²ℓᵢ(fᵢ) Jᵢ in float64 over the whole dataset (n × n).

    J = ``jax.jacobian`` of ``predict`` (N, *output, n); ∇²ℓᵢ = ``jax.hessian`` of
    ``output_loss`` on example i alone (a batch of one; ``output_loss`` is a mean, so the
    whole loss is (1/N) Σᵢ of these), which keeps the output-space Hessian block-diagonal
    instead of (N·outputs)² dense.
    """
    with jax.enable_x64(True):
        flat, unravel, batch = _float64(problem)
        outputs = problem.predict(unravel(flat), batch)
        jacobian = jax.jacfwd(lambda q: problem.predict(unravel(q), batch))(flat)

        def example_hessian(output, example):
            single = jax.tree_util.tree_map(lambda a: a[None], example)
            return jax.hessian(lambda f: problem.output_loss(f[None], single))(output)

        hessians = jax.vmap(example_hessian)(outputs, batch)
        n, size = flat.size, outputs[0].size
        jacobian = jacobian.reshape(outputs.shape[0], size, n)
        hessians = hessians.reshape(outputs.shape[0], size, size)
        return np.asarray(jnp.einsum("iak,iab,ibl->kl", jacobian, hessians, jacobian) / outputs.shape[0])


def _float64(problem):
    """The flat float64 parameters, their unravel, and the whole dataset as one float64 batch."""
    params = jax.tree_util.tree_map(lambda p: jnp.asarray(p, jnp.float64), problem.params)
    flat, unravel = ravel_pytree(params)
    arrays = problem.data.read(ShardPlan.balanced(problem.num_examples, 1).shards[0])
    batch = {k: (v.astype(np.float64) if np.issubdtype(v.dtype, np.floating) else v) for k, v in arrays.items()}
    return flat, unravel, batch


@functools.cache
def tiny_hessian() -> np.ndarray:
    return dense_hessian(digits.tiny_problem())


@functools.cache
def digits_hessian() -> np.ndarray:
    return dense_hessian(digits.problem())


@functools.cache
def tiny_ggn() -> np.ndarray:
    return dense_ggn(digits.tiny_problem())


@functools.cache
def tiny_transformer_hessian() -> np.ndarray:
    """The tiny transformer's dense Hessian (n = 2,383; 6 s), computed once per session: the
    transformer's and the devices' checks both compare against it."""
    from raylanczos.examples import transformer

    return dense_hessian(transformer.tiny_problem())
