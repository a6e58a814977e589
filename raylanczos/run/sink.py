"""Where one spectrum's files go: per-draw files while the run goes on, then the rendered
outputs. One sink for ``tridiag.npy``, ``lanczos_vec_<d>.npy``, ``eigenvectors.npy``, the
summary and the figures; no Ray.

Each finished draw is written to its part's ``tridiag.npy`` at once, so no finished draw
is lost; the final render writes it once more with every draw, then the rendered files.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np

from raylanczos.config import DensityConfig, OutputConfig
from raylanczos.numerics import spectrum
from raylanczos.numerics.certificate import stopping_points
from raylanczos.numerics.deflation import Deflation
from raylanczos.numerics.lanczos import LanczosState
from raylanczos.numerics.ritz import RitzPairs, best_pairs, ritz_pairs
from raylanczos.outputs.record import (
    DeflationRecord,
    DrawRecords,
    EigenvectorRecord,
    PartRecord,
    PartsRecord,
    RunInfo,
    SpectrumRecord,
    record_from_json,
)
from raylanczos.outputs.render import (
    RENDERED_NAMES,
    Result,
    SpectrumResult,
    block_labels,
    blocks_title,
    render_parts,
    render_spectrum,
)
from raylanczos.outputs.store import OutputStore, npy_writer
from raylanczos.run.checkpoint import Checkpoint, CheckpointError
from raylanczos.run.loop import DrawTask, FinishedDraw, LoopState
from raylanczos.run.plan import Part, RunPlan
from raylanczos.run.target import stopping_record

logger = logging.getLogger("raylanczos")

OUTPUT_NAMES = ("tridiag.npy", *RENDERED_NAMES, "eigenvectors.npy", "deflated_vectors.npy")


def prepare_output(output: OutputConfig) -> tuple[OutputStore | None, Checkpoint | None]:
    """The output location and its checkpoint, checked before anything runs: a run to
    resume must have a checkpoint; an occupied location needs ``resume`` or ``overwrite``;
    the location must be writable."""
    if output.out is None:
        return None, None
    out = OutputStore(output.out)
    checkpoint = Checkpoint(output.checkpoint_dir if output.checkpoint_dir is not None else out.default_checkpoint_dir())
    if output.resume:
        if not checkpoint.exists():
            raise CheckpointError(f"nothing to resume: {checkpoint.directory} holds no checkpoint")
        return out, checkpoint
    occupied = checkpoint.exists() or any(out.exists(name) for name in OUTPUT_NAMES)
    if occupied and not output.overwrite:
        hint = "resume it (--resume), overwrite it (--overwrite)" if checkpoint.exists() else "overwrite it (--overwrite)"
        raise FileExistsError(f"{out} already holds a run; {hint} or choose another --out")
    out.ensure_writable()
    return out, checkpoint


class RunOutputs:
    """The files of one spectrum (or sweep point) with parts ``plan.parts``.

    Args:
      out, checkpoint: from :func:`prepare_output` (None, None: results in memory only).
      output, density: what to write, and how to draw the density.
      plan: the run's parts and tasks.
    """

    def __init__(
        self, out: OutputStore | None, checkpoint: Checkpoint | None, output: OutputConfig, density: DensityConfig, plan: RunPlan
    ):
        self.out, self.checkpoint, self.output, self.density, self.plan = out, checkpoint, output, density, plan
        self.eigenvectors: dict[str, RitzPairs | None] = {part.name: None for part in plan.parts}
        self.finished: dict[int, FinishedDraw] = {}

    def begin(self, identity: dict[str, Any], groups: list[list[int]], slices: tuple[int, ...] | None = None) -> None:
        """A new run: remove an overwritten run's outputs, and start the checkpoint (with the
        sharded state's slice bounds, if any)."""
        if self.out is not None:
            _clear_previous_outputs(self.out)
            self.checkpoint.begin(identity, groups, slices)

    def resume(self, state: LoopState) -> None:
        """A resumed run: its finished draws, and its best Ritz pairs so far."""
        self.finished = dict(state.finished)
        if self.output.top_eigenvectors and self.checkpoint is not None:
            self.eigenvectors.update(self.checkpoint.load_eigenvectors())

    def deflated(self, deflations: dict[str, Deflation]) -> None:
        """Each part's deflated eigenvectors, ``deflated_vectors.npy`` float64 (K, n_part)
        (rows in the part's layout, as ``eigenvectors.npy``), once the search found them."""
        for part in self.plan.parts:
            store = self._store(part)
            if store is not None and part.name in deflations:
                store.write("deflated_vectors.npy", npy_writer(deflations[part.name].vectors))

    def draw_finished(self, task: DrawTask, lanczos: LanczosState, record: FinishedDraw) -> None:
        """A draw ended: keep its Ritz pairs, write its basis (if asked) and its part's tridiagonals."""
        self.finished[task.index] = record
        part = self.plan.part(task.block)
        if self.output.top_eigenvectors:
            self._keep_ritz_pairs(part, lanczos, record)
        store = self._store(part)
        if store is None:
            return
        if self.output.save_vectors:
            store.write(f"lanczos_vec_{task.draw}.npy", npy_writer(np.asarray(lanczos.basis[: lanczos.steps])))
        self._write_tridiagonals(part, store)

    def _keep_ritz_pairs(self, part: Part, lanczos: LanczosState, record: FinishedDraw) -> None:
        alpha, beta = record.tridiagonal()
        pairs = ritz_pairs(lanczos.basis, alpha, beta, float(lanczos.beta[lanczos.steps - 1]), self.output.top_eigenvectors)
        self.eigenvectors[part.name] = best_pairs(self.eigenvectors[part.name], pairs)
        if self.checkpoint is not None:
            self.checkpoint.save_eigenvectors(self.eigenvectors)

    def _records(self, part: Part) -> list[FinishedDraw]:
        return [self.finished[task.index] for task in self.plan.tasks_of(part) if task.index in self.finished]

    def _write_tridiagonals(self, part: Part, store: OutputStore) -> None:
        tridiagonals = [record.tridiagonal() for record in self._records(part)]
        store.write("tridiag.npy", npy_writer(spectrum.stack_tridiagonals(tridiagonals, self.plan.part_order(part))))

    def _store(self, part: Part) -> OutputStore | None:
        if self.out is None:
            return None
        return self.out.child(part.path) if part.path else self.out

    def finish(
        self, run: RunInfo, residuals: dict[str, np.ndarray], deflations: dict[str, DeflationRecord] | None = None
    ) -> Result:
        """Render every part (and a parts run's top level) from the finished draws.

        ``run``: the record's shared part; ``residuals``: per part, the true residual norms
        of its kept Ritz pairs (float64[K]), from one extra pass of products; ``deflations``:
        per part of a deflated run, its deflated eigenpairs and start vectors' weights.
        """
        deflations = deflations or {}
        results = {
            part.name: self._render_part(part, run, residuals.get(part.name), deflations.get(part.name))
            for part in self.plan.parts
        }
        if len(self.plan.parts) == 1 and not self.plan.parts[0].name:
            return results[""]
        top = PartsRecord(
            run=run, parts={p.name: p.path for p in self.plan.parts}, part_labels=block_labels(results),
            parts_title=blocks_title(run), part_statistics=[],
        )
        return render_parts(results, top, self.out)

    def _render_part(
        self, part: Part, run: RunInfo, residuals: np.ndarray | None, deflation: DeflationRecord | None
    ) -> SpectrumResult:
        records = self._records(part)
        config = dataclasses.replace(run.config, num_params=part.dim, order=self.plan.part_order(part))
        layout = run.layout and dataclasses.replace(run.layout, parameter_layout=part.layout.to_json())
        record = SpectrumRecord(
            run=dataclasses.replace(run, config=config, layout=layout),
            draws=DrawRecords(
                steps_completed=[r.steps for r in records], breakdown=[r.breakdown for r in records],
                orthogonality_loss=[r.orthogonality for r in records],
                second_reorthogonalisation_passes=[r.second_passes for r in records],
                fresh_products=[r.fresh_products for r in records],
            ),
            part=PartRecord(part.name, part.pattern, list(part.parameters), part.dim) if part.name else None,
            top_eigenvectors=self._write_eigenvectors(part, residuals),
            deflation=deflation,
            stopping=None if config.target_width is None else stopping_record(
                records, part.dim, config.draws, config.target_width, config.distribution,
                stopping_points(config.draws, self.plan.block_size),
            ),
        )
        store = self._store(part)
        if store is not None:
            self._write_tridiagonals(part, store)
        return render_spectrum([r.tridiagonal() for r in records], record, store, self.density)

    def _write_eigenvectors(self, part: Part, residuals: np.ndarray | None) -> EigenvectorRecord | None:
        pairs = self.eigenvectors.get(part.name)
        if pairs is None:
            return None
        store = self._store(part)
        if store is not None:
            store.write("eigenvectors.npy", npy_writer(pairs.vectors))
        return EigenvectorRecord(
            file="eigenvectors.npy", shape=list(pairs.vectors.shape), values=pairs.values.tolist(),
            residual_norms=(residuals if residuals is not None else pairs.residuals).tolist(),
            lanczos_residual_norms=pairs.residuals.tolist(),
            layout="rows follow parameter_layout (the block's own for a block)",
        )


def _clear_previous_outputs(out: OutputStore) -> None:
    """Remove an overwritten run's outputs (its parts' too), once the new run's workers are up."""
    stores = [out]
    if out.exists("summary.json"):
        try:
            record = record_from_json(out.load_json("summary.json"))
        except (ValueError, KeyError, TypeError):
            record = None  # a damaged summary: its own directory's files are still removed
        if isinstance(record, PartsRecord):
            stores += [out.child(path) for path in record.parts.values()]
    for store in stores:
        for name in store.names():
            if name in OUTPUT_NAMES or (name.startswith("lanczos_vec_") and name.endswith(".npy")):
                store.remove(name)

