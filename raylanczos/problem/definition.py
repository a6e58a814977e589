"""What the user describes: a model's parameters, a mean loss, the data and a batch size.

A *problem factory* is a function, importable as ``"package.module:function"``, that
returns a :class:`Problem`. It runs in every worker (so checkpoints load where the
accelerator is) and once in the driver, for the dataset's size and checks that need no
worker. It takes no arguments, or keyword arguments when a run sweeps over them (a
training step, say: ``factory(step=1000)``).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Union

from raylanczos.choices import BACKENDS, OPERATORS, check_int
from raylanczos.problem.data import ArrayDataset, Dataset


class ProblemError(ValueError):
    """A problem or problem factory that cannot be used as given."""


#: The optional extra of raylanczos that installs each framework a problem may need, by
#: the top-level module a missing import names.
EXTRA_OF_MODULE = {
    "jax": "jax",
    "jaxlib": "jax",
    "tensorflow": "tf",
    "keras": "tf",
    "sklearn": "examples",
}


def install_hint(err: BaseException) -> str:
    """For a ``ModuleNotFoundError`` of a framework that an extra of raylanczos installs,
    ``" (pip install 'raylanczos[<extra>]')"``; else the empty string."""
    name = getattr(err, "name", None) if isinstance(err, ModuleNotFoundError) else None
    extra = EXTRA_OF_MODULE.get((name or "").split(".")[0])
    if extra is None:
        return ""
    gpu = " or 'raylanczos[tf-cuda]' on GPU machines" if extra == "tf" else ""
    return f" (pip install 'raylanczos[{extra}]'{gpu})"


@dataclass(frozen=True)
class Problem:
    """A full-batch mean loss L(θ) = (1/N) Σᵢ ℓ(θ; xᵢ) whose curvature at ``params`` is wanted.

    Attributes:
      backend: the framework that differentiates the loss: ``"jax"``, or ``"keras"``
        (Keras 3 on TensorFlow).
      params: the parameters θ. For JAX, any pytree of arrays; the flat parameter vector
        follows the pytree's flattening order (``jax.flatten_util.ravel_pytree``). For
        Keras, the model itself; θ is ``model.trainable_variables``, in that order.
      loss_fn: ``loss_fn(params, batch) -> scalar`` (JAX) or ``loss_fn(model, batch)``
        (Keras), the *mean* loss over the batch.
      data: the dataset (:class:`~raylanczos.ArrayDataset` or :class:`~raylanczos.ParquetDataset`).
      batch_size: examples per product batch; the last batch of a shard may be smaller.
      training: Keras only. False (default): the model runs in inference mode
        (batch-norm moving statistics, no dropout). True: training mode (batch-norm uses
        each batch's statistics); ``loss_fn`` must then take a ``training`` argument and
        pass it on, ``model(x, training=training)``.
      predict: the network's outputs, ``predict(params, batch) -> f`` (JAX, any array or
        pytree); for Keras the model is ``predict``, called on ``batch[inputs]``. Needed,
        with ``output_loss``, for the Gauss–Newton operator.
      output_loss: the mean loss as a function of the outputs, ``output_loss(f, batch)
        -> scalar``, so that ``loss_fn(params, batch) = output_loss(predict(params, batch),
        batch)``.
      inputs: Keras only: the batch entry the model is called on for ``predict``.
      preconditioner: a positive diagonal D for the preconditioned operator
        D^{-1/2} H D^{-1/2} (Adam's √v̂ + ε, say): arrays shaped like the parameters (a
        pytree like ``params`` for JAX, one array per ``model.trainable_variables`` entry
        for Keras) or one flat array of n entries. Checked where it is used: every entry
        must be positive and finite.
      param_sharding: JAX only: how a worker with several devices (``devices_per_worker``
        G > 1) shards each parameter leaf, ``param_sharding(name, shape, devices) ->
        PartitionSpec | None`` of the leaf's layout name (``"layer0_mlp/w_in"``), its
        shape and G (see :data:`raylanczos.backends.jax_sharding.ShardingRule`); None
        replicates the leaf. Default (None here): :func:`~raylanczos.backends.jax_sharding.fsdp_rule`,
        each leaf along its largest axis that G divides.
    """

    backend: str
    params: Any
    loss_fn: Callable[..., Any]
    data: Dataset
    batch_size: int
    training: bool = False
    predict: Callable[..., Any] | None = None
    output_loss: Callable[..., Any] | None = None
    inputs: str = "x"
    preconditioner: Any = None
    param_sharding: Callable[[str, tuple[int, ...], int], Any] | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ProblemError(f"unknown backend {self.backend!r}; expected one of {BACKENDS}")
        if not callable(self.loss_fn):
            raise ProblemError(f"loss_fn must be callable, got {type(self.loss_fn).__name__}")
        for name in ("predict", "output_loss", "param_sharding"):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                raise ProblemError(f"{name} must be callable, got {type(getattr(self, name)).__name__}")
        if not isinstance(self.training, bool):
            raise ProblemError(f"training must be True or False, got {self.training!r}")
        if self.backend == "jax" and self.training:
            raise ProblemError("training=True applies to Keras models only; a JAX loss_fn chooses its own mode")
        if self.backend == "keras" and self.param_sharding is not None:
            raise ProblemError("param_sharding applies to JAX problems only; a Keras worker holds its model on one device")
        if self.backend == "keras":
            _check_keras_problem(self.params, self.loss_fn, self.training)
        if not isinstance(self.data, Dataset):
            raise ProblemError(
                f"data must be an ArrayDataset or ParquetDataset, got {type(self.data).__name__}"
            )
        try:
            check_int("batch_size", self.batch_size)
        except ValueError as err:
            raise ProblemError(str(err)) from None

    @classmethod
    def from_jax(
        cls,
        params: Any,
        loss_fn: Callable[[Any, dict], Any] | None,
        data: Dataset | Mapping[str, Any],
        batch_size: int,
        *,
        predict: Callable[[Any, dict], Any] | None = None,
        output_loss: Callable[[Any, dict], Any] | None = None,
        preconditioner: Any = None,
        param_sharding: Callable[[str, tuple[int, ...], int], Any] | None = None,
    ) -> "Problem":
        """A JAX problem: ``loss_fn(params, batch)`` returns the mean loss over ``batch``.

        ``data`` is a dataset or a mapping of equal-length arrays (made an :class:`ArrayDataset`).
        Give ``predict(params, batch) -> outputs`` and ``output_loss(outputs, batch) -> mean
        loss`` as well for the Gauss–Newton operator; with both, ``loss_fn`` may be None
        and is then ``output_loss(predict(params, batch), batch)``. ``preconditioner`` is the
        positive diagonal D of the preconditioned operator D^{-1/2} H D^{-1/2}: a pytree
        like ``params`` (Adam's √v̂ + ε) or one flat array of n entries. ``param_sharding``
        (name, shape, devices) -> ``PartitionSpec`` or None shards each leaf over a worker's
        devices when it has several (``devices_per_worker`` > 1); default the FSDP-like
        :func:`~raylanczos.backends.jax_sharding.fsdp_rule`.
        """
        if (predict is None) != (output_loss is None):
            raise ProblemError("give both predict and output_loss (for the Gauss-Newton operator), or neither")
        if loss_fn is None:
            if predict is None:
                raise ProblemError("loss_fn is required unless predict and output_loss are given")
            loss_fn = functools.partial(_composed_loss, predict, output_loss)
        return cls(
            "jax", params, loss_fn, _as_dataset(data), batch_size, predict=predict, output_loss=output_loss,
            preconditioner=preconditioner, param_sharding=param_sharding,
        )

    @classmethod
    def from_keras(
        cls,
        model: Any,
        loss_fn: Callable[..., Any] | None,
        data: Dataset | Mapping[str, Any],
        batch_size: int,
        *,
        training: bool = False,
        output_loss: Callable[[Any, dict], Any] | None = None,
        inputs: str = "x",
        preconditioner: Any = None,
    ) -> "Problem":
        """A Keras 3 (TensorFlow backend) problem: the curvature at the model's current weights.

        Args:
          model: a built ``keras.Model`` with trainable weights. θ is
            ``model.trainable_variables``, in that order, each raveled in C order.
          loss_fn: ``loss_fn(model, batch)`` returns the mean loss over ``batch`` (a
            mapping of arrays, as JAX problems receive), as a scalar. If it has a
            ``training`` parameter, it is called ``loss_fn(model, batch, training=...)``
            and should call ``model(x, training=training)``. May be None when
            ``output_loss`` is given: it is then ``output_loss(model(batch[inputs]), batch)``.
          data: a dataset or a mapping of equal-length arrays.
          batch_size: examples per product batch.
          training: False (default) evaluates batch-norm and dropout in inference mode
            (a ``loss_fn`` without a ``training`` parameter calls ``model(x)``, which Keras
            runs in inference mode). True selects training-mode batch statistics and needs
            a ``loss_fn`` with a ``training`` parameter. Either way, products never update
            the model's state (moving statistics, dropout seeds), so the operator is fixed.
          output_loss: ``output_loss(outputs, batch)``, the mean loss of the model's
            outputs on ``batch[inputs]``; needed for the Gauss–Newton operator.
          inputs: the batch entry the model is called on (default ``"x"``).
          preconditioner: the positive diagonal D of the preconditioned operator
            D^{-1/2} H D^{-1/2}: one array per ``model.trainable_variables`` entry, in that
            order (an optimiser's second moments, say), or one flat array of n entries.
        """
        for name, given in (("loss_fn", loss_fn), ("output_loss", output_loss)):
            if _is_keras_loss(given):
                raise ProblemError(
                    f"{name} is a Keras loss ({type(given).__name__}), a function of (labels, outputs); "
                    f"pass output_loss=lambda outputs, batch: loss(batch['y'], outputs) with loss_fn=None, "
                    "or a loss_fn(model, batch)"
                )
        if loss_fn is None:
            if output_loss is None:
                raise ProblemError("loss_fn is required unless output_loss is given")
            loss_fn = functools.partial(_keras_composed_loss, output_loss, inputs)
        predict = functools.partial(_keras_predict, inputs) if output_loss is not None else None
        return cls(
            "keras", model, loss_fn, _as_dataset(data), batch_size, training=training,
            predict=predict, output_loss=output_loss, inputs=inputs, preconditioner=preconditioner,
        )

    def check_operator(self, operator: str) -> None:
        """``ProblemError`` unless this problem can be multiplied by ``operator``."""
        if operator not in OPERATORS:
            raise ProblemError(f"unknown operator {operator!r}; expected one of {OPERATORS}")
        if operator == "ggn" and (self.predict is None or self.output_loss is None):
            maker = "Problem.from_jax(..., predict=..., output_loss=...)" if self.backend == "jax" else (
                "Problem.from_keras(..., output_loss=...)"
            )
            raise ProblemError(
                f"the Gauss-Newton operator (ggn) needs the network's outputs and the loss of the outputs apart: "
                f"build the problem with {maker}"
            )
        if operator == "preconditioned" and self.preconditioner is None:
            maker = "Problem.from_jax" if self.backend == "jax" else "Problem.from_keras"
            raise ProblemError(
                f"the preconditioned operator needs the diagonal D of D^-1/2 H D^-1/2: build the problem with "
                f"{maker}(..., preconditioner=...)"
            )

    def check_devices(self, devices: int) -> None:
        """``ProblemError`` unless this problem's workers can hold it on ``devices`` devices
        each: a Keras model stays on one device."""
        if self.backend == "keras" and devices != 1:
            raise ProblemError(
                f"devices per worker is {devices}, but Keras workers hold the model on one device; "
                "use --devices-per-worker 1 (more workers share the data instead)"
            )

    @property
    def num_examples(self) -> int:
        return self.data.num_examples


ProblemSource = Union[str, Problem, Callable[[], Problem]]


def _composed_loss(predict: Callable, output_loss: Callable, params: Any, batch: dict) -> Any:
    return output_loss(predict(params, batch), batch)


def _is_keras_loss(fn: Any) -> bool:
    """Whether ``fn`` is a ``keras.losses.Loss`` (called as ``loss(y_true, y_pred)``), found
    without importing Keras."""
    return any(cls.__name__ == "Loss" and cls.__module__.startswith("keras") for cls in type(fn).__mro__)


def _keras_predict(inputs: str, model: Any, batch: dict, training: bool = False) -> Any:
    return model(batch[inputs], training=training)


def _keras_composed_loss(output_loss: Callable, inputs: str, model: Any, batch: dict, training: bool = False) -> Any:
    return output_loss(_keras_predict(inputs, model, batch, training), batch)


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


def factory_search_path() -> list[str]:
    """Where a factory's module is looked for besides ``sys.path``: the current directory,
    then the ``PYTHONPATH`` entries (the same in the driver and, passed on, in every worker)."""
    entries = [os.getcwd()]
    entries += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return entries


def load_factory(spec: str) -> Callable[..., Problem]:
    """Import ``"package.module:function"``, searched on ``sys.path`` and, after it, in the
    current directory and ``PYTHONPATH`` (an installed console script, unlike
    ``python -m``, does not put the current directory on ``sys.path``)."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ProblemError(f"problem factory must look like 'package.module:function', got {spec!r}")
    ensure_on_path(factory_search_path())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        searched = err.name == module_name.split(".")[0]
        where = f" (looked on sys.path and in {os.getcwd()})" if searched else install_hint(err)
        raise ProblemError(
            f"cannot import module {module_name!r} for problem factory {spec!r}: {type(err).__name__}: {err}{where}"
        ) from err
    except Exception as err:  # noqa: BLE001 - any import failure is the user's to see
        raise ProblemError(
            f"cannot import module {module_name!r} for problem factory {spec!r}: {type(err).__name__}: {err}"
        ) from err
    try:
        factory = getattr(module, attribute)
    except AttributeError as err:
        raise ProblemError(f"module {module_name!r} has no attribute {attribute!r} (problem factory {spec!r})") from err
    if not callable(factory):
        raise ProblemError(f"problem factory {spec!r} is a {type(factory).__name__}, not a function")
    return factory


def source_name(source: "ProblemSource") -> str:
    """How errors and summaries name a problem source: its import path or its qualified name."""
    if isinstance(source, str):
        return source
    if isinstance(source, Problem):
        return "Problem"
    return getattr(source, "__qualname__", type(source).__name__)


def build_problem(source: ProblemSource, arguments: Mapping[str, Any] | None = None) -> Problem:
    """A :class:`Problem` from itself, a factory, or a factory's import path.

    ``arguments`` are keyword arguments for the factory (a sweep point such as
    ``{"step": 1000}``); a :class:`Problem` given as it is takes none.
    """
    arguments = dict(arguments or {})
    if isinstance(source, Problem):
        if arguments:
            raise ProblemError(f"a Problem takes no factory arguments, got {arguments!r}; pass its factory instead")
        return source
    name = source_name(source)
    factory = load_factory(source) if isinstance(source, str) else source
    if not callable(factory):
        raise ProblemError(f"expected a Problem, a factory function or 'module:function', got {type(source).__name__}")
    call = name + (f"({', '.join(f'{k}={v!r}' for k, v in arguments.items())})" if arguments else "")
    try:
        problem = factory(**arguments)
    except TypeError as err:
        if arguments and _refuses_arguments(factory, arguments):
            raise ProblemError(f"problem factory {name!r} does not take the arguments {sorted(arguments)}: {err}") from err
        raise ProblemError(f"problem factory {call!r} raised {type(err).__name__}: {err}") from err
    except Exception as err:  # noqa: BLE001
        raise ProblemError(f"problem factory {call!r} raised {type(err).__name__}: {err}{install_hint(err)}") from err
    if not isinstance(problem, Problem):
        raise ProblemError(
            f"problem factory {name!r} returned {type(problem).__name__}, expected raylanczos.Problem "
            "(build one with Problem.from_jax or Problem.from_keras)"
        )
    return problem


def _refuses_arguments(factory: Callable[..., Any], arguments: Mapping[str, Any]) -> bool:
    try:
        inspect.signature(factory).bind(**arguments)
    except TypeError:
        return True
    except ValueError:  # no signature to inspect
        return False
    return False


def ensure_on_path(entries: list[str]) -> None:
    """Append import-path entries (the driver's cwd and PYTHONPATH) missing from sys.path."""
    for entry in entries:
        if entry not in sys.path:
            sys.path.append(entry)
