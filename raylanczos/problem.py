"""What the user describes: a model's parameters, a mean loss, the data and a batch size.

A *problem factory* is a zero-argument function, importable as ``"package.module:function"``,
that returns a :class:`Problem`. It runs in every worker (so checkpoints load where the
accelerator is) and once in the driver, for the dataset's size.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Union

from raylanczos.data import ArrayDataset, Dataset

BACKENDS = ("jax", "keras")


class ProblemError(ValueError):
    """A problem or problem factory that cannot be used as given."""


@dataclass(frozen=True)
class Problem:
    """A full-batch mean loss L(θ) = (1/N) Σᵢ ℓ(θ; xᵢ) whose Hessian at ``params`` is wanted.

    Attributes:
      backend: the framework that differentiates ``loss_fn``: ``"jax"``, or ``"keras"``
        (Keras 3 on TensorFlow).
      params: the parameters θ. For JAX, any pytree of arrays; the flat parameter vector
        follows the pytree's flattening order (``jax.flatten_util.ravel_pytree``). For
        Keras, the model itself; θ is ``model.trainable_variables``, in that order.
      loss_fn: ``loss_fn(params, batch) -> scalar`` (JAX) or ``loss_fn(model, batch)``
        (Keras), the *mean* loss over the batch.
      data: the dataset (:class:`~raylanczos.ArrayDataset` or :class:`~raylanczos.ParquetDataset`).
      batch_size: examples per HVP batch; the last batch of a shard may be smaller.
      training: Keras only. False (default): the model runs in inference mode
        (batch-norm moving statistics, no dropout). True: training mode (batch-norm uses
        each batch's statistics); ``loss_fn`` must then take a ``training`` argument and
        pass it on, ``model(x, training=training)``.
    """

    backend: str
    params: Any
    loss_fn: Callable[..., Any]
    data: Dataset
    batch_size: int
    training: bool = False

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ProblemError(f"unknown backend {self.backend!r}; expected one of {BACKENDS}")
        if not callable(self.loss_fn):
            raise ProblemError(f"loss_fn must be callable, got {type(self.loss_fn).__name__}")
        if not isinstance(self.training, bool):
            raise ProblemError(f"training must be True or False, got {self.training!r}")
        if self.backend == "jax" and self.training:
            raise ProblemError("training=True applies to Keras models only; a JAX loss_fn chooses its own mode")
        if self.backend == "keras":
            _check_keras_problem(self.params, self.loss_fn, self.training)
        if not isinstance(self.data, Dataset):
            raise ProblemError(
                f"data must be an ArrayDataset or ParquetDataset, got {type(self.data).__name__}"
            )
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size <= 0:
            raise ProblemError(f"batch_size must be a positive integer, got {self.batch_size!r}")

    @classmethod
    def from_jax(
        cls, params: Any, loss_fn: Callable[[Any, dict], Any], data: Dataset | Mapping[str, Any], batch_size: int
    ) -> "Problem":
        """A JAX problem: ``loss_fn(params, batch)`` returns the mean loss over ``batch``.

        ``data`` is a dataset or a mapping of equal-length arrays (made an :class:`ArrayDataset`).
        """
        return cls("jax", params, loss_fn, _as_dataset(data), batch_size)

    @classmethod
    def from_keras(
        cls,
        model: Any,
        loss_fn: Callable[..., Any],
        data: Dataset | Mapping[str, Any],
        batch_size: int,
        *,
        training: bool = False,
    ) -> "Problem":
        """A Keras 3 (TensorFlow backend) problem: the Hessian at the model's current weights.

        Args:
          model: a built ``keras.Model`` with trainable weights. θ is
            ``model.trainable_variables``, in that order, each raveled in C order.
          loss_fn: ``loss_fn(model, batch)`` returns the mean loss over ``batch`` (a
            mapping of arrays, as JAX problems receive), as a scalar. If it has a
            ``training`` parameter, it is called ``loss_fn(model, batch, training=...)``
            and should call ``model(x, training=training)``.
          data: a dataset or a mapping of equal-length arrays.
          batch_size: examples per HVP batch.
          training: False (default) evaluates batch-norm and dropout in inference mode
            (a ``loss_fn`` without a ``training`` parameter calls ``model(x)``, which Keras
            runs in inference mode). True selects training-mode batch statistics and needs
            a ``loss_fn`` with a ``training`` parameter. Either way, HVPs never update the
            model's state (moving statistics, dropout seeds), so the operator is fixed.
        """
        return cls("keras", model, loss_fn, _as_dataset(data), batch_size, training=training)

    @property
    def num_examples(self) -> int:
        return self.data.num_examples


ProblemSource = Union[str, Problem, Callable[[], Problem]]


def accepts_training(loss_fn: Callable[..., Any]) -> bool:
    """Whether ``loss_fn`` can be called with a ``training=`` keyword."""
    try:
        parameters = inspect.signature(loss_fn).parameters.values()
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        return False
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return any(
        (p.name == "training" and p.kind in keyword) or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters
    )


def _check_keras_problem(model: Any, loss_fn: Callable[..., Any], training: bool) -> None:
    """Framework-free checks of a Keras problem (the backend checks the rest with TensorFlow)."""
    variables = getattr(model, "trainable_variables", None)
    if variables is None or isinstance(model, type):
        raise ProblemError(f"from_keras needs a keras.Model, got {type(model).__name__}")
    if not list(variables):
        name = getattr(model, "name", type(model).__name__)
        raise ProblemError(
            f"the Keras model {name!r} has no trainable weights (model.trainable_variables is empty), so there "
            "is nothing to differentiate; build it (give it a keras.Input or call it on a batch) and check that "
            "its layers are trainable"
        )
    if training and not accepts_training(loss_fn):
        raise ProblemError(
            "training=True needs a loss_fn with a training parameter, loss_fn(model, batch, training), that "
            "calls model(x, training=training); "
            f"{getattr(loss_fn, '__qualname__', repr(loss_fn))} takes {_signature(loss_fn)}"
        )


def _signature(fn: Callable[..., Any]) -> str:
    try:
        return str(inspect.signature(fn))
    except (TypeError, ValueError):
        return "an unknown signature"


def _as_dataset(data: Any) -> Any:
    """A mapping of arrays becomes an :class:`ArrayDataset`; anything else is left as it is."""
    return ArrayDataset(data) if isinstance(data, Mapping) else data


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
    except Exception as err:  # noqa: BLE001
        raise ProblemError(f"problem factory {name!r} raised {type(err).__name__}: {err}") from err
    if not isinstance(problem, Problem):
        raise ProblemError(
            f"problem factory {name!r} returned {type(problem).__name__}, expected raylanczos.Problem "
            "(build one with Problem.from_jax or Problem.from_keras)"
        )
    return problem


def ensure_on_path(entries: list[str]) -> None:
    """Append import-path entries (the driver's cwd and PYTHONPATH) missing from sys.path."""
    for entry in entries:
        if entry not in sys.path:
            sys.path.append(entry)
