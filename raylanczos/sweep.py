"""Spectra across a factory argument: training checkpoints, widths, anything a factory takes.

``raylanczos run --problem mod:factory --sweep step=100,1000,10000`` runs
``factory(step=100)``, ``factory(step=1000)``, ... one after another with the same
configuration and seeds, so that every point uses the same start vectors (common random
numbers: the differences between points are not sampling noise). Point ``step=100``
writes a whole run into ``<out>/step=100/``; the top level gets an overlay of the points'
densities (``density.png``), their statistics (``statistics.csv``, printed too) and a
``summary.json`` listing them. The workers are kept from point to point: they rebuild the
problem with the next point's arguments and keep the shard's data when the dataset is the
same. With ``resume``, finished points are kept, an interrupted point resumes from its
checkpoint and the rest run.
"""

from __future__ import annotations

import ast
import dataclasses
import logging
from typing import Any, Mapping, Sequence

from raylanczos.config import DensityConfig, OptionError, OutputConfig, ScalingConfig, SpectrumConfig, build_configs
from raylanczos.problem import ProblemSource, source_name
from raylanczos.progress import Progress, make_progress, reporting
from raylanczos.render import OPERATOR_TITLES, SpectrumResult, load_result, render_parts
from raylanczos.store import OutputStore

logger = logging.getLogger("raylanczos")


def parse_sweep(text: str) -> tuple[str, list[Any]]:
    """``"step=100,1000"`` → ``("step", [100, 1000])``; values are Python literals
    (numbers, quoted strings, True/False) or else plain strings."""
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier() or not values.strip():
        raise OptionError("sweep", text, "{name} must look like NAME=VALUE,VALUE,... (e.g. step=100,1000), got {value!r}")
    return name, [_literal(value.strip()) for value in values.split(",")]


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def point_name(name: str, value: Any) -> str:
    """The output directory of a point: ``step=100``."""
    return f"{name}={value}"


def sweep_spectra(
    problem: ProblemSource,
    sweep: Mapping[str, Sequence[Any]],
    config: SpectrumConfig | None = None,
    scaling: ScalingConfig | None = None,
    output: OutputConfig | None = None,
    density: DensityConfig | None = None,
    *,
    progress: str | Progress = "auto",
    **options: Any,
) -> SpectrumResult:
    """Spectra of ``problem(name=value)`` for each value of the one entry of ``sweep``.

    Takes the arguments of :func:`~raylanczos.runner.hessian_spectrum` (``output.out`` is
    required: the points are written below it). Returns the top-level result, with the
    points' results in ``parts`` by point name.
    """
    from raylanczos.runner import Workers, _Run  # the run needs Ray; this module's parsing does not

    spectrum_config, scaling, output, density = build_configs(config, scaling, output, density, options)
    if len(sweep) != 1:
        raise OptionError("sweep", dict(sweep), "{name} takes one factory argument and its values, got {value!r}")
    (name, values), = sweep.items()
    values = list(values)
    if not values or len(set(map(repr, values))) != len(values):
        raise OptionError("sweep", values, "{name} needs distinct values, got {value!r}")
    if output.out is None:
        raise OptionError("out", None, "a sweep writes each point below {name}: give an output location")
    top = OutputStore(output.out)
    points = {point_name(name, value): {name: value} for value in values}
    _check_sweep_output(top, list(points), output)
    reporter = progress if isinstance(progress, Progress) else make_progress(progress)
    results: dict[str, SpectrumResult] = {}
    with reporting(), Workers(scaling.address) as workers:
        for label, arguments in points.items():
            store = top.child(label)
            if output.resume and _finished(store, arguments):
                logger.info("sweep point %s: finished already, kept", label)
                results[label] = load_result(store.location)
                continue
            point_output = dataclasses.replace(
                output,
                out=store.location,
                checkpoint_dir=None if output.checkpoint_dir is None else f"{output.checkpoint_dir}/{label}",
                resume=output.resume and _has_checkpoint(store, output, label),
            )
            logger.info("sweep point %s", label)
            run = _Run(problem, spectrum_config, scaling, point_output, density, reporter, arguments)
            results[label] = run.execute(workers)
    summary = {
        "config": {"problem": source_name(problem), "operator": spectrum_config.operator},
        "sweep": {"name": name, "values": values},
    }
    operator = OPERATOR_TITLES.get(spectrum_config.operator, spectrum_config.operator)
    first = next(iter(results.values())).summary["config"]
    title = (
        f"{operator} densities of {source_name(problem)} across {name}\n"
        f"{first['draws']} draws × {first['order']} steps, the same start vectors, each its own σ²"
    )
    return render_parts(results, {label: label for label in points}, summary, top, title=title, labels={p: p for p in points})


def _check_sweep_output(top: OutputStore, labels: list[str], output: OutputConfig) -> None:
    if output.resume or output.overwrite:
        return
    held = top.exists("summary.json") or any(top.child(label).exists("summary.json") or top.child(label).exists("tridiag.npy") for label in labels)
    if held:
        raise FileExistsError(f"{top} already holds a sweep; resume it (--resume), overwrite it (--overwrite) or choose another --out")


def _finished(store: OutputStore, arguments: dict[str, Any]) -> bool:
    """Whether ``store`` holds a finished run of the point with these factory arguments."""
    if not (store.exists("summary.json") and store.exists("spectrum.npz")):
        return False
    return store.load_json("summary.json").get("config", {}).get("arguments") == arguments


def _has_checkpoint(store: OutputStore, output: OutputConfig, label: str) -> bool:
    from raylanczos.checkpoint import Checkpoint

    directory = f"{output.checkpoint_dir}/{label}" if output.checkpoint_dir is not None else store.default_checkpoint_dir()
    return Checkpoint(directory).exists()
