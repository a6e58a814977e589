"""A run's per-step checkpoint, and the layout of its outputs.

Everything on disk is numbers or JSON: arrays are read with ``allow_pickle=False``, so
a tampered file cannot run code. Every file is written atomically (see
:mod:`raylanczos.store`), so a crash never leaves a half-written file. The start vector
of draw d is drawn from ``default_rng([seed, d])``, so the seed in the configuration is
all the random state a checkpoint needs.

Layout of an output location (a directory or an object-store URI)::

    tridiag.npy            float64 (D, m, m), one tridiagonal per finished draw
    spectrum.npz           nodes (D, m), weights (D, m), steps (D,), grid (G,), density (G,),
                           sigma2 (absolute variance), sigma2_relative
    summary.json           configuration, versions, statistics, timings
    density.png            the density on a log y-axis
    lanczos_vec_<d>.npy    float64 (k, n) basis of draw d (only when vectors are saved)
    checkpoint/            config.json, state.npz, basis.npy, pending.npy: what resuming needs (always
                           on local disk: ``<out>/checkpoint`` for a local ``out``, else a
                           local cache directory or ``--checkpoint-dir``)
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from raylanczos.lanczos import LanczosState, allocate_basis, open_basis
from raylanczos.store import OutputStore, json_default, json_writer, npz_writer

#: Per-step timing columns (seconds but for draw and step); ``total`` is the step's wall time.
TIMING_COLUMNS = ("draw", "step", "broadcast", "hvp_max", "gather", "reduce", "reorth", "checkpoint", "total")


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or from a different configuration."""


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=json_default).encode()).hexdigest()


@dataclass
class DrawRecords:
    """Finished draws: α, β float64 (D, m) zero-padded, steps, breakdown flags, orthogonality
    loss, and the steps that needed a second re-orthogonalisation pass or a fresh product."""

    order: int
    alpha: list[np.ndarray] = field(default_factory=list)
    beta: list[np.ndarray] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    breakdown: list[bool] = field(default_factory=list)
    orthogonality: list[float] = field(default_factory=list)
    second_passes: list[int] = field(default_factory=list)
    fresh_products: list[int] = field(default_factory=list)

    def add(self, state: LanczosState, orthogonality: float) -> None:
        self.alpha.append(state.alpha.copy())
        self.beta.append(state.beta.copy())
        self.steps.append(state.steps)
        self.breakdown.append(state.breakdown)
        self.orthogonality.append(orthogonality)
        self.second_passes.append(state.second_passes)
        self.fresh_products.append(state.fresh_products)

    def __len__(self) -> int:
        return len(self.steps)

    def tridiagonals(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(a[:k].copy(), b[: k - 1].copy()) for a, b, k in zip(self.alpha, self.beta, self.steps)]

    def to_arrays(self) -> dict[str, np.ndarray]:
        m = self.order
        return {
            "done_alpha": np.array(self.alpha, dtype=np.float64).reshape(-1, m),
            "done_beta": np.array(self.beta, dtype=np.float64).reshape(-1, m),
            "done_steps": np.array(self.steps, dtype=np.int64),
            "done_breakdown": np.array(self.breakdown, dtype=bool),
            "done_orthogonality": np.array(self.orthogonality, dtype=np.float64),
            "done_second_passes": np.array(self.second_passes, dtype=np.int64),
            "done_fresh_products": np.array(self.fresh_products, dtype=np.int64),
        }

    @classmethod
    def from_arrays(cls, order: int, arrays: dict[str, np.ndarray]) -> "DrawRecords":
        return cls(
            order,
            list(arrays["done_alpha"]),
            list(arrays["done_beta"]),
            [int(k) for k in arrays["done_steps"]],
            [bool(b) for b in arrays["done_breakdown"]],
            [float(x) for x in arrays["done_orthogonality"]],
            [int(k) for k in arrays["done_second_passes"]],
            [int(k) for k in arrays["done_fresh_products"]],
        )


class Checkpoint:
    """The local checkpoint directory of a run: config, Lanczos state and basis memmap."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.store = OutputStore(self.directory)
        self.basis_path = self.directory / "basis.npy"
        # The next vector to multiply and its correction (two n-vectors) go to one of two
        # slots of pending.npy, alternating, so the slot state.npz names is never the one
        # being written.
        self.pending_path = self.directory / "pending.npy"
        self._pending: np.ndarray | None = None
        self._slot = 0

    def exists(self) -> bool:
        return self.store.exists("config.json")

    def begin(self, config: dict[str, Any]) -> None:
        self.store.write("config.json", json_writer({"config": config, "hash": config_hash(config)}))

    def new_basis(self, rows: int, dim: int) -> np.ndarray:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._pending = allocate_basis(4, dim, self.pending_path)
        return allocate_basis(rows, dim, self.basis_path)

    def save(self, draw: int, state: LanczosState, records: DrawRecords, timings: np.ndarray) -> None:
        """Record the run after a step (atomically): current draw, state, finished draws, timings."""
        snapshot = state.snapshot()
        self._slot = 1 - self._slot
        self._pending[2 * self._slot] = snapshot.pop("pending")
        self._pending[2 * self._slot + 1] = snapshot.pop("correction")
        self.store.write(
            "state.npz",
            npz_writer(draw=np.int64(draw), timings=timings, pending_slot=np.int64(self._slot), **snapshot, **records.to_arrays()),
        )

    def load(self, config: dict[str, Any]) -> tuple[int, LanczosState, DrawRecords, np.ndarray]:
        """(draw, state, finished draws, timings) of a run with exactly this ``config``."""
        try:
            saved = self.store.load_json("config.json")
            arrays = self.store.load_npz("state.npz")
            basis = open_basis(self.basis_path)
            self._pending = open_basis(self.pending_path)
        except (OSError, ValueError, KeyError) as err:
            raise CheckpointError(f"cannot read checkpoint in {self.directory}: {err}") from None
        previous = saved.get("config", {}) if isinstance(saved, dict) else {}
        if saved.get("hash") != config_hash(config):
            differing = sorted(k for k in set(previous) | set(config) if previous.get(k) != config.get(k))
            details = "; ".join(f"{k}: checkpoint {previous.get(k)!r}, now {config.get(k)!r}" for k in differing[:5])
            raise CheckpointError(f"checkpoint in {self.directory} is from a different configuration ({details or 'hash differs'})")
        try:
            order = int(arrays["alpha"].shape[0])
            self._slot = int(arrays["pending_slot"])
            vectors = {"pending": self._pending[2 * self._slot], "correction": self._pending[2 * self._slot + 1]}
            state = LanczosState.restore({**arrays, **vectors}, basis)
            records = DrawRecords.from_arrays(order, arrays)
            return int(arrays["draw"]), state, records, np.asarray(arrays["timings"], dtype=np.float64)
        except (KeyError, ValueError, IndexError) as err:
            raise CheckpointError(f"checkpoint in {self.directory} is damaged: {err}") from None
