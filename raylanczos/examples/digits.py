"""An MLP on the scikit-learn digits: 1797 real 8×8 handwritten digits, 10 classes.

The data ships inside scikit-learn, so nothing is downloaded. The MLP (64 → hidden → 10,
tanh) is trained briefly by full-batch Adam from a fixed seed on the CPU, so every worker
rebuilds bit-identical weights and the spectrum is that of a trained network. The trained
weights are then kept in a cache (``$RAYLANCZOS_CACHE``, default ``~/.cache/raylanczos``),
so that later processes load them as a real problem loads its checkpoint.

Factories (``raylanczos.examples.digits:<name>``):
  ``problem``       hidden 32: 2,410 parameters (the README's example)
  ``tiny_problem``  hidden 4:    310 parameters (small enough for a dense Hessian)
  ``wide_problem``  hidden 1024 × 1024: about 1.13M parameters (benchmarks)
  ``at_step``       hidden 32 after ``step`` Adam steps (default 300, = ``problem``): the
                    spectrum through training, e.g. ``at_step(step=0)``, ``step=30``, ...
  ``adam_problem``  ``problem`` with Adam's preconditioner D = √v̂ + ε at its weights, for
                    ``operator="preconditioned"``: the curvature Adam sees
  ``tiny_adam_problem``  the same for ``tiny_problem``

The data and initial weights come from :mod:`raylanczos.examples.digits_data`, shared with
the Keras twin :mod:`raylanczos.examples.digits_keras`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

import raylanczos as rl
from raylanczos.examples.digits_data import (
    BATCH_SIZE,
    cached_layers,
    init_params,
    load_digits,
)

#: Adam's settings for the examples' training (β₁, β₂, learning rate, ε).
ADAM_B1, ADAM_B2, ADAM_LR, ADAM_EPS = 0.9, 0.999, 1e-2, 1e-8


def problem() -> rl.Problem:
    return make_problem(hidden=(32,))


def tiny_problem() -> rl.Problem:
    return make_problem(hidden=(4,))


def wide_problem() -> rl.Problem:
    return make_problem(hidden=(1024, 1024), train_steps=50)


def at_step(step: int = 300) -> rl.Problem:
    """The ``problem`` MLP (hidden 32, 2,410 parameters) after ``step`` full-batch Adam steps
    from its initial weights (0: untrained). Each step's weights are trained once and cached.

    The Hessian's outliers move in training: λ_max ≈ 3.1 at step 0, 1.8 at step 30 and
    0.48 at step 300, while λ_min goes from ≈ −0.65 to −0.02 and −0.001 (float32, 40
    Lanczos steps).
    """
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise rl.ProblemError(f"step must be a non-negative integer (Adam steps), got {step!r}")
    return make_problem(hidden=(32,), train_steps=int(step))


def adam_problem(step: int = 300) -> rl.Problem:
    """``at_step(step)`` with Adam's preconditioner D = √v̂ + ε (v̂ the bias-corrected second
    moment after ``step`` steps, ε = 1e-8) for ``operator="preconditioned"``."""
    return make_problem(hidden=(32,), train_steps=int(step), adam_preconditioner=True)


def tiny_adam_problem() -> rl.Problem:
    """``tiny_problem`` with Adam's preconditioner D = √v̂ + ε at its weights."""
    return make_problem(hidden=(4,), adam_preconditioner=True)


def make_problem(
    hidden: tuple[int, ...] = (32,), *, train_steps: int = 300, seed: int = 0, adam_preconditioner: bool = False
) -> rl.Problem:
    """The digits MLP problem with the given hidden widths, trained ``train_steps`` steps.

    The loss is also given as ``output_loss(predict(params, batch), batch)`` (logits, then
    softmax cross-entropy), so ``operator="ggn"`` works on it. With ``adam_preconditioner``
    the problem carries Adam's D = √v̂ + ε at those weights (``operator="preconditioned"``).
    """
    x, y = load_digits()
    params = trained_params(tuple(hidden), train_steps, seed)
    data = rl.ArrayDataset({"x": x, "y": y})
    preconditioner = adam_denominator(tuple(hidden), train_steps, seed) if adam_preconditioner else None
    return rl.Problem.from_jax(
        params, mean_cross_entropy, data, batch_size=BATCH_SIZE, predict=logits, output_loss=softmax_cross_entropy,
        preconditioner=preconditioner,
    )


