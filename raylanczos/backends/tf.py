"""Keras backend: Hessian- and Gauss–Newton-vector products of a Keras 3 model on TensorFlow.

The flat parameter vector is ``model.trainable_variables``, in that order, each raveled in
C order, named by the variables' paths (:func:`keras_layout`). For a batch b with mean
loss L_b and a tangent v,

    H_b v = d/dε ∇L_b(θ + ε v) |_{ε=0}    (``tf.autodiff.ForwardAccumulator`` over ``tf.GradientTape``),
    G_b v = J_bᵀ ∇²ℓ_b(f_b) J_b v          (forward J v, output-space HVP, ``GradientTape`` Jᵀ),

for the B tangents of a block in one ``tf.function`` (``tf.vectorized_map`` over the
tangents, which keeps the computation that does not depend on them, the forward and
backward pass at θ, outside the vectorised loop), traced once per batch shape (a full
batch and, at most, one ragged last batch). The shard's sums Σ_b |b| · C_b v are added in
float64 where the products are computed, and copied to the host once per pass.

The loss runs inside a ``keras.StatelessScope``: the model's state (batch-norm moving
statistics, dropout seed generators) is read but never written, so a product does not
change the model and two products of the same vector are identical. This module imports
TensorFlow and Keras, never JAX.
"""

from __future__ import annotations

from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from raylanczos.backends.base import ShardBackend
from raylanczos.errors import exception_line
from raylanczos.problem.data import Batch
from raylanczos.problem.definition import Problem, ProblemError, accepts_training
from raylanczos.problem.layout import ParameterLayout, unique_names

#: The most characters of a framework's message that a one-line loss failure quotes.
CAUSE_LIMIT = 160
#: Dtype names (and dtype-policy names) that :func:`clone_in_dtype` rewrites.
FLOAT_DTYPE_NAMES = frozenset({"float16", "bfloat16", "float32", "float64", "mixed_float16", "mixed_bfloat16"})


class KerasBackend(ShardBackend):
    """Products of one shard of a Keras :class:`~raylanczos.Problem`.

    Args:
      problem: ``problem.params`` is a built Keras 3 model (TensorFlow backend) and
        ``problem.loss_fn(model, batch)`` (with ``training=`` if it takes it) returns the
        batch's mean loss as a scalar.
      arrays: the shard's examples (mapping of arrays, first axis = examples).
      compute_dtype: None computes in the model's dtype (float32 for most models);
        ``"float32"`` or ``"float64"`` rebuilds the model from its config in that dtype,
        with the same weights, and casts floating data to it (``"float64"`` is the
        validation mode).
      operator: ``"hessian"``, ``"ggn"`` (needs ``problem.output_loss``) or ``"preconditioned"``
        (needs ``problem.preconditioner``, one array per trainable variable).

    Attributes:
      layout: the flat vector's :class:`~raylanczos.layout.ParameterLayout`, named by the
        original model's variable paths.
      training: whether the model runs in training mode (``problem.training``).
      dtype: the compute dtype of the parameters (numpy dtype).
      accumulates_on_device: True: the batches' float64 products are summed where they
        are computed, and the sums copied to the host once.
    """

    accumulates_on_device = True

    def __init__(self, problem: Problem, arrays: Batch, *, compute_dtype: str | None = None, operator: str = "hessian"):
        check_keras()
        model = problem.params
        if not isinstance(model, keras.layers.Layer):
            raise ProblemError(f"a Keras problem needs a Keras 3 model (keras.Model), got {type(model).__name__}")
        if not model.trainable_variables:
            raise ProblemError(f"the Keras model {model.name!r} has no trainable weights: there is nothing to differentiate")
        self.layout = keras_layout(model)
        self.training = problem.training
        self.num_params = self.layout.num_params
        self._set_operator(problem, operator)
        self._cast_to = None
        policy = getattr(model, "dtype_policy", None)
        model_dtypes = {_widest_dtype(model.trainable_variables).name, getattr(policy, "compute_dtype", None)}
        if compute_dtype is not None and model_dtypes - {None} != {compute_dtype}:
            model = clone_in_dtype(model, compute_dtype)
            self._cast_to = np.dtype(compute_dtype)
        self._model = model
        self._variables = [v.value for v in model.trainable_variables]  # tf.Variables, as the tapes need
        self.dtype = np.dtype(_widest_dtype(model.trainable_variables).as_numpy_dtype)

        batches = self._split_batches(arrays, problem.batch_size, self._cast_to)
        self._batches = [{k: tf.identity(tf.convert_to_tensor(v)) for k, v in batch.items()} for batch in batches]
        self._loss = _bind_loss(problem.loss_fn, model, problem.training)
        self._check_first_batch(problem.inputs)
        sizes = [block.size for block in self.layout.blocks]
        if operator == "ggn":
            predict = _bind_loss(problem.predict, model, problem.training)
            product = _ggn_product(self._variables, sizes, predict, problem.output_loss)
        else:
            product = _hessian_product(self._variables, sizes, self._loss)
        self._block_product = tf.function(_vectorized(product))
        self._add_products = tf.function(_adding(product))

    @property
    def num_traces(self) -> int:
        """How often the summing ``tf.function`` has been traced (once per batch shape)."""
        return int(self._add_products.experimental_get_tracing_count())

    @staticmethod
    def host_placement() -> Any:
        """Tensors made in this context live on the host CPU."""
        return tf.device("/CPU:0")

    def _parameter_arrays(self, structure: Any) -> list[np.ndarray]:
        """One array per trainable variable, in ``model.trainable_variables`` order."""
        if isinstance(structure, dict) or not hasattr(structure, "__iter__"):
            raise ProblemError(
                f"a Keras preconditioner is a list of arrays, one per trainable variable, or one flat array; "
                f"got {type(structure).__name__}"
            )
        return [np.asarray(array) for array in structure]

    def _tangents(self, block: np.ndarray) -> tf.Tensor:
        return tf.constant(block)

    def _batch_product(self, tangents: tf.Tensor, batch: dict[str, tf.Tensor]) -> tf.Tensor:
        return self._block_product(tangents, batch)

    def _add_batch(self, total: tf.Tensor, size: int, tangents: tf.Tensor, batch: dict[str, tf.Tensor]) -> tf.Tensor:
        return self._add_products(total, tf.constant(float(size), tf.float64), tangents, batch)

    def _zero_sums(self, shape: tuple[int, int]) -> tf.Tensor:
        return tf.zeros(shape, tf.float64)

    def _to_host(self, products: tf.Tensor) -> np.ndarray:
        return products.numpy()

    def _check_first_batch(self, inputs: str) -> None:
        """Run the loss and its gradient once, eagerly: no framework error (e.g. an output shape
        that does not fit the labels), a scalar, and a value that depends on the model's weights.
        ``inputs`` is the batch entry the model is called on (the others are labels)."""
        batch = self._batches[0]
        try:
            with keras.StatelessScope(), tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(self._variables)
                loss = self._loss(batch)
            shape = tuple(tf.convert_to_tensor(loss).shape)
        except Exception as err:  # noqa: BLE001 - any failure is the model's or the loss's, reported in one line
            raise ProblemError(_loss_failure(self._model, batch, inputs, self.training, err)) from err
        if shape != ():
            raise ProblemError(
                f"loss_fn must return a scalar (the mean loss over the batch), got an array of shape {shape}"
            )
        if all(g is None for g in tape.gradient(loss, self._variables)):
            raise ProblemError(
                f"loss_fn's value does not depend on the trainable weights of the model it is given "
                f"({self._model.name!r}); it must call that model, its first argument, not another one"
            )


