"""End to end on a local Ray: distribution is transparent and the spectrum is exact."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

import raylanczos as rl
from raylanczos.distributed.hessian import DistributedHessian
from raylanczos.distributed.workers import WorkerGroup, WorkerOptions
from raylanczos.examples import digits
from raylanczos.numerics import spectrum
from raylanczos.operators.local import LocalHessian
from tests.conftest import WORKER_RESOURCES
from tests.hessians import digits_hessian, tiny_hessian

TINY = "raylanczos.examples.digits:tiny_problem"


@pytest.fixture(scope="module")
def in_process_tridiagonals():
    """Two draws of 20 steps on the tiny MLP, float64, in this process without Ray."""
    hessian = LocalHessian(digits.tiny_problem(), compute_dtype="float64")
    return [rl.lanczos(hessian, order=20, seed=3, draw=d) for d in range(2)]


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 3])  # 2: test_one_draw_per_pass_is_bit_identical_to_the_in_process_run
def test_distribution_is_transparent(ray_session, in_process_tridiagonals, workers, caplog):
    caplog.set_level(logging.INFO, logger="raylanczos")
    result = rl.hessian_spectrum(
        TINY, order=20, draws=2, seed=3, num_workers=workers, worker_resources=WORKER_RESOURCES, compute_dtype="float64"
    )
    assert result.tridiagonals.shape == (2, 20, 20)
    assert [info["worker"] for info in result.summary["workers"]] == list(range(workers))
    # CPU-only workers are pinned by default: one core each, distinct while cores last.
    cores = [tuple(info["cores"]) for info in result.summary["workers"]]
    allowed = len(os.sched_getaffinity(0))
    assert all(len(c) == 1 for c in cores) and len(set(cores)) == min(workers, allowed)
    if workers >= allowed:  # every core runs a worker; 310 entries: the sweeps stay on the driver's thread
        assert "re-orthogonalisation on the driver's thread (vectors under 200,000 entries" in caplog.text
    else:
        assert f"driver: {allowed - workers} BLAS thread(s)" in caplog.text
    assert result.summary["config"]["draws_per_pass"] == 2
    for got, want in zip(spectrum.split_tridiagonals(result.tridiagonals), in_process_tridiagonals):
        scale = np.abs(want.alpha).max()
        assert np.max(np.abs(got[0] - want.alpha)) <= 1e-12 * scale
        assert np.max(np.abs(got[1] - want.beta)) <= 1e-12 * scale
    assert result.summary["broadcast_dtype"] == "float64"  # float64 HVPs get the float64 vector


@pytest.mark.slow
def test_float32_workers_get_a_float32_vector(ray_session):
    """float32 HVPs: the vector is broadcast in float32, and the tridiagonal is that of the
    in-process float32 Hessian (which rounds the same vector the same way) to 1e-5
    (observed 2e-7; a float16 broadcast would be off by ~1e-3)."""
    result = rl.hessian_spectrum(TINY, order=15, draws=1, seed=4, num_workers=2, worker_resources=WORKER_RESOURCES)
    assert result.summary["broadcast_dtype"] == "float32"
    want = rl.lanczos(LocalHessian(digits.tiny_problem()), order=15, seed=4)
    got_alpha, got_beta = spectrum.split_tridiagonals(result.tridiagonals)[0]
    scale = np.abs(want.alpha).max()
    assert np.max(np.abs(got_alpha - want.alpha)) <= 1e-5 * scale
    assert np.max(np.abs(got_beta - want.beta)) <= 1e-5 * scale


@pytest.mark.slow
def test_unpinned_workers_spilled_basis_and_fresh_products(ray_session, in_process_tridiagonals, caplog):
    """Unpinned workers, bases memory-mapped past a zero budget, and every look-ahead
    product discarded for a fresh one: the same tridiagonals as in process."""
    caplog.set_level(logging.INFO, logger="raylanczos")
    result = rl.hessian_spectrum(
        TINY, order=20, draws=2, seed=3, num_workers=2, worker_resources=WORKER_RESOURCES, compute_dtype="float64",
        pin_cpus=False, basis_memory_gb=0, state="driver", lanczos=rl.LanczosOptions(lookahead_min_rho=2.0),
        draws_per_pass=1,
    )
    allowed = sorted(os.sched_getaffinity(0))
    assert [info["cores"] for info in result.summary["workers"]] == [allowed, allowed]
    assert "memory-mapped to temporary files" in caplog.text
    assert "19 fresh products" in caplog.text
    assert result.summary["fresh_products"] == [19, 19]
    for got, want in zip(spectrum.split_tridiagonals(result.tridiagonals), in_process_tridiagonals):
        scale = np.abs(want.alpha).max()
        assert np.max(np.abs(got[0] - want.alpha)) <= 1e-12 * scale
        assert np.max(np.abs(got[1] - want.beta)) <= 1e-12 * scale


@pytest.mark.slow
def test_distributed_hessian_is_a_plain_matvec(ray_session, in_process_tridiagonals):
    """DESIGN: the distributed Hessian is one more operator for the numerics layer."""
    problem = digits.tiny_problem()
    plan = rl.ShardPlan.balanced(problem.num_examples, 2)
    group = WorkerGroup(TINY, plan, resources=WORKER_RESOURCES, options=WorkerOptions(compute_dtype="float64"))
    try:
        run = rl.lanczos(DistributedHessian(group, problem.num_examples), order=20, seed=3, draw=0)
    finally:
        group.shutdown()
    want = in_process_tridiagonals[0]
    scale = np.abs(want.alpha).max()
    assert np.max(np.abs(run.alpha - want.alpha)) <= 1e-12 * scale
    assert np.max(np.abs(run.beta - want.beta)) <= 1e-12 * scale


def test_negative_basis_budget_is_refused_before_workers_start():
    with pytest.raises(ValueError, match="basis_memory_gb must be a number >= 0, got -1"):
        rl.hessian_spectrum(TINY, order=5, draws=1, basis_memory_gb=-1)


@pytest.mark.slow
def test_full_order_nodes_are_the_dense_eigenvalues(ray_session):
    """order = n = 310: the nodes are the Hessian's distinct eigenvalues.

    The MLP's Hessian has repeated eigenvalues (softmax's shift invariance gives a null
    space), which a single Krylov sequence sees once: Lanczos stops at an invariant
    subspace, and every node must be an eigenvalue and every eigenvalue near a node.
    """
    eigenvalues = np.linalg.eigvalsh(tiny_hessian())
    scale = np.abs(eigenvalues).max()
    result = rl.hessian_spectrum(
        TINY, order=400, draws=1, num_workers=2, worker_resources=WORKER_RESOURCES, compute_dtype="float64"
    )
    assert result.summary["config"]["order"] == eigenvalues.size
    nodes = result.nodes[0][np.isfinite(result.nodes[0])]
    assert np.max(np.min(np.abs(nodes[:, None] - eigenvalues[None, :]), axis=1)) <= 1e-8 * scale
    assert np.max(np.min(np.abs(eigenvalues[:, None] - nodes[None, :]), axis=1)) <= 1e-8 * scale
    assert result.summary["lambda_max"] == pytest.approx(eigenvalues[-1], rel=1e-10)


@pytest.mark.slow
def test_lambda_max_at_order_90_on_a_2410_parameter_mlp(ray_session):
    """Default (float32) HVPs, 90 steps, 2 workers: λ_max to 1e-6 relative."""
    eigenvalues = np.linalg.eigvalsh(digits_hessian())
    assert eigenvalues.size == 2410
    result = rl.hessian_spectrum(
        "raylanczos.examples.digits:problem", order=90, draws=1, num_workers=2, worker_resources=WORKER_RESOURCES
    )
    assert result.summary["lambda_max"] == pytest.approx(eigenvalues[-1], rel=1e-6)
    assert result.summary["orthogonality_loss"][0] < 1e-12


@pytest.mark.slow
def test_parquet_files_plan_matches_array_data(ray_session, tmp_path):
    """The digits written as three Parquet files, one per worker by a files plan; the
    problem object itself (not a factory path) travels to the workers."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    x, y = digits.load_digits()
    bounds = [0, 600, 1200, 1797]
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        table = pa.table({"x": pa.FixedSizeListArray.from_arrays(pa.array(x[a:b].ravel()), 64), "y": pa.array(y[a:b])})
        pq.write_table(table, tmp_path / f"part-{i}.parquet")
    tiny = digits.tiny_problem()
    problem = rl.Problem.from_jax(tiny.params, tiny.loss_fn, rl.ParquetDataset(tmp_path), tiny.batch_size)
    plan = rl.ShardPlan.from_json({"workers": [{"files": [f"part-{i}.parquet"]} for i in (2, 0, 1)]})
    options = dict(order=8, draws=1, compute_dtype="float64", worker_resources=WORKER_RESOURCES)
    from_parquet = rl.hessian_spectrum(problem, shards=plan, **options)
    from_arrays = rl.hessian_spectrum(TINY, num_workers=1, **options)
    assert [w["num_examples"] for w in from_parquet.summary["workers"]] == [597, 600, 600]
    np.testing.assert_allclose(from_parquet.tridiagonals, from_arrays.tridiagonals, rtol=1e-12, atol=1e-14)


