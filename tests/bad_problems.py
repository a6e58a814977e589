"""Broken problem factories for ``tests/test_bad_inputs.py``.

Each is importable as ``tests.bad_problems:<name>`` in the driver and in Ray workers, and
breaks in one way a user's factory can: wrong return type, a missing checkpoint, an
unknown backend, unequal data arrays, missing or corrupt Parquet, a non-scalar loss, NaN
data or NaN weights. All but the first few build on the tiny digits MLP (310 parameters).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import jax.numpy as jnp
import numpy as np

import raylanczos as rl
from raylanczos.examples import digits

#: The example whose pixel is NaN in :func:`nan_data`; with 2 balanced workers it is worker 1's.
NAN_ROW = 1000
#: Where the Parquet factories put (or look for) their files.
SCRATCH = Path(tempfile.gettempdir()) / "raylanczos-bad-inputs"
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


def vector_loss() -> rl.Problem:
    """A loss that forgets the mean: one value per example."""
    tiny = digits.tiny_problem()

    def per_example_loss(params, batch):
        logits = digits.forward(params, batch["x"])
        return -jnp.take_along_axis(logits, batch["y"][:, None], axis=1)[:, 0]

    return rl.Problem.from_jax(tiny.params, per_example_loss, tiny.data, tiny.batch_size)


def nan_data() -> rl.Problem:
    """One NaN pixel in example ``NAN_ROW``."""
    tiny = digits.tiny_problem()
    x, y = digits.load_digits()
    x = x.copy()  # load_digits is cached: never write into its arrays
    x[NAN_ROW, 7] = np.nan
    return rl.Problem.from_jax(tiny.params, tiny.loss_fn, rl.ArrayDataset({"x": x, "y": y}), tiny.batch_size)


def nan_weights() -> rl.Problem:
    """One NaN in the second layer's weight matrix, ``params[1]['w']``."""
    tiny = digits.tiny_problem()
    params = [dict(layer) for layer in tiny.params]  # trained_params is cached: copy, then edit
    weights = np.array(params[1]["w"], copy=True)
    weights[0, 0] = np.nan
    params[1]["w"] = weights
    return rl.Problem.from_jax(params, tiny.loss_fn, tiny.data, tiny.batch_size)
