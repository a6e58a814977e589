"""A run's checkpoint: everything ``--resume`` needs, on the driver's local disk, saved
after a pass every ``checkpoint_every_s`` seconds and whenever a draw ended (:class:`SaveCadence`).

Layout of a checkpoint directory (``<out>/checkpoint`` for a local ``out``, else a local
cache directory or ``--checkpoint-dir``)::

    config.json        the run's identity (what determines its numbers) and its hash
    state.npz          the loop's state (:class:`~raylanczos.loop.LoopState`) but its
                       n-vectors: each slot's Lanczos scalars and α, β, the finished
                       draws, the next waiting draw, the per-pass timings
    basis_<s>.npy      slot s's Lanczos basis, float64 (m + 1, n), memory-mapped
    pending.npy        float64 (2, B, 2, n): each slot's next vector and its correction,
                       in one of two halves used in turn, so the half ``state.npz`` names
                       is never the one being written
    eigenvectors.npz   the best top Ritz pairs so far (only with top eigenvectors asked for)
    keeper_<i>/        with a sharded state (``slices`` in config.json): keeper i's own
                       files, written by the keeper (:class:`~raylanczos.numerics.sharded.Keeper`):
                       basis_<s>.npy float64 (m + 1, slice length) and pending.npy
                       (2 · B · 2, slice length); then there are no basis_<s>.npy or
                       pending.npy at the top, and state.npz holds the slots' scalars only
    deflation.npz      each part's deflated eigenpairs (only with deflation), so that a
                       resumed run deflates the same Q to the bit
                       (:func:`raylanczos.run.deflation.save_deflations`)

Everything is numbers or JSON: arrays are read with ``allow_pickle=False``, so a tampered
file cannot run code; ``state.npz`` is written atomically (a temporary file, then a
rename), after the memory-mapped rows it refers to. The start vector of draw d is drawn
from ``default_rng([seed, d])``, so the seed in the identity is all the random state a
checkpoint needs.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from raylanczos.numerics.basis import allocate_basis, open_basis
from raylanczos.numerics.lanczos import (
    VECTOR_FIELDS,
    scalars_from_arrays,
    state_arrays,
    state_from_arrays,
)
from raylanczos.numerics.ritz import RitzPairs
from raylanczos.operators.contract import TIMING_COLUMNS
from raylanczos.outputs.record import ConfigRecord
from raylanczos.outputs.store import OutputStore, json_default, json_writer, npz_writer
from raylanczos.run.loop import FinishedDraw, LoopState


class SaveCadence:
    """The loop's checkpoint hook: saves its state (``save(state)``) after a pass when
    ``every_s`` seconds have passed since the last save, and after every pass in which a
    draw ended: the ended draw's slot takes the next draw, whose rows overwrite the
    basis an older save refers to. Between saves the basis rows an older save refers to
    are only appended to, so resuming from any save repeats the undisturbed run's blocks
    and gives its bits. ``every_s`` = 0 saves after every pass.
    """

    def __init__(self, save: Callable[[LoopState], None], every_s: float, clock: Callable[[], float] = time.monotonic):
        self.save, self.every_s, self.clock = save, every_s, clock
        self._saved_at = clock()
        self._finished: int | None = None

    def __call__(self, state: LoopState) -> None:
        if len(state.finished) != self._finished or self.clock() - self._saved_at >= self.every_s:
            self.save(state)
            self._saved_at, self._finished = self.clock(), len(state.finished)


class CheckpointError(ValueError):
    """A checkpoint that is missing, damaged, or from a different configuration."""


def identity_hash(identity: dict[str, Any]) -> str:
    """sha256 of the run's identity, as canonical JSON."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=json_default).encode()).hexdigest()


#: The fields of :class:`~raylanczos.loop.FinishedDraw` and the dtype each is stored in.
FINISHED_FIELDS = {
    "task": np.int64, "alpha": np.float64, "beta": np.float64, "steps": np.int64, "breakdown": bool,
    "orthogonality": np.float64, "second_passes": np.int64, "fresh_products": np.int64,
}


