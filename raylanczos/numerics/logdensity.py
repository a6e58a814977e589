"""Log-scale spectral densities: the spectrum's positive and negative parts in log₁₀|λ|.

Curvature spectra span orders of magnitude (a few outliers at 1e2, a bulk down to 1e-6),
which a density on a linear axis shows as one spike at 0 and a few specks. As in Papyan's
log-spectral densities (JMLR 2020) and curvlinops' ``lanczos_approximate_log_spectrum``,
the kernel is applied in u = log₁₀|λ| instead, to the positive and the negative parts
apart: for D draws of Gauss quadrature (θ_dj, w_dj),

    φ₊(u) = (1/D) Σ_d Σ_{θ_dj > τ}  w_dj · N(u; log₁₀ θ_dj, s²),
    φ₋(u) = (1/D) Σ_d Σ_{θ_dj < −τ} w_dj · N(u; log₁₀|θ_dj|, s²),

with s² a variance in decades² and τ = ε·‖H‖ the threshold below which |θ| counts as the
bulk at zero, whose mass (1/D) Σ_{|θ| ≤ τ} w is reported as a number rather than smoothed
(on a log axis it would sit at −∞). φ± are densities per decade: ∫ φ₊ du is the mass above
τ, ∫ φ₋ du the mass below −τ, and the three masses add up to 1. numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raylanczos.numerics.spectrum import smoothed_density, spectral_range

#: s², the kernel's variance in decades² (s = 0.1 decade: a factor 1.26 in |λ|).
DEFAULT_LOG_SIGMA2 = 1e-2
#: ε of τ = ε·‖H‖: Ritz values with |θ| ≤ τ are the bulk at zero. Float64 products resolve
#: eigenvalues down to about 1e-14·‖H‖, float32 products to about 1e-7·‖H‖ (docs/benchmarks.md):
#: below that a Ritz value's magnitude is rounding, and a float32 run shows it as a shoulder
#: near 1e-7·‖H‖ unless ε is raised to it.
DEFAULT_LOG_ZERO_THRESHOLD = 1e-10
#: The grid's margin beyond the extreme |θ|, in kernel standard deviations.
GRID_MARGIN_SIGMAS = 5.0


@dataclass(frozen=True)
class LogDensity:
    """A log-scale density (see the module docstring).

    Attributes:
      grid: float64[G], u = log₁₀|λ| (decades), shared by both parts.
      positive, negative: float64[G], φ₊ and φ₋ per decade.
      positive_mass, negative_mass, zero_mass: the quadrature mass above τ, below −τ and
        within [−τ, τ] (dimensionless; they add up to 1).
      zero_threshold: τ = ε·‖H‖ (eigenvalue units); ``zero_threshold_relative``: ε.
      sigma2: s², the kernel's variance (decades²).
    """

    grid: np.ndarray
    positive: np.ndarray
    negative: np.ndarray
    positive_mass: float
    negative_mass: float
    zero_mass: float
    zero_threshold: float
    zero_threshold_relative: float
    sigma2: float

    def side_integrals(self) -> tuple[float, float]:
        """(∫ φ₊ du, ∫ φ₋ du) over the grid by the trapezoid rule: the two masses, to the
        grid's resolution (the grid covers every node with 5σ margins)."""
        return float(np.trapezoid(self.positive, self.grid)), float(np.trapezoid(self.negative, self.grid))


def log_density(
    nodes: np.ndarray,
    weights: np.ndarray,
    *,
    sigma2: float = DEFAULT_LOG_SIGMA2,
    zero_threshold_relative: float = DEFAULT_LOG_ZERO_THRESHOLD,
    grid_points: int = 2000,
    grid_range: tuple[float, float] | None = None,
) -> LogDensity:
    """φ₊, φ₋ and the three masses of a quadrature (nodes, weights float64 (D, m), NaN/0 padding).

    Args:
      sigma2: s², the kernel's variance in decades² (> 0).
      zero_threshold_relative: ε ≥ 0; τ = ε·‖H‖ with ‖H‖ = max |θ| over all draws.
      grid_points: G ≥ 2.
      grid_range: (lowest, highest) u in decades; None: the extreme log₁₀|θ| beyond τ
        with 5σ margins.
    """
    if not (np.isfinite(sigma2) and sigma2 > 0):
        raise ValueError(f"sigma2 must be a finite variance > 0 (decades²), got {sigma2!r}")
    if not (np.isfinite(zero_threshold_relative) and zero_threshold_relative >= 0):
        raise ValueError(f"zero_threshold_relative must be finite and >= 0, got {zero_threshold_relative!r}")
    if grid_points < 2:
        raise ValueError(f"a grid needs at least 2 points, got {grid_points!r}")
    nodes = np.atleast_2d(np.asarray(nodes, dtype=np.float64))
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    draws = nodes.shape[0]
    low, high = spectral_range(nodes, weights)
    threshold = zero_threshold_relative * max(abs(low), abs(high))
    present = np.isfinite(nodes) & np.isfinite(weights)
    values = np.where(present, nodes, 0.0)
    above = present & (values > threshold)
    below = present & (values < -threshold)
    magnitudes = np.log10(np.where(above | below, np.abs(values), 1.0))
    if grid_range is None:
        kept = magnitudes[above | below]
        margin = GRID_MARGIN_SIGMAS * np.sqrt(sigma2)
        ends = (kept.min() - margin, kept.max() + margin) if kept.size else (np.log10(threshold or 1.0) - 1.0, 1.0)
    else:
        ends = grid_range
        if not ends[0] < ends[1]:
            raise ValueError(f"grid_range must be increasing, got {grid_range!r}")
    grid = np.linspace(ends[0], ends[1], grid_points)

    def side(mask: np.ndarray) -> np.ndarray:
        if not mask.any():
            return np.zeros_like(grid)
        return smoothed_density(np.where(mask, magnitudes, np.nan), np.where(mask, weights, 0.0), grid, sigma2)

    return LogDensity(
        grid=grid,
        positive=side(above),
        negative=side(below),
        positive_mass=float(np.sum(weights[above]) / draws),
        negative_mass=float(np.sum(weights[below]) / draws),
        zero_mass=float(np.sum(weights[present & ~above & ~below]) / draws),
        zero_threshold=float(threshold),
        zero_threshold_relative=float(zero_threshold_relative),
        sigma2=float(sigma2),
    )
