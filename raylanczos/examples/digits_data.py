"""The scikit-learn digits and the MLP's initial weights, shared by the JAX and Keras twins.

Framework-free (numpy and scikit-learn only), so the Keras example never imports JAX and
the JAX example never imports TensorFlow. 1797 real 8×8 handwritten digits, 10 classes,
shipped inside scikit-learn: nothing is downloaded.
"""

from __future__ import annotations

import functools
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from raylanczos.cache import cache_dir

BATCH_SIZE = 256  # 1797 = 7 · 256 + 5: the last batch is ragged


@functools.cache
def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """Inputs float32 (1797, 64) scaled to [0, 1] and labels int32 (1797,).

    Read from scikit-learn once, then from the example cache: importing scikit-learn costs
    about a second in every process (the driver and each worker)."""

    def from_sklearn() -> dict[str, np.ndarray]:
        from sklearn.datasets import load_digits as sklearn_digits

        digits = sklearn_digits()
        return {"x": (digits.data / 16.0).astype(np.float32), "y": digits.target.astype(np.int32)}

    arrays = cached_arrays("digits-data", from_sklearn)
    return arrays["x"], arrays["y"]


def init_params(hidden: tuple[int, ...], seed: int) -> list[dict[str, np.ndarray]]:
    """Glorot-normal weights ``w`` (fan_in, fan_out) and zero biases ``b``, float32, layer by layer."""
    rng = np.random.default_rng(seed)
    widths = (64, *hidden, 10)
    return [
        {
            "w": (rng.standard_normal((a, b)) * np.sqrt(2.0 / (a + b))).astype(np.float32),
            "b": np.zeros(b, dtype=np.float32),
        }
        for a, b in zip(widths[:-1], widths[1:])
    ]


def cached_layers(key: str, compute: Callable[[], list[dict[str, np.ndarray]]]) -> list[dict[str, np.ndarray]]:
    """Layers ``[{"w", "b"}, ...]`` from the cache entry ``key``, else ``compute()``d and saved.

    An example trains its network deterministically, so the saved weights are those every
    process would compute; loading them makes an example start like a real problem that
    loads a checkpoint, instead of training in the driver and again in every worker.
    """

    def flat() -> dict[str, np.ndarray]:
        return {f"{i}/{name}": layer[name] for i, layer in enumerate(compute()) for name in ("w", "b")}

    arrays = cached_arrays(key, flat)
    return [{"w": arrays[f"{i}/w"], "b": arrays[f"{i}/b"]} for i in range(len(arrays) // 2)]


def cached_arrays(key: str, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Named arrays from ``cache_dir()/<key>.npz``, else ``compute()``d and saved there.

    The file is written atomically (concurrent workers may race to save the same arrays);
    where the cache cannot be written, or an entry is damaged, the arrays are simply
    computed again.
    """
    path = cache_dir() / f"{key}.npz"
    try:
        with np.load(path, allow_pickle=False) as saved:
            return {name: saved[name] for name in saved.files}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):  # absent or damaged
        pass
    arrays = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    except OSError:
        return arrays
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **arrays)
        os.replace(temporary, path)
    except OSError:
        Path(temporary).unlink(missing_ok=True)
    return arrays
