"""Several finished runs side by side: their densities on one log-y axis and a common grid,
and a table of their statistics (the comparison figures of Ghorbani et al., 2019).

Each run's density is evaluated again on the common grid from its own quadrature nodes,
weights and σ², so the curves are the runs' own densities, only sampled alike. No Ray.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from raylanczos.choices import check_int
from raylanczos.numerics import spectrum
from raylanczos.outputs.plot import plot_overlay
from raylanczos.outputs.record import PART_STATISTICS
from raylanczos.outputs.render import (
    PartsResult,
    SpectrumResult,
    load_result,
    operator_title,
)
from raylanczos.outputs.store import OutputStore

#: The statistics columns of the comparison table (summary keys): those of a parts run's table.
COLUMNS = PART_STATISTICS
MIN_RUNS, MAX_RUNS = 2, 10


def compare_runs(
    runs: Sequence[str | os.PathLike],
    figure: str | os.PathLike,
    *,
    labels: Sequence[str] | None = None,
    grid_points: int = spectrum.DEFAULT_GRID_POINTS,
) -> str:
    """Overlay the densities of 2 to 10 ``runs`` (directories or URIs) in the PNG ``figure``
    and write their statistics to ``figure`` with the suffix ``.csv``; returns the table as
    printed text, one row per run.

    The curves share one grid of ``grid_points`` over the union of the runs' grids, each
    evaluated from the run's own nodes, weights and σ². A run with no density (not a
    finished run, or a blocks run's top level, whose blocks are runs of their own) is
    refused, naming it.
    """
    if not MIN_RUNS <= len(runs) <= MAX_RUNS:
        raise ValueError(f"compare takes {MIN_RUNS} to {MAX_RUNS} runs, got {len(runs)}")
    if labels is not None and len(labels) != len(runs):
        raise ValueError(f"give one label per run: {len(runs)} runs, {len(labels)} labels")
    check_int("grid_points", grid_points, minimum=2)
    figure = Path(figure)
    if figure.suffix.lower() != ".png":
        raise ValueError(f"the figure is written as PNG and must end in .png, got {os.fspath(figure)!r}")
    results, refused, cause = [], [], None
    for run in runs:
        try:
            result = load_result(run)
        except (OSError, ValueError) as err:
            refused.append(f"{os.fspath(run)} (not a finished run: {err})")
            cause = cause or err
            continue
        if isinstance(result, PartsResult):
            parts = ", ".join(OutputStore(run).child(path).location for path in result.record.parts.values())
            what = "a blocks run's top level; compare its blocks" if result.record.sweep is None else "a sweep's top level; compare its points"
            refused.append(f"{os.fspath(run)} ({what}: {parts})")
            continue
        results.append(result)
    if refused:
        raise ValueError(f"{len(refused)} of {len(runs)} runs have no density to compare: {'; '.join(refused)}") from cause
    names = list(labels) if labels is not None else default_labels(runs, results)
    low = min(float(r.grid[0]) for r in results)
    high = max(float(r.grid[-1]) for r in results)
    grid = np.linspace(low, high, grid_points)
    curves = [(name, grid, spectrum.smoothed_density(r.nodes, r.weights, grid, r.sigma2)) for name, r in zip(names, results)]
    operators = {r.record.config.operator for r in results}
    what = " and ".join(operator_title(o) for o in sorted(operators))
    figure.parent.mkdir(parents=True, exist_ok=True)
    plot_overlay(curves, figure, title=f"{what} densities of {len(results)} runs\n(one grid; each run's own σ²)")
    header = ["run", "num_params", *COLUMNS]
    rows = [
        [name, int(r.record.config.num_params), *(_number(getattr(r.record.statistics, key, None)) for key in COLUMNS)]
        for name, r in zip(names, results)
    ]
    with open(figure.with_suffix(".csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return format_table(header, rows) + f"\n→ {figure} and {figure.with_suffix('.csv')}"


def default_labels(runs: Sequence[str | os.PathLike], results: Sequence[SpectrumResult]) -> list[str]:
    """Each run's directory name and operator, e.g. ``step=1000 (Hessian)``; the whole path
    as given for runs whose directory names coincide."""
    paths = [os.fspath(run).split("?", 1)[0].rstrip("/") for run in runs]
    names = [path.rsplit("/", 1)[-1] for path in paths]
    names = [path if names.count(name) > 1 else name for path, name in zip(paths, names)]
    labels = []
    for name, result in zip(names, results):
        part = result.record.part
        labels.append(f"{name} ({operator_title(result.record.config.operator)}{', block ' + part.name if part else ''})")
    return labels


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; integers in full, other numbers with 6 significant digits."""
    cells = [list(header)] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    out = io.StringIO()
    for row in cells:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() + "\n")
    return out.getvalue().rstrip("\n")


def _cell(value: Any) -> str:
    if isinstance(value, str):
        return value
    return f"{value:d}" if isinstance(value, int) else f"{value:.6g}"


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else float("nan")