def check_keras() -> None:
    """Keras 3 on the TensorFlow backend, or a :class:`ProblemError` saying what is installed."""
    major = int(keras.__version__.split(".")[0])
    if major < 3:
        raise ProblemError(f"Keras models need Keras 3 (TensorFlow >= 2.16); found Keras {keras.__version__}")
    if keras.backend.backend() != "tensorflow":
        raise ProblemError(
            f"Keras models run on the TensorFlow backend, but Keras uses {keras.backend.backend()!r}; "
            "set KERAS_BACKEND=tensorflow before keras is imported"
        )


def keras_layout(model: Any) -> ParameterLayout:
    """Blocks in ``model.trainable_variables`` order, named by each variable's ``path``."""
    variables = list(model.trainable_variables)
    names = unique_names([str(getattr(v, "path", None) or v.name) for v in variables])
    return ParameterLayout.from_shapes((name, tuple(v.shape)) for name, v in zip(names, variables))


def clone_in_dtype(model: Any, dtype: str) -> Any:
    """A copy of ``model`` computing in ``dtype`` (``"float32"`` or ``"float64"``), same weights.

    The copy is rebuilt from the model's config with every floating dtype and dtype
    policy (layers, inputs) set to ``dtype``, under a global ``dtype`` policy for
    sub-layers that a subclassed model creates without one; then every weight is copied.
    """
    name = getattr(model, "name", type(model).__name__)
    hint = (
        "register custom layers and models with @keras.saving.register_keras_serializable() and give them "
        f"get_config(), or build the model in {dtype} in the problem factory"
    )
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)
    try:
        config = _with_float_dtype(keras.saving.serialize_keras_object(model), dtype)
        clone = keras.saving.deserialize_keras_object(config)
    except Exception as err:  # noqa: BLE001
        raise ProblemError(
            f"compute_dtype {dtype!r} rebuilds the model from its config, and model {name!r} cannot be rebuilt "
            f"({exception_line(err, first_line=True, limit=400)}); {hint}"
        ) from err
    finally:
        keras.config.set_dtype_policy(previous)
    source, target = list(model.weights), list(getattr(clone, "weights", []))
    shapes = [tuple(w.shape) for w in source]
    if [tuple(w.shape) for w in target] != shapes or len(clone.trainable_variables) != len(model.trainable_variables):
        raise ProblemError(
            f"compute_dtype {dtype!r}: the model {name!r} rebuilt from its config has weights of shapes "
            f"{[tuple(w.shape) for w in target]}, the original {shapes}; {hint}"
        )
    for t, s in zip(target, source):
        t.assign(np.asarray(s).astype(t.dtype) if _is_floating(t.dtype) else np.asarray(s))
    return clone


