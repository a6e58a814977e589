"""A user's own project, as a new user writes one: a factory module in a directory of its own.

:func:`write_project` puts ``my_problem.py`` (a two-layer JAX MLP on random data, nothing
from raylanczos' examples) into a directory, for tests that run the installed
``raylanczos`` command from there, locally and under ``ray job submit``.
"""

from __future__ import annotations

import sys
from pathlib import Path

FACTORY = "my_problem:problem"
NUM_PARAMS = 8 * 6 + 6 + 6 * 3 + 3

SOURCE = '''\
import jax
import jax.numpy as jnp
import numpy as np

import raylanczos as rl


def problem():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 8)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int32) + (x[:, 2] > 1).astype(np.int32)
    params = {
        "hidden": {"w": (0.4 * rng.standard_normal((8, 6))).astype(np.float32), "b": np.zeros(6, np.float32)},
        "out": {"w": (0.4 * rng.standard_normal((6, 3))).astype(np.float32), "b": np.zeros(3, np.float32)},
    }

    def loss_fn(p, batch):
        h = jnp.tanh(batch["x"] @ p["hidden"]["w"] + p["hidden"]["b"])
        logits = h @ p["out"]["w"] + p["out"]["b"]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), batch["y"][:, None], axis=1))

    return rl.Problem.from_jax(params, loss_fn, {"x": x, "y": y}, batch_size=128)


def broken():
    raise FileNotFoundError("weights.npz: no such checkpoint")
'''


def write_project(directory: Path) -> Path:
    """Write ``my_problem.py`` into ``directory`` (created); returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "my_problem.py").write_text(SOURCE)
    return directory


def console_script() -> str:
    """The installed ``raylanczos`` command of this environment (beside its Python)."""
    script = Path(sys.executable).parent / "raylanczos"
    if not script.exists():
        raise FileNotFoundError(f"no installed raylanczos command at {script}: pip install the project first")
    return str(script)
