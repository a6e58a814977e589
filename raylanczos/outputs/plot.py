"""Spectral density plots, on a log y-axis as in Ghorbani et al. (2019).

Figures are drawn on a :class:`matplotlib.figure.Figure` of their own, never through
``pyplot``, so plotting leaves the caller's backend and open figures alone.
"""

from __future__ import annotations

import itertools
import os
from typing import BinaryIO, Sequence

import numpy as np

from raylanczos.numerics.logdensity import LogDensity

#: One curve of an overlay: (legend label, grid float64[G], density float64[G]).
Curve = tuple[str, np.ndarray, np.ndarray]

#: Line styles cycled with the ten ``tab10`` colours, so curves stay apart in greyscale too.
LINE_STYLES = ("-", "--", "-.", ":")


def plot_density(
    grid: np.ndarray,
    density: np.ndarray,
    target: str | os.PathLike | BinaryIO,
    *,
    title: str = "Hessian eigenvalue density",
    floor_ratio: float = 1e-10,
) -> None:
    """Write a PNG of ``density`` over ``grid`` (both float64[G]) to a path or binary file.

    Values below ``floor_ratio`` · max(density) are clipped so the log axis stays readable.
    """
    from matplotlib.figure import Figure

    floor = float(np.max(density)) * floor_ratio
    fig = Figure(figsize=(7, 4), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    ax.semilogy(grid, np.maximum(density, floor), color="tab:blue", linewidth=1.0)
    _label_log_axes(ax, floor, xlabel="eigenvalue λ", title=title)
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


def plot_log_density(
    log: LogDensity,
    target: str | os.PathLike | BinaryIO,
    *,
    title: str = "Hessian eigenvalue density, log scale",
    reference: LogDensity | None = None,
    reference_label: str = "exact",
    floor_ratio: float = 1e-4,
    outliers: Sequence[float] = (),
) -> None:
    """Write a PNG of a log-scale density (:mod:`raylanczos.numerics.logdensity`) to a path or binary file.

    The x axis is symmetric-log in λ: the positive part φ₊ at λ = 10^u, the negative part
    φ₋ at λ = −10^u, and between them a linear band one decade wide around 0 that holds the
    bulk at zero (|λ| ≤ τ), drawn as one marked stem whose height is its mass, not as a
    spike of the smoothed density. The y axis is the density per decade, on a log scale, so
    each side's area (in decades) is its mass; values below ``floor_ratio`` · the highest
    are left out. ``reference`` (another density on the same conventions, an exact one,
    say) is drawn dashed, in black. ``outliers`` (a deflated run's eigenvalues) are marked
    as spikes with a marker on top.
    """
    from matplotlib.figure import Figure

    curves = [(log, None)] + ([(reference, reference_label)] if reference is not None else [])
    highest = max(max(float(np.max(c.positive)), float(np.max(c.negative)), c.zero_mass) for c, _ in curves)
    floor = highest * floor_ratio
    low = min(float(c.grid[0]) for c, _ in curves)
    high = max(float(c.grid[-1]) for c, _ in curves)
    fig = Figure(figsize=(8.5, 4.2), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    ax.set_xscale("symlog", linthresh=10.0**low, linscale=1.0)
    ax.set_yscale("log")
    for curve, label in curves:
        x = 10.0 ** curve.grid
        style, width = ("-", 1.4) if label is None else ("--", 1.0)
        prefix = "" if label is None else f"{label}, "
        for sign, values, mass, colour, side in (
            (1.0, curve.positive, curve.positive_mass, "tab:blue", "λ > τ"),
            (-1.0, curve.negative, curve.negative_mass, "tab:red", "λ < −τ"),
        ):
            if mass > 0:
                shown = np.where(values >= floor, values, np.nan)
                ax.plot(sign * x, shown, color=colour if label is None else "black", linestyle=style, linewidth=width,
                        label=f"{prefix}{side}: mass {mass:.3g}")
        if curve.zero_mass > 0:
            colour = "tab:grey" if label is None else "black"
            ax.vlines(0.0, floor, curve.zero_mass, color=colour, linestyle=style, linewidth=2.5 if label is None else 1.0)
            ax.plot([0.0], [curve.zero_mass], marker="D" if label is None else "o", color=colour, linestyle="none",
                    fillstyle="full" if label is None else "none",
                    label=f"{prefix}|λ| ≤ τ = {curve.zero_threshold:.2g}: mass {curve.zero_mass:.3g}")
    _mark_outliers(ax, outliers, floor, highest * 2.0)
    _symmetric_decade_ticks(ax, low, high)
    ax.set_ylim(bottom=floor, top=highest * 3.0)
    ax.set_xlabel("eigenvalue λ (symmetric log scale; the band around 0 holds |λ| ≤ τ)")
    ax.set_ylabel("density per decade of |λ| (log scale)")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize="small")
    fig.savefig(target, format="png", bbox_inches="tight")


def plot_deflated_density(
    grid: np.ndarray,
    density: np.ndarray,
    outliers: Sequence[float],
    target: str | os.PathLike | BinaryIO,
    *,
    title: str = "Hessian eigenvalue density",
    floor_ratio: float = 1e-10,
) -> None:
    """:func:`plot_density` of a deflated run: the density (its outliers smoothed with the
    rest), and each deflated eigenvalue in ``outliers`` marked as a spike with a marker on top."""
    from matplotlib.figure import Figure

    highest = float(np.max(density))
    floor = highest * floor_ratio
    fig = Figure(figsize=(7, 4), dpi=120, layout="constrained")
    ax = fig.add_subplot()
    ax.semilogy(grid, np.maximum(density, floor), color="tab:blue", linewidth=1.0, label="density")
    _mark_outliers(ax, outliers, floor, highest * 3.0)
    _label_log_axes(ax, floor, xlabel="eigenvalue λ", title=title)
    ax.set_ylim(top=highest * 10.0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize="small")
    fig.savefig(target, format="png", bbox_inches="tight")


def _mark_outliers(ax, outliers: Sequence[float], floor: float, top: float) -> None:
    """Deflated eigenvalues as thin spikes from ``floor`` to ``top``, a marker on each."""
    if len(outliers) == 0:
        return
    values = np.asarray(outliers, dtype=np.float64)
    ax.vlines(values, floor, top, color="tab:orange", linewidth=0.8, alpha=0.8)
    ax.plot(values, np.full(values.size, top), marker="v", color="tab:orange", linestyle="none",
            label=f"{values.size} deflated eigenvalue{'s' if values.size != 1 else ''}")


def _symmetric_decade_ticks(ax, low: float, high: float, per_side: int = 5) -> None:
    """Ticks at ±10^k, k every few decades (at most ``per_side`` + 1 a side), and at 0."""
    first, last = int(np.ceil(low)), int(np.floor(high))
    step = max(1, int(np.ceil((last - first + 1) / per_side)))
    exponents = list(range(last, first - 1, -step))[::-1]
    ticks = [-(10.0**k) for k in exponents[::-1]] + [0.0] + [10.0**k for k in exponents]
    labels = [f"$-10^{{{k}}}$" for k in exponents[::-1]] + ["0"] + [f"$10^{{{k}}}$" for k in exponents]
    ax.set_xticks(ticks, labels)
    ax.set_xticks([], minor=True)


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