def _tangents(vector: tf.Tensor, variables: list, sizes: list[int]) -> list[tf.Tensor]:
    """The float64 flat ``vector`` split per variable, reshaped and cast to its dtype."""
    return [tf.cast(tf.reshape(p, v.shape), v.dtype) for p, v in zip(tf.split(vector, sizes), variables)]


def _flat(products: list[tf.Tensor]) -> tf.Tensor:
    return tf.concat([tf.reshape(tf.cast(p, tf.float64), [-1]) for p in products], axis=0)


def _hessian_product(variables: list, sizes: list[int], loss: Callable[[dict], Any]) -> Callable:
    """``(float64[n], batch) -> H_b v`` as float64[n]: forward over back, state read only."""
    zero = tf.UnconnectedGradients.ZERO

    def hessian_product(vector: tf.Tensor, batch: dict[str, tf.Tensor]) -> tf.Tensor:
        with keras.StatelessScope():
            with tf.autodiff.ForwardAccumulator(variables, _tangents(vector, variables, sizes)) as accumulator:
                with tf.GradientTape(watch_accessed_variables=False) as tape:
                    tape.watch(variables)
                    value = loss(batch)
                gradients = tape.gradient(value, variables, unconnected_gradients=zero)
            return _flat(accumulator.jvp(gradients, unconnected_gradients=zero))

    return hessian_product


def _ggn_product(
    variables: list, sizes: list[int], predict: Callable[[dict], Any], output_loss: Callable[[Any, dict], Any]
) -> Callable:
    """``(float64[n], batch) -> Jᵀ ∇²ℓ(f) J v`` as float64[n]: J v forward, the output-space
    Hessian-vector product forward over back, then Jᵀ by the tape."""
    zero = tf.UnconnectedGradients.ZERO

    def ggn_product(vector: tf.Tensor, batch: dict[str, tf.Tensor]) -> tf.Tensor:
        with keras.StatelessScope():
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(variables)
                with tf.autodiff.ForwardAccumulator(variables, _tangents(vector, variables, sizes)) as accumulator:
                    outputs = predict(batch)
            jv = accumulator.jvp(outputs, unconnected_gradients=zero)
            fixed = tf.stop_gradient(outputs)
            with tf.autodiff.ForwardAccumulator(fixed, jv) as output_accumulator:
                with tf.GradientTape() as output_tape:
                    output_tape.watch(fixed)
                    value = output_loss(fixed, batch)
                gradient = output_tape.gradient(value, fixed, unconnected_gradients=zero)
            curvature = output_accumulator.jvp(gradient, unconnected_gradients=zero)
            return _flat(tape.gradient(outputs, variables, output_gradients=curvature, unconnected_gradients=zero))

    return ggn_product


def _vectorized(product: Callable) -> Callable:
    """``(float64 (B, n), batch) -> float64 (B, n)``: the products of a block of tangents
    (vectorised over them; for B = 1 the plain product)."""

    def block_product(vectors: tf.Tensor, batch: dict[str, tf.Tensor]) -> tf.Tensor:
        if vectors.shape[0] == 1:  # the plain product, as for one vector
            return product(vectors[0], batch)[None]
        return tf.vectorized_map(lambda vector: product(vector, batch), vectors)

    return block_product


def _adding(product: Callable) -> Callable:
    """``(total, size, V, batch) -> total + size · C_b V``, all float64 (B, n)."""
    block_product = _vectorized(product)

    def add_products(total: tf.Tensor, size: tf.Tensor, vectors: tf.Tensor, batch: dict[str, tf.Tensor]) -> tf.Tensor:
        return total + size * block_product(vectors, batch)

    return add_products


def _bind_loss(loss_fn: Callable[..., Any], model: Any, training: bool) -> Callable[[dict], Any]:
    """``batch -> loss_fn(model, batch[, training=training])``."""
    if accepts_training(loss_fn):
        return lambda batch: loss_fn(model, batch, training=training)
    if training:
        raise ProblemError("training=True needs a loss_fn(model, batch, training) that calls model(x, training=training)")
    return lambda batch: loss_fn(model, batch)


