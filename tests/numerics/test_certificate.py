"""Acceptance tests for :mod:`raylanczos.numerics.certificate`: the per-draw bounds
(Chebyshev–Markov–Stieltjes) against exact per-draw CDFs from dense eigenvectors, the
band over draws, its figures, and the density's pointwise band.

The exact per-draw CDF of a start vector v is F_v(t) = Σ_{λᵢ ≤ t} (qᵢᵀv)², from
``numpy.linalg.eigh`` of the same dense matrix that Lanczos multiplies by.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from raylanczos.numerics.certificate import (
    CertifiedRule,
    band_gap,
    cdf_band,
    certify,
    density_band,
    draw_cdf_bounds,
    gauss_cdf,
    sampling_half_width,
    stopping_points,
)
from raylanczos.numerics.lanczos import lanczos, start_vector
from raylanczos.numerics.spectrum import (
    negative_fraction,
    slq_quadrature,
    smoothed_density,
)
from tests.matrices import diagonal_operator, matrix_with_spectrum, orthogonal_matrix
from tests.spectra import BULK_WEIGHT, SPECTRA

#: Rounding slack of a comparison between sums of weights and sums of squared
#: coordinates, each of which sums to 1 up to a few units in the last place.
ROUNDING = 1e-12


# --------------------------------------------------------------------------- helpers


def exact_draw_cdf(eigenvalues: np.ndarray, eigenvectors: np.ndarray, v0: np.ndarray, points: np.ndarray, strict=False):
    """F_v (or F_v(t⁻) when ``strict``) at ``points`` from the dense eigen-decomposition."""
    mass = (eigenvectors.T @ (v0 / np.linalg.norm(v0))) ** 2
    cumulative = np.concatenate([[0.0], np.cumsum(mass)])
    return cumulative[np.searchsorted(eigenvalues, points, side="left" if strict else "right")]


def exact_cdf(eigenvalues: np.ndarray, points: np.ndarray, strict=False) -> np.ndarray:
    """F(t) = #{λᵢ ≤ t}/n (or #{λᵢ < t}/n) at ``points``."""
    return np.searchsorted(eigenvalues, points, side="left" if strict else "right") / eigenvalues.size


def breakpoints_of(eigenvalues: np.ndarray, nodes: np.ndarray, count: int = 2001) -> np.ndarray:
    """A grid over the spectrum and beyond, with every eigenvalue and every node added: both
    F and the bounds are step functions that change only there, so these points are
    "everywhere"."""
    width = eigenvalues[-1] - eigenvalues[0]
    grid = np.linspace(eigenvalues[0] - 0.05 * width, eigenvalues[-1] + 0.05 * width, count)
    return np.unique(np.concatenate([grid, eigenvalues, nodes[np.isfinite(nodes)]]))


def quadrature_of(runs, order):
    return slq_quadrature([(r.alpha, r.beta) for r in runs], order)


@pytest.fixture(scope="module")
def dense_spectrum():
    """name → (matrix, eigenvalues ascending, eigenvectors), computed once per module."""
    cache = {}

    def get(name):
        if name not in cache:
            if name != "bulk_at_zero":
                pytest.importorskip("jax")
                pytest.importorskip("sklearn")
            matrix = SPECTRA[name]()
            cache[name] = (matrix, *np.linalg.eigh(matrix))
        return cache[name]

    return get


# --------------------------------------------------------------------------- the theorem


@pytest.mark.parametrize("order", [10, 30, 90])
@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=pytest.mark.slow) for name in ("digits_mlp", "tiny_convnet")] + ["bulk_at_zero"]
)
def test_each_draws_exact_cdf_lies_within_its_bounds(dense_spectrum, name, order):
    """For every draw of a 10-draw run on the dense matrix, L_v ≤ F_v ≤ U_v (and the same
    for F_v(t⁻)) at every point where either side changes, with F_v from the dense
    eigenvectors and the draw's own start vector. The bounds are not vacuous: they
    bracket the Gauss rule's own CDF, and their mean width is below 1 − 1/m."""
    matrix, eigenvalues, eigenvectors = dense_spectrum(name)
    n = eigenvalues.size
    runs = [lanczos(matrix, order=order, seed=0, draw=d) for d in range(10)]
    nodes, weights = quadrature_of(runs, order)
    points = breakpoints_of(eigenvalues, nodes)
    for strict in (False, True):
        lower, upper = draw_cdf_bounds(nodes, weights, points, strict=strict)
        for d in range(10):
            exact = exact_draw_cdf(eigenvalues, eigenvectors, start_vector(n, seed=0, draw=d), points, strict)
            assert np.all(lower[d] <= exact + ROUNDING), (name, order, d, strict, np.max(lower[d] - exact))
            assert np.all(exact <= upper[d] + ROUNDING), (name, order, d, strict, np.max(exact - upper[d]))
    lower, upper = draw_cdf_bounds(nodes, weights, points)
    rule = np.stack([gauss_cdf(nodes[d : d + 1], weights[d : d + 1], points) for d in range(10)])
    assert np.all(lower <= rule) and np.all(rule <= upper)
    assert np.mean(upper - lower) < 1.0 - 1.0 / order


