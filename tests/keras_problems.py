"""Keras problem factories for tests, importable as ``tests.keras_problems:<name>`` in Ray workers.

Imports TensorFlow and Keras; the factories that need the JAX example's trained weights
import JAX lazily, inside the function.
"""

from __future__ import annotations

import keras
import numpy as np

import raylanczos as rl
from raylanczos.examples import digits_keras
from raylanczos.examples.digits_data import BATCH_SIZE, load_digits

TINY_HIDDEN = (4,)


def jax_tiny_weights() -> list[dict[str, np.ndarray]]:
    """The JAX example's trained tiny MLP weights (imports JAX)."""
    from raylanczos.examples import digits

    return digits.trained_params(TINY_HIDDEN, 300, 0)


def keras_tiny_with_jax_weights() -> rl.Problem:
    """The Keras digits MLP with the JAX tiny example's weights: the same function as JAX's
    (with ``output_loss``, so its Gauss–Newton matrix is the JAX one's too)."""
    model = digits_keras.model_from_params(jax_tiny_weights())
    x, y = load_digits()
    return rl.Problem.from_keras(
        model, digits_keras.mean_cross_entropy, {"x": x, "y": y}, BATCH_SIZE, output_loss=digits_keras.softmax_cross_entropy
    )


def jax_tiny_in_keras_order() -> rl.Problem:
    """The JAX tiny example with parameters ``[(w, b), ...]``: flat layout = Keras's (kernel, bias).

    Given as ``predict`` and ``output_loss`` (its ``loss_fn`` is their composition), so that
    it has a Gauss–Newton matrix too.
    """
    from raylanczos.examples import digits

    params = [(layer["w"], layer["b"]) for layer in jax_tiny_weights()]

    def predict(params, batch):
        return digits.logits([{"w": w, "b": b} for w, b in params], batch)

    x, y = load_digits()
    return rl.Problem.from_jax(
        params, None, {"x": x, "y": y}, BATCH_SIZE, predict=predict, output_loss=digits.softmax_cross_entropy
    )


def batchnorm_dropout(training: bool = False) -> rl.Problem:
    """Dense → BatchNormalization → Dropout(0.5) → Dense on 300 Gaussian examples, batches of 64.

    Weights and the batch-norm moving statistics are drawn at a fixed seed, so inference
    mode (moving statistics) and training mode (batch statistics) give different HVPs.
    The inputs are float64 and not representable in float32: float64 mode must not
    truncate them (the default mode casts them to float32 in the first layer).
    """
    rng = np.random.default_rng(11)
    x = rng.standard_normal((300, 6))
    y = rng.integers(0, 3, 300).astype(np.int32)
    inputs = keras.Input((6,), name="features")
    h = keras.layers.Dense(8, activation="tanh", name="dense_in")(inputs)
    h = keras.layers.BatchNormalization(name="norm")(h)
    h = keras.layers.Dropout(0.5, name="drop")(h)
    model = keras.Model(inputs, keras.layers.Dense(3, name="dense_out")(h), name="bn_dropout")
    weights = []
    for w in model.weights:
        value = rng.standard_normal(tuple(w.shape)) * 0.5
        weights.append(np.abs(value) + 0.5 if w.path.endswith("moving_variance") else value)
    model.set_weights([w.astype(np.float32) for w in weights])
    return rl.Problem.from_keras(model, sparse_cross_entropy, {"x": x, "y": y}, 64, training=training)


def sparse_cross_entropy(model, batch, training=False):
    logits = model(batch["x"], training=training)
    return keras.ops.mean(keras.losses.sparse_categorical_crossentropy(batch["y"], logits, from_logits=True))


def five_class_head() -> rl.Problem:
    """A 5-class head against one-hot labels of 10 classes: the output does not fit the labels."""
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(5)], name="five_classes")
    x, y = load_digits()

    def loss_fn(model, batch):
        return keras.ops.mean(keras.losses.categorical_crossentropy(batch["y"], model(batch["x"]), from_logits=True))

    return rl.Problem.from_keras(model, loss_fn, {"x": x, "y": np.eye(10, dtype=np.float32)[y]}, BATCH_SIZE)


def keras_order_preconditioner() -> list[np.ndarray]:
    """The JAX tiny example's test preconditioner in Keras's order (kernel, bias per layer)."""
    from tests.problems import log_uniform_preconditioner

    diagonal = log_uniform_preconditioner(jax_tiny_weights())
    return [layer[name] for layer in diagonal for name in ("w", "b")]


def keras_tiny_preconditioned() -> rl.Problem:
    """:func:`keras_tiny_with_jax_weights` with :func:`keras_order_preconditioner`'s D."""
    problem = keras_tiny_with_jax_weights()
    return rl.Problem.from_keras(
        problem.params, problem.loss_fn, problem.data, problem.batch_size, preconditioner=keras_order_preconditioner()
    )
