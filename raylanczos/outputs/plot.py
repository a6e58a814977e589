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

from raylanczos.numerics.logdensity import LogDensity

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


#: Grid widths (largest over smallest) above which the curves of an overlay get a panel
#: each: on one shared axis the narrowest would fill a tenth of the plot or less.
PANEL_SCALE_RATIO = 10.0
#: Panels per row in small multiples.
PANEL_COLUMNS = 3
#: An overlay's floor, relative to its largest density: higher than a single density's,
#: so that the gaps between a curve's outlier peaks stop sooner and the curves stay apart.
OVERLAY_FLOOR_RATIO = 1e-7


#: One run's band in an overlay's CDF panel: (legend label, band).
LabelledBand = tuple[str, CdfBand]
#: The width of an overlay's CDF panel, in inches.
CDF_PANEL_WIDTH = 5.0


def plot_overlay(
    curves: Sequence[Curve],
    target: str | os.PathLike | BinaryIO,
    *,
    title: str,
    xlabel: str = "eigenvalue λ",
    floor_ratio: float = OVERLAY_FLOOR_RATIO,
    bands: Sequence[LabelledBand] = (),
    bands_note: str = "",
) -> None:
    """Write a PNG of several densities to a path or binary file: one log y-axis with a
    legend, or small multiples when their scales differ, and with ``bands`` a CDF panel
    beside them (:func:`overlay_figure`)."""
    overlay_figure(curves, title=title, xlabel=xlabel, floor_ratio=floor_ratio, bands=bands, bands_note=bands_note).savefig(
        target, format="png", bbox_inches="tight"
    )


def extent(grid: np.ndarray, density: np.ndarray, floor_ratio: float = OVERLAY_FLOOR_RATIO) -> tuple[float, float]:
    """The eigenvalue range a curve occupies: the first and last grid points where its
    density reaches ``floor_ratio`` · its own maximum (a grid shared with wider curves,
    as ``compare`` draws them, is mostly empty for a narrow one)."""
    shown = np.flatnonzero(density >= floor_ratio * float(np.max(density)))
    return float(grid[shown[0]]), float(grid[shown[-1]])


def wants_panels(curves: Sequence[Curve], scale_ratio: float = PANEL_SCALE_RATIO) -> bool:
    """Whether ``curves`` need a panel each: the widths of their :func:`extent` differ by
    more than ``scale_ratio`` (per-layer blocks of very different curvature, say)."""
    if len(curves) < 2:
        return False
    widths = [np.subtract(*extent(grid, density)[::-1]) for _, grid, density in curves]
    return max(widths) > scale_ratio * min(widths)


