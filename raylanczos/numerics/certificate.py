"""Certified spectra: bounds on the spectral CDF from an SLQ run's quadrature.

Notation. H is symmetric n × n with eigenpairs (λᵢ, qᵢ); its spectral CDF is
F(t) = #{i: λᵢ ≤ t}/n. A unit start vector v has the spectral measure
μ_v = Σᵢ (qᵢᵀv)² δ(λᵢ) and the CDF F_v(t) = μ_v((−∞, t]). Lanczos from v with k steps
gives the k-point Gauss quadrature of μ_v: nodes θ₁ < … < θ_k and weights w_j.

Per draw (deterministic). The Chebyshev–Markov–Stieltjes inequalities give, at each node,
Σ_{i<j} w_i ≤ μ_v((−∞, θ_j)) ≤ μ_v((−∞, θ_j]) ≤ Σ_{i≤j} w_i. With c(t) = #{j: θ_j ≤ t} and
monotonicity of F_v, for every t:

    L_v(t) = Σ_{j ≤ c(t)−1} w_j  ≤  F_v(t)  ≤  U_v(t) = Σ_{j ≤ c(t)+1} w_j,

and the same with c⁻(t) = #{j: θ_j < t} for F_v(t⁻) = μ_v((−∞, t)). So L_v and U_v are
the Gauss rule's own CDF less the weight of the node at or below t, plus the weight of
the node above t: the band is narrow where the weights are small and wide at a node
that carries a large weight (a bulk of eigenvalues that the rule stands for by one node).

Over draws (at a confidence 1 − a). E F_v = F for both start distributions. With D
independent draws, F̄ = mean_d F_{v_d} differs from F by at most ε at every t at once,
with probability ≥ 1 − a (:func:`sampling_half_width`; a union over the at most n − 1
intervals between distinct eigenvalues, where F̄ − F is constant):

- Gaussian starts (normalised: uniform on the sphere): F_v(t) ~ Beta(s/2, (n−s)/2),
  s = nF(t), which is 1/(2(n+2))-sub-Gaussian (Marchal & Arbel 2017); so
  ε = √(log(2K/a) / (D(n+2))), K = max(n − 1, 1).
- Rademacher starts (v = z/√n, z ∈ {±1}ⁿ): n·D·F̄(t) = ‖(I_D ⊗ P)z̃‖², P the spectral
  projector, z̃ the D draws' signs; Hsu, Kakade & Zhang's (2012) tail bound for quadratic
  forms of sub-Gaussian vectors, applied to P and to I − P (‖z‖² = n exactly), gives
  ε = 2√(τ/(nD)) + 2τ/(nD), τ = log(2K/a).

The band L(t) = max(0, mean_d L_{v_d}(t) − ε), U(t) = min(1, mean_d U_{v_d}(t) + ε) then
holds for F at every t at once with probability ≥ 1 − a. The figures that follow: the
Kolmogorov–Smirnov half-width max_t (U − L)/2 (the band's midpoint is that close to F
everywhere), a Wasserstein-1 bound ∫_a^b (U − L) dt (for F and any CDF in the band, both
supported on [a, b]), and an interval for the negative fraction F((−ε_H‖H‖)⁻).

Finite precision. The inequalities hold exactly for the measure whose Gauss rule the
computed T is. Rounding moves that measure's atoms by a small η (eigenvalue units);
``node_tolerance`` = η widens the per-draw bounds to L_v(t − η) and U_v(t + η), which
then hold for any measure within η of it. See ``docs/certificates.md``.

References: Chen, Trogdon & Ubaru, *Analysis of stochastic Lanczos quadrature for
spectrum approximation*, ICML 2021; Karlin & Shapley, *Geometry of moment spaces*
(1953) for the inequalities; Marchal & Arbel, Electron. Commun. Probab. 22 (2017);
Hsu, Kakade & Zhang, Electron. Commun. Probab. 17 (2012). Pure numpy/scipy.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from raylanczos.choices import START_DISTRIBUTIONS, check_choice, check_int
from raylanczos.numerics.spectrum import (
    DEFAULT_NEGATIVE_THRESHOLD,
    check_quadrature,
    default_grid,
    negative_fraction,
    smoothed_density,
    spectral_range,
    trace_std_error,
)

#: The default confidence of a band (the probability that F lies inside it everywhere).
DEFAULT_CONFIDENCE = 0.95
#: Points of the default grid on which a band is tabulated (for summary.json and plots).
DEFAULT_BAND_POINTS = 1001
#: Standard errors either side of the smoothed density in its pointwise band.
DEFAULT_DENSITY_STD_ERRORS = 2.0


def draw_cdf_bounds(
    nodes: np.ndarray,
    weights: np.ndarray,
    grid: np.ndarray,
    *,
    strict: bool = False,
    node_tolerance: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-draw bounds (L_v, U_v) on F_v at each point of ``grid``: two float64 (D, G).

    Args:
      nodes, weights: float64 (D, m) as from :func:`~raylanczos.numerics.spectrum.slq_quadrature`
        (NaN nodes and 0 weights where a draw stopped early).
      grid: float64[G], the points t (eigenvalue units).
      strict: bound F_v(t⁻) = μ_v((−∞, t)) instead of F_v(t) = μ_v((−∞, t]).
      node_tolerance: η ≥ 0 (eigenvalue units): L_v is taken at t − η and U_v at t + η.

    The bounds are dimensionless, in [0, 1], non-decreasing in t, and L_v ≤ F_v ≤ U_v
    holds for every t (Chebyshev–Markov–Stieltjes; see the module docstring).
    """
    nodes, weights = check_quadrature(nodes, weights)
    grid = _check_grid(grid)
    tolerance = _check_tolerance(node_tolerance)
    side = "left" if strict else "right"
    lower = np.empty((nodes.shape[0], grid.size))
    upper = np.empty_like(lower)
    for d, (theta, cumulative) in enumerate(_sorted_rules(nodes, weights)):
        k = theta.size
        below_lower = np.searchsorted(theta, grid - tolerance, side=side)
        below_upper = np.searchsorted(theta, grid + tolerance, side=side)
        lower[d] = cumulative[np.maximum(below_lower - 1, 0)]
        upper[d] = cumulative[np.minimum(below_upper + 1, k)]
    return np.clip(lower, 0.0, 1.0), np.clip(upper, 0.0, 1.0)


