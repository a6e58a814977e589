"""Acceptance tests for :mod:`raylanczos.numerics.spectrum`: quadrature, densities, statistics.

The tridiagonals come from real Lanczos runs (:func:`raylanczos.lanczos.lanczos`) on
operators with spectra known by construction (dense Q diag(λ) Qᵀ or diagonal ``λ ⊙ v``).
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from raylanczos.numerics.lanczos import lanczos, start_vector
from raylanczos.numerics.spectrum import (
    DEFAULT_NEGATIVE_THRESHOLD,
    DEFAULT_SIGMA2_RELATIVE,
    default_grid,
    exact_smoothed_density,
    extreme_ritz_values,
    fraction_below,
    log_abs_density,
    negative_fraction,
    negative_mass,
    original_density,
    original_quadrature,
    resolve_sigma2,
    sigma2_relative_from_original,
    slq_quadrature,
    smoothed_density,
    split_tridiagonals,
    stack_tridiagonals,
    summarize,
    trace_std_error,
)
from tests.matrices import diagonal_operator, matrix_with_spectrum, orthogonal_matrix

# --------------------------------------------------------------------------- helpers


OUTLIERS = np.array([-4.0, 3.5, 6.0, 9.0, 14.0])


def bulk_plus_outliers(n: int, rng: np.random.Generator) -> np.ndarray:
    """n − 5 eigenvalues uniform on [-1, 1] (the bulk) and the 5 :data:`OUTLIERS`."""
    return np.concatenate([rng.uniform(-1.0, 1.0, n - OUTLIERS.size), OUTLIERS])


def few_distinct(n: int, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """n eigenvalues taking only ``values`` (each at least once), shuffled."""
    counts = rng.multinomial(n - values.size, np.full(values.size, 1 / values.size)) + 1
    lam = np.repeat(values, counts)
    rng.shuffle(lam)
    return lam


def tridiagonals_of(runs) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(r.alpha, r.beta) for r in runs]


def trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)


def l1_distance(phi: np.ndarray, phi_exact: np.ndarray, grid: np.ndarray) -> float:
    """∫ |φ − φ_exact| dt on the grid (trapezoid)."""
    return trapezoid(np.abs(phi - phi_exact), grid)


@pytest.fixture(scope="module")
def mixed_runs():
    """Four draws at order m = 15: three full ones (n = 200, indefinite spectrum) and one
    that breaks down after 7 steps (7 distinct eigenvalues, none at 0)."""
    rng = np.random.default_rng(100)
    m = 15
    generic, dim = diagonal_operator(rng.uniform(-2.0, 3.0, 200))
    distinct = np.linspace(-3.0, 4.0, 7) + 0.25
    short, short_dim = diagonal_operator(few_distinct(150, distinct, rng))
    runs = [lanczos(generic, dim, order=m, seed=1, draw=d) for d in range(2)]
    runs.append(lanczos(short, short_dim, order=m, seed=1, draw=2))
    runs.append(lanczos(generic, dim, order=m, seed=1, draw=3))
    assert [r.steps for r in runs] == [m, m, 7, m] and runs[2].breakdown
    return runs, m


# --------------------------------------------------------------------------- stacking


def test_stack_tridiagonals_layout_and_split_roundtrip(mixed_runs):
    """(D, m, m) float64, symmetric tridiagonal, zero-padded for the early-stopped draw."""
    runs, m = mixed_runs
    tris = tridiagonals_of(runs)
    stacked = stack_tridiagonals(tris, m)
    assert stacked.shape == (len(runs), m, m) and stacked.dtype == np.float64
    for matrix, (alpha, beta) in zip(stacked, tris):
        k = alpha.size
        assert np.array_equal(matrix, matrix.T)
        assert not np.any(np.triu(matrix, 2)) and not np.any(np.tril(matrix, -2))
        assert np.array_equal(np.diag(matrix)[:k], alpha)
        assert np.array_equal(np.diag(matrix, 1)[: k - 1], beta)
        assert not np.any(matrix[k:, :]) and not np.any(matrix[:, k:])
    assert stack_tridiagonals([], m).shape == (0, m, m)

    for restored in (split_tridiagonals(stacked), split_tridiagonals(stacked, [r.steps for r in runs])):
        assert len(restored) == len(tris)
        for (alpha, beta), (alpha2, beta2) in zip(tris, restored):
            assert np.array_equal(alpha, alpha2) and np.array_equal(beta, beta2)


def test_stacked_eigh_matches_slq_quadrature(mixed_runs):
    """``np.linalg.eigh`` of each stacked matrix (the ``tridiag_to_density`` reading) gives
    the nodes and weights evecs[0]**2 of ``slq_quadrature`` to 1e-12 (absolute, ‖T‖ ~ 4);
    the padding contributes exact-zero eigenvalues of weight 0."""
    runs, m = mixed_runs
    tris = tridiagonals_of(runs)
    nodes, weights = slq_quadrature(tris, m)
    assert nodes.shape == weights.shape == (len(runs), m)
    stacked = stack_tridiagonals(tris, m)
    for d, (matrix, (alpha, _)) in enumerate(zip(stacked, tris)):
        k = alpha.size
        evals, evecs = np.linalg.eigh(matrix)
        w = evecs[0] ** 2
        padding = np.linalg.norm(evecs[:k], axis=0) < 1e-12
        assert padding.sum() == m - k
        assert np.all(evals[padding] == 0.0) and np.all(w[padding] == 0.0)
        np.testing.assert_allclose(evals[~padding], nodes[d, :k], rtol=0, atol=1e-12)
        np.testing.assert_allclose(w[~padding], weights[d, :k], rtol=0, atol=1e-12)
        assert np.all(np.isnan(nodes[d, k:])) and np.all(weights[d, k:] == 0.0)
        np.testing.assert_allclose(weights[d].sum(), 1.0, rtol=0, atol=1e-12)

    # Densities from the padded eigen-decomposition equal those from slq_quadrature.
    decomposed = [np.linalg.eigh(matrix) for matrix in stacked]
    padded_nodes = np.array([evals for evals, _ in decomposed])
    padded_weights = np.array([evecs[0] ** 2 for _, evecs in decomposed])
    sigma2 = resolve_sigma2(nodes, weights, 1e-3)
    grid = default_grid(nodes, weights, sigma2, points=2000)
    np.testing.assert_allclose(
        smoothed_density(padded_nodes, padded_weights, grid, sigma2),
        smoothed_density(nodes, weights, grid, sigma2),
        rtol=0,
        atol=1e-10,
    )


# --------------------------------------------------------------------------- densities


@pytest.mark.parametrize("sigma2_relative", [DEFAULT_SIGMA2_RELATIVE, 1e-3, 1e-1])
def test_smoothed_density_integrates_to_one(mixed_runs, sigma2_relative):
    """∫φ over ``default_grid`` is 1 up to the Gaussian tails beyond the ≥ 5σ margins
    (≤ 3e-7 per extreme node) and trapezoid error; tolerance 1e-5."""
    runs, m = mixed_runs
    nodes, weights = slq_quadrature(tridiagonals_of(runs), m)
    sigma2 = resolve_sigma2(nodes, weights, sigma2_relative)
    low, high = np.nanmin(nodes), np.nanmax(nodes)
    assert sigma2 == pytest.approx(sigma2_relative * (high - low) ** 2, rel=1e-14)
    grid = default_grid(nodes, weights, sigma2)
    assert grid.size == 10_000
    assert grid[0] <= low - 5 * np.sqrt(sigma2) * (1 - 1e-12) and grid[-1] >= high + 5 * np.sqrt(sigma2) * (1 - 1e-12)
    phi = smoothed_density(nodes, weights, grid, sigma2)
    assert np.all(np.isfinite(phi)) and np.all(phi >= 0.0)
    assert abs(trapezoid(phi, grid) - 1.0) <= 1e-5


@pytest.mark.parametrize("sigma2", [1e-3, 0.05, 1.0])
def test_negative_mass_matches_numerical_integration(mixed_runs, sigma2):
    """``negative_mass`` equals the trapezoid integral of φ over [min θ − 12σ, 0] to 1e-7.

    (40 001 points, step ≤ σ/20 for the smallest σ here; the dropped tail below 12σ is ~1e-33.)
    """
    runs, m = mixed_runs
    nodes, weights = slq_quadrature(tridiagonals_of(runs), m)
    sigma = np.sqrt(sigma2)
    grid = np.linspace(np.nanmin(nodes) - 12 * sigma, 0.0, 40_001)
    integral = trapezoid(smoothed_density(nodes, weights, grid, sigma2), grid)
    mass = negative_mass(nodes, weights, sigma2)
    assert 0.05 < mass < 0.95
    assert abs(mass - integral) <= 1e-7


def test_log_abs_density_is_finite_non_negative_and_drops_tiny_nodes():
    """log₁₀|λ| density: finite, ≥ 0, and its integral is 1 minus the mass of nodes with
    |θ| < floor (not renormalised). Half of the spectrum is exactly 0, so about half of the
    mass is dropped; the integral is checked to 1e-6 (margins ≥ 8σ, step ≤ σ/20)."""
    rng = np.random.default_rng(101)
    lam = np.concatenate([np.zeros(100), few_distinct(100, np.array([-2.0, -0.3, 0.01, 0.5, 3.0]), rng)])
    apply, dim = diagonal_operator(lam)
    runs = [lanczos(apply, dim, order=10, seed=2, draw=d) for d in range(3)]
    assert all(r.breakdown and r.steps == 6 for r in runs)
    nodes, weights = slq_quadrature(tridiagonals_of(runs), 10)
    floor = 1e-12
    tiny = np.isfinite(nodes) & (np.abs(np.nan_to_num(nodes)) < floor)
    dropped = weights[tiny].sum() / nodes.shape[0]
    assert 0.3 < dropped < 0.7
    # The grid spans every present node's log₁₀|θ|, the dropped ~1e-17 ones included, so
    # mass wrongly kept for them would show up in the integral.
    logs = np.log10(np.abs(nodes[np.isfinite(nodes) & (nodes != 0.0)]))
    assert logs.min() < np.log10(floor) - 2
    sigma2 = 0.01
    grid = np.linspace(logs.min() - 8 * np.sqrt(sigma2), logs.max() + 8 * np.sqrt(sigma2), 40_001)
    phi = log_abs_density(nodes, weights, grid, sigma2, floor=floor)
    assert np.all(np.isfinite(phi)) and np.all(phi >= 0.0)
    assert abs(trapezoid(phi, grid) - (1.0 - dropped)) <= 1e-6


def test_slq_density_converges_with_draws():
    """L1 distance of the SLQ density (90 steps) to the exact smoothed density of a
    2000 × 2000 bulk-plus-outliers matrix falls as the number of draws grows from 1 to 10.

    σ = 0.02 × the bulk width (2), i.e. σ² = 1.6e-3, on a common grid covering the whole
    spectrum. The 1-draw figure is the mean over five separate seeds; the 10-draw average
    uses a disjoint seed (same draws would make "average ≤ mean of L1s" hold by convexity).
    The estimator's error is dominated by start-vector variance, so it should shrink by
    about √10; the test asserts the 10-draw L1 is below 0.6 × the 1-draw L1. The operator
    is diag(λ): a Gaussian start vector is rotation-invariant, so Lanczos on it has the law
    of Lanczos on Q diag(λ) Qᵀ, without the 2000 × 2000 QR and products.
    """
    rng = np.random.default_rng(2000)
    lam = bulk_plus_outliers(2000, rng)
    apply, dim = diagonal_operator(lam)
    sigma2 = (0.02 * 2.0) ** 2
    sigma = np.sqrt(sigma2)
    grid = np.linspace(lam.min() - 6 * sigma, lam.max() + 6 * sigma, 4000)
    exact = exact_smoothed_density(lam, grid, sigma2)
    np.testing.assert_allclose(trapezoid(exact, grid), 1.0, atol=1e-9)

    def l1_of(runs):
        nodes, weights = slq_quadrature(tridiagonals_of(runs), 90)
        return l1_distance(smoothed_density(nodes, weights, grid, sigma2), exact, grid)

    one_draw = [l1_of([lanczos(apply, dim, order=90, seed=seed, draw=0)]) for seed in range(1, 6)]
    ten_draws = l1_of([lanczos(apply, dim, order=90, seed=0, draw=d) for d in range(10)])
    one = float(np.mean(one_draw))
    print(
        f"\nSLQ L1 vs exact smoothed density (n=2000, 90 steps, sigma2={sigma2:.3g}): "
        f"1 draw {one:.4f} (seeds 1-5: {', '.join(f'{x:.4f}' for x in one_draw)}), "
        f"10 draws {ten_draws:.4f}"
    )
    assert ten_draws < one
    assert ten_draws < 0.6 * one


# --------------------------------------------------------------------------- statistics


def summary_of(runs, dim, **options):
    """:func:`summarize` of Lanczos runs, through :func:`slq_quadrature` as a caller does,
    with each draw's first α and β."""
    nodes, weights = slq_quadrature(tridiagonals_of(runs), max(r.steps for r in runs))
    options.setdefault("sigma2", resolve_sigma2(nodes, weights, DEFAULT_SIGMA2_RELATIVE))
    return summarize(nodes, weights, np.array([r.alpha[0] for r in runs]), dim, first_betas=first_betas(runs), **options)


