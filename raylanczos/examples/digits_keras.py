"""The Keras twin of :mod:`raylanczos.examples.digits`: the same tanh MLP on the same digits.

A ``keras.Sequential`` of Dense layers (64 → hidden → 10, tanh), from the same Glorot-normal
initial weights as the JAX example, trained briefly by full-batch Adam on the CPU from a
fixed seed, so every worker rebuilds the same weights. The weights are close to, but not
bit-equal to, the JAX example's (different kernels round differently). Imports TensorFlow
and Keras, never JAX.

Factories (``raylanczos.examples.digits_keras:<name>``):
  ``problem``       hidden 32: 2,410 parameters
  ``tiny_problem``  hidden 4:    310 parameters (small enough for a dense Hessian)

The flat parameter vector follows ``model.trainable_variables``: for each layer its
kernel (fan_in, fan_out) then its bias, named ``digits_mlp/hidden_0/kernel``, ...,
``digits_mlp/logits/bias``.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

import raylanczos as rl
from raylanczos.examples.digits_data import BATCH_SIZE, init_params, load_digits


def problem() -> rl.Problem:
    return make_problem(hidden=(32,))


def tiny_problem() -> rl.Problem:
    return make_problem(hidden=(4,))


def make_problem(
    hidden: tuple[int, ...] = (32,), *, train_steps: int = 300, seed: int = 0, training: bool = False
) -> rl.Problem:
    """The digits MLP as a Keras problem, trained ``train_steps`` steps of full-batch Adam.

    The loss is also given as ``output_loss`` of the model's logits, so ``operator="ggn"``
    works on it.
    """
    x, y = load_digits()
    model = make_model(tuple(hidden))
    model.set_weights(trained_weights(tuple(hidden), train_steps, seed))
    data = rl.ArrayDataset({"x": x, "y": y})
    return rl.Problem.from_keras(
        model, mean_cross_entropy, data, batch_size=BATCH_SIZE, training=training, output_loss=softmax_cross_entropy
    )


def make_model(hidden: tuple[int, ...], dtype: str = "float32") -> keras.Sequential:
    """The untrained MLP: Dense ``hidden_<i>`` layers with tanh, then Dense ``logits``."""
    layers: list[Any] = [keras.Input((64,), dtype=dtype, name="pixels")]
    layers += [keras.layers.Dense(h, activation="tanh", dtype=dtype, name=f"hidden_{i}") for i, h in enumerate(hidden)]
    layers.append(keras.layers.Dense(10, dtype=dtype, name="logits"))
    return keras.Sequential(layers, name="digits_mlp")


def model_from_params(params: Sequence[dict[str, np.ndarray]], dtype: str = "float32") -> keras.Sequential:
    """The MLP with given weights, e.g. the JAX example's: kernel = ``w``, bias = ``b``."""
    model = make_model(tuple(layer["w"].shape[1] for layer in params[:-1]), dtype)
    model.set_weights([np.asarray(layer[name]) for layer in params for name in ("w", "b")])
    return model


def mean_cross_entropy(model: keras.Model, batch: dict, training: bool = False) -> Any:
    """Mean softmax cross-entropy over the batch (a scalar): ``softmax_cross_entropy(model(x), batch)``."""
    return softmax_cross_entropy(model(batch["x"], training=training), batch)


def softmax_cross_entropy(logits: Any, batch: dict) -> Any:
    """Mean softmax cross-entropy of logits (batch, 10) against ``batch["y"]`` (a scalar; the
    problem's ``output_loss``). For this loss the Gauss–Newton matrix equals the Fisher."""
    return keras.ops.mean(keras.losses.sparse_categorical_crossentropy(batch["y"], logits, from_logits=True))


@functools.cache
def trained_weights(hidden: tuple[int, ...], train_steps: int, seed: int) -> list[np.ndarray]:
    """Full-batch Adam (lr 1e-2) from :func:`~raylanczos.examples.digits_data.init_params`.

    Trained in float64 on the CPU and rounded to float32 at the end: the float32 weights do
    not depend on how the CPU's threads split the sums (a last-bit difference in float64
    rarely survives rounding to float32), so every worker rebuilds the same ones.
    """
    x, y = load_digits()
    with tf.device("/CPU:0"):
        model = model_from_params(init_params(hidden, seed), dtype="float64")
        variables = [v.value for v in model.trainable_variables]
        batch = {"x": tf.constant(x, tf.float64), "y": tf.constant(y)}
        b1, b2, lr, eps = 0.9, 0.999, 1e-2, 1e-8
        m = [tf.Variable(tf.zeros_like(v)) for v in variables]
        s = [tf.Variable(tf.zeros_like(v)) for v in variables]

        @tf.function
        def adam_step(t: tf.Tensor) -> None:
            with tf.GradientTape() as tape:
                loss = mean_cross_entropy(model, batch)
            gradients = tape.gradient(loss, variables)
            scale = lr * tf.sqrt(1 - b2**t) / (1 - b1**t)
            for p, m_p, s_p, g in zip(variables, m, s, gradients):
                m_p.assign(b1 * m_p + (1 - b1) * g)
                s_p.assign(b2 * s_p + (1 - b2) * g * g)
                p.assign_sub(scale * m_p / (tf.sqrt(s_p) + eps))

        for t in range(1, train_steps + 1):
            adam_step(tf.constant(t, tf.float64))
        return [w.astype(np.float32) for w in model.get_weights()]