def test_bounds_hold_for_draws_that_stopped_early_and_for_one_node():
    """Diagonal operator with 7 distinct eigenvalues (n = 150): every draw breaks down
    after 7 steps (NaN padding to m = 15), and the bounds still hold. A start vector that
    is an eigenvector gives one node of weight 1, whose bounds are [0, 1]: one moment says
    nothing about the CDF, and the band says so."""
    rng = np.random.default_rng(7)
    distinct = np.linspace(-3.0, 4.0, 7) + 0.25
    lam = np.sort(np.repeat(distinct, rng.multinomial(143, np.full(7, 1 / 7)) + 1))
    apply, n = diagonal_operator(lam)
    runs = [lanczos(apply, n, order=15, seed=5, draw=d) for d in range(4)]
    runs.append(lanczos(apply, n, order=15, v0=np.eye(n)[40]))
    assert all(r.breakdown for r in runs) and [r.steps for r in runs] == [7, 7, 7, 7, 1]
    nodes, weights = quadrature_of(runs, 15)
    assert np.isnan(nodes[:4, 7:]).all() and np.isnan(nodes[4, 1:]).all()
    points = breakpoints_of(lam, nodes)
    lower, upper = draw_cdf_bounds(nodes, weights, points)
    starts = [start_vector(n, seed=5, draw=d) for d in range(4)] + [np.eye(n)[40]]
    for d, v0 in enumerate(starts):
        exact = exact_draw_cdf(lam, np.eye(n), v0, points)
        assert np.all(lower[d] <= exact + ROUNDING) and np.all(exact <= upper[d] + ROUNDING)
    assert np.all(lower[4] == 0.0) and np.all(upper[4] == 1.0)


def test_node_tolerance_shifts_each_bound_outward():
    """With η > 0, L_v is taken at t − η and U_v at t + η."""
    rng = np.random.default_rng(3)
    apply, n = diagonal_operator(rng.uniform(-1.0, 2.0, 120))
    nodes, weights = quadrature_of([lanczos(apply, n, order=12, seed=1, draw=d) for d in range(3)], 12)
    grid, eta = np.linspace(-1.2, 2.2, 301), 0.05
    lower, upper = draw_cdf_bounds(nodes, weights, grid, node_tolerance=eta)
    np.testing.assert_array_equal(lower, draw_cdf_bounds(nodes, weights, grid - eta)[0])
    np.testing.assert_array_equal(upper, draw_cdf_bounds(nodes, weights, grid + eta)[1])
    plain_lower, plain_upper = draw_cdf_bounds(nodes, weights, grid)
    assert np.all(lower <= plain_lower) and np.all(upper >= plain_upper) and np.any(upper > plain_upper)


# --------------------------------------------------------------------------- over draws


@pytest.mark.parametrize("distribution", ["gaussian", "rademacher"])
def test_sampling_half_width_holds_over_many_seed_sets(distribution):
    """sup_t |mean_d F_{v_d}(t) − F(t)| ≤ ε in at least 95% of 400 seed sets of D = 4
    draws (n = 60, a dense eigenbasis, so Rademacher starts are not aligned with it).
    No Lanczos here: F_v comes from the start vectors' coordinates in the eigenbasis, and
    F̄ − F changes only at the eigenvalues, so its maximum over those is the supremum."""
    rng = np.random.default_rng(11)
    n, draws, sets = 60, 4, 400
    q = orthogonal_matrix(n, rng)
    epsilon = sampling_half_width(n, draws, distribution=distribution)
    exact = np.arange(1, n + 1) / n
    misses = 0
    for s in range(sets):
        starts = np.array([start_vector(n, seed=s, draw=d, distribution=distribution) for d in range(draws)])
        mean_cdf = np.cumsum((starts @ q) ** 2, axis=1).mean(axis=0)
        misses += np.max(np.abs(mean_cdf - exact)) > epsilon
    print(f"\n{distribution}: ε = {epsilon:.3f}, sets beyond ε: {misses} of {sets}")
    assert misses <= 0.05 * sets


def test_sampling_half_width_shrinks_with_draws_and_dimension():
    gaussian = sampling_half_width(1000, 10)
    assert sampling_half_width(1000, 40) == pytest.approx(gaussian / 2.0, rel=1e-12)
    assert sampling_half_width(4000, 10) < gaussian / 1.8  # 1/√n, less a log factor
    assert sampling_half_width(1000, 10, confidence=0.99) > gaussian
    assert sampling_half_width(1000, 10, distribution="rademacher") > gaussian


