"""Outlier deflation and the deflated trace: the numerics, the outlier search against dense
Hessians (digits MLP, tiny conv net), the deflated loop, rendering, and runs through Ray."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import raylanczos as rl
from raylanczos import cli
from raylanczos.config import SpectrumConfig
from raylanczos.numerics.basis import BasisSweeps, allocate_basis
from raylanczos.numerics.deflation import (
    Deflation,
    deflated_quadrature,
    deflated_trace,
    plain_trace_samples,
)
from raylanczos.numerics.ritz import largest_magnitude_pairs
from raylanczos.operators.contract import InProcessOperator
from raylanczos.operators.local import LocalHessian
from raylanczos.outputs.record import SpectrumRecord, record_from_json
from raylanczos.outputs.render import render_spectrum
from raylanczos.run.checkpoint import Checkpoint
from raylanczos.run.deflation import (
    DeflationError,
    deflated_plan,
    deflation_records,
    find_outliers,
    load_deflations,
    save_deflations,
)
from raylanczos.run.loop import SpectrumLoop
from raylanczos.run.plan import operator_plan
from tests.conftest import FAST, TINY
from tests.hessians import dense_hessian, tiny_ggn, tiny_hessian
from tests.matrices import matrix_with_spectrum


class Dense:
    """A dense symmetric matrix as an operator with ``matmat``."""

    def __init__(self, matrix: np.ndarray):
        self.matrix, self.dim = matrix, matrix.shape[0]

    def matmat(self, vectors: np.ndarray) -> np.ndarray:
        return vectors @ self.matrix


def largest_magnitude(matrix: np.ndarray, k: int) -> np.ndarray:
    eigenvalues = np.linalg.eigvalsh(matrix)
    return eigenvalues[np.argsort(-np.abs(eigenvalues), kind="stable")][:k]


def deflated_run(operator, config: SpectrumConfig, block_size: int):
    """The outlier search, then the deflated draws, in this process: (deflations, state, plan)."""
    plan = operator_plan(operator.dim, draws=config.draws, block_size=block_size, order=config.order)
    block = InProcessOperator(operator, plan.block_size)
    with BasisSweeps() as sweeps:
        deflations = find_outliers(block, plan, config, sweeps)
        plan = deflated_plan(plan, deflations)
        bases = [allocate_basis(min(config.order, operator.dim) + 1, operator.dim) for _ in range(plan.block_size)]
        loop = SpectrumLoop(block, list(plan.tasks), config.order, bases, seed=config.seed,
                            distribution=config.distribution, sweeps=sweeps, options=config.lanczos)
        return deflations, loop.run(), plan


def rendered(deflations, state, plan, config: SpectrumConfig, dim: int):
    tridiagonals = [state.finished[task.index].tridiagonal() for task in plan.tasks]
    summary = {"config": {"problem": "dense", "order": min(config.order, dim), "num_params": dim, "draws": config.draws},
               "steps_completed": [len(alpha) for alpha, _ in tridiagonals]}
    record = dataclasses.replace(SpectrumRecord.from_json(summary), deflation=deflation_records(plan, deflations, config)[""])
    return render_spectrum(tridiagonals, record, None)


# --------------------------------------------------------------------------- numerics


def test_deflated_quadrature_adds_the_eigenvalues_with_weight_one_over_n():
    nodes = np.array([[0.0, 1.0, np.nan], [0.5, 0.7, 0.9]])
    weights = np.array([[0.25, 0.75, 0.0], [0.2, 0.3, 0.5]])
    combined_nodes, combined_weights = deflated_quadrature(nodes, weights, np.array([9.0, -4.0]), 10)
    assert combined_nodes.shape == (2, 5) and np.array_equal(combined_nodes[:, 3:], [[9.0, -4.0], [9.0, -4.0]])
    assert np.allclose(np.nansum(np.where(np.isfinite(combined_nodes), combined_weights, 0), axis=1), 1.0)
    assert np.array_equal(combined_weights[:, 3:], np.full((2, 2), 0.1))
    assert np.allclose(combined_weights[0, :2], [0.2, 0.6])
    with pytest.raises(ValueError, match="deflating 2 eigenvalues of an operator of dimension 2 leaves nothing"):
        deflated_quadrature(nodes, weights, np.array([1.0, 2.0]), 2)


def test_traces_with_exact_eigenpairs_are_exact_identities():
    """With exact eigenvectors Q: Σ λ + (n − K)·mean(uᵀHu) is unbiased for tr H, and the
    plain sample rebuilt from the deflated one is vᵀHv to rounding."""
    rng = np.random.default_rng(0)
    eigenvalues = np.concatenate([[50.0, -30.0, 20.0], rng.uniform(-1, 1, 57)])
    matrix = matrix_with_spectrum(eigenvalues, rng)
    values, vectors = np.linalg.eigh(matrix)
    top = np.argsort(-np.abs(values))[:3]
    deflation = Deflation(values[top], vectors[:, top].T, np.zeros(3))
    starts = rng.standard_normal((4000, 60))
    starts /= np.linalg.norm(starts, axis=1, keepdims=True)
    projected = deflation.project(starts)
    units = projected / np.linalg.norm(projected, axis=1, keepdims=True)
    alphas = np.einsum("di,ij,dj->d", units, matrix, units)
    weights = np.array([deflation.start_weights(v) for v in starts])
    plain = np.einsum("di,ij,dj->d", starts, matrix, starts)
    assert np.max(np.abs(plain_trace_samples(alphas, weights, deflation.values) - plain)) <= 1e-12 * 50
    trace, error = deflated_trace(alphas, deflation.values, 60)
    assert abs(trace - eigenvalues.sum()) <= 4 * error
    assert error < 0.1 * 60 * plain.std(ddof=1) / np.sqrt(plain.size)


def test_largest_magnitude_pairs_take_both_ends():
    matrix = np.diag([5.0, -7.0, 1.0, 0.5, -0.1])
    run = rl.lanczos(matrix, order=5, return_basis=True)
    pairs = largest_magnitude_pairs(run.basis, run.alpha, run.beta, run.residual_norm, 2)
    assert np.allclose(pairs.values, [-7.0, 5.0])
    assert np.allclose(np.abs(pairs.vectors @ np.eye(5)[[1, 0]].T), np.eye(2), atol=1e-10)


# --------------------------------------------------------------------------- the outlier search and the deflated loop


@pytest.mark.parametrize(
    "name", ["tiny MLP", pytest.param("digits MLP", marks=pytest.mark.slow), pytest.param("tiny conv net", marks=pytest.mark.slow)]
)
def test_deflated_eigenvalues_are_the_dense_top_k(name):
    """K = 10 largest-magnitude eigenvalues of the dense float64 Hessian (the 310- and
    2,410-parameter digits MLPs; the 426-parameter conv net of the certificate's checks, on
    256 digits), to 1e-8·‖H‖, with every residual under the tolerance."""
    from tests import spectra
    from tests.hessians import digits_hessian

    dense = {"tiny MLP": tiny_hessian, "digits MLP": digits_hessian, "tiny conv net": spectra.tiny_convnet}
    hessian = dense[name]()
    config = SpectrumConfig(order=60, draws=2, deflate=10, deflate_tol=1e-9)
    plan = operator_plan(hessian.shape[0], draws=2, block_size=2, order=60)
    with BasisSweeps() as sweeps:
        deflation = find_outliers(InProcessOperator(Dense(hessian), 2), plan, config, sweeps)[""]
    norm = np.abs(np.linalg.eigvalsh(hessian)).max()
    assert np.max(np.abs(deflation.values - largest_magnitude(hessian, 10))) <= 1e-8 * norm
    assert np.max(deflation.residuals) <= 1e-9 * norm
    assert np.max(np.abs(deflation.vectors @ deflation.vectors.T - np.eye(10))) <= 1e-12
    assert np.allclose(deflation.residuals, np.linalg.norm(deflation.vectors @ hessian - deflation.values[:, None] * deflation.vectors, axis=1), rtol=1e-3, atol=1e-15 * norm)


def test_full_order_deflated_draws_give_the_exact_spectrum():
    """n − K steps of P H P from P v on the tiny MLP's float64 Hessian (products from JAX):
    the deflated nodes with the K eigenvalues are the whole spectrum, to 1e-9·‖H‖; the
    basis stays orthogonal to Q."""
    problem = "raylanczos.examples.digits:tiny_problem"
    hessian = tiny_hessian()
    config = SpectrumConfig(order=310, draws=1, deflate=4, deflate_tol=1e-10)
    deflations, state, plan = deflated_run(LocalHessian(problem, compute_dtype="float64"), config, block_size=1)
    result = rendered(deflations, state, plan, config, 310)
    eigenvalues = np.linalg.eigvalsh(hessian)
    nodes = result.nodes[0][np.isfinite(result.nodes[0])]
    norm = np.abs(eigenvalues).max()
    assert np.max(np.min(np.abs(nodes[:, None] - eigenvalues[None, :]), axis=1)) <= 1e-9 * norm
    assert np.max(np.min(np.abs(eigenvalues[:, None] - nodes[None, :]), axis=1)) <= 1e-9 * norm
    assert result.record.statistics.lambda_max == pytest.approx(eigenvalues[-1], rel=1e-12)


def test_deflated_run_against_the_dense_spectrum_and_trace():
    """10 draws × 40 steps on the tiny MLP's dense Hessian, B = 4: the combined quadrature
    is a probability per draw, the record lists the K pairs, the deflated trace is within
    3 of its standard errors of tr H, and that error is below the plain one of the same draws."""
    hessian = tiny_hessian()
    config = SpectrumConfig(order=40, draws=10, deflate=5, deflate_tol=1e-8)
    deflations, state, plan = deflated_run(Dense(hessian), config, block_size=4)
    result = rendered(deflations, state, plan, config, hessian.shape[0])
    summary = result.record.to_json()
    assert np.allclose(np.sum(result.weights, axis=1), 1.0)
    assert [entry["value"] for entry in summary["deflated"]] == pytest.approx(largest_magnitude(hessian, 5), rel=1e-10)
    assert abs(summary["trace_deflated"] - np.trace(hessian)) <= 3 * summary["trace_deflated_std_error"]
    assert summary["trace_deflated_std_error"] < summary["trace_std_error"]
    assert summary["trace_products"] == 10 and summary["trace_deflated_products"] == deflations[""].products + 10
    again = record_from_json(json.loads(json.dumps(summary)))
    assert again.deflation.values == summary_values(summary) and again.deflation.trace == summary["trace_deflated"]


def summary_values(summary) -> list[float]:
    return [entry["value"] for entry in summary["deflated"]]


def test_outliers_that_do_not_converge_are_refused_naming_their_residuals():
    """Five outliers to 1e-15·‖H‖ in at most 4 × 6 = 24 steps of the tiny MLP's Hessian."""
    config = SpectrumConfig(order=6, draws=1, deflate=5, deflate_tol=1e-15)
    plan = operator_plan(310, draws=1, block_size=1, order=6)
    with BasisSweeps() as sweeps, pytest.raises(DeflationError) as refused:
        find_outliers(InProcessOperator(Dense(tiny_hessian()), 1), plan, config, sweeps)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("deflation: the 5 largest-magnitude eigenpairs did not converge to deflate_tol 1e-15·‖C‖")
    assert "in 24 Lanczos steps: relative residuals " in message and message.count("e-") >= 6


