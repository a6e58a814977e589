"""From finished tridiagonals to the outputs a person reads: quadrature, density, statistics, plot.

Rendering and loading need no Ray and no framework: ``raylanczos density`` re-renders a
finished run (with another σ² or grid, into the run or another directory), and
:func:`load_result` reads one back (numbers and JSON only; nothing is unpickled).

Files of a rendered result (a directory or URI)::

    tridiag.npy     float64 (D, m, m), one tridiagonal per draw (written by the run)
    spectrum.npz    nodes (D, m), weights (D, m), steps (D,), grid (G,), density (G,),
                    sigma2 (absolute variance), sigma2_relative (NaN when not relative)
    summary.json    configuration, versions, statistics, timings
    density.png     the density on a log y-axis

A run with parts (blocks) writes these files in each part's sub-directory (``parts`` of
the top-level ``summary.json`` maps part name → sub-directory); its top level holds only
``summary.json`` (with ``parts`` and ``part_statistics``) and ``density.png``, the overlay
of the parts' densities.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raylanczos.config import DensityConfig
from raylanczos.numerics import spectrum
from raylanczos.outputs.plot import plot_density, plot_overlay
from raylanczos.outputs.store import OutputStore, json_writer, npy_writer, npz_writer

SIGMA2_UNITS = "sigma2 is an absolute variance (eigenvalue units squared)"
RENDERED_NAMES = ("spectrum.npz", "summary.json", "density.png")
#: The statistics of each part in a parts run's top-level ``part_statistics`` table
#: (summary keys): the blocks of a blocks run, or the points of a sweep.
PART_STATISTICS = ("lambda_max", "lambda_min", "trace_estimate", "negative_fraction", "negative_mass")


@dataclass(frozen=True)
class SpectrumResult:
    """A finished run (or one block or sweep point of it).

    Attributes:
      tridiagonals: float64 (D, m, m), zero-padded for draws that stopped early.
      steps: int (D,), Lanczos steps completed per draw.
      nodes, weights: float64 (D, m) Gauss quadrature (NaN / 0 padding).
      grid, density: float64 (G,), the smoothed density φ on its grid.
      sigma2: the absolute variance of the smoothing Gaussian (eigenvalue units²).
      summary: the contents of ``summary.json``.
      out: the output location (a directory or URI), or None.
      parts: the results of the run's blocks or sweep points, by name (empty otherwise).
    """

    tridiagonals: np.ndarray
    steps: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    grid: np.ndarray
    density: np.ndarray
    sigma2: float
    summary: dict[str, Any]
    out: str | None
    parts: dict[str, "SpectrumResult"] = field(default_factory=dict)


def render_spectrum(
    tridiagonals: list[tuple[np.ndarray, np.ndarray]],
    summary: dict[str, Any],
    out: OutputStore | None,
    density: DensityConfig = DensityConfig(),
) -> SpectrumResult:
    """Quadrature, density and statistics from tridiagonals; writes the rendered files when
    ``out`` is set (``tridiag.npy`` is the run's to write).

    ``summary`` must hold ``config.order`` and ``config.num_params`` (the operator's
    dimension); the statistics and the density's settings are added to a copy of it.
    """
    order = summary["config"]["order"]
    stacked = spectrum.stack_tridiagonals(tridiagonals, order)
    nodes, weights = spectrum.slq_quadrature(tridiagonals, order)
    grid, values, sigma2, settings = _density(stacked, nodes, weights, density)
    first_alphas = np.array([alpha[0] for alpha, _ in tridiagonals])
    stats = spectrum.summarize(
        nodes, weights, first_alphas, summary["config"]["num_params"], sigma2=sigma2, k=density.top_k,
        negative_threshold=density.negative_threshold,
    )
    summary = dict(summary, **dataclasses.asdict(stats), density=settings)
    steps = np.array([len(a) for a, _ in tridiagonals])
    if out is not None:
        relative = settings["sigma2_relative"]
        out.write(
            "spectrum.npz",
            npz_writer(
                nodes=nodes, weights=weights, steps=steps, grid=grid, density=values, sigma2=np.float64(sigma2),
                sigma2_relative=np.float64(np.nan if relative is None else relative),
            ),
        )
        out.write("summary.json", json_writer(summary))
        out.write("density.png", lambda handle: plot_density(grid, values, handle, title=plot_title(summary)))
    return SpectrumResult(stacked, steps, nodes, weights, grid, values, float(sigma2), summary, str(out) if out else None)


def render_parts(
    results: dict[str, SpectrumResult],
    paths: dict[str, str],
    summary: dict[str, Any],
    out: OutputStore | None,
    *,
    title: str | None = None,
    labels: dict[str, str] | None = None,
) -> SpectrumResult:
    """The top level of a run with parts (blocks, or a sweep's points): their table, and an
    overlay of their densities.

    ``results`` are the rendered parts by name, ``paths`` their sub-directories, and
    ``summary`` the run's summary without statistics of its own. ``title`` and ``labels``
    (legend label by part name) default to a blocks run's; a sweep's are kept in the
    summary, so that a re-render draws the same figure. Writes ``summary.json`` (``parts``,
    ``part_statistics``), ``statistics.csv`` and ``density.png`` when ``out`` is set. The
    returned result has empty arrays (no density of its own) and the parts in ``parts``.
    """
    table = [
        {"part": name, "dim": r.summary["config"]["num_params"], **{key: r.summary[key] for key in PART_STATISTICS}}
        for name, r in results.items()
    ]
    labels = labels or {
        name: f"block {part_label(r.summary)}: n={r.summary['config']['num_params']:,}, σ²={r.sigma2:.2g}"
        for name, r in results.items()
    }
    title = title or parts_title(summary)
    top = dict(summary, parts=dict(paths), part_labels=labels, parts_title=title, part_statistics=table)
    if out is not None:
        out.write("summary.json", json_writer(top))
        out.write("statistics.csv", lambda handle: handle.write(_csv(table).encode()))
        curves = [(labels[name], r.grid, r.density) for name, r in results.items()]
        out.write("density.png", lambda handle: plot_overlay(curves, handle, title=title))
    return parts_result(top, out, results)


def parts_result(summary: dict[str, Any], out: Any, parts: dict[str, SpectrumResult]) -> SpectrumResult:
    """The result of a parts run's top level: no arrays of its own, the parts by name."""
    empty = np.zeros((0,))
    return SpectrumResult(
        np.zeros((0, 0, 0)), empty.astype(int), np.zeros((0, 0)), np.zeros((0, 0)), empty, empty, float("nan"),
        summary, str(out) if out is not None else None, parts,
    )


def _density(
    stacked: np.ndarray, nodes: np.ndarray, weights: np.ndarray, density: DensityConfig
) -> tuple[np.ndarray, np.ndarray, float, dict[str, Any]]:
    """(grid, density, σ², the settings recorded in the summary) for the chosen convention."""
    if density.sigma2_original is not None:
        grid, values, sigma2 = spectrum.original_density(stacked, density.sigma2_original, density.grid_points)
        convention = "original: variance = sigma_squared * max(1, width of the grid), density normalised on the grid"
        relative = None
    else:
        if density.sigma2 is not None:
            sigma2, relative = density.sigma2, None
        else:
            sigma2 = spectrum.resolve_sigma2(nodes, weights, density.sigma2_relative)
            relative = density.sigma2_relative
        if density.grid_range is None:
            grid = spectrum.default_grid(nodes, weights, sigma2, density.grid_points)
        else:
            grid = np.linspace(density.grid_range[0], density.grid_range[1], density.grid_points)
        values = spectrum.smoothed_density(nodes, weights, grid, sigma2)
        convention = "raylanczos: sigma2 = sigma2_relative * (lambda_max - lambda_min)^2 unless given absolute"
    settings = {
        "sigma2": float(sigma2),
        "sigma2_relative": relative,
        "sigma2_original": density.sigma2_original,
        "convention": convention,
        "units": SIGMA2_UNITS,
        "grid_points": int(grid.size),
        "grid_min": float(grid[0]),
        "grid_max": float(grid[-1]),
    }
    return grid, values, float(sigma2), settings


def rerender(
    run: str | os.PathLike,
    density: DensityConfig = DensityConfig(),
    *,
    to: str | os.PathLike | None = None,
) -> SpectrumResult:
    """Recompute the density, plot and statistics of the finished run in ``run``.

    The run's files are only read; the rendered files go to ``to`` (default: the run
    itself), which then also gets a copy of the run's ``tridiag.npy``, so that it loads
    as a result of its own. A run of blocks or a sweep is re-rendered part by part.
    """
    source = OutputStore(run)
    target = OutputStore(to) if to is not None else source
    summary = source.load_json("summary.json")
    if to is not None:
        target.ensure_writable()
    else:
        _check_writable(source)
    paths = summary.get("parts")
    if paths:
        parts = {
            name: rerender(source.child(path).location, density, to=None if to is None else target.child(path).location)
            for name, path in paths.items()
        }
        if "sweep" in summary:
            return render_parts(parts, paths, summary, target, title=summary["parts_title"], labels=summary["part_labels"])
        return render_parts(parts, paths, summary, target)
    stacked = source.load_npy("tridiag.npy")
    if to is not None:
        target.write("tridiag.npy", npy_writer(stacked))
    tridiagonals = spectrum.split_tridiagonals(stacked, summary.get("steps_completed"))
    return render_spectrum(tridiagonals, summary, target, density)


def _csv(rows: list[dict[str, Any]]) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def _check_writable(store: OutputStore) -> None:
    try:
        store.ensure_writable()
    except OSError as err:
        raise PermissionError(f"{err}; write the re-rendered files elsewhere with --to DIR") from err


def load_result(out: str | os.PathLike) -> SpectrumResult:
    """A finished run's outputs, read back from ``out`` (numbers and JSON only).

    A run with parts (blocks) gives its top level, with no arrays of its own, and the
    parts' results in ``parts``.
    """
    store = OutputStore(out)
    summary = store.load_json("summary.json")
    if summary.get("parts"):
        parts = {name: load_result(store.child(path).location) for name, path in summary["parts"].items()}
        return parts_result(summary, store, parts)
    arrays = store.load_npz("spectrum.npz")
    stacked = store.load_npy("tridiag.npy")
    return SpectrumResult(
        stacked, arrays["steps"], arrays["nodes"], arrays["weights"], arrays["grid"], arrays["density"],
        float(arrays["sigma2"]), summary, str(store),
    )


OPERATOR_TITLES = {"hessian": "Hessian", "ggn": "Gauss–Newton"}


def parts_title(summary: dict[str, Any]) -> str:
    """``Hessian densities of the blocks of <problem>`` and the draws and steps (the overlay's title)."""
    config = summary["config"]
    operator = OPERATOR_TITLES.get(config.get("operator", "hessian"), config.get("operator", "hessian"))
    return (
        f"{operator} densities of the blocks of {config.get('problem', '')}\n"
        f"{_count(config['draws'], 'draw')} × up to {config['order']} steps per block, each its own σ²"
    )


def part_label(summary: dict[str, Any]) -> str:
    """A part's name, with its pattern when that differs: ``all_w (*/w)``; "" for a whole-model run."""
    name = summary.get("part", "")
    pattern = summary.get("block", {}).get("pattern", name)
    return name if pattern == name else f"{name} ({pattern})"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def plot_title(summary: dict[str, Any]) -> str:
    """``Hessian density of <problem>: n=…, D draws × m steps, σ²=…`` (and the block or point)."""
    config = summary["config"]
    operator = OPERATOR_TITLES.get(config.get("operator", "hessian"), config.get("operator", "hessian"))
    name = config.get("problem", "")
    part = f", block {part_label(summary)}" if summary.get("part") else ""
    settings = summary.get("density", {})
    relative = settings.get("sigma2_relative")
    sigma = f"σ²={settings.get('sigma2', float('nan')):.3g}" + (f" ({relative:g}·width²)" if relative else "")
    return (
        f"{operator} density of {name}{part}\n"
        f"n={config['num_params']:,}, {_count(len(summary['steps_completed']), 'draw')} × {config['order']} steps, {sigma}"
    )