@pytest.mark.parametrize("distribution", ["gaussian", "rademacher"])
def test_band_covers_the_exact_cdf_with_a_bulk_at_zero(dense_spectrum, distribution):
    """10 draws at m = 30 on the bulk-at-0 matrix (half its eigenvalues at exactly 0):

    - the exact F lies in the band at every point where either changes;
    - the exact negative fraction lies in the certified interval, and so does the estimate;
    - around 0 the band is as wide as the bulk's weight (SLQ cannot say on which side of 0
      the bulk lies), and the KS half-width reports it;
    - the figures are the step functions' own: KS from the maximum over breakpoints, W1
      against a fine Riemann sum; the midpoint is within the KS half-width of F, and the
      W1 distance of F to the estimate is within the bound."""
    matrix, eigenvalues, _ = dense_spectrum("bulk_at_zero")
    n = eigenvalues.size
    runs = [lanczos(matrix, order=30, seed=2, draw=d, distribution=distribution) for d in range(10)]
    nodes, weights = quadrature_of(runs, 30)
    points = breakpoints_of(eigenvalues, nodes)
    certificate = certify(nodes, weights, n, distribution=distribution, grid=points)
    exact = exact_cdf(eigenvalues, points)
    assert np.all(certificate.lower <= exact) and np.all(exact <= certificate.upper)
    assert np.all(certificate.lower <= certificate.estimate) and np.all(certificate.estimate <= certificate.upper)

    low, high = certificate.negative_fraction_bounds
    exact_fraction = float(np.mean(eigenvalues < certificate.negative_threshold))
    estimate = negative_fraction(nodes, weights).fraction
    assert low <= exact_fraction <= high and low <= estimate <= high

    at_zero = certify(nodes, weights, n, distribution=distribution, grid=np.array([0.0]))
    assert at_zero.upper[0] - at_zero.lower[0] >= BULK_WEIGHT - 0.1
    assert certificate.ks_half_width >= (BULK_WEIGHT - 0.1) / 2.0
    midpoint = (certificate.lower + certificate.upper) / 2.0
    assert np.max(np.abs(midpoint - exact)) <= certificate.ks_half_width
    assert np.max(certificate.upper - certificate.lower) / 2.0 <= certificate.ks_half_width

    a, b = certificate.w1_support
    fine = np.linspace(a, b, 200_001)
    on_fine = certify(nodes, weights, n, distribution=distribution, grid=fine)
    riemann = float(np.sum((on_fine.upper - on_fine.lower)[:-1] * np.diff(fine)))
    assert certificate.w1_bound == pytest.approx(riemann, rel=1e-3)
    distance = float(np.sum(np.abs(on_fine.estimate - exact_cdf(eigenvalues, fine))[:-1] * np.diff(fine)))
    assert distance <= certificate.w1_bound


def test_one_draw_gives_a_band_and_json():
    """One draw: the band is wider (ε for D = 1) and still holds; the summary keys are
    JSON without NaN; the density band has no standard error (NaN)."""
    rng = np.random.default_rng(5)
    lam = np.sort(rng.uniform(-1.0, 3.0, 300))
    matrix = matrix_with_spectrum(lam, rng)
    nodes, weights = quadrature_of([lanczos(matrix, order=20, seed=9)], 20)
    certificate = certify(nodes, weights, 300)
    assert certificate.draws == 1
    assert certificate.sampling_half_width == pytest.approx(sampling_half_width(300, 1))
    exact = exact_cdf(lam, certificate.grid)
    assert np.all(certificate.lower <= exact) and np.all(exact <= certificate.upper)
    summary = json.loads(json.dumps(certificate.to_json(), allow_nan=False))
    assert set(summary["cdf_band"]) == {"grid", "lower", "upper", "confidence"}
    assert summary["cdf_band"]["confidence"] == 0.95 and len(summary["cdf_band"]["lower"]) == certificate.grid.size
    low, high = summary["negative_fraction_bounds"]
    assert 0.0 <= low <= high <= 1.0
    assert {"ks_half_width", "w1_bound", "sampling_half_width"} <= set(summary)
    assert set(certificate.arrays()) == {"cdf_grid", "cdf_estimate", "cdf_lower", "cdf_upper", "cdf_confidence"}
    band = density_band(nodes, weights, certificate.grid, 1e-3)
    assert np.isnan(band.std_error).all() and np.isnan(band.lower).all()