def first_betas(runs) -> np.ndarray:
    """β₁ of each run (0 for a run of one step)."""
    return np.array([r.beta[0] if r.steps > 1 else 0.0 for r in runs])


def gaussian_tail_below_zero(mean: float, sigma: float) -> float:
    """P(X < 0) for X ~ N(mean, σ²), written out with :func:`math.erfc`."""
    return 0.5 * math.erfc(mean / (sigma * math.sqrt(2.0)))


def test_summarize_exact_run():
    """Full order (m = n = 80) on a dense matrix with known eigenvalues, 3 draws: Gauss
    quadrature is then exact (nodes = eigenvalues, weights = v₀'s spectral mass c_i² on
    each), so every statistic has a reference from the eigen-decomposition alone.

    Tolerances: Ritz values equal eigenvalues to 1e-10·‖A‖ and weights equal c_i² to
    ~1e-12 at full order with full re-orthogonalisation; the threshold −ε‖A‖ is ≥ 0.05 from
    every eigenvalue, so no weight changes sides.
    """
    rng = np.random.default_rng(102)
    n, draws, eps, sigma2 = 80, 3, 0.1, 0.25
    # ‖A‖ = 5; threshold −0.5; no eigenvalue in [−0.55, −0.45].
    lam = np.concatenate([rng.uniform(-3.0, -0.6, 20), rng.uniform(-0.4, 4.9, 58), [-3.0, 5.0]])
    a = matrix_with_spectrum(lam, rng)
    runs = [lanczos(a, order=n, seed=3, draw=d) for d in range(draws)]
    assert all(r.steps == n for r in runs)
    summary = summary_of(runs, n, sigma2=sigma2, negative_threshold=eps)

    evals, evecs = np.linalg.eigh(a)
    starts = [start_vector(n, seed=3, draw=d) for d in range(draws)]
    mass = np.array([(evecs.T @ (v0 / np.linalg.norm(v0))) ** 2 for v0 in starts])  # (D, n)
    norm = np.max(np.abs(lam))
    tol = 1e-10 * norm
    assert abs(summary.lambda_max - lam.max()) <= tol and abs(summary.lambda_min - lam.min()) <= tol
    np.testing.assert_allclose(summary.top_ritz_values, np.sort(lam)[::-1][:10], rtol=0, atol=tol)
    np.testing.assert_allclose(summary.bottom_ritz_values, np.sort(lam)[:10], rtol=0, atol=tol)

    quadratic_forms = mass @ evals  # v₀ᵀAv₀ per draw, from the spectrum
    residuals = mass @ evals**2 - quadratic_forms**2  # β₁² = ‖Av₀‖² − (v₀ᵀAv₀)² per draw
    assert summary.trace_estimate == pytest.approx(n * quadratic_forms.mean(), rel=1e-12)
    assert summary.trace_std_error_sample == pytest.approx(n * quadratic_forms.std(ddof=1) / np.sqrt(draws), rel=1e-9)
    assert summary.trace_std_error == pytest.approx(np.sqrt(2 * n * residuals.mean() / draws), rel=1e-9)

    threshold = -eps * norm
    assert np.min(np.abs(lam - threshold)) >= 0.05
    below = mass[:, evals < threshold].sum(axis=1)  # v₀'s spectral mass below the threshold
    assert 0.1 < below.mean() < 0.5
    assert summary.negative_threshold == pytest.approx(threshold, rel=1e-12)
    assert summary.negative_threshold_relative == eps
    assert summary.negative_fraction == pytest.approx(below.mean(), abs=1e-12)
    assert summary.negative_fraction_std_error == pytest.approx(below.std(ddof=1) / np.sqrt(draws), rel=1e-9)

    exact_negative_mass = np.mean(
        [sum(c2 * gaussian_tail_below_zero(value, math.sqrt(sigma2)) for c2, value in zip(row, evals)) for row in mass]
    )
    assert summary.negative_mass == pytest.approx(exact_negative_mass, abs=1e-12)
    assert summary.sigma2 == sigma2
    assert not hasattr(summary, "negative_weight")

    few = summary_of(runs[:1], n, sigma2=sigma2, k=3)
    assert len(few.top_ritz_values) == 3 and len(few.bottom_ritz_values) == 3
    assert np.isnan(few.trace_std_error_sample) and np.isnan(few.negative_fraction_std_error)
    assert few.trace_std_error == pytest.approx(np.sqrt(2 * n * residuals[0]), rel=1e-9)  # one draw suffices
    assert few.negative_threshold_relative == DEFAULT_NEGATIVE_THRESHOLD


