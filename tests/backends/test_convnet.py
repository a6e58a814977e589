"""The conv-net examples: the design's benchmark net and the compute-bound digits net."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import raylanczos as rl
from raylanczos.examples import convnet
from raylanczos.operators.local import LocalHessian


def test_reference_net_has_the_designs_parameter_count():
    params = convnet.init_params(3, convnet.REFERENCE_LAYERS, 10, seed=0)
    assert sum(leaf.size for leaf in jax.tree_util.tree_leaves(params)) == 7_050_314


@pytest.mark.slow
def test_reference_net_hvp_runs_on_a_few_examples():
    """The GPU benchmark problem, shrunk to 6 examples in batches of 4 (one ragged)."""
    hessian = LocalHessian(convnet.reference_problem(num_examples=6, batch_size=4))
    product = hessian.matvec(rl.start_vector(hessian.dim, seed=0))
    assert product.shape == (7_050_314,) and np.all(np.isfinite(product)) and np.any(product)


#: The reference net's layer structure (3×3 SAME convolutions + GELU, three max-pools, a
#: global mean pool, a dense head) at 1/32 of its widths: fast on a CPU in float64.
SMALL_REFERENCE_LAYERS = (2, 2, "pool", 4, 4, "pool", 8, 8, "pool", 16, 16, 16)


@pytest.mark.slow
def test_a_small_copy_of_the_reference_net_has_the_gradients_central_difference():
    """The reference architecture, narrowed, on 12 examples (batches of 5, one ragged):
    float64 HVPs of a block of 3 vectors are (∇L(θ + εv) − ∇L(θ − εv)) / 2ε to 1e-7, and
    uᵀHv = vᵀHu to 1e-12."""
    problem = convnet.reference_problem(num_examples=12, batch_size=5, layers=SMALL_REFERENCE_LAYERS)
    hessian = LocalHessian(problem, compute_dtype="float64")
    vectors = np.stack([rl.start_vector(hessian.dim, seed=s) for s in range(3)])
    products = hessian.matmat(vectors)
    assert abs(vectors[0] @ products[1] - vectors[1] @ products[0]) <= 1e-12 * np.linalg.norm(products[1])
    for product, difference in zip(products, central_differences(problem, vectors)):
        assert np.linalg.norm(difference - product) <= 1e-7 * np.linalg.norm(product)


def central_differences(problem: rl.Problem, vectors: np.ndarray, eps: float = 1e-4) -> list[np.ndarray]:
    """(∇L(θ + εv) − ∇L(θ − εv)) / 2ε over the whole data, in float64, for each row v."""
    arrays = problem.data.read(rl.ShardPlan.balanced(problem.num_examples, 1).shards[0])
    batch = {"x": arrays["x"].astype(np.float64), "y": arrays["y"]}
    with jax.enable_x64(True):
        flat, unravel = ravel_pytree(jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), problem.params))
        grad = jax.jit(jax.grad(lambda p: problem.loss_fn(unravel(p), batch)))
        return [(np.asarray(grad(flat + eps * v)) - np.asarray(grad(flat - eps * v))) / (2 * eps) for v in vectors]


@pytest.mark.slow
def test_digits_net_hvp_is_the_gradients_central_difference():
    """Float64 HVP of the digits conv net against (∇L(θ + εv) − ∇L(θ − εv)) / 2ε, and
    uᵀHv = vᵀHu: to 1e-6 and 1e-12 relative."""
    problem = convnet.digits_problem()
    hessian = LocalHessian(problem, compute_dtype="float64")
    assert hessian.dim == 19_466
    u, v = (rl.start_vector(hessian.dim, seed=s) for s in (1, 2))
    hv, hu = hessian.matvec(v), hessian.matvec(u)
    assert abs(u @ hv - v @ hu) <= 1e-12 * np.linalg.norm(hv)
    (difference,) = central_differences(problem, v[None])
    assert np.linalg.norm(difference - hv) <= 1e-6 * np.linalg.norm(hv)
