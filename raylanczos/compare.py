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

from raylanczos import spectrum
from raylanczos.plot import plot_overlay
from raylanczos.render import OPERATOR_TITLES, SpectrumResult, load_result

#: The statistics columns of the comparison table (summary keys).
COLUMNS = ("lambda_max", "lambda_min", "trace_estimate", "negative_fraction", "negative_mass")
MAX_RUNS = 10


def compare_runs(
    runs: Sequence[str | os.PathLike],
    figure: str | os.PathLike,
    *,
    labels: Sequence[str] | None = None,
    grid_points: int = spectrum.DEFAULT_GRID_POINTS,
) -> str:
    """Overlay the densities of ``runs`` in the PNG ``figure`` and write their statistics
    to ``figure`` with the suffix ``.csv``; returns the table as printed text.

    A run with no density (not a finished run, or a blocks run's top level, whose blocks
    are runs of their own) is refused, naming it.
    """
    if not 1 <= len(runs) <= MAX_RUNS:
        raise ValueError(f"compare takes 1 to {MAX_RUNS} runs, got {len(runs)}")
    if labels is not None and len(labels) != len(runs):
        raise ValueError(f"give one label per run: {len(runs)} runs, {len(labels)} labels")
    results = []
    for run in runs:
        try:
            result = load_result(run)
        except (OSError, ValueError) as err:
            raise ValueError(f"{run} is not a finished run with a density: {err}") from err
        if result.density.size == 0:
            parts = ", ".join(f"{os.fspath(run)}/{path}" for path in result.summary.get("parts", {}).values())
            raise ValueError(f"{run} has no density of its own; compare its parts instead: {parts}")
        results.append(result)
    names = list(labels) if labels is not None else [default_label(run, r) for run, r in zip(runs, results)]
    low = min(float(r.grid[0]) for r in results)
    high = max(float(r.grid[-1]) for r in results)
    grid = np.linspace(low, high, grid_points)
    curves = [(name, grid, spectrum.smoothed_density(r.nodes, r.weights, grid, r.sigma2)) for name, r in zip(names, results)]
    operators = {r.summary["config"].get("operator", "hessian") for r in results}
    what = " and ".join(OPERATOR_TITLES.get(o, o) for o in sorted(operators))
    figure = Path(figure)
    figure.parent.mkdir(parents=True, exist_ok=True)
    plot_overlay(curves, figure, title=f"{what} densities of {len(results)} runs")
    rows = [[name, *(_number(r.summary.get(key)) for key in COLUMNS)] for name, r in zip(names, results)]
    with open(figure.with_suffix(".csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run", *COLUMNS])
        writer.writerows(rows)
    return format_table(["run", *COLUMNS], rows) + f"\n→ {figure} and {figure.with_suffix('.csv')}"


def default_label(run: str | os.PathLike, result: SpectrumResult) -> str:
    """The run directory's name and the operator, e.g. ``step=1000 (Hessian)``."""
    name = os.fspath(run).split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    operator = result.summary["config"].get("operator", "hessian")
    part = result.summary.get("part")
    return f"{name} ({OPERATOR_TITLES.get(operator, operator)}{', block ' + part if part else ''})"


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; numbers with 6 significant digits."""
    cells = [list(header)] + [[c if isinstance(c, str) else f"{c:.6g}" for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    out = io.StringIO()
    for row in cells:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() + "\n")
    return out.getvalue().rstrip("\n")


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else float("nan")
