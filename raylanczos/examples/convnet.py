"""Convolutional networks in JAX: the benchmark conv net of the design notes, and a
compute-bound conv net on the 8×8 digits.

Factories (``raylanczos.examples.convnet:<name>``):
  ``reference_problem``  the design's GPU anchor: 3×3 SAME convolutions with GELU,
                         channels 3→64→64, pool, →128→128, pool, →256→256, pool,
                         →512→512→512, global mean pool, dense 512→10; He-normal weights,
                         zero biases; 50,000 inputs N(0, 1) of shape 32×32×3, uniform
                         random labels; batch 1000; 7,050,314 parameters. Meant for a GPU.
  ``digits_problem``     1→32→64 channels, 3×3 SAME + GELU, on the 1,797 digits as 8×8×1
                         images; 19,466 parameters but ~2.4 MFLOP per example forward:
                         a compute-bound CPU problem (the HVP dominates, n is small).
  ``tiny_digits_problem``  1→4→8 channels on the digits: 426 parameters, small enough for
                         a dense Hessian (tests, the deflation benchmark).

Weights are untrained and drawn from a fixed seed, so every worker rebuilds the same
parameters; the data is generated (reference) or shipped with scikit-learn (digits).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

import raylanczos as rl
from raylanczos.examples.digits_data import load_digits

#: The design's conv net: output channels per 3×3 convolution, "pool" for a 2×2 max-pool.
REFERENCE_LAYERS = (64, 64, "pool", 128, 128, "pool", 256, 256, "pool", 512, 512, 512)
DIGITS_LAYERS = (32, 64)
TINY_DIGITS_LAYERS = (4, 8)


def reference_problem(
    num_examples: int = 50_000, batch_size: int = 1000, seed: int = 0, layers: tuple = REFERENCE_LAYERS
) -> rl.Problem:
    """The 7,050,314-parameter conv net over ``num_examples`` random 32×32×3 inputs
    (``layers`` gives a copy of other widths, e.g. for a dense reference in tests)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((num_examples, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, num_examples).astype(np.int32)
    params = init_params(3, layers, 10, seed)
    loss = functools.partial(mean_cross_entropy, layers=layers)
    return rl.Problem.from_jax(params, loss, rl.ArrayDataset({"x": x, "y": y}), batch_size=batch_size)


def digits_problem(batch_size: int = 256, seed: int = 0, layers: tuple = DIGITS_LAYERS) -> rl.Problem:
    """The small conv net over the 1,797 digits as 8×8×1 images (``layers``: its channels)."""
    x, y = load_digits()
    params = init_params(1, layers, 10, seed)
    data = rl.ArrayDataset({"x": x.reshape(-1, 8, 8, 1), "y": y})
    return rl.Problem.from_jax(params, functools.partial(mean_cross_entropy, layers=layers), data, batch_size=batch_size)


def tiny_digits_problem() -> rl.Problem:
    """The digits conv net with 4 and 8 channels: 426 parameters, for dense references."""
    return digits_problem(layers=TINY_DIGITS_LAYERS)


def init_params(in_channels: int, layers: tuple, classes: int, seed: int) -> dict:
    """He-normal float32 weights and zero biases: ``conv`` (a list of {w (3, 3, c_in, c_out), b})
    and ``dense`` {w (c_last, classes), b}."""
    rng = np.random.default_rng(seed)
    conv, channels = [], in_channels
    for layer in layers:
        if layer == "pool":
            continue
        fan_in = 9 * channels
        w = rng.standard_normal((3, 3, channels, layer)) * np.sqrt(2.0 / fan_in)
        conv.append({"w": w.astype(np.float32), "b": np.zeros(layer, np.float32)})
        channels = layer
    dense = rng.standard_normal((channels, classes)) * np.sqrt(2.0 / channels)
    return {"conv": conv, "dense": {"w": dense.astype(np.float32), "b": np.zeros(classes, np.float32)}}


def forward(params: dict, x: jax.Array, layers: tuple) -> jax.Array:
    """Logits (batch, classes) for NHWC inputs ``x`` through ``layers`` (as in init_params)."""
    convs = iter(params["conv"])
    for layer in layers:
        if layer == "pool":
            x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
            continue
        p = next(convs)
        x = jax.lax.conv_general_dilated(x, p["w"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        x = jax.nn.gelu(x + p["b"])
    return jnp.mean(x, axis=(1, 2)) @ params["dense"]["w"] + params["dense"]["b"]


def mean_cross_entropy(params: dict, batch: dict, layers: tuple) -> jax.Array:
    """Mean softmax cross-entropy over the batch (a scalar)."""
    log_probs = jax.nn.log_softmax(forward(params, batch["x"], layers))
    picked = jnp.take_along_axis(log_probs, batch["y"][:, None].astype(jnp.int32), axis=1)
    return -jnp.mean(picked)