@pytest.mark.slow
def test_one_draw_per_pass_is_bit_identical_to_the_in_process_run(ray_session):
    """B = 1 through Ray (2 workers, each reduction) and the in-process Lanczos over the same
    2 shards: the same bits."""
    plan = rl.ShardPlan.balanced(1797, 2)
    local = LocalHessian(digits.tiny_problem(), plan=plan, compute_dtype="float64")
    want = [rl.lanczos(local, order=12, seed=6, draw=d) for d in range(2)]
    for reduce in ("node", "flat"):
        got = rl.hessian_spectrum(
            TINY, order=12, draws=2, seed=6, draws_per_pass=1, shards=plan, worker_resources=WORKER_RESOURCES,
            compute_dtype="float64", reduce=reduce, progress="none",
        )
        for (alpha, beta), reference in zip(spectrum.split_tridiagonals(got.tridiagonals), want):
            assert np.array_equal(alpha, reference.alpha) and np.array_equal(beta, reference.beta), reduce


@pytest.mark.slow
def test_several_draws_per_pass_agree_with_one_in_float32(ray_session):
    """Default float32 products, 3 draws: B = 3 through Ray (one pass each step, vmapped)
    gives the λ_max of one-at-a-time float32 runs (the same products, unbatched, in
    process) to 1e-6 relative (observed 6e-8 on the 2,410-parameter MLP)."""
    three = rl.hessian_spectrum(
        TINY, order=30, draws=3, draws_per_pass=3, num_workers=2, worker_resources=WORKER_RESOURCES, progress="none"
    )
    assert three.summary["config"]["draws_per_pass"] == 3 and len(three.summary["timings"]["rows"]) == 30
    local = LocalHessian(digits.tiny_problem(), plan=rl.ShardPlan.balanced(1797, 2))
    runs = [rl.lanczos(local, order=30, seed=0, draw=d) for d in range(3)]
    one = max(np.linalg.eigvalsh(spectrum.tridiagonal_matrix(r.alpha, r.beta)).max() for r in runs)
    assert three.summary["lambda_max"] == pytest.approx(one, rel=1e-6)


