"""The scikit-learn digits and the MLP's initial weights, shared by the JAX and Keras twins.

Framework-free (numpy and scikit-learn only), so the Keras example never imports JAX and
the JAX example never imports TensorFlow. 1797 real 8×8 handwritten digits, 10 classes,
shipped inside scikit-learn: nothing is downloaded.
"""

from __future__ import annotations

import functools

import numpy as np

BATCH_SIZE = 256  # 1797 = 7 · 256 + 5: the last batch is ragged


@functools.cache
def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """Inputs float32 (1797, 64) scaled to [0, 1] and labels int32 (1797,)."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    return (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int32)


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