def test_the_checkpoint_keeps_the_deflation_to_the_bit(tmp_path):
    rng = np.random.default_rng(1)
    deflations = {"": Deflation(rng.standard_normal(3), rng.standard_normal((3, 7)), rng.random(3), 40, 164)}
    checkpoint = Checkpoint(tmp_path)
    tmp_path.mkdir(exist_ok=True)
    assert load_deflations(checkpoint) is None
    save_deflations(checkpoint, deflations)
    loaded = load_deflations(checkpoint)[""]
    for field in ("values", "vectors", "residuals"):
        assert np.array_equal(getattr(loaded, field), getattr(deflations[""], field))
    assert (loaded.steps, loaded.products) == (40, 164)


def test_deflate_options_are_checked():
    with pytest.raises(rl.OptionError, match="deflate must be a non-negative integer"):
        SpectrumConfig(deflate=-1)
    with pytest.raises(rl.OptionError, match="deflate_tol must be a number > 0"):
        SpectrumConfig(deflate_tol=0.0)


# --------------------------------------------------------------------------- through Ray


@pytest.mark.slow
def test_cli_deflated_run_resume_and_rerender(ray_session, tmp_path):
    """``--deflate 3`` in float64 on 2 workers, B = 2: the outliers are the dense top 3 to
    1e-8·‖H‖, summary.json lists them and both traces; ``--resume`` of the finished run and
    ``density --log`` re-render it without recomputing."""
    out = tmp_path / "run"
    argv = ["run", "--problem", TINY, "--out", str(out), "--order", "20", "--draws", "3", "--draws-per-pass", "2",
            "--workers", "2", "--float64", "--deflate", "3", "--deflate-tol", "1e-9", *FAST, "--progress", "none"]
    assert cli.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    hessian = tiny_hessian()
    norm = np.abs(np.linalg.eigvalsh(hessian)).max()
    assert np.max(np.abs(np.array(summary_values(summary)) - largest_magnitude(hessian, 3))) <= 1e-8 * norm
    assert all(entry["residual"] <= 1e-9 * norm for entry in summary["deflated"])
    assert summary["config"]["deflate"] == 3 and summary["lambda_max"] == pytest.approx(largest_magnitude(hessian, 1)[0])
    vectors = np.load(out / "deflated_vectors.npy")
    assert vectors.shape == (3, 310) and summary["deflation"]["vectors_file"] == "deflated_vectors.npy"
    assert np.max(np.linalg.norm(vectors @ hessian - np.array(summary_values(summary))[:, None] * vectors, axis=1)) <= 1e-9 * norm
    assert abs(summary["trace_deflated"] - np.trace(hessian)) <= 5 * summary["trace_deflated_std_error"]
    tridiag = (out / "tridiag.npy").read_bytes()
    assert cli.main([*argv, "--resume"]) == 0
    assert (out / "tridiag.npy").read_bytes() == tridiag
    assert cli.main(["density", "--out", str(out), "--to", str(tmp_path / "log"), "--log"]) == 0
    again = json.loads((tmp_path / "log" / "summary.json").read_text())
    assert again["trace_deflated"] == summary["trace_deflated"] and again["deflated"] == summary["deflated"]


