"""The Gauss–Newton operator G = (1/N) Σᵢ Jᵢᵀ ∇²ℓᵢ(fᵢ) Jᵢ against dense references, JAX and Keras.

The dense G comes from ``jax.jacfwd`` of the network's outputs and ``jax.hessian`` of the
loss of one example's outputs (:func:`tests.hessians.dense_ggn`); the Keras twin takes the
JAX example's weights and parameter order, so its G is that same matrix.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import raylanczos as rl
from raylanczos import cli
from raylanczos.backends import make_backend
from raylanczos.examples import digits
from raylanczos.outputs.record import record_from_json
from raylanczos.outputs.render import plot_title
from tests.conftest import WORKER_RESOURCES
from tests.hessians import dense_ggn, tiny_ggn, tiny_hessian
from tests.spectra import assert_band_holds

TINY = "raylanczos.examples.digits:tiny_problem"
KERAS_TINY = "tests.keras_problems:keras_tiny_with_jax_weights"


@pytest.fixture(scope="module")
def keras_order_ggn() -> np.ndarray:
    """The dense G of the tiny MLP with the parameters in Keras's order (kernel, bias per layer)."""
    from tests import keras_problems

    return dense_ggn(keras_problems.jax_tiny_in_keras_order())


def full_batch(problem: rl.Problem) -> dict[str, np.ndarray]:
    return problem.data.read(rl.ShardPlan.balanced(problem.num_examples, 1).shards[0])


def test_example_loss_is_output_loss_of_predict():
    """The digits example gives ``predict`` and ``output_loss``, and its loss is their composition."""
    problem = digits.tiny_problem()
    batch = full_batch(problem)
    composed = problem.output_loss(problem.predict(problem.params, batch), batch)
    assert problem.predict(problem.params, batch).shape == (1797, 10)
    assert float(problem.loss_fn(problem.params, batch)) == float(composed)


@pytest.mark.slow
def test_dense_ggn_is_the_fisher_and_not_the_hessian():
    """For softmax cross-entropy, G = (1/N) Σᵢ Σ_c p_ic ∇log p_c(xᵢ) ∇log p_c(xᵢ)ᵀ, the Fisher,
    computed here from the per-class gradients of the log-probabilities alone. It is positive
    semidefinite; the Hessian of this trained MLP is not."""
    problem = digits.tiny_problem()
    batch = full_batch(problem)
    with jax.enable_x64(True):
        flat, unravel = ravel_pytree(jax.tree_util.tree_map(lambda p: jnp.asarray(p, jnp.float64), problem.params))
        x = batch["x"].astype(np.float64)
        log_probs = jax.nn.log_softmax(digits.forward(unravel(flat), x))
        scores = jax.jacfwd(lambda q: jax.nn.log_softmax(digits.forward(unravel(q), x)))(flat)  # (N, 10, n)
        fisher = np.asarray(jnp.einsum("ic,ick,icl->kl", jnp.exp(log_probs), scores, scores) / x.shape[0])
    ggn = tiny_ggn()
    scale = np.abs(ggn).max()
    assert np.max(np.abs(ggn - fisher)) <= 1e-12 * scale
    assert np.linalg.eigvalsh(ggn)[0] >= -1e-12 * np.linalg.norm(ggn, 2)
    assert np.linalg.eigvalsh(tiny_hessian())[0] < -1e-6 * np.linalg.norm(ggn, 2)


def test_jax_block_of_three_products_is_v_times_g():
    """One backend over the whole data, float64: a block V (3, n) gives the rows of V G."""
    problem = digits.tiny_problem()
    backend = make_backend(problem, full_batch(problem), compute_dtype="float64", operator="ggn")
    vectors = np.random.default_rng(0).standard_normal((3, backend.num_params))
    sums, count = backend.product_sum(vectors)
    want = vectors @ tiny_ggn()
    assert count == 1797 and backend.operator == "ggn"
    assert np.max(np.abs(sums / count - want)) <= 1e-12 * np.abs(want).max()


@pytest.mark.slow
def test_keras_block_of_three_products_is_v_times_g():
    """The Keras digits example's G products, against the dense G of a JAX problem with its
    weights in its order (kernel, bias per layer); a block of one is the plain product."""
    from raylanczos.examples import digits_keras

    problem = digits_keras.tiny_problem()
    kernels = problem.params.get_weights()
    twin = rl.Problem.from_jax(
        [(w, b) for w, b in zip(kernels[::2], kernels[1::2])], None, problem.data, problem.batch_size,
        predict=lambda params, batch: digits.logits([{"w": w, "b": b} for w, b in params], batch),
        output_loss=digits.softmax_cross_entropy,
    )
    backend = make_backend(problem, full_batch(problem), compute_dtype="float64", operator="ggn")
    vectors = np.random.default_rng(1).standard_normal((3, backend.num_params))
    sums, count = backend.product_sum(vectors)
    want = vectors @ dense_ggn(twin)
    assert np.max(np.abs(sums / count - want)) <= 1e-12 * np.abs(want).max()
    one, _ = backend.product_sum(vectors[1:2])
    assert np.max(np.abs(one[0] / count - want[1])) <= 1e-12 * np.abs(want).max()


def test_a_problem_without_outputs_is_refused_for_ggn():
    problem = digits.tiny_problem()
    bare = rl.Problem.from_jax(problem.params, problem.loss_fn, problem.data, problem.batch_size)
    with pytest.raises(rl.ProblemError, match=r"ggn\) needs the network's outputs.*predict=\.\.\., output_loss"):
        make_backend(bare, full_batch(bare), operator="ggn")


@pytest.mark.slow
@pytest.mark.parametrize("source", [TINY, KERAS_TINY], ids=["jax", "keras"])
def test_full_order_ggn_nodes_are_the_dense_eigenvalues(ray_session, source, keras_order_ggn, tmp_path):
    """order = n = 310 on 2 Ray workers, float64: every node is an eigenvalue of the dense G
    and every eigenvalue is near a node, to 1e-10·‖G‖, and none is negative beyond that.

    G has repeated zero eigenvalues (adding one constant to every logit changes no
    probability, so the directions that do so are null), which one Krylov sequence sees
    once: Lanczos stops at an invariant subspace before n steps.
    """
    ggn = tiny_ggn() if source == TINY else keras_order_ggn
    eigenvalues = np.linalg.eigvalsh(ggn)
    scale = np.abs(eigenvalues).max()
    result = rl.hessian_spectrum(
        source, order=ggn.shape[0], draws=1, num_workers=2, worker_resources=WORKER_RESOURCES,
        compute_dtype="float64", operator="ggn", out=tmp_path / "run", progress="none",
    )
    nodes = result.nodes[0][np.isfinite(result.nodes[0])]
    node_to_eigenvalue = np.max(np.min(np.abs(nodes[:, None] - eigenvalues[None, :]), axis=1)) / scale
    eigenvalue_to_node = np.max(np.min(np.abs(eigenvalues[:, None] - nodes[None, :]), axis=1)) / scale
    assert node_to_eigenvalue <= 1e-10 and eigenvalue_to_node <= 1e-10
    assert result.summary["lambda_min"] >= -1e-10 * scale
    assert result.summary["lambda_max"] == pytest.approx(eigenvalues[-1], rel=1e-10)
    assert [w["operator"] for w in result.summary["workers"]] == ["ggn", "ggn"]
    assert_band_holds(result.record.certificate, eigenvalues)  # G's band, of G's spectrum
    assert "·‖G‖)" in cli.closing_line(result)
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written["config"]["operator"] == "ggn"
    assert "Gauss–Newton density" in plot_title(record_from_json(written))
