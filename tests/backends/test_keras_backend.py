"""The Keras (TensorFlow) backend: HVPs against dense Hessians, parity with JAX, determinism, bad input."""

from __future__ import annotations

import functools

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import raylanczos as rl  # noqa: E402
from raylanczos.backends import make_backend  # noqa: E402
from raylanczos.backends.tf import clone_in_dtype  # noqa: E402
from raylanczos.examples import digits_keras  # noqa: E402
from raylanczos.numerics import spectrum  # noqa: E402
from raylanczos.numerics.basis import BasisSweeps, allocate_basis  # noqa: E402
from raylanczos.operators.contract import InProcessOperator  # noqa: E402
from raylanczos.operators.local import LocalHessian  # noqa: E402
from raylanczos.run.loop import DrawTask, SpectrumLoop  # noqa: E402
from tests import keras_problems  # noqa: E402
from tests.conftest import WORKER_RESOURCES  # noqa: E402
from tests.matrices import UNEQUAL_SHARDS, relative_error  # noqa: E402


def dense_keras_hessian(problem: rl.Problem) -> np.ndarray:
    """∇²L(θ) in float64 over the whole dataset, by reverse-over-reverse ``tape.jacobian`` (n × n)."""
    model = clone_in_dtype(problem.params, "float64")
    variables = [v.value for v in model.trainable_variables]
    arrays = problem.data.read(rl.ShardPlan.balanced(problem.num_examples, 1).shards[0])
    batch = {k: tf.constant(v.astype(np.float64) if np.issubdtype(v.dtype, np.floating) else v) for k, v in arrays.items()}
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            loss = problem.loss_fn(model, batch)
        gradient = tf.concat([tf.reshape(g, [-1]) for g in inner.gradient(loss, variables)], axis=0)
    blocks = outer.jacobian(gradient, variables)
    return np.concatenate([b.numpy().reshape(gradient.shape[0], -1) for b in blocks], axis=1)


@functools.cache
def tiny_problem() -> rl.Problem:
    return digits_keras.tiny_problem()


@functools.cache
def tiny_hessian() -> np.ndarray:
    return dense_keras_hessian(tiny_problem())


@pytest.fixture(scope="module")
def vector() -> np.ndarray:
    return np.random.default_rng(7).standard_normal(tiny_hessian().shape[0])


def test_float64_hvp_matches_dense_hessian(vector):
    """Whole data in batches of 256 (7 full, one ragged of 5), one tf.function trace per shape."""
    hessian = LocalHessian(tiny_problem(), compute_dtype="float64")
    backend = hessian.workers[0].backend
    assert backend.batch_sizes[-1] == 5 and backend.dtype == np.float64
    assert np.allclose(tiny_hessian(), tiny_hessian().T, rtol=0, atol=1e-12 * np.abs(tiny_hessian()).max())
    assert relative_error(hessian.matvec(vector), tiny_hessian() @ vector) < 1e-10
    assert relative_error(hessian.matvec(-2.0 * vector), tiny_hessian() @ (-2.0 * vector)) < 1e-10
    assert backend.num_traces == 2


def test_float32_hvp_and_unequal_shards(vector):
    """The model's own dtype (float32), and shards of 700, 597 and 500 rows, each ending ragged."""
    assert relative_error(LocalHessian(tiny_problem()).matvec(vector), tiny_hessian() @ vector) < 1e-5
    hessian = LocalHessian(tiny_problem(), plan=UNEQUAL_SHARDS, compute_dtype="float64")
    assert [w.backend.batch_sizes[-1] for w in hessian.workers] == [700 - 512, 597 - 512, 500 - 256]
    assert relative_error(hessian.matvec(vector), tiny_hessian() @ vector) < 1e-10