@pytest.mark.slow
def test_deflated_blocks_of_the_ggn_through_ray(ray_session, tmp_path):
    """Each block of the Gauss–Newton matrix deflates its own top 2 (its restriction's), B = 3."""
    out = tmp_path / "blocks"
    argv = ["run", "--problem", TINY, "--out", str(out), "--order", "15", "--draws", "2", "--draws-per-pass", "3",
            "--workers", "2", "--float64", "--operator", "ggn", "--blocks", "0/*", "1/*", "--deflate", "2",
            "--deflate-tol", "1e-8", *FAST, "--progress", "none"]
    assert cli.main(argv) == 0
    ggn = tiny_ggn()
    top = json.loads((out / "summary.json").read_text())
    offsets = {entry["name"]: (entry["offset"], entry["size"]) for entry in top["parameter_layout"]}
    for name, path in top["parts"].items():
        part = json.loads((out / path / "summary.json").read_text())
        block = np.concatenate([np.arange(offsets[p][0], sum(offsets[p])) for p in part["block"]["parameters"]])
        restricted = ggn[np.ix_(block, block)]
        norm = np.abs(np.linalg.eigvalsh(restricted)).max()
        assert np.max(np.abs(np.array(summary_values(part)) - largest_magnitude(restricted, 2))) <= 1e-8 * norm, name
    assert len(top["parts"]) == 2


