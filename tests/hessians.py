"""Dense float64 reference Hessians of JAX problems, for tests."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from raylanczos.data import ShardPlan
from raylanczos.examples import digits


def dense_hessian(problem) -> np.ndarray:
    """∇²L(θ) in float64 over the whole dataset, by ``jax.hessian`` (n × n)."""
    with jax.enable_x64(True):
        params = jax.tree_util.tree_map(lambda p: jnp.asarray(p, jnp.float64), problem.params)
        flat, unravel = ravel_pytree(params)
        arrays = problem.data.read(ShardPlan.balanced(problem.num_examples, 1).shards[0])
        batch = {k: (v.astype(np.float64) if np.issubdtype(v.dtype, np.floating) else v) for k, v in arrays.items()}
        hessian = jax.hessian(lambda q: problem.loss_fn(unravel(q), batch))(flat)
        return np.asarray(hessian)


@functools.cache
def tiny_hessian() -> np.ndarray:
    return dense_hessian(digits.tiny_problem())


@functools.cache
def digits_hessian() -> np.ndarray:
    return dense_hessian(digits.problem())