@pytest.fixture(scope="module")
def tiny_float64_run(ray_session, tmp_path_factory):
    """One float64 run of the tiny MLP (310 parameters) through Ray, 2 workers, order 90,
    10 draws, with the top 3 Ritz vectors and ε = 3e-4 (this net's negative eigenvalues are
    small): the run the tests of its estimates read."""
    out = tmp_path_factory.mktemp("tiny-float64") / "run"
    result = rl.hessian_spectrum(
        TINY, order=90, draws=10, num_workers=2, worker_resources=WORKER_RESOURCES, compute_dtype="float64",
        negative_threshold=3e-4, top_eigenvectors=3, out=out, progress="none",
    )
    return result, out


@pytest.mark.slow
def test_top_eigenvectors_are_the_dense_eigenvectors(tiny_float64_run):
    """--top-eigenvectors 3 in float64 mode: the written Ritz vectors match the dense
    Hessian's top eigenvectors (|cos| > 1 − 1e-8), their residual norms are ‖Hv − θv‖,
    and they split into the parameters' named arrays."""
    result, out = tiny_float64_run
    hessian = tiny_hessian()
    evals, evecs = np.linalg.eigh((hessian + hessian.T) / 2)
    vectors = np.load(out / "eigenvectors.npy", allow_pickle=False)
    record = result.summary["top_eigenvectors"]
    assert vectors.shape == (3, 310) and vectors.dtype == np.float64 and record["shape"] == [3, 310]
    for i in range(3):
        assert abs(vectors[i] @ evecs[:, -1 - i]) > 1 - 1e-8, i
        assert record["values"][i] == pytest.approx(evals[-1 - i], rel=1e-10)
        residual = np.linalg.norm(hessian @ vectors[i] - record["values"][i] * vectors[i])
        assert record["residual_norms"][i] == pytest.approx(residual, abs=1e-10 * evals[-1])
        assert 0.5 <= record["residual_norms"][i] / residual <= 2, "the products' residual is the true one"
    assert record["values"][0] == result.summary["lambda_max"]
    named = rl.split_vector(vectors[0], result.summary["parameter_layout"])
    assert [name for name in named] == ["0/b", "0/w", "1/b", "1/w"] and named["0/w"].shape == (64, 4)


