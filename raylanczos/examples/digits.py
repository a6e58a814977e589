"""An MLP on the scikit-learn digits: 1797 real 8×8 handwritten digits, 10 classes.

The data ships inside scikit-learn, so nothing is downloaded. The MLP (64 → hidden → 10,
tanh) is trained briefly by full-batch Adam from a fixed seed on the CPU, so every worker
rebuilds bit-identical weights and the spectrum is that of a trained network.

Factories (``raylanczos.examples.digits:<name>``):
  ``problem``       hidden 32: 2,410 parameters (the README's example)
  ``tiny_problem``  hidden 4:    310 parameters (small enough for a dense Hessian)
  ``wide_problem``  hidden 1024 × 1024: about 1.13M parameters (benchmarks)
"""

from __future__ import annotations

import functools

import numpy as np

import jax
import jax.numpy as jnp

import raylanczos as rl

BATCH_SIZE = 256  # 1797 = 7 · 256 + 5: the last batch is ragged


def problem() -> rl.Problem:
    return make_problem(hidden=(32,))


def tiny_problem() -> rl.Problem:
    return make_problem(hidden=(4,))


def wide_problem() -> rl.Problem:
    return make_problem(hidden=(1024, 1024), train_steps=50)


def make_problem(hidden: tuple[int, ...] = (32,), *, train_steps: int = 300, seed: int = 0) -> rl.Problem:
    """The digits MLP problem with the given hidden widths, trained ``train_steps`` steps."""
    x, y = load_digits()
    params = trained_params(tuple(hidden), train_steps, seed)
    data = rl.ArrayDataset({"x": x, "y": y})
    return rl.Problem.from_jax(params, mean_cross_entropy, data, batch_size=BATCH_SIZE)


@functools.cache
def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """Inputs float32 (1797, 64) scaled to [0, 1] and labels int32 (1797,)."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    return (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int32)


def init_params(hidden: tuple[int, ...], seed: int) -> list[dict[str, np.ndarray]]:
    """Glorot-normal weights and zero biases, float32, layer by layer."""
    rng = np.random.default_rng(seed)
    widths = (64, *hidden, 10)
    return [
        {
            "w": (rng.standard_normal((a, b)) * np.sqrt(2.0 / (a + b))).astype(np.float32),
            "b": np.zeros(b, dtype=np.float32),
        }
        for a, b in zip(widths[:-1], widths[1:])
    ]


def forward(params: list[dict], x: jax.Array) -> jax.Array:
    """Logits (batch, 10) of the tanh MLP."""
    for layer in params[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def mean_cross_entropy(params: list[dict], batch: dict) -> jax.Array:
    """Mean softmax cross-entropy over the batch (a scalar)."""
    logits = forward(params, batch["x"])
    log_probs = jax.nn.log_softmax(logits)
    picked = jnp.take_along_axis(log_probs, batch["y"][:, None].astype(jnp.int32), axis=1)
    return -jnp.mean(picked)


@functools.cache
def trained_params(hidden: tuple[int, ...], train_steps: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Full-batch Adam (lr 1e-2) on the CPU: deterministic on every worker."""
    x, y = load_digits()
    batch = {"x": x, "y": y}
    cpu = jax.devices("cpu")[0]
    b1, b2, lr, eps = 0.9, 0.999, 1e-2, 1e-8

    @jax.jit
    def adam_step(t, params, m, v):
        g = jax.grad(mean_cross_entropy)(params, batch)
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        scale = lr * jnp.sqrt(1 - b2**t) / (1 - b1**t)
        params = jax.tree_util.tree_map(lambda p, m, v: p - scale * m / (jnp.sqrt(v) + eps), params, m, v)
        return params, m, v

    with jax.default_device(cpu):
        params = jax.device_put(init_params(hidden, seed), cpu)
        m = jax.tree_util.tree_map(jnp.zeros_like, params)
        v = jax.tree_util.tree_map(jnp.zeros_like, params)
        for t in range(1, train_steps + 1):
            params, m, v = adam_step(jnp.float32(t), params, m, v)
    return jax.tree_util.tree_map(np.asarray, params)
