"""The preconditioned operator D^{-1/2} H D^{-1/2} against dense references, JAX and Keras;
its refusals of a bad D; one run through the command line."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import raylanczos as rl
from raylanczos import cli
from raylanczos.backends import make_backend
from raylanczos.examples import digits
from raylanczos.problem.layout import ParameterLayout
from raylanczos.problem.preconditioner import flat_preconditioner, inverse_sqrt_scaling
from tests import problems
from tests.conftest import FAST
from tests.hessians import dense_hessian, tiny_hessian


def full_batch(problem: rl.Problem) -> dict[str, np.ndarray]:
    return problem.data.read(rl.ShardPlan.balanced(problem.num_examples, 1).shards[0])


def flat(tree) -> np.ndarray:
    return np.concatenate([np.asarray(leaf, np.float64).ravel() for leaf in jax.tree_util.tree_leaves(tree)])


def scaled(hessian: np.ndarray, diagonal: np.ndarray) -> np.ndarray:
    """D^{-1/2} H D^{-1/2}, dense."""
    s = diagonal ** -0.5
    return s[:, None] * hessian * s[None, :]


def check_block_products(problem: rl.Problem, dense: np.ndarray, seed: int) -> None:
    """A float64 block of three products over the whole data is V Mᵀ = V M to 1e-8·‖M‖ (and in
    fact to 1e-12), and a block of one is the plain product."""
    backend = make_backend(problem, full_batch(problem), compute_dtype="float64", operator="preconditioned")
    vectors = np.random.default_rng(seed).standard_normal((3, backend.num_params))
    sums, count = backend.product_sum(vectors)
    norm = np.linalg.norm(dense, 2)
    assert backend.operator == "preconditioned"
    assert np.max(np.linalg.norm(sums / count - vectors @ dense, axis=1) / np.linalg.norm(vectors, axis=1)) <= 1e-12 * norm
    one, _ = backend.product_sum(vectors[2:])
    assert np.linalg.norm(one[0] / count - dense @ vectors[2]) <= 1e-12 * norm * np.linalg.norm(vectors[2])


def test_jax_products_are_the_dense_preconditioned_hessian():
    """Log-uniform D in [0.1, 10]: far from a multiple of the identity, so a missed or doubled
    scaling could not pass."""
    problem = problems.tiny_preconditioned()
    dense = scaled(tiny_hessian(), flat(problem.preconditioner))
    assert not np.allclose(dense, tiny_hessian(), rtol=0.1)
    check_block_products(problem, dense, seed=0)


def test_jax_products_with_adams_preconditioner():
    """The example's D = √v̂ + ε after 300 Adam steps; a flat D gives the same products."""
    problem = digits.tiny_adam_problem()
    diagonal = flat(problem.preconditioner)
    dense = scaled(tiny_hessian(), diagonal)
    check_block_products(problem, dense, seed=1)
    flat_problem = rl.Problem.from_jax(problem.params, problem.loss_fn, problem.data, problem.batch_size, preconditioner=diagonal)
    check_block_products(flat_problem, dense, seed=1)


@pytest.mark.slow
def test_keras_products_are_the_dense_preconditioned_hessian():
    """The Keras twin of the tiny MLP (the JAX weights in Keras's order), D one array per variable."""
    pytest.importorskip("tensorflow")
    from tests import keras_problems

    problem = keras_problems.keras_tiny_preconditioned()
    diagonal = np.concatenate([array.ravel() for array in keras_problems.keras_order_preconditioner()])
    dense = scaled(dense_hessian(keras_problems.jax_tiny_in_keras_order()), diagonal)
    check_block_products(problem, dense, seed=2)


def test_a_bad_entry_is_refused_naming_the_first_bad_index():
    name, position, index = problems.BAD_PRECONDITIONER_ENTRY
    problem = problems.bad_preconditioner()
    want = rf"entry {index} \({name}\[{position[0]}, {position[1]}\]\) is -1\.0, and 2 of 310 entries are not"
    with pytest.raises(rl.ProblemError, match=want):
        make_backend(problem, full_batch(problem), operator="preconditioned")