def test_negative_fraction_counts_exact_mass_of_draws_that_stopped_early():
    """Draws that break down give an exact quadrature of v₀'s spectral measure, so f_d is
    v₀'s mass on the eigenvalues below −ε‖A‖; the NaN padding counts for nothing.

    Diagonal operator with 7 distinct eigenvalues (eigenvectors are the coordinate axes, so
    the mass is Σ v₀ᵢ² over those coordinates); ε = 0.2 puts the threshold at −0.85, ≥ 0.3
    from every eigenvalue. Tolerance 1e-12: rounding of weights that sum to 1.
    """
    rng = np.random.default_rng(107)
    distinct = np.linspace(-3.0, 4.0, 7) + 0.25  # ‖A‖ = 4.25
    lam = few_distinct(150, distinct, rng)
    apply, dim = diagonal_operator(lam)
    runs = [lanczos(apply, dim, order=15, seed=5, draw=d) for d in range(4)]
    assert all(r.breakdown and r.steps == 7 for r in runs)
    nodes, weights = slq_quadrature(tridiagonals_of(runs), 15)
    assert np.isnan(nodes[:, 7:]).all()
    result = negative_fraction(nodes, weights, threshold_relative=0.2)
    assert result.threshold == pytest.approx(-0.85, rel=1e-12) and result.threshold_relative == 0.2
    starts = np.array([start_vector(dim, seed=5, draw=d) for d in range(4)])
    mass = (starts[:, lam < -0.85] ** 2).sum(axis=1) / (starts**2).sum(axis=1)
    np.testing.assert_allclose(fraction_below(nodes, weights, result.threshold), mass, rtol=0, atol=1e-12)
    assert result.fraction == pytest.approx(mass.mean(), abs=1e-12)
    assert result.std_error == pytest.approx(mass.std(ddof=1) / 2.0, rel=1e-9)


