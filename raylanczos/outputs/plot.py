"""Spectral density plots, on a log y-axis as in Ghorbani et al. (2019).

Figures are drawn on a :class:`matplotlib.figure.Figure` of their own, never through
``pyplot``, so plotting leaves the caller's backend and open figures alone.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import BinaryIO, Sequence

import numpy as np

#: One curve of an overlay: (legend label, grid float64[G], density float64[G]).
Curve = tuple[str, np.ndarray, np.ndarray]

#: Line styles cycled with the ten ``tab10`` colours, so curves stay apart in greyscale too.
LINE_STYLES = ("-", "--", "-.", ":")


@dataclass(frozen=True)
class CdfBand:
    """The spectral CDF's estimate and certified band, float64[G] each on ``grid``
    (eigenvalue units), holding at ``confidence``."""

    grid: np.ndarray
    estimate: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    confidence: float


def plot_density(
    grid: np.ndarray,
    density: np.ndarray,
    target: str | os.PathLike | BinaryIO,
    *,
    title: str = "Hessian eigenvalue density",
    floor_ratio: float = 1e-10,
    band: tuple[np.ndarray, np.ndarray] | None = None,
    cdf: CdfBand | None = None,
) -> None:
    """Write a PNG of ``density`` over ``grid`` (both float64[G]) to a path or binary file.

    Values below ``floor_ratio`` · max(density) are clipped so the log axis stays readable.
    ``band``: (lower, upper) float64[G], shaded around the density (its spread over draws);
    ``cdf``: a second panel beside it, the spectral CDF's estimate inside its certified band.
    """
    from matplotlib.figure import Figure

    floor = float(np.max(density)) * floor_ratio
    fig = Figure(figsize=(12 if cdf is not None else 7, 4), dpi=120, layout="constrained")
    ax = fig.add_subplot(1, 2, 1) if cdf is not None else fig.add_subplot()
    if band is not None:
        lower, upper = (np.maximum(np.nan_to_num(edge, nan=floor), floor) for edge in band)
        ax.fill_between(grid, lower, upper, color="tab:blue", alpha=0.25, linewidth=0, label="± 2 SE over draws")
    ax.semilogy(grid, np.maximum(density, floor), color="tab:blue", linewidth=1.0, label="density")
    _label_log_axes(ax, floor, xlabel="eigenvalue λ", title=title)
    if band is not None:
        ax.legend(loc="upper right", fontsize="small")
    if cdf is not None:
        right = fig.add_subplot(1, 2, 2)
        right.fill_between(cdf.grid, cdf.lower, cdf.upper, step="post", color="tab:orange", alpha=0.3, linewidth=0,
                           label=f"certified band ({100 * cdf.confidence:g}%)")
        right.step(cdf.grid, cdf.estimate, where="post", color="tab:orange", linewidth=1.0, label="SLQ estimate")
        right.set_xlabel("eigenvalue λ")
        right.set_ylabel("fraction of eigenvalues ≤ λ")
        right.set_ylim(-0.02, 1.02)
        right.set_title("spectral CDF", fontsize="medium")
        right.grid(True, alpha=0.3)
        right.legend(loc="lower right", fontsize="small")
    fig.savefig(target, format="png")


def plot_overlay(
    curves: Sequence[Curve],
    target: str | os.PathLike | BinaryIO,
    *,
    title: str,
    xlabel: str = "eigenvalue λ",
    floor_ratio: float = 1e-10,
) -> None:
    """Write a PNG of several densities on one log y-axis, with a legend, to a path or binary file.

    ``curves`` holds ``(label, grid float64[G_i], density float64[G_i])``; the grids may
    differ (runs, per-layer blocks, training checkpoints). Values below ``floor_ratio`` ·
    the largest density of all curves are clipped to that floor. Curves differ by colour
    (ten) and line style (four); the legend sits outside the axes, so it hides no curve.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    checked = _check_curves(curves)
    floor = max(float(np.max(density)) for _, _, density in checked) * floor_ratio
    fig = Figure(figsize=(8, 4), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    colours = itertools.cycle(colormaps["tab10"].colors)
    for (label, grid, density), colour, style in zip(checked, colours, itertools.cycle(LINE_STYLES)):
        ax.semilogy(grid, np.maximum(density, floor), color=colour, linestyle=style, linewidth=1.2, label=label)
    _label_log_axes(ax, floor, xlabel=xlabel, title=title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize="small")
    fig.savefig(target, format="png", bbox_inches="tight")


def _label_log_axes(ax, floor: float, *, xlabel: str, title: str) -> None:
    ax.set_ylim(bottom=floor)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density (log scale)")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)


def _check_curves(curves: Sequence[Curve]) -> list[Curve]:
    """``curves`` with float64 arrays; a ``ValueError`` quoting the curve that is malformed."""
    if len(curves) == 0:
        raise ValueError("plot_overlay needs at least one (label, grid, density) curve, got an empty sequence")
    checked = []
    for index, curve in enumerate(curves):
        if len(curve) != 3:
            raise ValueError(f"curve {index} must be (label, grid, density), got {len(curve)} items")
        label, grid, density = curve
        grid, density = np.asarray(grid, dtype=np.float64), np.asarray(density, dtype=np.float64)
        if grid.ndim != 1 or grid.shape != density.shape or grid.size == 0:
            raise ValueError(
                f"curve {index} ({label!r}): grid and density must be non-empty 1-D arrays of one length, "
                f"got shapes {grid.shape} and {density.shape}"
            )
        checked.append((str(label), grid, density))
    return checked