def gauss_cdf(nodes: np.ndarray, weights: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The SLQ estimate of F on ``grid``: mean_d Σ_j w_dj·1[θ_dj ≤ t], float64[G] in [0, 1]."""
    nodes, weights = check_quadrature(nodes, weights)
    grid = _check_grid(grid)
    total = np.zeros(grid.size)
    for theta, cumulative in _sorted_rules(nodes, weights):
        total += cumulative[np.searchsorted(theta, grid, side="right")]
    return np.clip(total / nodes.shape[0], 0.0, 1.0)


def sampling_half_width(
    dim: int, draws: int, *, distribution: str = "gaussian", confidence: float = DEFAULT_CONFIDENCE, looks: int = 1,
) -> float:
    """ε: with probability ≥ ``confidence``, |mean_d F_{v_d}(t) − F(t)| ≤ ε at every t at once.

    The sampling part of a band's half-width (dimensionless), for D = ``draws`` independent
    start vectors of ``distribution`` in dimension n = ``dim``. It depends on n, D and the
    confidence only, not on the run's numbers, and falls as 1/√(nD):

    - ``"gaussian"``: ε = √(log(2KJ/a) / (D(n+2))), a = 1 − confidence, K = max(n − 1, 1);
    - ``"rademacher"``: ε = 2√(τ/(nD)) + 2τ/(nD), τ = log(2KJ/a).

    J = ``looks``: the draw counts at which a run may have stopped on what its draws showed
    (:func:`stopping_points`; 1 for a fixed number of draws). A union bound over them keeps
    the band valid at whichever count the run stopped (about 9% wider at n = 2,410, J = 8).
    """
    check_int("dim", dim)
    check_int("draws", draws)
    check_int("looks", looks)
    check_choice("distribution", distribution, START_DISTRIBUTIONS)
    risk = 1.0 - _check_confidence(confidence)
    log_term = np.log(2.0 * max(dim - 1, 1) * looks / risk)
    if distribution == "gaussian":
        return float(np.sqrt(log_term / (draws * (dim + 2))))
    ratio = log_term / (dim * draws)
    return float(2.0 * np.sqrt(ratio) + 2.0 * ratio)


@dataclass(frozen=True, eq=False)
class SpectrumCertificate:
    """A band [``lower``, ``upper``] that holds for the spectral CDF F at every t at once,
    with probability ≥ ``confidence`` over the start vectors; and the figures that follow.

    - ``grid``: float64[G], where the band is tabulated (eigenvalue units). Between grid
      points the band is a step function (``lower`` steps up at the nodes + η, ``upper`` at
      the nodes − η); the figures below are computed from the step functions, not the grid.
    - ``estimate``: float64[G], the SLQ estimate of F (the draws' mean Gauss-rule CDF).
    - ``lower``, ``upper``: float64[G], the band (dimensionless, in [0, 1]).
    - ``confidence``, ``distribution``, ``dim`` (n), ``draws`` (D): what the band is for.
    - ``sampling_half_width``: ε of :func:`sampling_half_width`, the sampling part of the
      band's half-width; the rest, (mean U_v − mean L_v)/2, is the quadrature part.
    - ``ks_half_width``: max_t (U − L)/2 over all t: the band's midpoint is within it of F.
    - ``w1_bound``: ∫_a^b (U − L) dt over ``w1_support`` = (a, b) (eigenvalue units): a bound
      on the Wasserstein-1 distance between F and any CDF inside the band, both on [a, b].
    - ``negative_threshold``: τ = −ε_H·‖H‖ (eigenvalue units), as in
      :func:`~raylanczos.numerics.spectrum.negative_fraction`;
      ``negative_fraction_bounds``: (low, high) with low ≤ F(τ⁻) ≤ high, the fraction of
      eigenvalues below τ, at the band's confidence.
    - ``node_tolerance``: η, the widening for rounding (eigenvalue units).
    """

    grid: np.ndarray
    estimate: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    confidence: float
    distribution: str
    dim: int
    draws: int
    sampling_half_width: float
    ks_half_width: float
    w1_bound: float
    w1_support: tuple[float, float]
    negative_threshold: float
    negative_fraction_bounds: tuple[float, float]
    node_tolerance: float

    def to_json(self) -> dict[str, Any]:
        """The summary.json keys: ``cdf_band`` {grid, lower, upper, confidence},
        ``ks_half_width``, ``w1_bound``, ``negative_fraction_bounds`` [low, high], and
        ``sampling_half_width``, ``w1_support`` [a, b], ``certificate_distribution``."""
        return {
            "cdf_band": {
                "grid": self.grid.tolist(),
                "lower": self.lower.tolist(),
                "upper": self.upper.tolist(),
                "confidence": self.confidence,
            },
            "ks_half_width": self.ks_half_width,
            "w1_bound": self.w1_bound,
            "negative_fraction_bounds": list(self.negative_fraction_bounds),
            "sampling_half_width": self.sampling_half_width,
            "w1_support": list(self.w1_support),
            "certificate_distribution": self.distribution,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """The band's arrays for spectrum.npz: ``cdf_grid``, ``cdf_estimate``,
        ``cdf_lower``, ``cdf_upper`` (float64[G]) and ``cdf_confidence`` (a float64 scalar)."""
        return {
            "cdf_grid": self.grid,
            "cdf_estimate": self.estimate,
            "cdf_lower": self.lower,
            "cdf_upper": self.upper,
            "cdf_confidence": np.float64(self.confidence),
        }


def certify(
    nodes: np.ndarray,
    weights: np.ndarray,
    dim: int,
    *,
    distribution: str = "gaussian",
    confidence: float = DEFAULT_CONFIDENCE,
    grid: np.ndarray | None = None,
    negative_threshold: float = DEFAULT_NEGATIVE_THRESHOLD,
    node_tolerance: float = 0.0,
    support: tuple[float, float] | None = None,
    looks: int = 1,
) -> SpectrumCertificate:
    """The certificate of a run from its quadrature (see :class:`SpectrumCertificate`).

    Args:
      nodes, weights: float64 (D, m) as from :func:`~raylanczos.numerics.spectrum.slq_quadrature`.
      dim: n, the operator's dimension (each draw has at most n nodes).
      distribution: the start vectors' distribution, ``"gaussian"`` or ``"rademacher"``.
      confidence: the probability (in (0, 1)) that F lies in the band everywhere.
      grid: float64[G] where the band is tabulated; default :data:`DEFAULT_BAND_POINTS`
        points from 1% of the Ritz range below the smallest node to 1% above the largest.
      negative_threshold: ε_H ≥ 0; the negative fraction counts eigenvalues below −ε_H‖H‖.
      node_tolerance: η ≥ 0, the rounding widening (eigenvalue units).
      support: (a, b), an interval that holds the spectrum, for the W1 bound; default the
        Ritz range (θ_min, θ_max) over all draws, which λ_min ≤ θ_min and θ_max ≤ λ_max
        leave slightly short of the spectrum until the extreme Ritz values converge.
      looks: J, the draw counts at which the run may have stopped (:func:`stopping_points`).
    """
    nodes, weights = check_quadrature(nodes, weights)
    check_int("dim", dim)
    check_choice("distribution", distribution, START_DISTRIBUTIONS)
    confidence = _check_confidence(confidence)
    tolerance = _check_tolerance(node_tolerance)
    longest = int(np.max(np.sum(np.isfinite(nodes), axis=1)))
    if longest > dim:
        raise ValueError(f"a draw has {longest} quadrature nodes, more than the dimension dim={dim}")
    grid = default_grid(nodes, weights, 0.0, DEFAULT_BAND_POINTS) if grid is None else _check_grid(grid)
    epsilon = sampling_half_width(dim, nodes.shape[0], distribution=distribution, confidence=confidence, looks=looks)

    def band(points: np.ndarray, strict: bool = False) -> tuple[np.ndarray, np.ndarray]:
        return _band(nodes, weights, points, epsilon, strict=strict, node_tolerance=tolerance)

    lower, upper = band(grid)
    low, high = spectral_range(nodes, weights)
    support = (low, high) if support is None else _check_support(support)
    ks, w1 = _band_figures(nodes, weights, band, tolerance, support)
    negative = negative_fraction(nodes, weights, threshold_relative=negative_threshold)
    below_low, below_high = band(np.array([negative.threshold]), strict=True)
    return SpectrumCertificate(
        grid=grid,
        estimate=gauss_cdf(nodes, weights, grid),
        lower=lower,
        upper=upper,
        confidence=confidence,
        distribution=distribution,
        dim=int(dim),
        draws=int(nodes.shape[0]),
        sampling_half_width=epsilon,
        ks_half_width=ks,
        w1_bound=w1,
        w1_support=(float(support[0]), float(support[1])),
        negative_threshold=negative.threshold,
        negative_fraction_bounds=(float(below_low[0]), float(below_high[0])),
        node_tolerance=tolerance,
    )


def cdf_band(
    nodes: np.ndarray,
    weights: np.ndarray,
    dim: int,
    points: np.ndarray,
    *,
    distribution: str = "gaussian",
    confidence: float = DEFAULT_CONFIDENCE,
    looks: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """The band (L, U) of :func:`certify` at ``points`` (float64[P], eigenvalue units): two
    float64[P] in [0, 1], from nodes/weights (D, m) of an operator of dimension ``dim``
    (``looks``: as for :func:`certify`).

    L and U are right-continuous step functions of t that change only at the nodes, so
    their values at the nodes and at one point left of them all are all their values.
    """
    nodes, weights = check_quadrature(nodes, weights)
    check_choice("distribution", distribution, START_DISTRIBUTIONS)
    epsilon = sampling_half_width(dim, nodes.shape[0], distribution=distribution, confidence=confidence, looks=looks)
    return _band(nodes, weights, _check_grid(points), epsilon)


@dataclass(frozen=True, eq=False)
class CertifiedRule:
    """A run's quadrature and what its band is for: nodes, weights float64 (D, m), the
    operator's dimension n, the start distribution, the band's confidence and J, the draw
    counts at which the run may have stopped (:func:`stopping_points`)."""

    nodes: np.ndarray
    weights: np.ndarray
    dim: int
    distribution: str = "gaussian"
    confidence: float = DEFAULT_CONFIDENCE
    looks: int = 1

    def band(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(L, U) float64[P] at ``points`` (:func:`cdf_band`)."""
        return cdf_band(
            self.nodes, self.weights, self.dim, points, distribution=self.distribution, confidence=self.confidence,
            looks=self.looks,
        )

    def breakpoints(self) -> np.ndarray:
        """The nodes, float64 ascending: where the band can change."""
        present = self.nodes[np.isfinite(self.nodes) & np.isfinite(self.weights)]
        return np.unique(present)


def band_gap(first: CertifiedRule, second: CertifiedRule) -> float:
    """max over t of the gap between two bands: max(0, L₁(t) − U₂(t), L₂(t) − U₁(t))
    (dimensionless, in [0, 1]), exact over all t.

    0 when the bands overlap everywhere. A positive gap says the two spectral CDFs differ
    at some t by at least that much, with probability ≥ c₁ + c₂ − 1 over both runs' start
    vectors (each band holds with its confidence c; 90% for two 95% bands). Both bands
    are right-continuous steps at their nodes, so the gap is evaluated at every node of
    either run and at one point left of them all.
    """
    breaks = np.unique(np.concatenate([first.breakpoints(), second.breakpoints()]))
    points = np.concatenate([[breaks[0] - max(1.0, abs(breaks[0]))], breaks])
    (low1, high1), (low2, high2) = first.band(points), second.band(points)
    return float(max(0.0, np.max(low1 - high2), np.max(low2 - high1)))


#: Draws before a target width is checked: a standard error over draws needs two.
MIN_TARGET_DRAWS = 2


@dataclass(frozen=True)
class WidthCheck:
    """Where a run stands against a target width X after ``draws`` draws (D).

    - ``sampling_half_width``: ε of :func:`sampling_half_width` for D draws (probability
      units), the sampling part of the band's half-width; compared with X as it is.
    - ``trace_relative_std_error``: the trace's standard error over |trace estimate|
      (dimensionless; inf when the estimate is 0); compared with X too.
    - ``met``: D ≥ :data:`MIN_TARGET_DRAWS` and both are ≤ X.
    """

    target: float
    draws: int
    sampling_half_width: float
    trace_relative_std_error: float

    @property
    def met(self) -> bool:
        return (
            self.draws >= MIN_TARGET_DRAWS
            and self.sampling_half_width <= self.target
            and self.trace_relative_std_error <= self.target
        )


def stopping_points(draws: int, block_size: int) -> int:
    """J: the draw counts at which a run drawing until a target width may stop, at most
    ``draws`` draws checked every ``block_size``: each multiple of B from
    :data:`MIN_TARGET_DRAWS` on below ``draws``, and ``draws`` itself."""
    check_int("draws", draws)
    check_int("block_size", block_size)
    checks = range(block_size * -(-MIN_TARGET_DRAWS // block_size), draws, block_size)
    return len(checks) + 1


def width_check(
    first_alphas: np.ndarray,
    first_betas: np.ndarray,
    dim: int,
    target: float,
    *,
    distribution: str = "gaussian",
    confidence: float = DEFAULT_CONFIDENCE,
    looks: int = 1,
) -> WidthCheck:
    """The :class:`WidthCheck` of D draws from their first Lanczos coefficients.

    Args:
      first_alphas: float64[D], α₀ = vᵀHv of each draw (eigenvalue units).
      first_betas: float64[D], β₁ of each draw (0 for a draw of one step), for the trace's
        standard error (:func:`~raylanczos.numerics.spectrum.trace_std_error`).
      dim: n, the operator's dimension.
      target: X > 0, for the band's sampling half-width (absolute, probability units) and
        for the trace's standard error relative to |n·mean α₀|.
      looks: J, the draw counts at which the run may stop (:func:`stopping_points`), for ε.
    """
    alphas = np.asarray(first_alphas, dtype=np.float64)
    if not (np.isfinite(target) and target > 0):
        raise ValueError(f"target must be a positive number, got {target!r}")
    trace = dim * float(alphas.mean())
    error = trace_std_error(first_betas, dim, distribution=distribution)
    relative = error / abs(trace) if trace != 0 else float("inf")
    epsilon = sampling_half_width(dim, alphas.size, distribution=distribution, confidence=confidence, looks=looks)
    return WidthCheck(float(target), int(alphas.size), epsilon, relative)


@dataclass(frozen=True, eq=False)
class DensityBand:
    """A pointwise band of the smoothed density over draws: ``density`` ± k·``std_error``.

    - ``grid``: float64[G] (eigenvalue units); ``density``: float64[G], φ(t), the mean over
      draws of each draw's smoothed density φ_d (per eigenvalue unit).
    - ``std_error``: float64[G], std_d(φ_d(t), ddof=1)/√D (NaN for one draw).
    - ``lower`` = max(φ − k·SE, 0) and ``upper`` = φ + k·SE, float64[G]; k = ``num_std_errors``.

    This measures the spread over start vectors at each t, not the quadrature's error; it
    is no certificate (the CDF band is).
    """

    grid: np.ndarray
    density: np.ndarray
    std_error: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    num_std_errors: float

    def arrays(self) -> dict[str, np.ndarray]:
        """The band's arrays for spectrum.npz: ``density_std_error``, ``density_lower``,
        ``density_upper`` (float64[G], on the density's own grid)."""
        return {"density_std_error": self.std_error, "density_lower": self.lower, "density_upper": self.upper}


def density_band(
    nodes: np.ndarray,
    weights: np.ndarray,
    grid: np.ndarray,
    sigma2: float,
    *,
    num_std_errors: float = DEFAULT_DENSITY_STD_ERRORS,
) -> DensityBand:
    """The pointwise band of :class:`DensityBand` for nodes/weights (D, m) on ``grid``,
    with the kernel's absolute variance ``sigma2`` (eigenvalue units², > 0)."""
    nodes, weights = check_quadrature(nodes, weights)
    grid = _check_grid(grid)
    if not (np.isfinite(num_std_errors) and num_std_errors > 0):
        raise ValueError(f"num_std_errors must be a positive number, got {num_std_errors!r}")
    per_draw = np.stack([smoothed_density(nodes[d], weights[d], grid, sigma2) for d in range(nodes.shape[0])])
    density = per_draw.mean(axis=0)
    draws = per_draw.shape[0]
    std_error = per_draw.std(axis=0, ddof=1) / np.sqrt(draws) if draws > 1 else np.full(grid.size, np.nan)
    return DensityBand(
        grid=grid,
        density=density,
        std_error=std_error,
        lower=np.maximum(density - num_std_errors * std_error, 0.0),
        upper=density + num_std_errors * std_error,
        num_std_errors=float(num_std_errors),
    )


# --------------------------------------------------------------------------- helpers


def _band(
    nodes: np.ndarray,
    weights: np.ndarray,
    points: np.ndarray,
    epsilon: float,
    *,
    strict: bool = False,
    node_tolerance: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(max(0, mean_d L_v − ε), min(1, mean_d U_v + ε)) at ``points``: two float64[P]."""
    lower, upper = draw_cdf_bounds(nodes, weights, points, strict=strict, node_tolerance=node_tolerance)
    return np.clip(lower.mean(axis=0) - epsilon, 0.0, 1.0), np.clip(upper.mean(axis=0) + epsilon, 0.0, 1.0)


def _sorted_rules(nodes: np.ndarray, weights: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Each draw's (θ ascending float64[k], cumulative weights float64[k + 1] from 0)."""
    for row_nodes, row_weights in zip(nodes, weights):
        present = np.isfinite(row_nodes) & np.isfinite(row_weights)
        order = np.argsort(row_nodes[present], kind="stable")
        theta = row_nodes[present][order]
        yield theta, np.concatenate([[0.0], np.cumsum(row_weights[present][order])])


def _band_figures(
    nodes: np.ndarray,
    weights: np.ndarray,
    band: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    tolerance: float,
    support: tuple[float, float],
) -> tuple[float, float]:
    """(KS half-width over all t, ∫ (U − L) over ``support``) of the step-function band.

    U − L changes only at the breakpoints θ ± η, and is right-continuous: its values are
    those at the breakpoints and one value left of them all.
    """
    present = nodes[np.isfinite(nodes) & np.isfinite(weights)]
    breaks = np.unique(np.concatenate([present - tolerance, present + tolerance]))
    left = breaks[0] - max(1.0, abs(breaks[0]))
    lower, upper = band(np.concatenate([[left], breaks]))
    ks = float(np.max(upper - lower)) / 2.0
    a, b = support
    inside = breaks[(breaks > a) & (breaks < b)]
    starts = np.concatenate([[a], inside])
    lower, upper = band(starts)
    w1 = float(np.sum((upper - lower) * np.diff(np.concatenate([starts, [b]]))))
    return ks, w1


def _check_grid(grid: np.ndarray) -> np.ndarray:
    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)):
        raise ValueError(f"grid must be a non-empty 1-D array of finite values, got shape {grid.shape}")
    return grid


def _check_confidence(confidence: float) -> float:
    if isinstance(confidence, bool) or not (isinstance(confidence, numbers.Real) and 0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be a probability in (0, 1), got {confidence!r}")
    return float(confidence)


def _check_tolerance(node_tolerance: float) -> float:
    if not (np.isfinite(node_tolerance) and node_tolerance >= 0):
        raise ValueError(f"node_tolerance must be finite and >= 0 (eigenvalue units), got {node_tolerance!r}")
    return float(node_tolerance)


def _check_support(support: tuple[float, float]) -> tuple[float, float]:
    a, b = (float(x) for x in support)
    if not (np.isfinite(a) and np.isfinite(b) and a < b):
        raise ValueError(f"support must be a finite interval (a, b) with a < b, got {support!r}")
    return a, b
