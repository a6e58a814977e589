"""From Lanczos tridiagonals to a spectrum: Gauss quadrature, smoothed density, statistics.

For one draw with tridiagonal T = U Θ Uᵀ (k × k), the Gauss quadrature nodes are the
Ritz values θⱼ and the weights wⱼ = (U₀ⱼ)², so that v₀ᵀ f(A) v₀ ≈ Σⱼ wⱼ f(θⱼ), exactly
for polynomials f of degree ≤ 2k − 1. Over D draws the smoothed spectral density is

    φ(t) = (1/D) Σ_d Σⱼ w_dj · N(t; θ_dj, σ²),

where σ² is a *variance*, in squared eigenvalue units. Where a function takes
``sigma2_relative`` s instead, the variance is σ² = s · (λ_max − λ_min)², i.e. the
standard deviation is √s times the width of the spectrum.

Arrays over draws are padded to the order m: ``nodes`` float64 (D, m) holds NaN and
``weights`` float64 (D, m) holds 0 where a draw stopped early (breakdown). numpy/scipy only.

Two conventions for σ². raylanczos (:func:`resolve_sigma2`): σ² = s_rel · W², with
W = θ_max − θ_min the width between the extreme Ritz values over all draws; the grid is
:func:`default_grid` and the density is not renormalised. The original spectral-density
code (``tridiag_to_density(tridiag_list, sigma_squared=1e-5, grid_len=10000)``, reproduced
by :func:`original_density`) takes nodes and weights from ``eigh`` of the zero-padded
matrices (padding gives nodes at exactly 0, which count in the extremes), sets
λ_max = mean_d max_j θ_dj + 0.01 and λ_min = mean_d min_j θ_dj − 0.01, and uses the
variance s_orig · max(1, W_o) with W_o = λ_max − λ_min, i.e. scaled by the width, not its
square, on ``linspace(λ_min, λ_max, grid_len)``, renormalised to a unit Riemann sum. The
same number therefore means different kernels: on spectra 25 wide, passing one
convention's value to the other has moved the density by an L1 distance of 1.0–1.3. The
variances agree when s_rel = s_orig · max(1, W_o) / W² (:func:`sigma2_relative_from_original`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np
from scipy.linalg import eigh_tridiagonal
from scipy.special import ndtr

from raylanczos.choices import START_DISTRIBUTIONS, check_choice, check_int

Tridiagonal = tuple[np.ndarray, np.ndarray]  # (alpha float64[k], beta float64[k-1])

DEFAULT_SIGMA2_RELATIVE = 1e-5
DEFAULT_GRID_POINTS = 10_000
#: Kernel values (grid points × nodes) :func:`smoothed_density` computes at a time.
DENSITY_CHUNK = 32_768

#: ε of :func:`negative_fraction`: eigenvalues below −ε·‖H‖ count as negative. Measured on
#: the dense Hessians of the digits MLPs (310 and 2,410 parameters; order 90, 10 draws,
#: seeds 0–9): at ε = 1e-3 the estimate stayed within 1.5 standard errors of the exact
#: fraction on both; at ε = 5e-4 to 1e-4 the threshold falls inside the bulk near 0 that
#: 90 nodes do not resolve, and on the larger one the quadrature bias reached 10 to 25
#: standard errors. Negative eigenvalues smaller than ε·‖H‖ in magnitude are not counted:
#: the 310-parameter MLP (λ_min ≈ −5e-4·‖H‖) gets 0 at the default.
DEFAULT_NEGATIVE_THRESHOLD = 1e-3

#: Margin the original code adds on each side of its mean extreme nodes (eigenvalue units).
ORIGINAL_GRID_EXPAND = 1e-2


def tridiagonal_matrix(alpha: np.ndarray, beta: np.ndarray, order: int | None = None) -> np.ndarray:
    """Dense symmetric T, float64 (order, order), zero-padded beyond k = len(alpha)."""
    alpha = np.asarray(alpha, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    k = alpha.shape[0]
    if beta.shape != (max(k - 1, 0),):
        raise ValueError(f"beta must have length {max(k - 1, 0)} for {k} alphas, got shape {beta.shape}")
    order = k if order is None else order
    if order < k:
        raise ValueError(f"order={order} is smaller than the tridiagonal's size {k}")
    matrix = np.zeros((order, order), dtype=np.float64)
    idx = np.arange(k)
    matrix[idx, idx] = alpha
    matrix[idx[:-1], idx[:-1] + 1] = beta
    matrix[idx[:-1] + 1, idx[:-1]] = beta
    return matrix


def stack_tridiagonals(tridiagonals: Sequence[Tridiagonal], order: int) -> np.ndarray:
    """float64 (D, m, m) in the original spectral-density layout (``tridiag_to_density``).

    Draws that stopped early are zero-padded; the padding adds eigenvalues 0 with
    quadrature weight 0, so densities computed from the padded matrices are unchanged.
    """
    return np.stack([tridiagonal_matrix(a, b, order) for a, b in tridiagonals]) if tridiagonals else np.zeros(
        (0, order, order)
    )


def split_tridiagonals(stacked: np.ndarray, steps: Sequence[int] | None = None) -> list[Tridiagonal]:
    """Inverse of :func:`stack_tridiagonals`: (α, β) per draw from float64 (D, m, m).

    ``steps`` gives each draw's size; without it, trailing all-zero rows are dropped.
    """
    stacked = np.asarray(stacked, dtype=np.float64)
    if stacked.ndim != 3 or stacked.shape[1] != stacked.shape[2]:
        raise ValueError(f"expected tridiagonals of shape (D, m, m), got {stacked.shape}")
    out = []
    for d, matrix in enumerate(stacked):
        if steps is None:
            nonzero = np.flatnonzero(np.any(matrix != 0.0, axis=1))
            k = int(nonzero[-1]) + 1 if nonzero.size else 0
        else:
            k = int(steps[d])
        if k == 0:
            raise ValueError(f"draw {d} has an empty tridiagonal")
        out.append((np.diag(matrix)[:k].copy(), np.diag(matrix, 1)[: k - 1].copy()))
    return out


def gauss_quadrature(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nodes θ (ascending) and weights w = U₀ⱼ² of T, each float64[k]; Σ w = 1."""
    alpha = np.asarray(alpha, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    if alpha.shape[0] == 1:
        return alpha.copy(), np.ones(1)
    nodes, vectors = eigh_tridiagonal(alpha, beta)
    return nodes, vectors[0] ** 2


def slq_quadrature(tridiagonals: Sequence[Tridiagonal], order: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nodes (NaN-padded) and weights (zero-padded), float64 (D, m), over draws."""
    if not tridiagonals:
        raise ValueError("at least one tridiagonal is needed")
    order = order or max(len(a) for a, _ in tridiagonals)
    nodes = np.full((len(tridiagonals), order), np.nan)
    weights = np.zeros((len(tridiagonals), order))
    for d, (alpha, beta) in enumerate(tridiagonals):
        k = len(alpha)
        nodes[d, :k], weights[d, :k] = gauss_quadrature(alpha, beta)
    return nodes, weights


def spectral_range(nodes: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """(λ_min, λ_max) estimates: the extreme Ritz values over all draws."""
    present = _present(nodes, weights)
    values = np.asarray(nodes)[present]
    return float(values.min()), float(values.max())


def resolve_sigma2(nodes: np.ndarray, weights: np.ndarray, sigma2_relative: float) -> float:
    """Absolute variance σ² = s · (λ_max − λ_min)² (eigenvalue units squared).

    A spectrum of zero width uses max(|λ|, 1) as its width.
    """
    if not sigma2_relative > 0:
        raise ValueError(f"sigma2_relative must be > 0, got {sigma2_relative!r}")
    return float(sigma2_relative * _width(nodes, weights) ** 2)


def default_grid(nodes: np.ndarray, weights: np.ndarray, sigma2: float, points: int = DEFAULT_GRID_POINTS) -> np.ndarray:
    """Evenly spaced float64[points] covering all nodes with 5σ (or 1% of the width) margins."""
    if points < 2:
        raise ValueError(f"a grid needs at least 2 points, got {points!r}")
    low, high = spectral_range(nodes, weights)
    width = _width(nodes, weights)
    pad = max(5.0 * np.sqrt(sigma2), 0.01 * width)
    return np.linspace(low - pad, high + pad, points)


def smoothed_density(nodes: np.ndarray, weights: np.ndarray, grid: np.ndarray, sigma2: float) -> np.ndarray:
    """φ on ``grid`` (float64[G]) for nodes/weights (D, m) and absolute variance ``sigma2``."""
    if not sigma2 > 0:
        raise ValueError(f"sigma2 must be > 0 (a variance), got {sigma2!r}")
    nodes = np.atleast_2d(np.asarray(nodes, dtype=np.float64))
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    present = _present(nodes, weights)
    centres = nodes[present]
    mass = weights[present] / nodes.shape[0]
    grid = np.asarray(grid, dtype=np.float64)
    density = np.zeros_like(grid)
    norm = 1.0 / np.sqrt(2.0 * np.pi * sigma2)
    # Grid rows in chunks of about DENSITY_CHUNK kernel values, computed in one reused buffer
    # that stays in cache (fresh temporaries of megabytes cost more than the arithmetic).
    chunk = max(1, DENSITY_CHUNK // max(centres.size, 1))
    buffer = np.empty((min(chunk, grid.size), centres.size))
    for start in range(0, grid.size, chunk):
        t = grid[start : start + chunk, None]
        kernel = buffer[: t.shape[0]]
        np.subtract(t, centres, out=kernel)
        np.square(kernel, out=kernel)
        np.negative(kernel, out=kernel)
        np.divide(kernel, 2.0 * sigma2, out=kernel)
        np.exp(kernel, out=kernel)
        density[start : start + chunk] = kernel @ mass * norm
    return density


def exact_smoothed_density(eigenvalues: np.ndarray, grid: np.ndarray, sigma2: float) -> np.ndarray:
    """The smoothed density (1/n) Σᵢ N(t; λᵢ, σ²) of a known spectrum, on ``grid``."""
    eigenvalues = np.asarray(eigenvalues, dtype=np.float64).ravel()
    weights = np.full(eigenvalues.size, 1.0 / eigenvalues.size)
    return smoothed_density(eigenvalues[None], weights[None], grid, sigma2)


def log_abs_density(
    nodes: np.ndarray,
    weights: np.ndarray,
    grid: np.ndarray,
    sigma2: float,
    floor: float = 1e-12,
) -> np.ndarray:
    """Smoothed density of log₁₀|λ| on ``grid`` (log₁₀ units; ``sigma2`` in decades²).

    Nodes with |θ| < ``floor`` are left out (their mass is not renormalised away).
    """
    nodes = np.atleast_2d(np.asarray(nodes, dtype=np.float64))
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    magnitude = np.abs(np.nan_to_num(nodes, nan=0.0))
    kept = _present(nodes, weights) & (magnitude >= floor)
    logs = np.where(kept, np.log10(np.where(kept, magnitude, 1.0)), np.nan)
    return smoothed_density(logs, np.where(kept, weights, 0.0), grid, sigma2)


def negative_mass(nodes: np.ndarray, weights: np.ndarray, sigma2: float) -> float:
    """∫_{t<0} φ(t) dt, exactly (Gaussian tails), for absolute variance ``sigma2``.

    A property of the *smoothed* density: a bulk of eigenvalues at 0 puts half its mass
    below 0 whatever its sign, so this mostly measures σ; see :func:`negative_fraction`.
    """
    nodes = np.atleast_2d(nodes)
    weights = np.atleast_2d(weights)
    present = _present(nodes, weights)
    tail = ndtr(-nodes[present] / np.sqrt(sigma2))
    return float(np.sum(weights[present] * tail) / nodes.shape[0])


def fraction_below(nodes: np.ndarray, weights: np.ndarray, threshold: float) -> np.ndarray:
    """f_d = Σⱼ w_dj · 1[θ_dj < threshold] per draw, float64[D] (dimensionless, in [0, 1]).

    The Gauss-quadrature estimate of v₀ᵀ 1[H < threshold] v₀, v₀'s spectral mass strictly
    below ``threshold`` (eigenvalue units); its mean over draws estimates the fraction of
    eigenvalues below ``threshold``. Padding (NaN nodes) counts for nothing.
    """
    nodes = np.atleast_2d(np.asarray(nodes, dtype=np.float64))
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    below = _present(nodes, weights) & (np.nan_to_num(nodes, nan=np.inf) < threshold)
    return np.sum(np.where(below, weights, 0.0), axis=1)


class NegativeFraction(NamedTuple):
    """The SLQ estimate of the fraction of eigenvalues below −ε·‖H‖, and its standard error.

    ``fraction`` = mean_d f_d with f_d from :func:`fraction_below` at ``threshold``
    (dimensionless); ``std_error`` = std_d(f_d, ddof=1)/√D (NaN for one draw);
    ``threshold`` = −ε·‖H‖ (eigenvalue units), ‖H‖ = max(|θ_max|, |θ_min|) over all draws;
    ``threshold_relative`` = ε.
    """

    fraction: float
    std_error: float
    threshold: float
    threshold_relative: float


def negative_fraction(
    nodes: np.ndarray, weights: np.ndarray, *, threshold_relative: float = DEFAULT_NEGATIVE_THRESHOLD
) -> NegativeFraction:
    """Fraction of eigenvalues below −ε·‖H‖ (ε = ``threshold_relative`` ≥ 0), over draws.

    The threshold keeps a bulk of eigenvalues at ≈ 0 out of the count: a Ritz value standing
    for that bulk lands at −1e-9 or +1e-9 by chance and carries much of the weight, so the
    weight on negative nodes (ε = 0) jumps between draws and between nearby matrices.

    The standard error measures the spread over start vectors only. Gauss quadrature adds a
    bias per draw, bounded by the weights of the two nodes either side of the threshold
    (Chebyshev–Markov–Stieltjes inequalities); it is small where the threshold lies in a
    part of the spectrum the Ritz values resolve (near an extreme), and can exceed the
    standard error where it lies inside an unresolved bulk (see
    :data:`DEFAULT_NEGATIVE_THRESHOLD`).
    """
    if not (np.isfinite(threshold_relative) and threshold_relative >= 0):
        raise ValueError(f"threshold_relative (ε) must be finite and ≥ 0, got {threshold_relative!r}")
    low, high = spectral_range(nodes, weights)
    threshold = -threshold_relative * max(abs(low), abs(high))
    per_draw = fraction_below(nodes, weights, threshold)
    return NegativeFraction(
        fraction=float(per_draw.mean()),
        std_error=_std_error(per_draw),
        threshold=float(threshold),
        threshold_relative=float(threshold_relative),
    )


def extreme_ritz_values(nodes: np.ndarray, weights: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (descending) and bottom-k (ascending) Ritz values, best over draws.

    Ritz values interlace the spectrum (the i-th largest Ritz value is ≤ λ_i), so the
    i-th largest over draws is the sharpest estimate of λ_i; likewise at the bottom.
    """
    nodes = np.atleast_2d(nodes)
    present = _present(nodes, np.atleast_2d(weights))
    k = min(k, int(present.sum(axis=1).min()))
    tops, bottoms = [], []
    for row, mask in zip(nodes, present):
        values = np.sort(row[mask])
        tops.append(values[::-1][:k])
        bottoms.append(values[:k])
    return np.max(tops, axis=0), np.min(bottoms, axis=0)


def orthogonality_loss(basis: np.ndarray) -> float:
    """‖V Vᵀ − I‖_max for a basis float64 (k, n) with orthonormal rows in exact arithmetic."""
    basis = np.asarray(basis)
    gram = basis @ basis.T
    gram[np.diag_indices_from(gram)] -= 1.0
    return float(np.max(np.abs(gram))) if gram.size else 0.0


@dataclass(frozen=True)
class SpectrumSummary:
    """Statistics of an SLQ run over D draws of a symmetric n × n operator H.

    Eigenvalue units are those of H (for a Hessian: loss units per parameter unit squared).

    - ``lambda_max``, ``lambda_min``: the largest and smallest Ritz values over all draws
      (eigenvalue units); Ritz values interlace, so λ_min ≤ ``lambda_min`` and
      ``lambda_max`` ≤ λ_max.
    - ``top_ritz_values``, ``bottom_ritz_values``: the k largest (descending) and smallest
      (ascending) Ritz values, best over draws (eigenvalue units); k is capped by the
      shortest draw.
    - ``trace_estimate``: n · mean_d(α_d0), the Hutchinson estimate of tr H (eigenvalue
      units). ``trace_std_error``: its standard error from the first off-diagonals
      (:func:`trace_std_error`) when they were given, else ``trace_std_error_sample``;
      ``trace_std_error_sample``: n · std_d(α_d0, ddof=1)/√D (NaN for one draw), which
      is itself unreliable for a few skewed values.
    - ``negative_fraction``: the estimate of the fraction of eigenvalues below
      ``negative_threshold`` (dimensionless; see :func:`negative_fraction`);
      ``negative_fraction_std_error``: its standard error over draws (NaN for one draw).
      It includes the draws' scatter of quadrature error but not its bias; the certified
      interval of :mod:`raylanczos.numerics.certificate` bounds both.
    - ``negative_threshold``: −ε·‖H‖, the threshold actually used (eigenvalue units), with
      ‖H‖ = max(|``lambda_max``|, |``lambda_min``|); ``negative_threshold_relative``: ε.
    - ``negative_mass``: ∫_{t<0} φ(t) dt of the smoothed density with variance ``sigma2``
      (dimensionless); it counts half of any bulk at 0, so it reflects σ as much as H.
    - ``sigma2``: the absolute kernel variance used for ``negative_mass`` (eigenvalue units²).
    """

    lambda_max: float
    lambda_min: float
    top_ritz_values: list[float]
    bottom_ritz_values: list[float]
    trace_estimate: float
    trace_std_error: float
    trace_std_error_sample: float
    negative_fraction: float
    negative_fraction_std_error: float
    negative_threshold: float
    negative_threshold_relative: float
    negative_mass: float
    sigma2: float


def summarize(
    nodes: np.ndarray,
    weights: np.ndarray,
    first_alphas: np.ndarray,
    dim: int,
    *,
    sigma2: float,
    k: int = 10,
    negative_threshold: float = DEFAULT_NEGATIVE_THRESHOLD,
    first_betas: np.ndarray | None = None,
    distribution: str = "gaussian",
) -> SpectrumSummary:
    """Statistics of a run from its quadrature (see :class:`SpectrumSummary`).

    Args:
      nodes, weights: float64 (D, m) as from :func:`slq_quadrature` (NaN nodes and 0
        weights where a draw stopped early).
      first_alphas: float64[D], α₀ = v₀ᵀ H v₀ of each draw (eigenvalue units).
      dim: n, the operator's dimension.
      sigma2: absolute kernel variance for ``negative_mass`` (eigenvalue units², > 0).
      k: how many extreme Ritz values to report at each end.
      negative_threshold: ε, relative to ‖H‖ (≥ 0); see :func:`negative_fraction`.
      first_betas: float64[D], β₁ = ‖H v₀ − α₀ v₀‖ of each draw (the first off-diagonal;
        0 for a draw of one step), for ``trace_std_error``; without them the trace's
        standard error is the sample one.
      distribution: the start vectors' distribution, ``"gaussian"`` or ``"rademacher"``.
    """
    nodes, weights = check_quadrature(nodes, weights)
    first_alphas = _per_draw("first_alphas", first_alphas, nodes.shape)
    check_int("dim", dim)
    check_choice("distribution", distribution, START_DISTRIBUTIONS)
    if not sigma2 > 0:
        raise ValueError(f"sigma2 must be > 0 (a variance), got {sigma2!r}")
    top, bottom = extreme_ritz_values(nodes, weights, k)
    negative = negative_fraction(nodes, weights, threshold_relative=negative_threshold)
    sample = float(dim * _std_error(first_alphas))
    if first_betas is None:
        trace_error = sample
    else:
        trace_error = trace_std_error(_per_draw("first_betas", first_betas, nodes.shape), dim, distribution=distribution)
    return SpectrumSummary(
        lambda_max=float(top[0]),
        lambda_min=float(bottom[0]),
        top_ritz_values=top.tolist(),
        bottom_ritz_values=bottom.tolist(),
        trace_estimate=float(dim * first_alphas.mean()),
        trace_std_error=trace_error,
        trace_std_error_sample=sample,
        negative_fraction=negative.fraction,
        negative_fraction_std_error=negative.std_error,
        negative_threshold=negative.threshold,
        negative_threshold_relative=negative.threshold_relative,
        negative_mass=negative_mass(nodes, weights, sigma2),
        sigma2=float(sigma2),
    )


def trace_std_error(first_betas: np.ndarray, dim: int, *, distribution: str = "gaussian") -> float:
    """Standard error of the Hutchinson trace estimate n · mean_d(α_d0), from the first
    off-diagonals β_d1 (eigenvalue units; defined for one draw too).

    For v uniform on the unit sphere (normalised Gaussian starts), with
    β₁² = ‖Hv‖² − (vᵀHv)² = vᵀH²v − (vᵀHv)²:

        Var(n · vᵀHv) = 2(n‖H‖_F² − (tr H)²)/(n + 2) = 2n · E[β₁²],

    so SE = √(2n · mean_d(β_d1²) / D), whose square is unbiased. It averages D positive
    terms instead of taking the spread of D skewed values (the sample standard error).

    For Rademacher starts, Var(n · vᵀHv) = 2(‖H‖_F² − Σᵢ Hᵢᵢ²) depends on H's diagonal,
    which the run does not see; 2n · E[β₁²] · n/(n − 2) bounds it from above (because
    Σᵢ Hᵢᵢ² ≥ (tr H)²/n), so the value returned is conservative (NaN for n ≤ 2). It is 0
    only where every start is an eigenvector.
    """
    check_int("dim", dim)
    check_choice("distribution", distribution, START_DISTRIBUTIONS)
    betas = np.asarray(first_betas, dtype=np.float64)
    if betas.ndim != 1 or betas.size == 0 or not np.all(np.isfinite(betas)):
        raise ValueError(f"first_betas must be a non-empty 1-D array of finite values, got shape {betas.shape}")
    variance = 2.0 * dim * float(np.mean(betas**2))
    if distribution == "rademacher":
        variance = variance * dim / (dim - 2) if dim > 2 else float("nan")
    return float(np.sqrt(variance / betas.size))


# --------------------------------------------------------------------------- the original's convention


def original_quadrature(tridiagonals_stacked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nodes (ascending) and weights (first eigenvector row squared), float64 (D, m), as the
    original code reads them: ``numpy.linalg.eigh`` of each (zero-padded) m × m matrix.

    A draw padded from k to m rows gets m − k extra nodes at exactly 0 with weight 0.
    """
    stacked = np.asarray(tridiagonals_stacked, dtype=np.float64)
    if stacked.ndim != 3 or stacked.shape[1] != stacked.shape[2] or stacked.shape[0] == 0:
        raise ValueError(f"expected tridiagonals of shape (D, m, m) with D ≥ 1, got {stacked.shape}")
    if not np.all(np.isfinite(stacked)):
        raise ValueError("the tridiagonals hold non-finite values")
    nodes, vectors = np.linalg.eigh(stacked)
    return nodes, vectors[:, 0, :] ** 2


def original_density(
    tridiagonals_stacked: np.ndarray, sigma_squared: float, grid_len: int = 10_000
) -> tuple[np.ndarray, np.ndarray, float]:
    """The original ``tridiag_to_density`` on float64 (D, m, m): (grid, density, variance).

    grid float64[grid_len] = linspace(λ_min, λ_max) with λ_max = mean_d max_j θ_dj + 0.01 and
    λ_min = mean_d min_j θ_dj − 0.01 over :func:`original_quadrature`'s nodes (padding zeros
    included); variance = ``sigma_squared`` · max(1, λ_max − λ_min) (eigenvalue units²);
    density float64[grid_len] = the draw-averaged Gaussian mixture, divided by its Riemann
    sum so that Σ density · (grid[1] − grid[0]) = 1 (per eigenvalue unit).
    """
    if not sigma_squared > 0:
        raise ValueError(f"sigma_squared must be > 0, got {sigma_squared!r}")
    if grid_len < 2:
        raise ValueError(f"a grid needs at least 2 points, got {grid_len!r}")
    nodes, weights = original_quadrature(tridiagonals_stacked)
    low, high = _original_range(nodes)
    variance = float(sigma_squared * max(1.0, high - low))
    grid = np.linspace(low, high, grid_len)
    density = smoothed_density(nodes, weights, grid, variance)
    return grid, density / (density.sum() * (grid[1] - grid[0])), variance


def sigma2_relative_from_original(
    nodes: np.ndarray, weights: np.ndarray, sigma_squared: float, *, grid_expand: float = ORIGINAL_GRID_EXPAND
) -> float:
    """The ``sigma2_relative`` whose :func:`resolve_sigma2` variance equals the original's.

    variance_orig = s_orig · max(1, W_o), W_o = mean_d max_j θ_dj − mean_d min_j θ_dj + 2·grid_expand;
    σ² = s_rel · W², W = θ_max − θ_min over all draws; so s_rel = s_orig · max(1, W_o) / W².
    (Conversely s_orig = s_rel · W² / max(1, W_o).)

    ``nodes``, ``weights`` are float64 (D, m), NaN-padded as from :func:`slq_quadrature`;
    a draw with padding counts a node at 0 in its extremes, as the original's zero padding
    does. The result depends on the nodes: convert once per run.
    """
    if not sigma_squared > 0:
        raise ValueError(f"sigma_squared must be > 0, got {sigma_squared!r}")
    nodes, weights = check_quadrature(nodes, weights)
    padded = np.where(_present(nodes, weights), nodes, 0.0)
    low, high = _original_range(padded, grid_expand)
    return float(sigma_squared * max(1.0, high - low) / _width(nodes, weights) ** 2)


def _original_range(nodes: np.ndarray, grid_expand: float = ORIGINAL_GRID_EXPAND) -> tuple[float, float]:
    """(mean_d min_j θ_dj − grid_expand, mean_d max_j θ_dj + grid_expand), padding included."""
    return float(nodes.min(axis=1).mean() - grid_expand), float(nodes.max(axis=1).mean() + grid_expand)


# --------------------------------------------------------------------------- helpers


def _width(nodes: np.ndarray, weights: np.ndarray) -> float:
    """θ_max − θ_min over all draws; max(|θ|, 1) for a spectrum of zero width."""
    low, high = spectral_range(nodes, weights)
    return high - low if high > low else max(abs(high), 1.0)


def _per_draw(name: str, values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``values`` as float64[D] for nodes of ``shape`` (D, m), else a ValueError naming ``name``."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (shape[0],):
        raise ValueError(f"{name} must have shape ({shape[0]},) for nodes {shape}, got {values.shape}")
    return values


def _std_error(values: np.ndarray) -> float:
    """std(values, ddof=1)/√D of float64[D]; NaN for D = 1."""
    return float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else float("nan")


def check_quadrature(nodes: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 (D, m) nodes and weights of the same shape, D ≥ 1, with at least one node."""
    nodes = np.asarray(nodes, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if nodes.ndim != 2 or nodes.shape != weights.shape or nodes.shape[0] == 0:
        raise ValueError(
            f"nodes and weights must both have shape (D, m) with D ≥ 1, got {nodes.shape} and {weights.shape}"
        )
    if not np.any(_present(nodes, weights)):
        raise ValueError("no quadrature node is finite")
    return nodes, weights


def _present(nodes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mask of real quadrature nodes (not the NaN padding of draws that stopped early)."""
    return np.isfinite(nodes) & np.isfinite(weights)