@pytest.fixture(scope="module")
def dense_hessians():
    """The digits MLPs' exact Hessians (310 and 2,410 parameters, float64, by JAX),
    symmetrised (the asymmetry is rounding), with their eigenvalues."""
    pytest.importorskip("jax")
    pytest.importorskip("sklearn")
    from tests.hessians import digits_hessian, tiny_hessian

    cache = {}

    def get(name):
        if name not in cache:
            h = {"tiny": tiny_hessian, "digits": digits_hessian}[name]()
            h = (h + h.T) / 2.0
            cache[name] = h, np.linalg.eigvalsh(h)
        return cache[name]

    return get


@pytest.mark.parametrize(
    "name, eps",
    [("tiny", DEFAULT_NEGATIVE_THRESHOLD), ("tiny", 3e-4), pytest.param("digits", DEFAULT_NEGATIVE_THRESHOLD, marks=pytest.mark.slow)],
)
def test_negative_fraction_agrees_with_dense_hessians(dense_hessians, name, eps):
    """At order 90 (n = 310 and 2,410) and 10 draws, the estimated fraction of eigenvalues
    below −ε‖H‖ is within 3 standard errors of the exact fraction of the dense matrix (‖H‖
    from its exact spectrum).

    With 10 draws the standard error is itself uncertain (t with 9 degrees of freedom:
    P(|t| > 3) ≈ 1.5%), hence 3 and not 2. The seeds are fixed, so the outcome is
    deterministic; observed |estimate − exact| / SE: tiny 0 (exact 0 at ε = 1e-3, as
    λ_min ≈ −5e-4‖H‖), tiny 0.4 at ε = 3e-4, digits 0.0. Over seeds 0–9 the ratio stayed
    below 1.6 at these settings, while at ε = 1e-4 on digits it reached 25 (the threshold
    falls inside the bulk near 0 that 90 nodes do not resolve): see
    :data:`DEFAULT_NEGATIVE_THRESHOLD`.
    """
    h, lam = dense_hessians(name)
    norm = max(abs(lam[0]), abs(lam[-1]))
    exact = float(np.mean(lam < -eps * norm))
    runs = [lanczos(h, order=90, seed=0, draw=d) for d in range(10)]
    nodes, weights = slq_quadrature(tridiagonals_of(runs), 90)
    result = negative_fraction(nodes, weights, threshold_relative=eps)
    assert result.threshold == pytest.approx(-eps * norm, rel=1e-10)
    ratio = abs(result.fraction - exact) / result.std_error if result.std_error > 0 else 0.0
    print(
        f"\n{name} (n={lam.size}), eps={eps:g}: exact {exact:.5f}, "
        f"estimate {result.fraction:.5f} ± {result.std_error:.5f}, |Δ|/SE = {ratio:.2f}"
    )
    assert abs(result.fraction - exact) <= 3.0 * result.std_error