@pytest.mark.slow
def test_float32_eigenvector_residuals_are_the_true_ones_within_a_factor_2(ray_session, tmp_path):
    """In float32 products the Lanczos relation's residual estimate rounds to 0 at
    convergence; the reported residual comes from one extra pass of products and is within
    a factor of 2 of ‖Hy − θy‖ for the dense float64 Hessian. The first pair is the run's
    λ_max (the larger Ritz value is kept, rank by rank, over the draws)."""
    result = rl.hessian_spectrum(
        TINY, order=90, draws=4, num_workers=2, worker_resources=WORKER_RESOURCES, top_eigenvectors=3,
        out=tmp_path / "run", progress="none",
    )
    hessian = tiny_hessian()
    record = result.summary["top_eigenvectors"]
    vectors = np.load(tmp_path / "run" / "eigenvectors.npy", allow_pickle=False)
    for i in range(3):
        residual = np.linalg.norm(hessian @ vectors[i] - record["values"][i] * vectors[i])
        assert 0.5 <= record["residual_norms"][i] / residual <= 2, (i, record["residual_norms"][i], residual)
    assert len(record["lanczos_residual_norms"]) == 3
    assert record["values"][0] == result.summary["lambda_max"]


@pytest.mark.slow
def test_the_negative_fraction_is_the_dense_one_within_its_error(tiny_float64_run):
    """The closing estimate, the fraction of eigenvalues below −ε‖H‖ (ε = 3e-4 for this net,
    whose negative eigenvalues are small), agrees with the dense Hessian's within 3 standard
    errors over 10 draws."""
    eigenvalues = np.linalg.eigvalsh(tiny_hessian())
    norm = np.abs(eigenvalues).max()
    exact = np.mean(eigenvalues < -3e-4 * norm)
    summary = tiny_float64_run[0].summary
    assert summary["negative_threshold_relative"] == 3e-4 and summary["negative_fraction_std_error"] > 0
    assert abs(summary["negative_fraction"] - exact) <= 3 * summary["negative_fraction_std_error"]


@pytest.mark.slow
def test_no_layout_options_use_every_core_of_the_machine(ray_session, caplog):
    """No workers, CPUs or GPUs named, on one machine: one single-core worker per core."""
    caplog.set_level(logging.INFO, logger="raylanczos")
    result = rl.hessian_spectrum(TINY, order=5, draws=1, progress="none")
    cores = [tuple(info["cores"]) for info in result.summary["workers"]]
    assert len(cores) == 2 and len(set(cores)) == 2 and all(len(c) == 1 for c in cores)
    assert "one single-core worker per core (2 cores, no GPU)" in caplog.text
