"""Saving and loading a run's outputs and its per-step checkpoint.

Everything on disk is numbers or JSON: arrays are read with ``allow_pickle=False``, so
a tampered file cannot run code. Every file is written atomically (a temporary file in
the same directory, then ``os.replace``), so a crash never leaves a half-written output.

Layout of an output directory::

    tridiag.npy            float64 (D, m, m), one tridiagonal per finished draw
    spectrum.npz           nodes (D, m), weights (D, m), steps (D,), grid (G,), density (G,),
                           sigma2 (absolute variance), sigma2_relative
    summary.json           configuration, versions, statistics, timings
    density.png            the density on a log y-axis
    lanczos_vec_<d>.npy    float64 (k, n) basis of draw d (only when vectors are saved)
    checkpoint/            config.json, state.npz, basis.npy: what resuming needs
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from raylanczos.lanczos import LanczosState, allocate_basis, open_basis

TIMING_COLUMNS = ("draw", "step", "broadcast", "hvp_max", "gather", "reduce", "reorth", "checkpoint")


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or from a different configuration."""


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_npy(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


def save_npz(path: Path, **arrays: Any) -> None:
    atomic_write(path, lambda f: np.savez(f, **arrays))


def save_json(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=2, sort_keys=False, default=_json_default) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=_json_default).encode()).hexdigest()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in JSON")


@dataclass
class DrawRecords:
    """Finished draws: α, β float64 (D, m) zero-padded, steps, breakdown flags, orthogonality loss."""

    order: int
    alpha: list[np.ndarray] = field(default_factory=list)
    beta: list[np.ndarray] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    breakdown: list[bool] = field(default_factory=list)
    orthogonality: list[float] = field(default_factory=list)

    def add(self, state: LanczosState, orthogonality: float) -> None:
        self.alpha.append(state.alpha.copy())
        self.beta.append(state.beta.copy())
        self.steps.append(state.steps)
        self.breakdown.append(state.breakdown)
        self.orthogonality.append(orthogonality)

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
        )


class Checkpoint:
    """The ``checkpoint/`` directory of a run: config, Lanczos state and basis memmap."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self.config_path = self.directory / "config.json"
        self.state_path = self.directory / "state.npz"
        self.basis_path = self.directory / "basis.npy"

    def exists(self) -> bool:
        return self.config_path.exists()

    def begin(self, config: dict[str, Any]) -> None:
        save_json(self.config_path, {"config": config, "hash": config_hash(config)})

    def new_basis(self, rows: int, dim: int) -> np.ndarray:
        return allocate_basis(rows, dim, self.basis_path)

    def save(self, draw: int, state: LanczosState, records: DrawRecords, timings: np.ndarray) -> None:
        """Record the run after a step (atomically): current draw, state, finished draws, timings."""
        save_npz(self.state_path, draw=np.int64(draw), timings=timings, **state.snapshot(), **records.to_arrays())

    def load(self, config: dict[str, Any]) -> tuple[int, LanczosState, DrawRecords, np.ndarray]:
        """(draw, state, finished draws, timings) of a run with exactly this ``config``."""
        try:
            saved = json.loads(self.config_path.read_text())
            arrays = load_npz(self.state_path)
            basis = open_basis(self.basis_path)
        except (OSError, ValueError, KeyError) as err:
            raise CheckpointError(f"cannot read checkpoint in {self.directory}: {err}") from None
        previous = saved.get("config", {}) if isinstance(saved, dict) else {}
        if saved.get("hash") != config_hash(config):
            differing = sorted(k for k in set(previous) | set(config) if previous.get(k) != config.get(k))
            details = "; ".join(f"{k}: checkpoint {previous.get(k)!r}, now {config.get(k)!r}" for k in differing[:5])
            raise CheckpointError(f"checkpoint in {self.directory} is from a different configuration ({details or 'hash differs'})")
        try:
            order = int(arrays["alpha"].shape[0])
            state = LanczosState.restore(arrays, basis)
            records = DrawRecords.from_arrays(order, arrays)
            return int(arrays["draw"]), state, records, np.asarray(arrays["timings"], dtype=np.float64)
        except (KeyError, ValueError, IndexError) as err:
            raise CheckpointError(f"checkpoint in {self.directory} is damaged: {err}") from None
