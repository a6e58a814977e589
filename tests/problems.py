"""Problem factories for tests, importable as ``tests.problems:<name>`` in Ray workers."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import jax.numpy as jnp
import numpy as np

import raylanczos as rl
from raylanczos.examples import digits

NAN_ROW = 1000


def nan_data() -> rl.Problem:
    """The tiny digits MLP with one NaN pixel in example ``NAN_ROW``."""
    problem = digits.tiny_problem()
    x, y = digits.load_digits()
    x = x.copy()
    x[NAN_ROW, 7] = np.nan
    return rl.Problem.from_jax(problem.params, problem.loss_fn, rl.ArrayDataset({"x": x, "y": y}), problem.batch_size)


def vector_loss() -> rl.Problem:
    """A loss that forgets the mean: it returns one value per example."""
    problem = digits.tiny_problem()

    def per_example_loss(params, batch):
        logits = digits.forward(params, batch["x"])
        return -jnp.take_along_axis(logits, batch["y"][:, None], axis=1)[:, 0]

    return rl.Problem.from_jax(problem.params, per_example_loss, problem.data, problem.batch_size)


def default_dtype_loss() -> rl.Problem:
    """The tiny digits MLP whose loss builds an array of the default dtype (``jnp.ones``):
    float32 normally, float64 when traced with 64-bit types enabled."""
    problem = digits.tiny_problem()

    def loss(params, batch):
        return problem.loss_fn(params, batch) * jnp.ones(())

    return rl.Problem.from_jax(problem.params, loss, problem.data, problem.batch_size)


def not_a_problem():
    return {"params": None}


def raises() -> rl.Problem:
    raise FileNotFoundError("weights.ckpt")


def fail_flag() -> Path:
    """A flag file of this test session (its example cache directory, which the session's
    Ray workers and subprocesses inherit), so concurrent sessions do not share it."""
    return Path(os.environ["RAYLANCZOS_CACHE"]) / "fail-factory"


def fails_when_flagged() -> rl.Problem:
    """The tiny digits MLP, unless :func:`fail_flag` exists (a checkpoint gone missing, say)."""
    if fail_flag().exists():
        raise FileNotFoundError(f"flag {fail_flag()} is set")
    return digits.tiny_problem()


def hangs_in_workers() -> rl.Problem:
    """Returns at once in the driver but never in a Ray worker (a stuck filesystem, say)."""
    import ray

    if ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None:
        threading.Event().wait()
    return digits.tiny_problem()


def tiny_at_step(step: int = 300) -> rl.Problem:
    """The tiny digits MLP after ``step`` steps of full-batch Adam (a training checkpoint)."""
    return digits.make_problem(hidden=(4,), train_steps=step)


def digits_or_quadratic(kind: str = "digits", n: int = 20_000) -> rl.Problem:
    """``"digits"``: the digits MLP (2,410 parameters). ``"quadratic"``: n parameters w and
    the 1797 digits rows' mean pixel a, loss mean_b ½ (1 + a_b) Σᵢ dᵢ wᵢ² with
    d = linspace(0.1, 1, n) but d_{n−1} = 4: a diagonal Hessian with one outlier, for
    products of any n at O(n) cost on the same shard plan."""
    if kind == "digits":
        return digits.problem()
    x, _ = digits.load_digits()
    curvature = np.linspace(0.1, 1.0, n, dtype=np.float32)
    curvature[-1] = 4.0
    curvature = jnp.asarray(curvature)

    def loss(params, batch):
        return 0.5 * jnp.mean(1.0 + batch["a"]) * jnp.sum(curvature * params["w"] ** 2)

    data = rl.ArrayDataset({"a": x.mean(axis=1).astype(np.float32)})
    return rl.Problem.from_jax({"w": np.ones(n, dtype=np.float32)}, loss, data, batch_size=256)


def log_uniform_preconditioner(params, seed: int = 5):
    """A positive diagonal shaped like ``params``, entries log-uniform in [0.1, 10] (float64)."""
    rng = np.random.default_rng(seed)
    return [{name: 10.0 ** rng.uniform(-1.0, 1.0, np.shape(array)) for name, array in layer.items()} for layer in params]


def tiny_preconditioned() -> rl.Problem:
    """The tiny digits MLP with :func:`log_uniform_preconditioner`'s D."""
    problem = digits.tiny_problem()
    return rl.Problem.from_jax(
        problem.params, problem.loss_fn, problem.data, problem.batch_size,
        preconditioner=log_uniform_preconditioner(problem.params),
    )


#: Where :func:`bad_preconditioner` puts its first bad entry: tensor, position, flat index
#: (the tiny MLP's layout is 0/b (4), 0/w (64×4), 1/b (10), 1/w (4×10)).
BAD_PRECONDITIONER_ENTRY = ("1/w", (2, 3), 4 + 256 + 10 + 2 * 10 + 3)


def bad_preconditioner() -> rl.Problem:
    """The tiny digits MLP with a D that is −1 at ``1/w[2, 3]`` and NaN at ``1/w[3, 0]``."""
    problem = digits.tiny_problem()
    diagonal = log_uniform_preconditioner(problem.params)
    diagonal[1]["w"][2, 3] = -1.0
    diagonal[1]["w"][3, 0] = np.nan
    return rl.Problem.from_jax(
        problem.params, problem.loss_fn, problem.data, problem.batch_size, preconditioner=diagonal
    )
