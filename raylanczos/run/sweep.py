"""Spectra across a factory argument: training checkpoints, widths, anything a factory takes
(the points of a sweep; :func:`raylanczos.hessian_spectrum` with ``sweep=`` runs them).

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
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from raylanczos.config import OptionError, OutputConfig
from raylanczos.outputs.record import ConfigRecord, record_from_json
from raylanczos.outputs.render import draws_phrase
from raylanczos.outputs.store import OutputStore
from raylanczos.run.checkpoint import Checkpoint


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


@dataclass(frozen=True)
class SweepPoint:
    """One point of a sweep: its name (and output sub-directory), factory arguments and output."""

    name: str
    arguments: dict[str, Any]
    output: OutputConfig
    finished: bool


def sweep_points(sweep: Mapping[str, Sequence[Any]], output: OutputConfig) -> list[SweepPoint]:
    """The points of ``sweep`` (one factory argument and its values) below ``output.out``:
    each point's output location, and, when resuming, whether it finished already (kept)
    or has a checkpoint (resumed). Refuses an occupied location without resume/overwrite."""
    if len(sweep) != 1:
        raise OptionError("sweep", dict(sweep), "{name} takes one factory argument and its values, got {value!r}")
    ((name, values),) = sweep.items()
    values = list(values)
    if not values or len(set(map(repr, values))) != len(values):
        raise OptionError("sweep", values, "{name} needs distinct values, got {value!r}")
    if output.out is None:
        raise OptionError("out", None, "a sweep writes each point below {name}: give an output location")
    top = OutputStore(output.out)
    labels = [point_name(name, value) for value in values]
    _check_sweep_output(top, labels, output)
    points = []
    for label, value in zip(labels, values):
        store, arguments = top.child(label), {name: value}
        finished = output.resume and _finished(store, arguments)
        checkpoint_dir = None if output.checkpoint_dir is None else f"{output.checkpoint_dir}/{label}"
        resume = output.resume and not finished and _has_checkpoint(store, checkpoint_dir)
        points.append(SweepPoint(label, arguments, dataclasses.replace(output, out=store.location, checkpoint_dir=checkpoint_dir, resume=resume), finished))
    return points


def sweep_title(problem: str, operator: str, name: str, first: ConfigRecord) -> str:
    """The overlay's title: what, across what, and the draws and steps of every point."""
    return (
        f"{operator} densities of {problem} across {name}\n"
        f"{draws_phrase(first)} × {first.order} steps, the same start vectors, each its own σ²"
    )


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
    return record_from_json(store.load_json("summary.json")).config.arguments == arguments


def _has_checkpoint(store: OutputStore, checkpoint_dir: str | None) -> bool:
    return Checkpoint(checkpoint_dir if checkpoint_dir is not None else store.default_checkpoint_dir()).exists()