def _with_float_dtype(config: Any, dtype: str) -> Any:
    """The serialized config with every floating ``"dtype"`` entry (name or policy) replaced by ``dtype``."""
    if isinstance(config, dict):
        if config.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") and (
            config.get("config", {}).get("name") in FLOAT_DTYPE_NAMES
        ):
            return dtype
        return {
            k: (dtype if k == "dtype" and isinstance(v, str) and v in FLOAT_DTYPE_NAMES else _with_float_dtype(v, dtype))
            for k, v in config.items()
        }
    if isinstance(config, list):
        return [_with_float_dtype(item, dtype) for item in config]
    return config


def _widest_dtype(variables: Any) -> tf.DType:
    dtypes = {tf.as_dtype(v.dtype) for v in variables}
    for d in dtypes:
        if not d.is_floating:
            raise ProblemError(f"trainable weights must be floating-point, found dtype {d.name}")
    return max(dtypes, key=lambda d: (d.size, d.name))


def _is_floating(dtype: Any) -> bool:
    return tf.as_dtype(dtype).is_floating


def _output_shape(model: Any) -> str:
    """The model's declared output shape, e.g. ``(None, 5)`` (None: the batch axis)."""
    outputs = getattr(model, "outputs", None)
    if not outputs:
        return "unknown (a subclassed model declares none)"
    shapes = [tuple(o.shape) for o in outputs]
    return str(shapes[0]) if len(shapes) == 1 else str(shapes)


def _loss_failure(model: Any, batch: dict[str, tf.Tensor], inputs: str, training: bool, err: Exception) -> str:
    """One line for a loss that failed on the first ``batch``.

    When the error is one that shapes or label values raise (``ValueError``,
    ``InvalidArgumentError``) and a label (a batch entry other than ``inputs``) does not
    fit the model's output on the batch, the line names both shapes and the fix, and leaves the framework's message
    to the chained cause: ``labels y (64,) int32 (class ids up to 9) need outputs (64, 10);
    the model 'm' has output shape (None, 5): give its last layer 10 units``. Otherwise it
    names the batch's arrays, the model's output shape and the error's first line, cut to
    :data:`CAUSE_LIMIT` characters.
    """
    shape_error = isinstance(err, (ValueError, tf.errors.InvalidArgumentError))
    outputs = _output_on(model, batch, inputs, training) if shape_error else None
    declared = _output_shape(model) if getattr(model, "outputs", None) or outputs is None else str(outputs)
    for name, labels in batch.items():
        need = None if name == inputs or outputs is None else _needed_outputs(labels, outputs)
        if need is None:
            continue
        shape = tuple(labels.shape)
        ids = f" (class ids up to {need[-1] - 1})" if labels.dtype.is_integer and need != shape else ""
        same_rank = len(need) == len(outputs) and need[:-1] == outputs[:-1]
        fix = f"give its last layer {need[-1]} units" if same_rank else f"make it output {need}"
        return (
            f"loss_fn failed on the first batch: labels {name} {shape} {labels.dtype.name}{ids} need outputs {need}; "
            f"the model {model.name!r} has output shape {declared}: {fix}"
        )
    arrays = ", ".join(f"{k} {tuple(v.shape)} {v.dtype.name}" for k, v in batch.items())
    return (
        f"loss_fn failed on the first batch ({arrays}); the model {model.name!r} has output shape {declared}: "
        f"{exception_line(err, first_line=True, limit=CAUSE_LIMIT)}"
    )


def _output_on(model: Any, batch: dict[str, tf.Tensor], inputs: str, training: bool) -> tuple[int, ...] | None:
    """The shape of the model's output on ``batch[inputs]``; None when there is no such entry,
    the output is not one array, or the model fails on it (the loss's error then says why)."""
    if inputs not in batch:
        return None
    try:
        with keras.StatelessScope():
            outputs = model(batch[inputs], training=training)
    except Exception:  # noqa: BLE001 - reported through the loss's own error
        return None
    shape = getattr(outputs, "shape", None)
    return tuple(shape) if shape is not None and len(shape) > 0 else None


def _needed_outputs(labels: tf.Tensor, outputs: tuple[int, ...]) -> tuple[int, ...] | None:
    """The output shape ``labels`` need, or None when ``outputs`` (a shape) fits them.

    Integer labels of shape ``outputs[:-1]`` (or that with a trailing 1) are class ids:
    they need at least max + 1 outputs in the last axis. Other labels need outputs of
    their own shape.
    """
    shape = tuple(labels.shape)
    if labels.dtype.is_integer and shape in (outputs[:-1], outputs[:-1] + (1,)):
        classes = int(tf.reduce_max(labels)) + 1
        return outputs[:-1] + (classes,) if outputs[-1] < classes else None
    return shape if shape != outputs else None