@pytest.mark.slow
def test_float64_mode_keeps_float64_inputs_and_batchnorm():
    """Functional model with BatchNormalization and Dropout on float64 data (inference mode)."""
    problem = keras_problems.batchnorm_dropout()
    hessian = LocalHessian(problem, compute_dtype="float64")
    clone = hessian.workers[0].backend._model
    assert clone.inputs[0].dtype == "float64" and all(w.dtype == "float64" for w in clone.weights)
    assert problem.params.weights[0].dtype == "float32"  # the problem's model is left as it was
    v = np.random.default_rng(1).standard_normal(hessian.dim)
    assert relative_error(hessian.matvec(v), dense_keras_hessian(problem) @ v) < 1e-10


@pytest.mark.slow
def test_batchnorm_and_dropout_are_deterministic():
    """Default mode (inference): two HVPs bit for bit equal, and the model's state untouched.

    Training mode uses batch statistics (a different HVP), is deterministic too, and does
    not update the moving statistics either.
    """
    problem = keras_problems.batchnorm_dropout()
    state = [w.numpy().copy() for w in problem.params.non_trainable_weights]
    hessian = LocalHessian(problem)
    v = np.random.default_rng(2).standard_normal(hessian.dim)
    first = hessian.matvec(v)
    assert np.array_equal(first, hessian.matvec(v))
    trained = LocalHessian(keras_problems.batchnorm_dropout(training=True))
    in_training_mode = trained.matvec(v)
    assert np.array_equal(in_training_mode, trained.matvec(v))
    assert relative_error(in_training_mode, first) > 1e-2
    assert trained.workers[0].describe()["training"] is True and hessian.workers[0].describe()["training"] is False
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(state, problem.params.non_trainable_weights))


def test_hvp_parity_with_jax():
    """Same architecture and weights in Keras and JAX (parameters ordered alike): HVPs agree."""
    keras_problem = keras_problems.keras_tiny_with_jax_weights()
    jax_problem = keras_problems.jax_tiny_in_keras_order()
    keras_hvp = LocalHessian(keras_problem, compute_dtype="float64")
    jax_hvp = LocalHessian(jax_problem, compute_dtype="float64")
    keras_layout = keras_hvp.workers[0].backend.layout
    jax_layout = jax_hvp.workers[0].backend.layout
    assert [b.shape for b in keras_layout.blocks] == [b.shape for b in jax_layout.blocks]
    assert jax_layout.names == ["0/0", "0/1", "1/0", "1/1"]
    v = np.random.default_rng(3).standard_normal(keras_hvp.dim)
    assert relative_error(keras_hvp.matvec(v), jax_hvp.matvec(v)) < 1e-10


@pytest.mark.slow
def test_three_draws_per_pass_match_jax_three_draws_per_pass(ray_session):
    """B = 3 on both backends, float64: Keras (tf.vectorized_map over the block) on two Ray
    workers against JAX (jax.vmap) in process, the same weights and seed: the same
    tridiagonals to 1e-9. (That JAX through Ray gives the in-process tridiagonals to 1e-12
    is test_pipeline's ``test_distribution_is_transparent``.)"""
    keras_run = rl.hessian_spectrum(
        "tests.keras_problems:keras_tiny_with_jax_weights", order=15, draws=3, seed=2, draws_per_pass=3,
        num_workers=2, worker_resources=WORKER_RESOURCES, compute_dtype="float64", progress="none",
    )
    assert keras_run.summary["config"]["draws_per_pass"] == 3 and len(keras_run.summary["timings"]["rows"]) == 15
    workers = [(w["backend"], w["training"], w["sums_on_device"]) for w in keras_run.summary["workers"]]
    assert workers == [("keras", False, True)] * 2
    reference = InProcessOperator(LocalHessian(keras_problems.jax_tiny_in_keras_order(), compute_dtype="float64"), 3)
    tasks = [DrawTask(d, "", d, reference.dim) for d in range(3)]
    with BasisSweeps() as sweeps:
        bases = [allocate_basis(16, reference.dim) for _ in range(3)]
        jax_run = SpectrumLoop(reference, tasks, 15, bases, seed=2, distribution="gaussian", sweeps=sweeps).run()
    want = spectrum.stack_tridiagonals([jax_run.finished[d].tridiagonal() for d in range(3)], 15)
    assert np.max(np.abs(keras_run.tridiagonals - want)) <= 1e-9 * np.abs(want).max()


