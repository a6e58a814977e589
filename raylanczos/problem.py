"""What the user describes: a model's parameters, a mean loss, the data and a batch size.

A *problem factory* is a zero-argument function, importable as ``"package.module:function"``,
that returns a :class:`Problem`. It runs in every worker (so checkpoints load where the
accelerator is) and once in the driver, for the dataset's size.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Any, Callable, Union

from raylanczos.data import Dataset

BACKENDS = ("jax",)


class ProblemError(ValueError):
    """A problem or problem factory that cannot be used as given."""


@dataclass(frozen=True)
class Problem:
    """A full-batch mean loss L(θ) = (1/N) Σᵢ ℓ(θ; xᵢ) whose Hessian at ``params`` is wanted.

    Attributes:
      backend: the framework that differentiates ``loss_fn`` (``"jax"``).
      params: the parameters θ (for JAX, any pytree of arrays). The flat parameter
        vector follows the pytree's flattening order (``jax.flatten_util.ravel_pytree``).
      loss_fn: ``loss_fn(params, batch) -> scalar``, the *mean* loss over the batch.
      data: the dataset (:class:`~raylanczos.ArrayDataset` or :class:`~raylanczos.ParquetDataset`).
      batch_size: examples per HVP batch; the last batch of a shard may be smaller.
    """

    backend: str
    params: Any
    loss_fn: Callable[[Any, dict], Any]
    data: Dataset
    batch_size: int

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ProblemError(f"unknown backend {self.backend!r}; expected one of {BACKENDS}")
        if not callable(self.loss_fn):
            raise ProblemError(f"loss_fn must be callable, got {type(self.loss_fn).__name__}")
        if not isinstance(self.data, Dataset):
            raise ProblemError(
                f"data must be an ArrayDataset or ParquetDataset, got {type(self.data).__name__}"
            )
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size <= 0:
            raise ProblemError(f"batch_size must be a positive integer, got {self.batch_size!r}")

    @classmethod
    def from_jax(cls, params: Any, loss_fn: Callable[[Any, dict], Any], data: Dataset, batch_size: int) -> "Problem":
        """A JAX problem: ``loss_fn(params, batch)`` returns the mean loss over ``batch``."""
        return cls("jax", params, loss_fn, data, batch_size)

    @property
    def num_examples(self) -> int:
        return self.data.num_examples


ProblemSource = Union[str, Problem, Callable[[], Problem]]


def load_factory(spec: str) -> Callable[[], Problem]:
    """Import ``"package.module:function"``, searched on ``sys.path`` (cwd first)."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ProblemError(f"problem factory must look like 'package.module:function', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001 - any import failure is the user's to see
        raise ProblemError(
            f"cannot import module {module_name!r} for problem factory {spec!r}: {type(err).__name__}: {err}"
        ) from err
    try:
        factory = getattr(module, attribute)
    except AttributeError:
        raise ProblemError(f"module {module_name!r} has no attribute {attribute!r} (problem factory {spec!r})") from None
    if not callable(factory):
        raise ProblemError(f"problem factory {spec!r} is a {type(factory).__name__}, not a function")
    return factory


def build_problem(source: ProblemSource) -> Problem:
    """A :class:`Problem` from itself, a factory, or a factory's import path."""
    if isinstance(source, Problem):
        return source
    name = source if isinstance(source, str) else getattr(source, "__qualname__", repr(source))
    factory = load_factory(source) if isinstance(source, str) else source
    if not callable(factory):
        raise ProblemError(f"expected a Problem, a factory function or 'module:function', got {type(source).__name__}")
    try:
        problem = factory()
    except ProblemError:
        raise
    except Exception as err:  # noqa: BLE001
        raise ProblemError(f"problem factory {name!r} raised {type(err).__name__}: {err}") from err
    if not isinstance(problem, Problem):
        raise ProblemError(
            f"problem factory {name!r} returned {type(problem).__name__}, expected raylanczos.Problem "
            "(build one with Problem.from_jax)"
        )
    return problem


def ensure_on_path(entries: list[str]) -> None:
    """Append import-path entries (the driver's cwd and PYTHONPATH) missing from sys.path."""
    for entry in entries:
        if entry not in sys.path:
            sys.path.append(entry)
