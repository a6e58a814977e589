"""Broken problem factories for ``tests/test_bad_inputs.py``.

Each is importable as ``tests.bad_problems:<name>`` in the driver and in Ray workers, and
breaks in one way a user's factory can: wrong return type, a missing checkpoint, an
unknown backend, unequal data arrays, missing or corrupt Parquet, a non-scalar loss, NaN
data or NaN weights. All but the first few build on the tiny digits MLP (310 parameters).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import raylanczos as rl
from raylanczos.examples import digits
from tests.problems import NAN_ROW, nan_data, vector_loss  # noqa: F401 - importable from here too

#: Where the Parquet factories put (or look for) their files: in this test session's own
#: directory (inherited by its Ray workers), not one shared by concurrent sessions.
SCRATCH = Path(os.environ["RAYLANCZOS_CACHE"]) / "bad-inputs"
MISSING_PARQUET = SCRATCH / "no-such-dir" / "train.parquet"
CORRUPT_PARQUET = SCRATCH / "corrupt.parquet"
MISSING_CHECKPOINT = "missing-weights.ckpt"


def returns_dict():
    """Forgets to wrap its pieces in a Problem."""
    return {"params": None, "loss_fn": None}


def missing_checkpoint() -> rl.Problem:
    """Its checkpoint is not there."""
    raise FileNotFoundError(f"[Errno 2] No such file or directory: {MISSING_CHECKPOINT!r}")


def unknown_backend() -> rl.Problem:
    """Asks for a framework raylanczos does not support."""
    tiny = digits.tiny_problem()
    return rl.Problem("torch", tiny.params, tiny.loss_fn, tiny.data, 16)


def unequal_lengths() -> rl.Problem:
    """Ten inputs but nine labels."""
    tiny = digits.tiny_problem()
    data = rl.ArrayDataset({"x": np.zeros((10, 64), np.float32), "y": np.zeros(9, np.int32)})
    return rl.Problem.from_jax(tiny.params, tiny.loss_fn, data, 16)


def missing_parquet() -> rl.Problem:
    """Points at Parquet data that does not exist."""
    tiny = digits.tiny_problem()
    return rl.Problem.from_jax(tiny.params, tiny.loss_fn, rl.ParquetDataset(MISSING_PARQUET), 16)


def corrupt_parquet() -> rl.Problem:
    """Points at a ``.parquet`` file that holds garbage bytes (written here first)."""
    SCRATCH.mkdir(parents=True, exist_ok=True)
    tmp = SCRATCH / f".corrupt.{os.getpid()}.tmp"
    tmp.write_bytes(b"this is not a parquet file\x00\xff" * 64)
    os.replace(tmp, CORRUPT_PARQUET)
    tiny = digits.tiny_problem()
    return rl.Problem.from_jax(tiny.params, tiny.loss_fn, rl.ParquetDataset(CORRUPT_PARQUET), 16)


def nan_weights() -> rl.Problem:
    """One NaN in the second layer's weight matrix, ``params[1]['w']``."""
    tiny = digits.tiny_problem()
    params = [dict(layer) for layer in tiny.params]  # trained_params is cached: copy, then edit
    weights = np.array(params[1]["w"], copy=True)
    weights[0, 0] = np.nan
    params[1]["w"] = weights
    return rl.Problem.from_jax(params, tiny.loss_fn, tiny.data, tiny.batch_size)


def missing_batch_entry() -> rl.Problem:
    """A loss that reads ``batch["inputs"]`` from data whose entries are ``x`` and ``y``."""
    tiny = digits.tiny_problem()

    def loss_fn(params, batch):
        return digits.mean_cross_entropy(params, {"x": batch["inputs"], "y": batch["y"]})

    return rl.Problem.from_jax(tiny.params, loss_fn, tiny.data, tiny.batch_size)


def hessian_only() -> rl.Problem:
    """The tiny digits MLP described by its loss alone: no predict/output_loss for the Gauss-Newton operator."""
    tiny = digits.tiny_problem()
    return rl.Problem.from_jax(tiny.params, tiny.loss_fn, tiny.data, tiny.batch_size)