def test_negative_fraction_is_stable_where_negative_weight_was_not():
    """A dense 400 × 400 matrix, 60% of its eigenvalues in a cluster at ±1e-9 (numerically
    zero next to ‖A‖ = 5), 15% in [−1, −0.1], 25% in [0.1, 5]; order 90, 10 draws.

    Lanczos stands for the cluster by one node of weight ≈ 0.6, at a few 1e-9 of either
    sign. The old statistic, the weight on negative nodes (ε = 0), therefore jumps:
    - per draw, it misses its own target (v₀'s mass on negative eigenvalues) by up to about
      half the cluster weight;
    - shifting A by ∓1e-7·I (2e-8·‖A‖) moves it by the whole cluster weight.
    The new estimate (threshold −5e-3, in the spectral gap) equals v₀'s exact mass below
    the threshold in every draw, and does not move with the shift (1e-9: the weights are
    the same up to rounding, only the nodes shift). Per-draw tolerance 1e-5: with the
    threshold in a gap, the step is smooth on the spectrum and the Gauss rule's error
    decays geometrically with the order (measured 3e-7 at order 90); the old statistic's
    errors are ≥ 0.2.
    """
    rng = np.random.default_rng(110)
    n = 400
    lam = np.concatenate(
        [np.full(120, -1e-9), np.full(120, 1e-9), rng.uniform(-1.0, -0.1, 60), rng.uniform(0.1, 5.0, 99), [5.0]]
    )
    q = orthogonal_matrix(n, rng)
    a = (q * lam) @ q.T
    a = (a + a.T) / 2.0
    starts = np.array([start_vector(n, seed=0, draw=d) for d in range(10)])
    mass = ((starts / np.linalg.norm(starts, axis=1, keepdims=True)) @ q) ** 2  # (D, n) on eigenvectors of lam
    cluster = mass[:, np.abs(lam) < 1e-6].sum(axis=1)

    def quadrature(shift):
        runs = [lanczos(a + shift * np.eye(n), order=90, seed=0, draw=d) for d in range(10)]
        return slq_quadrature(tridiagonals_of(runs), 90)

    nodes, weights = quadrature(0.0)
    old = fraction_below(nodes, weights, 0.0)
    assert np.max(np.abs(old - mass[:, lam < 0].sum(axis=1))) >= 0.2
    result = negative_fraction(nodes, weights)
    assert result.threshold == pytest.approx(-5e-3, rel=1e-12)
    exact_below = mass[:, lam < -5e-3].sum(axis=1)
    np.testing.assert_allclose(fraction_below(nodes, weights, result.threshold), exact_below, rtol=0, atol=1e-5)

    delta = 1e-7
    below, above = quadrature(-delta), quadrature(delta)
    old_jump = fraction_below(*below, 0.0) - fraction_below(*above, 0.0)
    np.testing.assert_allclose(old_jump, cluster, atol=1e-6)
    assert cluster.min() > 0.5
    assert negative_fraction(*below).fraction == pytest.approx(result.fraction, abs=1e-9)
    assert negative_fraction(*above).fraction == pytest.approx(result.fraction, abs=1e-9)
    print(
        f"\ncluster at ±1e-9: exact fraction below −ε‖A‖ {np.mean(lam < -5e-3):.3f}, "
        f"estimate {result.fraction:.4f} ± {result.std_error:.4f}; weight on negative nodes "
        f"{old.mean():.3f} (exact fraction < 0: {np.mean(lam < 0):.3f}), "
        f"{fraction_below(*below, 0.0).mean():.3f} at A − 1e-7·I, "
        f"{fraction_below(*above, 0.0).mean():.3f} at A + 1e-7·I"
    )


