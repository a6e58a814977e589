"""Several finished runs side by side: their densities on one log-y axis and a common grid,
their certified CDF bands in a panel beside them, and a table of their statistics (the
comparison figures of Ghorbani et al., 2019).

Each run's density and band are evaluated again on the common grid from its own
quadrature nodes, weights and σ², so the curves are the runs' own, only sampled alike.
For each pair of runs with a band, the largest gap between their bands over all t
(:func:`~raylanczos.numerics.certificate.band_gap`) says whether their spectra differ
beyond what the certificates allow. No Ray.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from raylanczos.choices import check_int
from raylanczos.numerics import spectrum
from raylanczos.numerics.certificate import CertifiedRule, band_gap, gauss_cdf
from raylanczos.outputs.plot import CdfBand, plot_overlay
from raylanczos.outputs.record import PART_STATISTICS
from raylanczos.outputs.render import (
    PartsResult,
    SpectrumResult,
    load_result,
    operator_title,
)
from raylanczos.outputs.store import OutputStore, json_writer

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
    """Overlay the densities of 2 to 10 ``runs`` (directories or URIs) in the PNG ``figure``,
    their CDF bands in a panel beside them; write their statistics to ``figure`` with the
    suffix ``.csv``, and the statistics and the gaps between the bands with ``.json``;
    returns the table and the gaps as printed text.

    The curves share one grid of ``grid_points`` over the union of the runs' grids, each
    evaluated from the run's own nodes, weights and σ². A run with no density (not a
    finished run, or a blocks run's top level, whose blocks are runs of their own) is
    refused, naming it. A run without a certificate (a deflated one) has no band and no gap.
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
    rules = [(name, rule) for name, r in zip(names, results) if (rule := certified_rule(r)) is not None]
    gaps = band_gaps(rules)
    operators = {r.record.config.operator for r in results}
    what = " and ".join(operator_title(o) for o in sorted(operators))
    figure.parent.mkdir(parents=True, exist_ok=True)
    plot_overlay(
        curves, figure, title=f"{what} densities of {len(results)} runs\n(one grid; each run's own σ²)",
        bands=[(name, cdf_band_on(rule, grid)) for name, rule in rules],
        bands_note=gaps[0].line() if len(gaps) == 1 else "",
    )
    header = ["run", "num_params", *COLUMNS]
    rows = [
        [name, int(r.record.config.num_params), *(_number(getattr(r.record.statistics, key, None)) for key in COLUMNS)]
        for name, r in zip(names, results)
    ]
    with open(figure.with_suffix(".csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    table = {"runs": [dict(zip(header, row)) for row in rows], "band_gaps": [gap.to_json() for gap in gaps]}
    with open(figure.with_suffix(".json"), "wb") as handle:
        json_writer(table)(handle)
    text = format_table(header, rows) + "".join(f"\n{gap.line(named=True)}" for gap in gaps)
    return text + f"\n→ {figure}, {figure.with_suffix('.csv')} and {figure.with_suffix('.json')}"


@dataclass(frozen=True)
class BandGap:
    """The largest gap between two runs' CDF bands over all t (dimensionless; 0 when they
    overlap everywhere), and the bands' confidences."""

    first: str
    second: str
    gap: float
    confidences: tuple[float, float]

    @property
    def beyond(self) -> bool:
        """Whether the spectra differ beyond the certificates: the bands are apart somewhere."""
        return self.gap > 0

    def line(self, *, named: bool = False) -> str:
        """``max gap between the CDF bands 0.031: differ beyond the certificate: yes``
        (with ``named``, preceded by the two runs)."""
        runs = f"{self.first} vs {self.second}: " if named else ""
        return f"{runs}max gap between the CDF bands {self.gap:.3g}: differ beyond the certificate: {'yes' if self.beyond else 'no'}"

    def to_json(self) -> dict[str, Any]:
        return {
            "runs": [self.first, self.second], "max_gap": self.gap, "differ_beyond_certificate": self.beyond,
            "confidences": list(self.confidences),
        }


def certified_rule(result: SpectrumResult) -> CertifiedRule | None:
    """A run's quadrature with what its band was certified for; None for a run without a band."""
    certificate = result.record.certificate
    if certificate is None:
        return None
    return CertifiedRule(
        result.nodes, result.weights, int(result.record.config.num_params), certificate.distribution or "gaussian",
        certificate.confidence, result.record.config.stopping_points(),
    )


def band_gaps(rules: Sequence[tuple[str, CertifiedRule]]) -> list[BandGap]:
    """The :class:`BandGap` of every pair of ``(label, rule)``, in the runs' order."""
    return [
        BandGap(first, second, band_gap(one, other), (one.confidence, other.confidence))
        for (first, one), (second, other) in itertools.combinations(rules, 2)
    ]


def cdf_band_on(rule: CertifiedRule, grid: np.ndarray) -> CdfBand:
    """A run's band and estimate on the common ``grid`` (float64[G]), for the CDF panel."""
    lower, upper = rule.band(grid)
    return CdfBand(grid, gauss_cdf(rule.nodes, rule.weights, grid), lower, upper, rule.confidence)


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