def overlay_figure(
    curves: Sequence[Curve],
    *,
    title: str,
    xlabel: str = "eigenvalue λ",
    floor_ratio: float = OVERLAY_FLOOR_RATIO,
    bands: Sequence[LabelledBand] = (),
    bands_note: str = "",
):
    """The :class:`~matplotlib.figure.Figure` of :func:`plot_overlay`.

    ``curves`` holds ``(label, grid float64[G_i], density float64[G_i])``; the grids may
    differ (runs, per-layer blocks, training checkpoints). Values below ``floor_ratio`` ·
    the largest density of all curves are clipped to that floor. Curves are solid lines
    in the ten ``tab10`` colours (line styles vary only past ten curves).

    When :func:`wants_panels`, each curve gets a panel of its own (small multiples,
    :data:`PANEL_COLUMNS` to a row, titled by the label): each its own eigenvalue range
    (its :func:`extent`), all one density scale, so that a narrow spectrum is not squashed
    beside a wide one.
    Otherwise the curves share one axis, with the legend outside it, hiding no curve.

    ``bands``: ``(label, CdfBand)`` per run that has one; they share a CDF panel to the
    right (each band shaded, its estimate stepped, in its curve's colour when the labels
    match), titled with ``bands_note`` (the gap between them, say).
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    checked = _check_curves(curves)
    tab10 = colormaps["tab10"].colors
    colours = {label: colour for (label, _, _), colour in zip(checked, itertools.cycle(tab10))}
    styles = [LINE_STYLES[(index // len(tab10)) % len(LINE_STYLES)] for index in range(len(checked))]
    panels = wants_panels(checked)
    columns = min(PANEL_COLUMNS, len(checked))
    width, height = (3.6 * columns, 2.8 * -(-len(checked) // columns) + 0.6) if panels else (8.0, 4.0)
    fig = Figure(figsize=(width + (CDF_PANEL_WIDTH if bands else 0.0), height), dpi=120, layout="constrained")
    area = fig
    if bands:
        area, right = fig.subfigures(1, 2, width_ratios=[width, CDF_PANEL_WIDTH])
        _draw_bands(right.add_subplot(), bands, colours, xlabel=xlabel, note=bands_note)
    draw = _draw_panels if panels else _draw_shared
    draw(area, checked, [colours[label] for label, _, _ in checked], styles, title=title, xlabel=xlabel, floor_ratio=floor_ratio)
    return fig


def _draw_shared(area, checked: list[Curve], colours, styles, *, title: str, xlabel: str, floor_ratio: float) -> None:
    """All curves on one log axis of ``area`` (a figure or subfigure), the legend outside it."""
    floor = max(float(np.max(density)) for _, _, density in checked) * floor_ratio
    ax = area.add_subplot()
    for (label, grid, density), colour, style in zip(checked, colours, styles):
        ax.semilogy(grid, np.maximum(density, floor), color=colour, linestyle=style, linewidth=1.0, label=label)
    _label_log_axes(ax, floor, xlabel=xlabel, title=title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize="small")


def _draw_panels(area, checked: list[Curve], colours, styles, *, title: str, xlabel: str, floor_ratio: float) -> None:
    """A panel per curve in ``area``, each its own eigenvalue range, one density scale."""
    floor = max(float(np.max(density)) for _, _, density in checked) * floor_ratio
    columns = min(PANEL_COLUMNS, len(checked))
    rows = -(-len(checked) // columns)
    axes = area.subplots(rows, columns, sharey=True, squeeze=False).ravel()
    top = max(float(np.max(density)) for _, _, density in checked) * 2.0  # headroom on the log axis
    for ax, (label, grid, density), colour, style in zip(axes, checked, colours, styles):
        ax.semilogy(grid, np.maximum(density, floor), color=colour, linestyle=style, linewidth=1.0)
        low, high = extent(grid, density, floor_ratio)
        ax.set_xlim(low - 0.03 * (high - low), high + 0.03 * (high - low))
        ax.set_ylim(floor, top)
        ax.set_title(label, fontsize="small")
        ax.grid(True, which="major", alpha=0.3)
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3))
    for ax in axes[len(checked):]:
        ax.set_visible(False)
    for ax in axes[:len(checked)][-columns:]:
        ax.set_xlabel(xlabel)
    for ax in axes[::columns]:
        ax.set_ylabel("density (log scale)")
    area.suptitle(f"{title}\n(a panel each: their eigenvalue ranges differ more than {PANEL_SCALE_RATIO:g}-fold)")


def _draw_bands(ax, bands: Sequence[LabelledBand], colours: dict, *, xlabel: str, note: str) -> None:
    """The runs' certified CDF bands and estimates on one axis, each in its curve's colour."""
    from matplotlib import colormaps

    spare = itertools.cycle(colormaps["tab10"].colors)
    for label, band in bands:
        colour = colours.get(label) or next(spare)
        ax.fill_between(band.grid, band.lower, band.upper, step="post", color=colour, alpha=0.25, linewidth=0,
                        label=f"{label}: band ({100 * band.confidence:g}%)")
        ax.step(band.grid, band.estimate, where="post", color=colour, linewidth=1.0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of eigenvalues ≤ λ")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("spectral CDFs and certified bands" + (f"\n{note}" if note else ""), fontsize="medium")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")


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
