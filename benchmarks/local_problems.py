"""The two problems of ``benchmarks/local.py``, with the same weights in JAX and in PyTorch.

A tanh MLP on the 1797 scikit-learn digits (8×8 inputs scaled to [0, 1], 10 classes), mean
softmax cross-entropy over the whole dataset:

- ``small``: hidden (32,), 2,410 parameters;
- ``wide``: hidden (512, 512), 301,066 parameters.

The weights are untrained: N(0, 1/fan_in) from a fixed seed, float32, the same arrays for
both frameworks, so every tool measures the Hessian of the same loss at the same point
(their λ_max agree to float32 rounding; the benchmark prints them). The data is one batch:
PyHessian's fastest form (one graph, its gradient reused by every product).

The JAX factories are what a user passes to ``raylanczos run --problem local_problems:small``;
:func:`torch_problem` is PyTorch's twin (imports torch).
"""

from __future__ import annotations

import itertools

import numpy as np

HIDDEN = {"small": (32,), "wide": (512, 512)}
SEED = 0


def weights(hidden: tuple[int, ...]) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(w (fan_in, fan_out), b (fan_out,)), ...] float32, input 64 → hidden → 10."""
    rng = np.random.default_rng(SEED)
    sizes = (64, *hidden, 10)
    return [
        (rng.normal(0.0, fan_in**-0.5, (fan_in, fan_out)).astype(np.float32), np.zeros(fan_out, np.float32))
        for fan_in, fan_out in itertools.pairwise(sizes)
    ]


def digits() -> tuple[np.ndarray, np.ndarray]:
    """Inputs float32 (1797, 64) and labels int32 (1797,)."""
    from raylanczos.examples.digits_data import load_digits

    return load_digits()


def jax_problem(name: str):
    """The ``name`` MLP as a :class:`raylanczos.Problem` (one batch of all 1797 digits)."""
    import raylanczos as rl
    from raylanczos.examples.digits import mean_cross_entropy

    x, y = digits()
    params = [{"w": w, "b": b} for w, b in weights(HIDDEN[name])]
    return rl.Problem.from_jax(params, mean_cross_entropy, rl.ArrayDataset({"x": x, "y": y}), batch_size=len(y))


def small():
    return jax_problem("small")


def wide():
    return jax_problem("wide")


def torch_problem(name: str):
    """``(model, inputs, targets)``: the ``name`` MLP as a ``torch.nn.Sequential`` with the
    same weights, and the digits as float32 and int64 tensors."""
    import torch

    layers: list[torch.nn.Module] = []
    for w, b in weights(HIDDEN[name]):
        linear = torch.nn.Linear(*w.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w.T.copy()))
            linear.bias.copy_(torch.from_numpy(b))
        layers += [linear, torch.nn.Tanh()]
    x, y = digits()
    return torch.nn.Sequential(*layers[:-1]), torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