# Bad input: each a clear error naming the culprit.


def test_model_without_trainable_weights_is_refused():
    model = digits_keras.make_model((4,))
    model.trainable = False
    x, y = digits_keras.load_digits()
    with pytest.raises(rl.ProblemError, match="'digits_mlp' has no trainable weights"):
        rl.Problem.from_keras(model, digits_keras.mean_cross_entropy, {"x": x, "y": y}, 256)
    unbuilt = keras.Sequential([keras.layers.Dense(10)])
    with pytest.raises(rl.ProblemError, match="no trainable weights.*build it"):
        rl.Problem.from_keras(unbuilt, digits_keras.mean_cross_entropy, {"x": x, "y": y}, 256)


def test_vector_loss_is_refused():
    problem = tiny_problem()

    def per_example_loss(model, batch):
        return keras.losses.sparse_categorical_crossentropy(batch["y"], model(batch["x"]), from_logits=True)

    bad = rl.Problem.from_keras(problem.params, per_example_loss, problem.data, problem.batch_size)
    with pytest.raises(rl.ProblemError, match=r"must return a scalar.*shape \(256,\)"):
        make_backend(bad, bad.data.arrays)


def test_data_of_different_lengths_is_refused():
    x, y = digits_keras.load_digits()
    with pytest.raises(ValueError, match=r"equal lengths.*'x': 1797, 'y': 1796"):
        rl.Problem.from_keras(tiny_problem().params, digits_keras.mean_cross_entropy, {"x": x, "y": y[:-1]}, 256)


def five_class_head() -> keras.Model:
    return keras.Sequential([keras.Input((64,)), keras.layers.Dense(5)], name="five_classes")


def test_output_shape_that_does_not_fit_the_labels_is_refused():
    """A 5-class head against one-hot labels of 10 classes: named shapes and the fix in one
    short line, not a TF traceback; TensorFlow's error is kept as the cause."""
    x, y = digits_keras.load_digits()

    def loss_fn(model, batch):
        return keras.ops.mean(keras.losses.categorical_crossentropy(batch["y"], model(batch["x"]), from_logits=True))

    problem = rl.Problem.from_keras(five_class_head(), loss_fn, {"x": x, "y": np.eye(10, dtype=np.float32)[y]}, 256)
    with pytest.raises(rl.ProblemError, match=r"y \(256, 10\).*'five_classes' has output shape \(None, 5\)") as caught:
        make_backend(problem, problem.data.arrays)
    line = str(caught.value)
    assert line == (
        "loss_fn failed on the first batch: labels y (256, 10) float32 need outputs (256, 10); "
        "the model 'five_classes' has output shape (None, 5): give its last layer 10 units"
    )
    assert isinstance(caught.value.__cause__, ValueError)


def test_class_ids_beyond_the_outputs_are_one_short_line():
    """Integer labels 0–9 against 5 logits: TensorFlow's message names its op and dumps every
    label of the batch; the line names the labels' need and the fix in under 200 characters."""
    x, y = digits_keras.load_digits()
    problem = rl.Problem.from_keras(five_class_head(), digits_keras.mean_cross_entropy, {"x": x, "y": y}, 64)
    with pytest.raises(rl.ProblemError) as caught:
        make_backend(problem, problem.data.arrays)
    line = str(caught.value)
    assert len(line) <= 200 and "\n" not in line, line
    assert line == (
        "loss_fn failed on the first batch: labels y (64,) int32 (class ids up to 9) need outputs (64, 10); "
        "the model 'five_classes' has output shape (None, 5): give its last layer 10 units"
    )
    assert "Label values" in str(caught.value.__cause__) and "Label values" not in line