def test_density_band_is_the_draws_mean_and_standard_error():
    """φ is the run's smoothed density; SE is std over the draws' own densities / √D."""
    rng = np.random.default_rng(8)
    apply, n = diagonal_operator(rng.uniform(-1.0, 2.0, 200))
    nodes, weights = quadrature_of([lanczos(apply, n, order=15, seed=2, draw=d) for d in range(6)], 15)
    grid, sigma2 = np.linspace(-1.5, 2.5, 501), 1e-3
    band = density_band(nodes, weights, grid, sigma2, num_std_errors=3.0)
    np.testing.assert_allclose(band.density, smoothed_density(nodes, weights, grid, sigma2), rtol=1e-12, atol=1e-15)
    per_draw = np.stack([smoothed_density(nodes[d], weights[d], grid, sigma2) for d in range(6)])
    np.testing.assert_allclose(band.std_error, per_draw.std(axis=0, ddof=1) / np.sqrt(6), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(band.upper, band.density + 3.0 * band.std_error, rtol=1e-12)
    assert np.all(band.lower >= 0.0) and np.all(band.lower <= band.density) and np.any(band.std_error > 0)
    assert set(band.arrays()) == {"density_std_error", "density_lower", "density_upper"}


def test_the_gap_between_two_bands_is_exact_over_all_t():
    """Two spectra of n = 60 that overlap on [0.8, 1]: the gap of :func:`band_gap` is the
    largest of max(0, L₁ − U₂, L₂ − U₁) over a fine grid with every node of both runs in
    it (where the step functions change), and 0 between a run and itself. ``cdf_band`` is
    ``certify``'s band."""
    first = diagonal_operator(np.linspace(0.0, 1.0, 60))
    second = diagonal_operator(np.linspace(0.8, 1.8, 60))
    rules = []
    for apply, n in (first, second):
        nodes, weights = quadrature_of([lanczos(apply, n, order=8, seed=2, draw=d) for d in range(4)], 8)
        rules.append(CertifiedRule(nodes, weights, n))
    everywhere = np.unique(np.concatenate([np.linspace(-1.0, 3.0, 20001), rules[0].breakpoints(), rules[1].breakpoints()]))
    (low1, high1), (low2, high2) = rules[0].band(everywhere), rules[1].band(everywhere)
    brute = max(0.0, np.max(low1 - high2), np.max(low2 - high1))
    assert band_gap(rules[0], rules[1]) == brute == band_gap(rules[1], rules[0]) and brute > 0
    assert band_gap(rules[0], rules[0]) == 0.0
    cert = certify(rules[0].nodes, rules[0].weights, 60)
    lower, upper = cdf_band(rules[0].nodes, rules[0].weights, 60, cert.grid)
    assert np.array_equal(lower, cert.lower) and np.array_equal(upper, cert.upper)


def test_bad_arguments_are_named():
    apply, n = diagonal_operator(np.linspace(-1.0, 1.0, 50))
    nodes, weights = quadrature_of([lanczos(apply, n, order=5, seed=0, draw=d) for d in range(2)], 5)
    with pytest.raises(ValueError, match=re.escape("confidence must be a probability in (0, 1), got 1.5")):
        certify(nodes, weights, n, confidence=1.5)
    with pytest.raises(ValueError, match="node_tolerance .* got -0.1"):
        certify(nodes, weights, n, node_tolerance=-0.1)
    with pytest.raises(ValueError, match="5 quadrature nodes, more than the dimension dim=4"):
        certify(nodes, weights, 4)
    with pytest.raises(ValueError, match="distribution must be one of"):
        certify(nodes, weights, n, distribution="uniform")
    with pytest.raises(ValueError, match=re.escape("got (1.0, 1.0)")):
        certify(nodes, weights, n, support=(1.0, 1.0))
    with pytest.raises(ValueError, match="draws must be a positive integer, got 0"):
        sampling_half_width(n, 0)
    with pytest.raises(ValueError, match="num_std_errors must be a positive number, got 0"):
        density_band(nodes, weights, np.linspace(-1, 1, 11), 1e-3, num_std_errors=0)


def test_a_run_that_may_stop_early_gets_a_band_for_every_count_it_could_stop_at():
    """J counts the checks at multiples of B from 2 draws on, below the most, and the most
    itself; ε's risk is split over them (a union bound), so it widens with J, slowly."""
    assert stopping_points(16, 2) == 8  # 2, 4, ..., 14 and 16
    assert stopping_points(16, 3) == 6  # 3, 6, 9, 12, 15 and 16
    assert stopping_points(16, 1) == 15 and stopping_points(2, 4) == 1
    fixed = sampling_half_width(2410, 8)
    assert sampling_half_width(2410, 8, looks=1) == fixed
    widened = sampling_half_width(2410, 8, looks=8)
    assert widened == pytest.approx(fixed * np.sqrt(np.log(2 * 2409 * 8 / 0.05) / np.log(2 * 2409 / 0.05)), rel=1e-12)
    assert 1.05 < widened / fixed < 1.10