def widened(timings: np.ndarray) -> list[list[float]]:
    """A checkpoint's timing rows with a zero for each column added since it was written
    (:data:`TIMING_COLUMNS` grow at the end), so a resumed run's rows are one table."""
    rows = timings.reshape(timings.shape[0], -1) if timings.size else timings.reshape(0, len(TIMING_COLUMNS))
    missing = len(TIMING_COLUMNS) - rows.shape[1]
    if missing < 0:
        raise ValueError(f"timing rows of {rows.shape[1]} columns, more than the {len(TIMING_COLUMNS)} known")
    return np.pad(rows, ((0, 0), (0, missing))).tolist()


class Checkpoint:
    """The local checkpoint directory of a run: identity, loop state, bases and pending rows
    (or, with a sharded state, the keepers' directories)."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.store = OutputStore(self.directory)
        self.pending_path = self.directory / "pending.npy"
        self._pending: np.ndarray | None = None
        self._keepers: Any = None
        self._half = 0

    @property
    def pending_half(self) -> int:
        """The half of the pending files that the last saved (or loaded) state refers to."""
        return self._half

    def keeper_directory(self, index: int) -> Path:
        """Where keeper ``index`` of a sharded state keeps its slices."""
        return self.directory / f"keeper_{index}"

    def keep_slices(self, keepers: Any) -> None:
        """A sharded state: :meth:`save` has ``keepers`` (a
        :class:`~raylanczos.run.stores.KeeperStore`) write their slices first."""
        self._keepers = keepers

    def slices(self) -> tuple[int, ...] | None:
        """The slice bounds the checkpointed run began with (None: the driver held the state)."""
        saved = self._read(lambda: self.store.load_json("config.json"))
        bounds = saved.get("slices") if isinstance(saved, dict) else None
        return tuple(int(b) for b in bounds) if bounds is not None else None

    def check_slices(self, bounds: tuple[int, ...] | None) -> None:
        """Refuse a resume whose state is held otherwise than the checkpoint's."""
        saved = self.slices()
        if saved != (tuple(bounds) if bounds is not None else None):
            held = lambda b: "on the driver" if b is None else f"in {len(b) - 1} slices {list(b)}"  # noqa: E731
            raise CheckpointError(
                f"checkpoint in {self.directory} holds the Lanczos state {held(saved)}, this run holds it {held(bounds)}"
            )

    def exists(self) -> bool:
        """Whether a run checkpointed a pass here (one that failed before its first pass did not)."""
        return self.store.exists("config.json") and self.store.exists("state.npz")

    def basis_path(self, slot: int) -> Path:
        return self.directory / f"basis_{slot}.npy"

    def begin(self, identity: dict[str, Any], node_groups: list[list[int]], slices: tuple[int, ...] | None = None) -> None:
        """Start a new checkpoint for a run of this identity (an older one is replaced).

        ``node_groups`` (worker indices per node group) fix the order of the node sums for
        the run: a resumed run sums in the same groups wherever its workers now run.
        ``slices``: the bounds of a sharded state's slices (keeper i holds
        [slices[i], slices[i + 1])), fixed for the run; None when the driver holds the state.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        for name in ("state.npz", "eigenvectors.npz", "deflation.npz"):
            self.store.remove(name)
        record = {"identity": identity, "hash": identity_hash(identity), "node_groups": node_groups}
        if slices is not None:
            record["slices"] = list(slices)
        self.store.write("config.json", json_writer(record))

    def new_bases(self, slots: int, rows: int, dim: int) -> list[np.ndarray]:
        """One memory-mapped float64 (rows, dim) basis per slot, and the pending rows."""
        self._pending = allocate_basis(2 * slots * 2, dim, self.pending_path).reshape(2, slots, 2, dim)
        return [allocate_basis(rows, dim, self.basis_path(slot)) for slot in range(slots)]

    def save(self, state: LoopState) -> None:
        """Record the loop after a pass: the slots' vectors first (by the keepers, in
        parallel, with a sharded state), then ``state.npz`` (atomically)."""
        self._half = 1 - self._half
        if self._keepers is not None:
            self._keepers.save(self._half)
        arrays: dict[str, np.ndarray] = {}
        slot_tasks = np.full(len(state.slots), -1, dtype=np.int64)
        for slot, entry in enumerate(state.slots):
            if entry is None:
                continue
            task, lanczos = entry
            slot_tasks[slot] = task
            fields = state_arrays(lanczos)
            for row, name in enumerate(VECTOR_FIELDS):
                if name in fields:
                    self._pending[self._half, slot, row, : lanczos.dim] = fields.pop(name)
            arrays.update({f"slot{slot}/{name}": value for name, value in fields.items()})
        finished = [state.finished[task] for task in sorted(state.finished)]
        width = max((len(record.alpha) for record in finished), default=0)
        for name, dtype in FINISHED_FIELDS.items():
            values = [getattr(record, name) for record in finished]
            if name in ("alpha", "beta"):  # tasks of smaller dimension have shorter runs: zero-padded
                values = [np.pad(v, (0, width - len(v))) for v in values]
                arrays[f"finished/{name}"] = np.array(values, dtype=dtype).reshape(len(finished), width)
            else:
                arrays[f"finished/{name}"] = np.array(values, dtype=dtype)
        self.store.write(
            "state.npz",
            npz_writer(
                slot_tasks=slot_tasks,
                next_task=np.int64(state.next_task),
                passes=np.int64(state.passes),
                timings=np.array(state.timings, dtype=np.float64).reshape(-1, len(TIMING_COLUMNS)),
                pending_half=np.int64(self._half),
                **arrays,
            ),
        )

    def save_eigenvectors(self, pairs: dict[str, RitzPairs | None]) -> None:
        """The best top Ritz pairs so far, per part of the run (written when a draw ends)."""
        arrays = {
            f"{name}/{field}": getattr(found, field)
            for name, found in pairs.items() if found is not None for field in ("values", "vectors", "residuals")
        }
        self.store.write("eigenvectors.npz", npz_writer(**arrays))

    def load_eigenvectors(self) -> dict[str, RitzPairs]:
        if not self.store.exists("eigenvectors.npz"):
            return {}
        arrays = self._read(lambda: self.store.load_npz("eigenvectors.npz"))
        names = {key.rsplit("/", 1)[0] for key in arrays}
        return {name: RitzPairs(arrays[f"{name}/values"], arrays[f"{name}/vectors"], arrays[f"{name}/residuals"]) for name in names}

    def product_form(self) -> str | None:
        """The product form the checkpointed run computed in (None: ``"jvp-grad"`` for a JAX
        run, none for Keras; see :meth:`~raylanczos.outputs.record.ConfigRecord.identity`)."""
        saved = self._read(lambda: self.store.load_json("config.json"))
        return ConfigRecord.identity_product_form(saved.get("identity", {}) if isinstance(saved, dict) else {})

    def load(self, identity: dict[str, Any], task_dims: list[int]) -> tuple[LoopState, list[np.ndarray], list[list[int]]]:
        """The loop state, the slots' bases and the node groups of a run with exactly this ``identity``.

        ``task_dims`` are the tasks' dimensions (a slot's state uses the first ``dim``
        columns of its basis and pending rows). With a sharded state (``slices`` in
        config.json) the slots hold their scalars, there are no bases, and the keepers read
        their own files back (at :attr:`pending_half`); those files are checked against the
        slices here, on the driver, before any keeper starts.
        """
        saved = self._read(lambda: self.store.load_json("config.json"))
        previous = saved.get("identity", {}) if isinstance(saved, dict) else {}
        if saved.get("hash") != identity_hash(identity):
            differing = sorted(k for k in set(previous) | set(identity) if previous.get(k) != identity.get(k))
            details = "; ".join(f"{k}: checkpoint {previous.get(k)!r}, now {identity.get(k)!r}" for k in differing[:5])
            raise CheckpointError(f"checkpoint in {self.directory} is from a different configuration ({details or 'hash differs'})")
        arrays = self._read(lambda: self.store.load_npz("state.npz"))
        sharded = saved.get("slices") is not None
        try:
            slot_tasks = [int(task) for task in arrays["slot_tasks"]]
            self._half = int(arrays["pending_half"])
            bases = []
            if not sharded:
                bases = [self._read(lambda slot=slot: open_basis(self.basis_path(slot))) for slot in range(len(slot_tasks))]
                pending = self._read(lambda: open_basis(self.pending_path))
                self._pending = pending.reshape(2, len(slot_tasks), 2, pending.shape[1])
            slots = []
            for slot, task in enumerate(slot_tasks):
                if task < 0:
                    slots.append(None)
                    continue
                fields = {key.split("/", 1)[1]: value for key, value in arrays.items() if key.startswith(f"slot{slot}/")}
                if sharded:
                    slots.append((task, scalars_from_arrays(fields)))
                    continue
                dim = task_dims[task]
                for row, name in enumerate(VECTOR_FIELDS):
                    fields[name] = self._pending[self._half, slot, row, :dim]
                order = fields["alpha"].shape[0]
                slots.append((task, state_from_arrays(fields, bases[slot][: order + 1, :dim])))
            finished = {}
            records = {name: arrays[f"finished/{name}"] for name in FINISHED_FIELDS}
            for i in range(len(records["task"])):
                values = {name: column[i] for name, column in records.items()}
                record = FinishedDraw(
                    task=int(values["task"]), alpha=np.array(values["alpha"]), beta=np.array(values["beta"]),
                    steps=int(values["steps"]), breakdown=bool(values["breakdown"]),
                    orthogonality=float(values["orthogonality"]), second_passes=int(values["second_passes"]),
                    fresh_products=int(values["fresh_products"]),
                )
                finished[record.task] = record
            state = LoopState(
                slots=slots,
                next_task=int(arrays["next_task"]),
                finished=finished,
                timings=widened(np.asarray(arrays["timings"], dtype=np.float64)),
                passes=int(arrays["passes"]),
            )
        except (KeyError, ValueError, IndexError) as err:
            raise CheckpointError(f"checkpoint in {self.directory} is damaged: {err}") from err
        groups = [list(map(int, g)) for g in saved.get("node_groups", [])]
        if sharded:
            self._check_keeper_files(tuple(int(b) for b in saved["slices"]), len(state.slots), groups)
        return state, bases, groups

    def _check_keeper_files(self, bounds: tuple[int, ...], slots: int, groups: list[list[int]]) -> None:
        """A sharded checkpoint's slices, checked on the driver before any worker or keeper
        starts: one keeper per node group, and each keeper's files there, whole (by their
        headers) and as wide as its slice."""
        if len(groups) != len(bounds) - 1:
            raise CheckpointError(
                f"checkpoint in {self.directory} does not match its slices: {len(bounds) - 1} slices {list(bounds)} "
                f"for {len(groups)} node groups {groups} (one keeper per node group)"
            )
        for index in range(len(bounds) - 1):
            lo, hi = bounds[index], bounds[index + 1]
            for name, rows in [*((f"basis_{slot}.npy", None) for slot in range(slots)), ("pending.npy", 4 * slots)]:
                path = self.keeper_directory(index) / name
                shape = self._read(lambda path=path: open_basis(path).shape)
                if len(shape) != 2 or shape[1] != hi - lo or rows not in (None, shape[0]):
                    needs = f"({rows}, {hi - lo})" if rows is not None else f"{hi - lo} columns"
                    raise CheckpointError(
                        f"checkpoint in {self.directory} does not match its slices: {path} holds {shape}, "
                        f"keeper {index}'s slice [{lo}, {hi}) needs {needs}"
                    )

    def _read(self, read):
        """Run a read of a checkpoint file, naming the checkpoint in any failure."""
        try:
            return read()
        except FileNotFoundError as err:
            raise CheckpointError(f"checkpoint in {self.directory} is incomplete: {err}") from err
        except PermissionError as err:
            raise CheckpointError(
                f"cannot open checkpoint in {self.directory} for writing (resuming continues it in place): {err}"
            ) from err
        except (OSError, ValueError) as err:
            raise CheckpointError(f"cannot read checkpoint in {self.directory}: {err}") from err
