"""The conv-net examples: the design's benchmark net and the compute-bound digits net."""

from __future__ import annotations

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

import raylanczos as rl
from raylanczos.examples import convnet
from raylanczos.worker import LocalHessian


def test_reference_net_has_the_designs_parameter_count():
    params = convnet.init_params(3, convnet.REFERENCE_LAYERS, 10, seed=0)
    assert sum(leaf.size for leaf in jax.tree_util.tree_leaves(params)) == 7_050_314


def test_reference_net_hvp_runs_on_a_few_examples():
    """The GPU benchmark problem, shrunk to 6 examples in batches of 4 (one ragged)."""
    hessian = LocalHessian(convnet.reference_problem(num_examples=6, batch_size=4))
    product = hessian.matvec(rl.start_vector(hessian.dim, seed=0))
    assert product.shape == (7_050_314,) and np.all(np.isfinite(product)) and np.any(product)


def test_digits_net_hvp_is_the_gradients_central_difference():
    """Float64 HVP of the digits conv net against (∇L(θ + εv) − ∇L(θ − εv)) / 2ε, and
    uᵀHv = vᵀHu: to 1e-6 and 1e-12 relative."""
    problem = convnet.digits_problem()
    hessian = LocalHessian(problem, compute_dtype="float64")
    assert hessian.dim == 19_466
    u, v = (rl.start_vector(hessian.dim, seed=s) for s in (1, 2))
    hv, hu = hessian.matvec(v), hessian.matvec(u)
    assert abs(u @ hv - v @ hu) <= 1e-12 * np.linalg.norm(hv)

    arrays = problem.data.read(rl.ShardPlan.balanced(problem.num_examples, 1).shards[0])
    batch = {"x": arrays["x"].astype(np.float64), "y": arrays["y"]}
    with jax.enable_x64(True):
        flat, unravel = ravel_pytree(jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), problem.params))
        grad = jax.jit(jax.grad(lambda p: problem.loss_fn(unravel(p), batch)))
        eps = 1e-4
        difference = (np.asarray(grad(flat + eps * v)) - np.asarray(grad(flat - eps * v))) / (2 * eps)
    assert np.linalg.norm(difference - hv) <= 1e-6 * np.linalg.norm(hv)