def test_keras_bad_entry_is_refused_naming_its_variable():
    pytest.importorskip("tensorflow")
    from tests import keras_problems

    problem = keras_problems.keras_tiny_preconditioned()
    diagonal = keras_problems.keras_order_preconditioner()
    diagonal[3] = diagonal[3].copy()
    diagonal[3][7] = 0.0
    bad = rl.Problem.from_keras(problem.params, problem.loss_fn, problem.data, problem.batch_size, preconditioner=diagonal)
    offset = sum(array.size for array in diagonal[:3])
    with pytest.raises(rl.ProblemError, match=rf"entry {offset + 7} \(\S+bias\[7\]\) is 0\.0"):
        make_backend(bad, full_batch(bad), operator="preconditioned")


def test_a_preconditioner_that_does_not_fit_the_parameters_is_refused():
    problem = digits.tiny_problem()
    diagonal = problems.log_uniform_preconditioner(problem.params)

    def build(given) -> rl.Problem:
        return rl.Problem.from_jax(problem.params, problem.loss_fn, problem.data, problem.batch_size, preconditioner=given)

    with pytest.raises(rl.ProblemError, match="pytree structure differs from the parameters'"):
        make_backend(build(diagonal[:1]), full_batch(problem), operator="preconditioned")
    with pytest.raises(rl.ProblemError, match=r"one array of shape \(309,\); give one flat array of 310 entries"):
        make_backend(build(np.ones(309)), full_batch(problem), operator="preconditioned")
    diagonal[0]["w"] = diagonal[0]["w"][:, :3]
    with pytest.raises(rl.ProblemError, match=r"array 1 has shape \(64, 3\), parameter '0/w' has shape \(64, 4\)"):
        make_backend(build(diagonal), full_batch(problem), operator="preconditioned")


def test_the_operator_needs_a_preconditioner():
    problem = digits.tiny_problem()
    with pytest.raises(rl.ProblemError, match=r"preconditioned operator needs the diagonal D.*from_jax\(\.\.\., preconditioner=\.\.\.\)"):
        make_backend(problem, full_batch(problem), operator="preconditioned")


def test_scaling_helpers_on_a_layout():
    layout = ParameterLayout.from_shapes([("a", (2,)), ("b", (2, 3))])
    diagonal = flat_preconditioner([np.array([4.0, 1.0]), np.full((2, 3), 0.25)], layout)
    assert np.array_equal(inverse_sqrt_scaling(diagonal, layout), [0.5, 1.0, 2, 2, 2, 2, 2, 2])
    diagonal[6] = np.inf
    with pytest.raises(rl.ProblemError, match=r"entry 6 \(b\[1, 1\]\) is inf"):
        inverse_sqrt_scaling(diagonal, layout)


@pytest.mark.slow
def test_cli_run_of_the_preconditioned_operator(ray_session, tmp_path):
    """Through the command line, float64: the run records the operator, and λ_max is the
    dense D^{-1/2} H D^{-1/2}'s largest eigenvalue from below; a bad D is one error line."""
    out = tmp_path / "run"
    argv = ["run", "--problem", "tests.problems:tiny_preconditioned", "--operator", "preconditioned", "--float64",
            "--order", "30", "--draws", "2", "--workers", "2", "--out", str(out), *FAST, "--progress", "none"]
    assert cli.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    problem = problems.tiny_preconditioned()
    top = np.linalg.eigvalsh(scaled(tiny_hessian(), flat(problem.preconditioner)))[-1]
    assert summary["config"]["operator"] == "preconditioned"
    assert [worker["operator"] for worker in summary["workers"]] == ["preconditioned"] * 2
    assert top * (1 - 1e-6) <= summary["lambda_max"] <= top * (1 + 1e-12)


def test_cli_refuses_a_bad_preconditioner_in_one_line(ray_session, tmp_path, capsys):
    """The driver's check on the first rows refuses D before any worker starts."""
    name, position, index = problems.BAD_PRECONDITIONER_ENTRY
    argv = ["run", "--problem", "tests.problems:bad_preconditioner", "--operator", "preconditioned",
            "--order", "5", "--draws", "1", "--workers", "1", "--out", str(tmp_path / "run"), *FAST]
    assert cli.main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("raylanczos: error: the preconditioner D must be positive and finite: ")
    assert f"entry {index} ({name}[{position[0]}, {position[1]}]) is -1.0" in lines[-1]