def test_negative_fraction_rejects_a_negative_epsilon(mixed_runs):
    runs, m = mixed_runs
    nodes, weights = slq_quadrature(tridiagonals_of(runs), m)
    with pytest.raises(ValueError, match=re.escape("-0.001")):
        negative_fraction(nodes, weights, threshold_relative=-1e-3)


def test_trace_estimate_within_three_standard_errors():
    """200 Gaussian draws, diagonal operator n = 200, order 5: |estimate − tr A| ≤ 3 SE.

    The sample standard error is recomputed as n·std(α₀, ddof=1)/√D from α₀ = v₀ᵀAv₀ per
    draw; the model-based one is within 10% of the exact √(2(n‖A‖_F² − (tr A)²)/((n+2)D))
    (its square is a mean of 200 terms). The seeds are fixed, so the outcome is
    deterministic (z ≈ −1.9 with these seeds).
    """
    rng = np.random.default_rng(103)
    lam = rng.uniform(-1.0, 3.0, 200)
    apply, dim = diagonal_operator(lam)
    runs = [lanczos(apply, dim, order=5, seed=17, draw=d) for d in range(200)]
    summary = summary_of(runs, dim)
    starts = [start_vector(dim, seed=17, draw=d) for d in range(200)]
    quadratic_forms = np.array([v0 @ (lam * v0) for v0 in starts])
    np.testing.assert_allclose([r.alpha[0] for r in runs], quadratic_forms, rtol=1e-12, atol=1e-14)
    expected_se = dim * quadratic_forms.std(ddof=1) / np.sqrt(200)
    assert summary.trace_std_error_sample == pytest.approx(expected_se, rel=1e-10)
    exact_se = np.sqrt(2 * (dim * np.sum(lam**2) - lam.sum() ** 2) / ((dim + 2) * 200))
    assert summary.trace_std_error == pytest.approx(exact_se, rel=0.1)
    assert abs(summary.trace_estimate - lam.sum()) <= 3 * summary.trace_std_error


def test_rademacher_trace_is_exact_for_diagonal_operator():
    """With Rademacher starts, v₀ᵀ diag(λ) v₀ = Σλ/n for every draw: the trace estimate is
    exact, and its sample standard error 0. The model-based one cannot see that the matrix
    is diagonal (the variance 2(‖A‖_F² − Σ Aᵢᵢ²) needs the diagonal), so it stays a
    conservative bound: the Gaussian-start value scaled by n/(n − 2)."""
    lam = np.random.default_rng(104).uniform(-1.0, 3.0, 200)
    apply, dim = diagonal_operator(lam)
    runs = [lanczos(apply, dim, order=3, seed=4, draw=d, distribution="rademacher") for d in range(5)]
    summary = summary_of(runs, dim, distribution="rademacher")
    assert summary.trace_estimate == pytest.approx(lam.sum(), rel=1e-13)
    assert summary.trace_std_error_sample <= 1e-12 * abs(lam.sum())
    gaussian_formula = trace_std_error(first_betas(runs), dim)
    assert summary.trace_std_error == pytest.approx(gaussian_formula * np.sqrt(dim / (dim - 2)), rel=1e-12)



def variance_with_error(values: np.ndarray) -> tuple[float, float]:
    """The sample variance of ``values`` and its standard error √((m₄ − s⁴)/N) (delta method)."""
    centred = values - values.mean()
    variance = float(np.mean(centred**2))
    return variance, float(np.sqrt((np.mean(centred**4) - variance**2) / values.size))