@pytest.mark.slow
def test_an_interrupted_deflated_run_resumes_bit_identically(ray_cluster, tmp_path):
    """Interrupted (SIGINT) after its first finished draw, a deflated run resumes with the
    checkpoint's deflation, without searching again, and ends with the undisturbed run's
    tridiagonals, bit for bit."""
    import signal

    from tests.distributed.test_faults import Driver

    def args(out) -> list[str]:
        return ["run", "--problem", TINY, "--order", "12", "--draws", "3", "--draws-per-pass", "2", "--workers", "2",
                "--cpus-per-worker", "0.5", "--timeout", "120", "--address", ray_cluster.address, "--deflate", "2",
                "--out", str(out), "--progress", "lines"]

    assert cli.main(args(tmp_path / "undisturbed")) == 0
    driver = Driver(args(tmp_path / "run"))
    driver.read_until("deflation: 2 eigenvalues")
    driver.read_until("draw 1 done")
    driver.process.send_signal(signal.SIGINT)
    assert driver.finish() == 130 and not (tmp_path / "run" / "summary.json").exists()
    resumed = Driver([*args(tmp_path / "run"), "--resume"])
    assert resumed.finish() == 0, resumed.log
    assert "resuming: " in resumed.log and "deflation: " not in resumed.log
    assert np.array_equal(np.load(tmp_path / "run" / "tridiag.npy"), np.load(tmp_path / "undisturbed" / "tridiag.npy"))
    summaries = [json.loads((tmp_path / name / "summary.json").read_text()) for name in ("run", "undisturbed")]
    assert summaries[0]["deflated"] == summaries[1]["deflated"]


@pytest.mark.slow
def test_a_sweep_deflates_each_point(ray_session, tmp_path):
    """``--sweep step=0,300 --deflate 2``: each training checkpoint's own top 2, float64."""
    from tests import problems

    out = tmp_path / "sweep"
    argv = ["run", "--problem", "tests.problems:tiny_at_step", "--sweep", "step=0,300", "--out", str(out), "--order", "12",
            "--draws", "2", "--workers", "2", "--float64", "--deflate", "2", "--deflate-tol", "1e-9", *FAST,
            "--progress", "none"]
    assert cli.main(argv) == 0
    for step in (0, 300):
        hessian = dense_hessian(problems.tiny_at_step(step))
        point = json.loads((out / f"step={step}" / "summary.json").read_text())
        norm = np.abs(np.linalg.eigvalsh(hessian)).max()
        assert np.max(np.abs(np.array(summary_values(point)) - largest_magnitude(hessian, 2))) <= 1e-8 * norm, step