def forward(params: list[dict], x: jax.Array) -> jax.Array:
    """Logits (batch, 10) of the tanh MLP."""
    for layer in params[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def logits(params: list[dict], batch: dict) -> jax.Array:
    """The network's outputs on the batch: logits (batch, 10) (the problem's ``predict``)."""
    return forward(params, batch["x"])


def softmax_cross_entropy(outputs: jax.Array, batch: dict) -> jax.Array:
    """Mean softmax cross-entropy of logits (batch, 10) against ``batch["y"]`` (a scalar;
    the problem's ``output_loss``).

    Its Hessian in the logits is diag(p) − p pᵀ per example (p the softmax), positive
    semidefinite, and for this loss the Gauss–Newton matrix Jᵀ (diag(p) − p pᵀ) J equals
    the Fisher information of the model's predictive distribution.
    """
    log_probs = jax.nn.log_softmax(outputs)
    picked = jnp.take_along_axis(log_probs, batch["y"][:, None].astype(jnp.int32), axis=1)
    return -jnp.mean(picked)


def mean_cross_entropy(params: list[dict], batch: dict) -> jax.Array:
    """Mean softmax cross-entropy over the batch (a scalar): ``softmax_cross_entropy(logits(params, batch), batch)``."""
    return softmax_cross_entropy(logits(params, batch), batch)


@functools.cache
def trained_params(hidden: tuple[int, ...], train_steps: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Full-batch Adam (lr 1e-2) on the CPU, deterministic; kept in the example cache
    (:func:`~raylanczos.examples.digits_data.cached_layers`) after the first training."""
    key = f"digits-mlp-{'x'.join(map(str, hidden))}-adam{train_steps}-seed{seed}-jax{jax.__version__}"
    return cached_layers(key, lambda: train_params(hidden, train_steps, seed))


@functools.cache
def adam_denominator(hidden: tuple[int, ...], train_steps: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Adam's D = √v̂ + ε after ``train_steps`` steps (v̂ = v / (1 − β₂ᵗ), ε = ``ADAM_EPS``),
    float64, shaped like the weights; ε alone before the first step. Cached like the weights."""
    key = f"digits-mlp-{'x'.join(map(str, hidden))}-adam{train_steps}-seed{seed}-denominator-jax{jax.__version__}"

    def compute() -> list[dict[str, np.ndarray]]:
        second_moment = run_adam(hidden, train_steps, seed)[1]
        correction = 1.0 - ADAM_B2**train_steps if train_steps else 1.0
        return [
            {name: np.sqrt(np.asarray(v, np.float64) / correction) + ADAM_EPS for name, v in layer.items()}
            for layer in second_moment
        ]

    return cached_layers(key, compute)


def train_params(hidden: tuple[int, ...], train_steps: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Full-batch Adam (lr 1e-2) from :func:`init_params` on the CPU: deterministic on every worker."""
    return run_adam(hidden, train_steps, seed)[0]


def run_adam(
    hidden: tuple[int, ...], train_steps: int, seed: int
) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    """Full-batch Adam from :func:`init_params` on the CPU: (weights, second moment v), as numpy."""
    x, y = load_digits()
    batch = {"x": x, "y": y}
    cpu = jax.devices("cpu")[0]
    b1, b2, lr, eps = ADAM_B1, ADAM_B2, ADAM_LR, ADAM_EPS

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
    return jax.tree_util.tree_map(np.asarray, params), jax.tree_util.tree_map(np.asarray, v)