def test_trace_variance_is_twice_n_times_the_mean_first_beta_squared():
    """For starts uniform on the sphere, Var(n·v₀ᵀAv₀) = 2(n‖A‖_F² − (tr A)²)/(n+2) = 2n·E[β₁²].

    On a dense 40 × 40 matrix with a skewed spectrum (two outliers): Lanczos's β₁ is
    ‖Av₀ − α₀v₀‖, i.e. β₁² = ‖Av₀‖² − (v₀ᵀAv₀)² (30 runs, to rounding); then over 4000
    start vectors, the mean of 2nβ₁² and the sample variance of n·v₀ᵀAv₀ agree with the
    closed form within 4 Monte Carlo standard errors. For Rademacher starts the mean of
    2nβ₁² matches its own closed form 2‖A‖_F² − 2(Var + (tr A)²)/n, and times n/(n − 2) it
    bounds the true variance Var = 2(‖A‖_F² − Σ Aᵢᵢ²) from above.
    """
    rng = np.random.default_rng(120)
    n, draws = 40, 4000
    lam = np.concatenate([rng.uniform(-0.2, 0.5, n - 2), [4.0, 9.0]])
    a = matrix_with_spectrum(lam, rng)
    frobenius2, trace = float(np.sum(lam**2)), float(lam.sum())

    def forms(distribution: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(v₀ᵀAv₀, ‖Av₀‖² − (v₀ᵀAv₀)²) per start vector, float64[draws] each."""
        starts = np.array([start_vector(n, seed=seed, draw=d, distribution=distribution) for d in range(draws)])
        products = starts @ a
        quadratic = np.sum(products * starts, axis=1)
        return quadratic, np.sum(products**2, axis=1) - quadratic**2

    quadratic, residual2 = forms("gaussian", 30)
    runs = [lanczos(a, order=2, seed=30, draw=d) for d in range(30)]
    np.testing.assert_allclose(first_betas(runs) ** 2, residual2[:30], rtol=1e-10, atol=1e-13)
    assert trace_std_error(first_betas(runs), n) == pytest.approx(np.sqrt(2 * n * residual2[:30].mean() / 30), rel=1e-9)
    exact = 2 * (n * frobenius2 - trace**2) / (n + 2)
    terms = 2 * n * residual2
    assert abs(terms.mean() - exact) <= 4 * terms.std() / np.sqrt(draws)
    variance, error = variance_with_error(n * quadratic)
    assert abs(variance - exact) <= 4 * error

    _, residual2 = forms("rademacher", 31)
    runs = [lanczos(a, order=2, seed=31, draw=d, distribution="rademacher") for d in range(30)]
    np.testing.assert_allclose(first_betas(runs) ** 2, residual2[:30], rtol=1e-10, atol=1e-13)
    rademacher_variance = 2 * (frobenius2 - np.sum(np.diag(a) ** 2))
    terms = 2 * n * residual2
    expected = 2 * frobenius2 - 2 * (rademacher_variance + trace**2) / n
    assert abs(terms.mean() - expected) <= 4 * terms.std() / np.sqrt(draws)
    assert expected * n / (n - 2) >= rademacher_variance
    bound = trace_std_error(first_betas(runs), n, distribution="rademacher") ** 2 * 30
    assert bound == pytest.approx(2 * n * residual2[:30].mean() * n / (n - 2), rel=1e-9)

def test_extreme_ritz_values_interlace_the_spectrum():
    """Best-over-draws i-th largest (smallest) Ritz value never exceeds λ_i (drops below λ_{n−i})."""
    rng = np.random.default_rng(105)
    lam = bulk_plus_outliers(300, rng)
    apply, dim = diagonal_operator(lam)
    runs = [lanczos(apply, dim, order=25, seed=6, draw=d) for d in range(4)]
    nodes, weights = slq_quadrature(tridiagonals_of(runs))
    top, bottom = extreme_ritz_values(nodes, weights, 8)
    truth = np.sort(lam)
    assert np.all(np.diff(top) <= 0) and np.all(np.diff(bottom) >= 0)
    assert np.all(top <= truth[::-1][:8] + 1e-12) and np.all(bottom >= truth[:8] - 1e-12)
    per_draw_max = np.nanmax(nodes, axis=1)
    assert top[0] == per_draw_max.max()
    np.testing.assert_allclose(top[:4], np.sort(OUTLIERS)[::-1][:4], rtol=1e-8)


# --------------------------------------------------------------------------- the original's convention


def reference_original_density(stacked: np.ndarray, sigma_squared: float, grid_len: int):
    """The original ``tridiag_to_density`` as documented, written out loop by loop.

    Per draw: eigh of the (padded) matrix, nodes sorted ascending, weights = (first row of
    the eigenvectors)². λ_max / λ_min = mean over draws of each draw's largest / smallest
    node ± 0.01; grid = linspace(λ_min, λ_max, grid_len); variance = sigma_squared ·
    max(1, λ_max − λ_min); per-draw Gaussian mixtures averaged over draws, then divided by
    Σ density · (grid[1] − grid[0]). Returns (grid, density, variance).
    """
    all_nodes, all_weights = [], []
    for matrix in stacked:
        values, vectors = np.linalg.eigh(matrix)
        order = np.argsort(values)
        all_nodes.append(values[order])
        all_weights.append(vectors[0, order] ** 2)
    lambda_max = np.mean([nodes.max() for nodes in all_nodes]) + 1e-2
    lambda_min = np.mean([nodes.min() for nodes in all_nodes]) - 1e-2
    grid = np.linspace(lambda_min, lambda_max, grid_len)
    variance = sigma_squared * max(1.0, lambda_max - lambda_min)
    density = np.zeros(grid_len)
    for nodes, weights in zip(all_nodes, all_weights):
        for i, t in enumerate(grid):
            kernel = np.exp(-((t - nodes) ** 2) / (2.0 * variance)) / math.sqrt(2.0 * math.pi * variance)
            density[i] += np.sum(weights * kernel) / len(stacked)
    density /= np.sum(density) * (grid[1] - grid[0])
    return grid, density, variance


@pytest.fixture(scope="module")
def wide_runs():
    """Order m = 30 on dense matrices: three draws of a 300 × 300 spectrum uniform on
    [−5, 20] (25 wide), and one of a matrix with 6 distinct eigenvalues in [2, 15] that
    breaks down after 6 steps; zero-padded, that draw's smallest node is the padding's 0."""
    rng = np.random.default_rng(120)
    m = 30
    wide = matrix_with_spectrum(np.concatenate([rng.uniform(-5.0, 20.0, 298), [-5.0, 20.0]]), rng)
    short = matrix_with_spectrum(few_distinct(120, np.array([2.0, 4.5, 7.0, 9.0, 12.0, 15.0]), rng), rng)
    runs = [lanczos(wide, order=m, seed=9, draw=d) for d in range(3)]
    runs.insert(1, lanczos(short, order=m, seed=9, draw=7))
    assert [r.steps for r in runs] == [m, 6, m, m] and runs[1].breakdown
    return runs, m


@pytest.mark.parametrize("sigma_squared", [1e-5, 1e-3])
def test_original_density_reproduces_the_original(wide_runs, sigma_squared):
    """Same grid and variance (1e-12 relative), and the densities within 1e-6 in L1 (∫|Δ|
    over the grid): the two compute the same sums in a different order, so they differ
    by rounding only."""
    runs, m = wide_runs
    stacked = stack_tridiagonals(tridiagonals_of(runs), m)
    ref_grid, ref_density, ref_variance = reference_original_density(stacked, sigma_squared, 10_000)
    grid, density, variance = original_density(stacked, sigma_squared)
    assert grid.shape == density.shape == (10_000,) and density.dtype == np.float64
    assert variance == pytest.approx(ref_variance, rel=1e-12)
    np.testing.assert_allclose(grid, ref_grid, rtol=1e-12, atol=1e-12)
    assert l1_distance(density, ref_density, grid) <= 1e-6
    # The padded draw's 0 counts in the extremes: the grid starts at the mean of the
    # per-draw minima (one of which is 0), not of the non-padding nodes.
    nodes, weights = slq_quadrature(tridiagonals_of(runs), m)
    assert np.nanmin(nodes[1]) >= 2.0 - 1e-9
    minima = [np.nanmin(nodes[0]), 0.0, np.nanmin(nodes[2]), np.nanmin(nodes[3])]
    assert grid[0] == pytest.approx(np.mean(minima) - 1e-2, rel=1e-12)


def test_sigma2_relative_from_original_gives_the_originals_kernel(wide_runs):
    """Converted, the raylanczos variance equals the original's (1e-10 relative: nodes from
    ``eigh_tridiagonal`` and ``eigh`` differ by rounding), and our density, renormalised on
    the original's grid, matches the original's within 1e-6 in L1. Passing the original's
    number straight through as ``sigma2_relative`` gives a different density (L1 > 0.5)."""
    runs, m = wide_runs
    stacked = stack_tridiagonals(tridiagonals_of(runs), m)
    nodes, weights = slq_quadrature(tridiagonals_of(runs), m)
    s_orig = DEFAULT_SIGMA2_RELATIVE
    grid, density, variance = reference_original_density(stacked, s_orig, 10_000)

    def ours(sigma2_relative):
        phi = smoothed_density(nodes, weights, grid, resolve_sigma2(nodes, weights, sigma2_relative))
        return phi / (phi.sum() * (grid[1] - grid[0]))

    s_rel = sigma2_relative_from_original(nodes, weights, s_orig)
    assert resolve_sigma2(nodes, weights, s_rel) == pytest.approx(variance, rel=1e-10)
    assert sigma2_relative_from_original(*original_quadrature(stacked), s_orig) == pytest.approx(s_rel, rel=1e-10)
    assert l1_distance(ours(s_rel), density, grid) <= 1e-6
    mixed_up = l1_distance(ours(s_orig), density, grid)
    print(f"\nsigma2_relative {s_rel:.3g} ≡ original sigma_squared {s_orig:g}; L1 if passed as is: {mixed_up:.3f}")
    assert mixed_up > 0.5


# --------------------------------------------------------------------------- bad input


def test_bad_sigma_is_rejected(mixed_runs):
    runs, m = mixed_runs
    nodes, weights = slq_quadrature(tridiagonals_of(runs), m)
    grid = np.linspace(-1, 1, 5)
    with pytest.raises(ValueError, match=re.escape("-0.5")):
        smoothed_density(nodes, weights, grid, -0.5)
    with pytest.raises(ValueError, match=r"\b0\.0\b"):
        resolve_sigma2(nodes, weights, 0.0)
    with pytest.raises(ValueError, match=r"\b1\b"):
        default_grid(nodes, weights, 0.1, points=1)


def test_bad_quadrature_inputs_are_rejected(mixed_runs):
    """Messages quote what was received: shapes, or the offending value."""
    runs, m = mixed_runs
    nodes, weights = slq_quadrature(tridiagonals_of(runs), m)
    alphas = np.array([r.alpha[0] for r in runs])
    with pytest.raises(ValueError, match=re.escape("(3,)")):
        summarize(nodes, weights, alphas[:3], 200, sigma2=0.1)
    with pytest.raises(ValueError, match=re.escape("(4, 15) and (4, 14)")):
        summarize(nodes, weights[:, :14], alphas, 200, sigma2=0.1)
    with pytest.raises(ValueError, match=r"\b0\b"):
        summarize(nodes, weights, alphas, 0, sigma2=0.1)
    with pytest.raises(ValueError, match=r"-1\.0"):
        summarize(nodes, weights, alphas, 200, sigma2=-1.0)
    with pytest.raises(ValueError, match=re.escape("(4, 15)")):
        original_density(nodes, 1e-5)
    with pytest.raises(ValueError, match=re.escape("(4, 15)")):
        sigma2_relative_from_original(nodes, weights[:, :14], 1e-5)
