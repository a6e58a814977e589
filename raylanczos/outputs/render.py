"""From finished tridiagonals to the outputs a person reads: quadrature, density, statistics, plot.

Rendering and loading need no Ray and no framework: ``raylanczos density`` re-renders a
finished run (with another σ² or grid, into the run or another directory), and
:func:`load_result` reads one back (numbers and JSON only; nothing is unpickled).

Files of a rendered result (a directory or URI)::

    tridiag.npy     float64 (D, m, m), one tridiagonal per draw (written by the run)
    spectrum.npz    nodes (D, m), weights (D, m), steps (D,), grid (G,), density (G,),
                    sigma2 (absolute variance), sigma2_relative (NaN when not relative)
    summary.json    configuration, versions, statistics, timings
    density.png     the density on a log y-axis (with ``log_scale``: the log-scale density,
                    on a symmetric-log x axis)

With ``DensityConfig.log_scale``, ``spectrum.npz`` also holds the log-scale density
(:mod:`raylanczos.numerics.logdensity`): ``log_grid`` (G,) in decades of |λ|, and
``log_positive``, ``log_negative`` (G,) per decade; ``summary.json`` its settings and masses.

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
from dataclasses import dataclass
from typing import Any

import numpy as np

from raylanczos.config import DensityConfig
from raylanczos.numerics import spectrum
from raylanczos.numerics.certificate import SpectrumCertificate, certify, density_band
from raylanczos.numerics.deflation import (
    deflated_quadrature,
    deflated_trace,
    plain_trace_samples,
)
from raylanczos.numerics.logdensity import LogDensity, log_density
from raylanczos.outputs.plot import (
    CdfBand,
    plot_deflated_density,
    plot_density,
    plot_log_density,
    plot_overlay,
)
from raylanczos.outputs.record import (
    CertificateRecord,
    ConfigRecord,
    DensityRecord,
    LogDensityRecord,
    PartRow,
    PartsRecord,
    SpectrumRecord,
    record_from_json,
)
from raylanczos.outputs.store import OutputStore, json_writer, npy_writer, npz_writer

SIGMA2_UNITS = "sigma2 is an absolute variance (eigenvalue units squared)"
RENDERED_NAMES = ("spectrum.npz", "summary.json", "density.png")
OPERATOR_TITLES = {"hessian": "Hessian", "ggn": "Gauss–Newton", "preconditioned": "Preconditioned Hessian D^-1/2 H D^-1/2"}


@dataclass(frozen=True)
class SpectrumResult:
    """A finished spectrum: the run's (or one block's or sweep point's).

    Attributes:
      tridiagonals: float64 (D, m, m), zero-padded for draws that stopped early.
      steps: int (D,), Lanczos steps completed per draw.
      nodes, weights: float64 (D, m) Gauss quadrature (NaN / 0 padding).
      grid, density: float64 (G,), the smoothed density φ on its grid.
      sigma2: the absolute variance of the smoothing Gaussian (eigenvalue units²).
      record: the run record (:class:`~raylanczos.outputs.record.SpectrumRecord`).
      out: the output location (a directory or URI), or None.
      log_density: the log-scale density, when drawn (``DensityConfig.log_scale``).
    """

    tridiagonals: np.ndarray
    steps: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    grid: np.ndarray
    density: np.ndarray
    sigma2: float
    record: SpectrumRecord
    out: str | None
    log_density: LogDensity | None = None

    @property
    def summary(self) -> dict[str, Any]:
        """The contents of ``summary.json``."""
        return self.record.to_json()

    @property
    def parts(self) -> dict[str, "SpectrumResult"]:
        """A single spectrum has no parts (see :class:`PartsResult`)."""
        return {}


@dataclass(frozen=True)
class PartsResult:
    """A run with parts: the blocks of one run, or the points of a sweep.

    Attributes:
      parts: each part's :class:`SpectrumResult`, by name.
      record: the top level's record (:class:`~raylanczos.outputs.record.PartsRecord`).
      out: the output location, or None.
    """

    parts: dict[str, SpectrumResult]
    record: PartsRecord
    out: str | None

    @property
    def summary(self) -> dict[str, Any]:
        """The contents of the top-level ``summary.json``."""
        return self.record.to_json()


Result = SpectrumResult | PartsResult


def render_spectrum(
    tridiagonals: list[tuple[np.ndarray, np.ndarray]],
    record: SpectrumRecord,
    out: OutputStore | None,
    density: DensityConfig = DensityConfig(),
) -> SpectrumResult:
    """Quadrature, density and statistics from tridiagonals; writes the rendered files when
    ``out`` is set (``tridiag.npy`` is the run's to write).

    ``record.config`` must hold ``order`` and ``num_params`` (the operator's dimension); the
    statistics and the density's settings replace the record's. A deflated run's
    tridiagonals are of P H P on range(P): its record's eigenvalues join each draw's
    quadrature (:func:`~raylanczos.numerics.deflation.deflated_quadrature`), and its record
    gains the deflated trace.
    """
    order = record.config.order
    stacked = spectrum.stack_tridiagonals(tridiagonals, order)
    nodes, weights, first_alphas, record = _quadrature(tridiagonals, record)
    if record.deflation is not None and density.sigma2_original is not None:
        raise ValueError(
            "sigma2_original draws the original code's density from the tridiagonals alone, which leaves out a "
            "deflated run's eigenvalues; use sigma2 or sigma2_relative"
        )
    grid, values, settings = _density(stacked, nodes, weights, density)
    deflated = record.deflation is not None
    first_betas = None if deflated else np.array([beta[0] if len(beta) else 0.0 for _, beta in tridiagonals])
    distribution = record.config.distribution or "gaussian"
    stats = spectrum.summarize(
        nodes, weights, first_alphas, record.config.num_params, sigma2=settings.sigma2, k=density.top_k,
        negative_threshold=density.negative_threshold, first_betas=first_betas, distribution=distribution,
    )
    certificate = None if deflated else certify(  # a deflated run's rule is not a Gauss rule of its start vector's measure
        nodes, weights, record.config.num_params, distribution=distribution, negative_threshold=density.negative_threshold,
        looks=record.config.stopping_points(),
    )
    spread = density_band(nodes, weights, grid, settings.sigma2) if density.sigma2_original is None else None
    log = None
    if density.log_scale:
        log = log_density(
            nodes, weights, sigma2=density.log_sigma2, zero_threshold_relative=density.log_zero_threshold,
            grid_points=density.grid_points,
        )
    record = dataclasses.replace(
        record, statistics=stats, density=settings, log_density=_log_record(log),
        certificate=_certificate_record(certificate) if certificate is not None else None,
    )
    steps = np.array([len(a) for a, _ in tridiagonals])
    if out is not None:
        logs = {} if log is None else {"log_grid": log.grid, "log_positive": log.positive, "log_negative": log.negative}
        arrays = dict(
            nodes=nodes, weights=weights, steps=steps, grid=grid, density=values, sigma2=np.float64(settings.sigma2),
            sigma2_relative=np.float64(np.nan if settings.sigma2_relative is None else settings.sigma2_relative),
            **(certificate.arrays() if certificate is not None else {}), **(spread.arrays() if spread is not None else {}),
            **logs,
        )
        out.write("spectrum.npz", npz_writer(**arrays))
        out.write("summary.json", json_writer(record.to_json()))
        cdf = None if certificate is None else CdfBand(
            certificate.grid, certificate.estimate, certificate.lower, certificate.upper, certificate.confidence
        )
        band = (spread.lower, spread.upper) if spread is not None and np.isfinite(spread.std_error).all() else None
        out.write("density.png", lambda handle: _figure(grid, values, log, record, handle, band=band, cdf=cdf))
    return SpectrumResult(
        stacked, steps, nodes, weights, grid, values, settings.sigma2, record, str(out) if out else None, log,
    )


def _quadrature(
    tridiagonals: list[tuple[np.ndarray, np.ndarray]], record: SpectrumRecord
) -> tuple[np.ndarray, np.ndarray, np.ndarray, SpectrumRecord]:
    """(nodes, weights) float64 (D, m [+ K]) of the whole spectrum, each draw's v₀ᵀ H v₀
    float64[D] (the plain Hutchinson samples), and the record (with a deflated run's trace)."""
    nodes, weights = spectrum.slq_quadrature(tridiagonals, record.config.order)
    first_alphas = np.array([alpha[0] for alpha, _ in tridiagonals])
    deflation = record.deflation
    if deflation is None:
        return nodes, weights, first_alphas, record
    values, dim = np.asarray(deflation.values, dtype=np.float64), record.config.num_params
    start_weights = np.asarray(deflation.start_weights, dtype=np.float64).reshape(len(tridiagonals), values.size)
    trace, error = deflated_trace(first_alphas, values, dim)
    record = dataclasses.replace(record, deflation=dataclasses.replace(deflation, trace=trace, trace_std_error=error))
    nodes, weights = deflated_quadrature(nodes, weights, values, dim)
    return nodes, weights, plain_trace_samples(first_alphas, start_weights, values), record


def _figure(
    grid: np.ndarray, values: np.ndarray, log: LogDensity | None, record: SpectrumRecord, handle: Any, *,
    band: tuple[np.ndarray, np.ndarray] | None = None, cdf: CdfBand | None = None,
) -> None:
    """density.png: the density (with its spread over draws and the certified CDF beside
    it), or the log-scale one; a deflated run's eigenvalues marked."""
    outliers = record.deflation.values if record.deflation is not None else ()
    if log is not None:
        plot_log_density(log, handle, title=log_plot_title(record), outliers=outliers)
    elif outliers:
        plot_deflated_density(grid, values, outliers, handle, title=plot_title(record))
    else:
        plot_density(grid, values, handle, title=plot_title(record), band=band, cdf=cdf)


def _log_record(log: LogDensity | None) -> LogDensityRecord | None:
    if log is None:
        return None
    return LogDensityRecord(
        sigma2=log.sigma2, zero_threshold=log.zero_threshold, zero_threshold_relative=log.zero_threshold_relative,
        positive_mass=log.positive_mass, negative_mass=log.negative_mass, zero_mass=log.zero_mass,
        grid_points=int(log.grid.size), grid_min=float(log.grid[0]), grid_max=float(log.grid[-1]),
    )


def _certificate_record(certificate: SpectrumCertificate) -> CertificateRecord:
    """The certificate as the record holds it (its summary.json keys)."""
    return CertificateRecord.from_json(certificate.to_json())


def _log_density_of(record: LogDensityRecord | None, arrays: Any) -> LogDensity | None:
    """The log-scale density a rendered run holds: its arrays from ``spectrum.npz``, its masses from the record."""
    if record is None or "log_grid" not in arrays:
        return None
    return LogDensity(
        grid=arrays["log_grid"], positive=arrays["log_positive"], negative=arrays["log_negative"],
        positive_mass=record.positive_mass, negative_mass=record.negative_mass, zero_mass=record.zero_mass,
        zero_threshold=record.zero_threshold, zero_threshold_relative=record.zero_threshold_relative,
        sigma2=record.sigma2,
    )


def render_parts(
    results: dict[str, "SpectrumResult | PartsResult"],
    record: PartsRecord,
    out: OutputStore | None,
) -> PartsResult:
    """The top level of a run with parts (blocks, or a sweep's points): their table, and an
    overlay of their densities.

    ``results`` are the rendered parts by name, and ``record`` the top level's record
    (its ``part_statistics`` are filled in here). Writes ``summary.json``,
    ``statistics.csv`` and ``density.png`` when ``out`` is set.
    """
    record = dataclasses.replace(record, part_statistics=[PartRow.of(name, r.record) for name, r in results.items()])
    if out is not None:
        out.write("summary.json", json_writer(record.to_json()))
        out.write("statistics.csv", lambda handle: handle.write(_csv([row.to_json() for row in record.part_statistics]).encode()))
        curves = [(record.part_labels[name], r.grid, r.density) for name, r in results.items() if isinstance(r, SpectrumResult)]
        if curves:  # a sweep of blocks runs: each point's overlay is in its own directory
            out.write("density.png", lambda handle: plot_overlay(curves, handle, title=record.parts_title))
    return PartsResult(dict(results), record, str(out) if out is not None else None)


def block_labels(results: dict[str, SpectrumResult]) -> dict[str, str]:
    """A blocks run's legend labels: ``block hidden_all (hidden/*): n=1,290, σ²=0.0012``."""
    return {
        name: f"block {r.record.part.label if r.record.part else name}: n={r.record.config.num_params:,}, σ²={r.sigma2:.2g}"
        for name, r in results.items()
    }


def _density(
    stacked: np.ndarray, nodes: np.ndarray, weights: np.ndarray, density: DensityConfig
) -> tuple[np.ndarray, np.ndarray, DensityRecord]:
    """(grid, density, the settings recorded in the summary) for the chosen convention."""
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
    settings = DensityRecord(
        sigma2=float(sigma2), sigma2_relative=relative, sigma2_original=density.sigma2_original, convention=convention,
        units=SIGMA2_UNITS, grid_points=int(grid.size), grid_min=float(grid[0]), grid_max=float(grid[-1]),
    )
    return grid, values, settings


def rerender(
    run: str | os.PathLike,
    density: DensityConfig = DensityConfig(),
    *,
    to: str | os.PathLike | None = None,
) -> Result:
    """Recompute the density, plot and statistics of the finished run in ``run``.

    The rendered files (``spectrum.npz``, ``summary.json``, ``density.png``, and a parts
    run's ``statistics.csv``) go to ``to``, or replace the run's own when ``to`` is None;
    ``tridiag.npy`` is only read (and copied to ``to``, so that it loads as a result of its
    own). A run of blocks or a sweep is re-rendered part by part.
    """
    source = OutputStore(run)
    target = OutputStore(to) if to is not None else source
    record = record_from_json(source.load_json("summary.json"))
    if to is not None:
        target.ensure_writable()
    else:
        _check_writable(source)
    if isinstance(record, PartsRecord):
        parts = {
            name: rerender(source.child(path).location, density, to=None if to is None else target.child(path).location)
            for name, path in record.parts.items()
        }
        if record.sweep is None:
            record = dataclasses.replace(record, part_labels=block_labels(parts))
        return render_parts(parts, record, target)
    stacked = source.load_npy("tridiag.npy")
    if to is not None:
        target.write("tridiag.npy", npy_writer(stacked))
    tridiagonals = spectrum.split_tridiagonals(stacked, record.draws.steps_completed or None)
    return render_spectrum(tridiagonals, record, target, density)


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


def load_result(out: str | os.PathLike) -> Result:
    """A finished run's outputs, read back from ``out`` (numbers and JSON only).

    A run with parts (blocks, or a sweep) gives a :class:`PartsResult` with the parts'
    results; any other run a :class:`SpectrumResult`.
    """
    store = OutputStore(out)
    record = record_from_json(store.load_json("summary.json"))
    if isinstance(record, PartsRecord):
        parts = {name: load_result(store.child(path).location) for name, path in record.parts.items()}
        return PartsResult(parts, record, str(store))
    arrays = store.load_npz("spectrum.npz")
    stacked = store.load_npy("tridiag.npy")
    return SpectrumResult(
        stacked, arrays["steps"], arrays["nodes"], arrays["weights"], arrays["grid"], arrays["density"],
        float(arrays["sigma2"]), record, str(store), _log_density_of(record.log_density, arrays),
    )


def operator_title(operator: str | None) -> str:
    """``Hessian``, ``Gauss–Newton`` or ``Preconditioned Hessian D^-1/2 H D^-1/2``."""
    operator = operator or "hessian"
    return OPERATOR_TITLES.get(operator, operator)


def blocks_title(record: SpectrumRecord | PartsRecord) -> str:
    """``Hessian densities of the blocks of <problem>`` and the draws and steps (the overlay's title)."""
    config = record.config
    return (
        f"{operator_title(config.operator)} densities of the blocks of {config.problem}\n"
        f"{draws_phrase(config)} × up to {config.order} steps per block, each its own σ²"
    )


def draws_phrase(config: ConfigRecord) -> str:
    """``10 draws``, or ``up to 16 draws (target width 0.05)`` for a run drawn until a target."""
    if config.target_width is None:
        return _count(config.draws, "draw")
    return f"up to {_count(config.draws, 'draw')} (target width {config.target_width:g})"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def plot_title(record: SpectrumRecord) -> str:
    """``Hessian density of <problem>: n=…, D draws × m steps, σ²=…`` (and the block or point)."""
    config = record.config
    part = f", block {record.part.label}" if record.part else ""
    part += _deflated(record)
    settings = record.density
    relative = settings.sigma2_relative if settings else None
    sigma = f"σ²={settings.sigma2 if settings else float('nan'):.3g}" + (f" ({relative:g}·width²)" if relative else "")
    return (
        f"{operator_title(config.operator)} density of {config.problem}{part}\n"
        f"n={config.num_params:,}, {_count(len(record.draws.steps_completed), 'draw')} × {config.order} steps, {sigma}"
    )


def _deflated(record: SpectrumRecord) -> str:
    """``, 5 outliers deflated`` for a deflated run, else ""."""
    return f", {_count(len(record.deflation.values), 'outlier')} deflated" if record.deflation is not None else ""


def log_plot_title(record: SpectrumRecord) -> str:
    """``Hessian density of <problem>, log scale: n=…, D draws × m steps, s=… decades``."""
    config = record.config
    part = f", block {record.part.label}" if record.part else ""
    part += _deflated(record)
    log = record.log_density
    return (
        f"{operator_title(config.operator)} density of {config.problem}{part}, log scale\n"
        f"n={config.num_params:,}, {_count(len(record.draws.steps_completed), 'draw')} × {config.order} steps, "
        f"kernel s={np.sqrt(log.sigma2):.2g} decades, τ={log.zero_threshold_relative:g}·‖·‖"
    )