def test_a_loss_failure_that_is_not_about_the_labels_quotes_the_error():
    """A loss reading a batch entry that does not exist: its KeyError, not a story about labels."""
    x, y = digits_keras.load_digits()

    def loss_fn(model, batch):
        return keras.ops.mean(model(batch["pixels"]))

    problem = rl.Problem.from_keras(five_class_head(), loss_fn, {"x": x, "y": y}, 64)
    with pytest.raises(rl.ProblemError) as caught:
        make_backend(problem, problem.data.arrays)
    assert str(caught.value) == (
        "loss_fn failed on the first batch (x (64, 64) float32, y (64,) int32); "
        "the model 'five_classes' has output shape (None, 5): KeyError: 'pixels'"
    )


def test_training_mode_needs_a_training_parameter():
    problem = tiny_problem()
    with pytest.raises(rl.ProblemError, match=r"training=True needs a loss_fn.*takes \(model, batch\)"):
        rl.Problem.from_keras(problem.params, lambda model, batch: 0.0, problem.data, 256, training=True)
    with pytest.raises(rl.ProblemError, match="Keras models only"):
        rl.Problem("jax", {"w": np.zeros(2)}, lambda p, b: 0.0, problem.data, 256, training=True)


def test_loss_that_ignores_the_model_argument_is_refused_in_float64_mode():
    """float64 mode hands loss_fn a float64 copy; a loss closing over the original would give H v = 0."""
    problem = tiny_problem()
    original = problem.params

    def closes_over_the_original(model, batch):
        return digits_keras.mean_cross_entropy(original, batch)

    bad = rl.Problem.from_keras(original, closes_over_the_original, problem.data, problem.batch_size)
    make_backend(bad, bad.data.arrays)  # the model's own dtype: the same model, accepted
    with pytest.raises(rl.ProblemError, match="does not depend on the trainable weights.*must call that model"):
        make_backend(bad, bad.data.arrays, compute_dtype="float64")


@pytest.mark.slow
def test_nan_data_names_worker_shard_and_rows():
    problem = tiny_problem()
    x, y = digits_keras.load_digits()
    x = x.copy()
    x[1000, 7] = np.nan
    bad = rl.Problem.from_keras(problem.params, digits_keras.mean_cross_entropy, {"x": x, "y": y}, problem.batch_size)
    hessian = LocalHessian(bad, plan=rl.ShardPlan.balanced(bad.num_examples, 2))
    with pytest.raises(RuntimeError, match=r"worker 1, shard 1 \(rows \[898, 1797\)\).*dataset rows \[898, 1154\)"):
        hessian.matvec(np.ones(hessian.dim))


@pytest.mark.parametrize("argument", ["loss_fn", "output_loss"])
def test_a_keras_loss_object_is_refused_with_the_call_that_works(argument):
    """``keras.losses.Loss`` objects take (labels, outputs), not (model, batch) or
    (outputs, batch): refused when the problem is built, naming the fix."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    data = {"x": np.zeros((4, 3), np.float32), "y": np.zeros(4, np.int32)}
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    given = {"loss_fn": loss, "output_loss": None} if argument == "loss_fn" else {"loss_fn": None, "output_loss": loss}
    with pytest.raises(rl.ProblemError, match=rf"^{argument} is a Keras loss \(SparseCategoricalCrossentropy\).*output_loss=lambda outputs, batch: loss\(batch\['y'\], outputs\)"):
        rl.Problem.from_keras(model, given["loss_fn"], data, 2, output_loss=given["output_loss"])
    fixed = rl.Problem.from_keras(model, None, data, 2, output_loss=lambda outputs, batch: loss(batch["y"], outputs))
    assert LocalHessian(fixed).dim == 8
