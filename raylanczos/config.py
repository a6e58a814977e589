"""A run's configuration, as four frozen dataclasses with one job each.

- :class:`SpectrumConfig`: what determines the numbers (order, draws, seed, operator,
  blocks, ...); part of the identity a checkpoint is resumed against.
- :class:`ScalingConfig`: where and how the products run (workers, resources, shard
  plan, reduction, Ray address, timeouts).
- :class:`OutputConfig`: where results go (output location, checkpoint, resume).
- :class:`DensityConfig`: how the density and statistics are drawn from the tridiagonals
  (σ², grid); a finished run can be re-rendered with another one.

Each validates its fields when built and raises :class:`OptionError`, which names the
option as the caller spelled it (``num_workers`` from Python, ``--workers`` from the
command line) and quotes the value received.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from raylanczos.choices import (  # the command line takes its choices from here
    COMPUTE_DTYPES,
    OPERATORS,
    PRODUCT_FORMS,
    PROGRESS_MODES,  # noqa: F401 - re-exported for the command line
    REDUCTIONS,
    START_DISTRIBUTIONS,
    STATES,
    check_choice,
    check_int,
)
from raylanczos.distributed.policy import DriverThreads, driver_threads
from raylanczos.numerics import logdensity, spectrum
from raylanczos.numerics.lanczos import LanczosOptions
from raylanczos.problem.data import ShardPlan

#: Draws per pass when the caller names none, if that many bases fit the driver's memory
#: budget (``ScalingConfig.basis_memory_gb``). Measured (docs/benchmarks.md, 2-core CPU):
#: per product, B = 4 is 1.5× faster than B = 1 on the 2,410-parameter digits MLP, 1.4× on
#: the digits conv net, 1.9× in Keras; on the 1.1M-parameter MLP, memory-bound on the
#: CPU, 0.86× (B = 2: 1.07×).
DEFAULT_DRAWS_PER_PASS = 4
#: The deflated eigenpairs' residuals, relative to the operator's norm: float32 products
#: are exact to about 1e-7·‖H‖ (docs/benchmarks.md), so tighter needs float64 products.
DEFAULT_DEFLATE_TOL = 1e-6


class OptionError(ValueError):
    """A bad value for one option. ``str()`` names it as a keyword (``num_workers``);
    :meth:`for_option` renders the message for another spelling (``--workers``)."""

    def __init__(self, option: str, value: Any, template: str):
        self.option, self.value, self.template = option, value, template
        super().__init__(self.for_option(option))

    def for_option(self, name: str) -> str:
        return self.template.format(name=name, value=self.value)


def _int(option: str, value: Any, minimum: int = 1) -> None:
    """:func:`~raylanczos.choices.check_int`, its error naming the option as the caller spells it."""
    try:
        check_int(option, value, minimum)
    except ValueError as err:
        raise OptionError(option, value, "{name}" + _literal(str(err).removeprefix(option))) from err


def _choice(option: str, value: Any, choices: tuple) -> None:
    """:func:`~raylanczos.choices.check_choice`, its error naming the option as the caller spells it."""
    try:
        check_choice(option, value, choices)
    except ValueError as err:
        raise OptionError(option, value, "{name}" + _literal(str(err).removeprefix(option))) from err


def _literal(text: str) -> str:
    """``text`` as a literal part of a ``str.format`` template (braces doubled)."""
    return text.replace("{", "{{").replace("}", "}}")


def _positive_number(option: str, value: Any, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise OptionError(option, value, "{name} must be a number " + bound + ", got {value!r}")


@dataclass(frozen=True)
class SpectrumConfig:
    """What determines a run's numbers.

    Attributes:
      order: m, Lanczos steps per draw (clamped to the operator's dimension).
      draws: D, independent start vectors (per block, with blocks).
      draws_per_pass: B, draws advanced together, their products computed in one pass
        over the data (clamped to the number of draws); None: :data:`DEFAULT_DRAWS_PER_PASS`,
        or fewer when that many bases would not fit in ``basis_memory_gb``.
      seed: seeds the start vectors (draw d uses ``default_rng([seed, d])``).
      distribution: ``"gaussian"`` or ``"rademacher"`` start vectors.
      compute_dtype: None (the model's dtype) or ``"float64"`` (validation mode).
      operator: ``"hessian"``, ``"ggn"`` (the generalised Gauss–Newton matrix) or
        ``"preconditioned"`` (D^{-1/2} H D^{-1/2} for the problem's positive diagonal D).
      blocks: glob patterns over the parameter layout's names; each gives one block
        (the operator restricted to those parameters) with its own spectrum.
      per_layer: one block per top-level layer or module (the layout names' first part).
      deflate: K > 0 first finds the K eigenpairs of largest magnitude (of each block, with
        blocks), then estimates the rest of the spectrum by SLQ on P C P, P = I − QQᵀ
        (:mod:`raylanczos.numerics.deflation`); 0: no deflation.
      deflate_tol: the K pairs must have true residuals ‖C q − λ q‖ ≤ ``deflate_tol``·‖C‖.
      target_width: X in (0, 1), or None (always ``draws`` draws): draw B at a time until
        the sampling part of the CDF band's half-width (absolute, in probability units)
        and the trace's standard error relative to |trace estimate| are both ≤ X, checked
        from 2 draws on, with ``draws`` the most (per block, with blocks); see
        :mod:`raylanczos.run.target`. The draws are those of a fixed run: a run that
        stopped at D' draws has the tridiagonals of ``draws=D'``.
      lanczos: the Lanczos step's thresholds.
    """

    order: int = 90
    draws: int = 10
    draws_per_pass: int | None = None
    seed: int = 0
    distribution: str = "gaussian"
    compute_dtype: str | None = None
    operator: str = "hessian"
    blocks: tuple[str, ...] = ()
    per_layer: bool = False
    deflate: int = 0
    deflate_tol: float = DEFAULT_DEFLATE_TOL
    target_width: float | None = None
    lanczos: LanczosOptions = field(default_factory=LanczosOptions)

    def __post_init__(self) -> None:
        _int("order", self.order)
        _int("draws", self.draws)
        if self.draws_per_pass is not None:
            _int("draws_per_pass", self.draws_per_pass)
        _int("seed", self.seed, minimum=0)
        _choice("distribution", self.distribution, START_DISTRIBUTIONS)
        _choice("compute_dtype", self.compute_dtype, COMPUTE_DTYPES)
        _choice("operator", self.operator, OPERATORS)
        if isinstance(self.blocks, str) or not all(isinstance(p, str) and p for p in self.blocks):
            raise OptionError("blocks", self.blocks, "{name} must be a list of non-empty glob patterns, got {value!r}")
        object.__setattr__(self, "blocks", tuple(self.blocks))
        if self.per_layer and self.blocks:
            raise OptionError("per_layer", self.per_layer, "{name} and blocks choose the blocks two ways: give one of them")
        _int("deflate", self.deflate, minimum=0)
        _positive_number("deflate_tol", self.deflate_tol)
        if self.target_width is not None:
            self._check_target_width()

    def _check_target_width(self) -> None:
        """A width in (0, 1), and a run that has a certificate to narrow (not a deflated one)."""
        _positive_number("target_width", self.target_width)
        if self.target_width >= 1:
            raise OptionError("target_width", self.target_width, "{name} must be below 1 (a probability and a relative error), got {value!r}")
        if self.draws < 2:
            raise OptionError("target_width", self.target_width, "{name} is checked from 2 draws on: give draws >= 2")
        if self.deflate:
            raise OptionError(
                "target_width", self.target_width,
                "{name} narrows the CDF band, which a deflated run (deflate) does not have: give one of them",
            )

    def block_size(self, tasks: int, basis_bytes: int, budget_bytes: float) -> int:
        """B for a run of ``tasks`` draws (all blocks' together) whose bases take
        ``basis_bytes`` each: ``draws_per_pass`` if given, else the default, as many as
        fit in ``budget_bytes`` of driver memory (at least 1); never more than ``tasks``."""
        if self.draws_per_pass is not None:
            return min(self.draws_per_pass, tasks)
        fit = tasks if math.isinf(budget_bytes) else int(budget_bytes // max(basis_bytes, 1))
        return max(1, min(DEFAULT_DRAWS_PER_PASS, tasks, fit))


@dataclass(frozen=True)
class ScalingConfig:
    """Where and how the products run.

    Attributes:
      num_workers: workers, one data shard each; None: the shard plan's count, or the
        default layout (one per GPU, or one per core, on a local machine).
      worker_resources: Ray options per worker, e.g. ``{"num_cpus": 1, "num_gpus": 1}``;
        None: the default layout's.
      shards: a :class:`~raylanczos.ShardPlan` or the path of a JSON shard plan; None:
        contiguous balanced rows.
      pin_cpus: pin each worker to its own cores (as many as its ``num_cpus``); None pins
        CPU-only workers and not GPU workers.
      reduce: ``"node"`` (sum each node's partials on the node) or ``"flat"`` (every
        partial to the driver).
      address: Ray address; None connects to a running Ray or starts a local one.
      timeout: seconds to wait for a worker to start or to answer one pass.
      placement_timeout: seconds to wait for a cluster that has too few resources now to
        add nodes (an autoscaler); None: 0 for a local Ray, 600 for a cluster address.
      max_restarts: how often a dead worker (killed process, lost node) is restarted;
        its pass is then recomputed, so the result is unchanged.
      basis_memory_gb: the driver's memory for the bases (GB): the default draws per pass
        is capped to the bases that fit, and when even one does not, the state is sharded
        (unless ``state`` says otherwise); with ``state="driver"`` and no checkpoint, bases
        of B·n·(m+1)·8 bytes above it are memory-mapped to temporary files.
      state: where the Lanczos vectors live: ``"driver"`` (the driver's bases), ``"sharded"``
        (keepers on the workers' nodes hold slices of them; the driver moves only scalars),
        or None: the driver while B bases fit ``basis_memory_gb``, else sharded.
      thread_policy: ``(pinned, driver_cores, worker_cores, dim) -> DriverThreads``, the threads
        of the driver's re-orthogonalisation (default
        :func:`raylanczos.policy.driver_threads`; benchmarks pass others).
      devices_per_worker: G, the devices each worker shards its model over (JAX problems
        only; :mod:`raylanczos.backends.jax_sharding`): G GPUs per worker on GPU workers
        (their ``num_gpus`` becomes G), else G host devices that XLA makes in the worker's
        process. 1 (the default) keeps the model on one device, as before.
      product_form: how a JAX worker computes a block's products
        (:data:`~raylanczos.choices.PRODUCT_FORMS`): ``"jvp-grad"``, ``"linearize"``, ``"map"``,
        or ``"auto"``: the workers time each on one batch at their warm-up and the run keeps
        the one whose slowest worker is fastest, if 1.25× faster than ``"jvp-grad"``
        (:data:`~raylanczos.distributed.policy.FORM_MARGIN`; ``"jvp-grad"`` at B = 1, unmeasured). The
        form may change the last bits of float32 products, so the run records the one it
        used and a resume computes with it (a different one forced is refused).
    """

    num_workers: int | None = None
    worker_resources: Mapping[str, Any] | None = None
    shards: str | os.PathLike | ShardPlan | None = None
    pin_cpus: bool | None = None
    reduce: str = "node"
    address: str | None = None
    timeout: float = 3600.0
    placement_timeout: float | None = None
    max_restarts: int = 3
    basis_memory_gb: float = 8.0
    state: str | None = None
    thread_policy: Callable[..., DriverThreads] = driver_threads
    devices_per_worker: int = 1
    product_form: str = "auto"

    def __post_init__(self) -> None:
        _int("devices_per_worker", self.devices_per_worker)
        _choice("product_form", self.product_form, PRODUCT_FORMS)
        if self.num_workers is not None:
            _int("num_workers", self.num_workers)
        if self.worker_resources is not None and not isinstance(self.worker_resources, Mapping):
            raise OptionError("worker_resources", self.worker_resources, "{name} must be a mapping of Ray actor options, got {value!r}")
        _choice("reduce", self.reduce, REDUCTIONS)
        if self.state is not None:
            _choice("state", self.state, STATES)
        _positive_number("timeout", self.timeout)
        if self.placement_timeout is not None:
            _positive_number("placement_timeout", self.placement_timeout, allow_zero=True)
        _int("max_restarts", self.max_restarts, minimum=0)
        _positive_number("basis_memory_gb", self.basis_memory_gb, allow_zero=True)
        for key in ("num_cpus", "num_gpus"):
            value = (self.worker_resources or {}).get(key)
            if value is not None:
                _positive_number(key, value, allow_zero=key == "num_gpus")


#: Default seconds between checkpoints (:attr:`OutputConfig.checkpoint_every_s`): at most
#: this much of a killed run's work is computed again; a save costs milliseconds on a small
#: net (a few percent of its passes if made after each) and B·2·n·8 bytes written per save.
CHECKPOINT_EVERY_S = 5.0


@dataclass(frozen=True)
class OutputConfig:
    """Where a run's results go.

    Attributes:
      out: output directory or object-store URI such as ``s3://bucket/runs/x``; None
        keeps results in memory.
      checkpoint_dir: local directory for the checkpoint and the memory-mapped bases;
        default ``<out>/checkpoint``, or a cache directory for a URI ``out``.
      checkpoint_every_s: seconds between checkpoints: the loop's state is saved after a
        pass when this long has passed since the last save, and after every pass in which
        a draw ended (before its slot takes the next draw); 0 saves after every pass. A run
        killed between saves resumes from the last one and computes the passes since again,
        to the same bits.
      resume: continue the run checkpointed in ``out``.
      overwrite: replace a finished or interrupted run in ``out``.
      save_vectors: also write each draw's Lanczos basis, ``lanczos_vec_<d>.npy``.
      top_eigenvectors: K > 0 writes the top-K Ritz vectors (``eigenvectors.npy``,
        float64 (K, n)) and their residual norms.
    """

    out: str | os.PathLike | None = None
    checkpoint_dir: str | os.PathLike | None = None
    checkpoint_every_s: float = CHECKPOINT_EVERY_S
    resume: bool = False
    overwrite: bool = False
    save_vectors: bool = False
    top_eigenvectors: int = 0

    def __post_init__(self) -> None:
        if self.resume and self.overwrite:
            raise OptionError("resume", True, "resume and overwrite contradict each other: continue the run or replace it, not both")
        if self.resume and self.out is None:
            raise OptionError("resume", True, "{name} needs the output location of the run to continue (out)")
        if self.checkpoint_dir is not None and self.out is None:
            raise OptionError("checkpoint_dir", self.checkpoint_dir, "{name} needs an output location (out)")
        _int("top_eigenvectors", self.top_eigenvectors, minimum=0)
        _positive_number("checkpoint_every_s", self.checkpoint_every_s, allow_zero=True)


@dataclass(frozen=True)
class DensityConfig:
    """How the density and the statistics are drawn from the tridiagonals.

    Attributes:
      sigma2_relative: the smoothing variance as a fraction of (λ_max − λ_min)².
      sigma2: an absolute variance (eigenvalue units squared); overrides the relative one.
      sigma2_original: the original spectral-density code's ``sigma_squared``: its variance
        convention, grid and normalisation, reproduced exactly (overrides both above).
      grid_points: density grid size.
      grid_range: (lower, upper) ends of the grid; None: the nodes with 5σ margins.
      top_k: how many extreme Ritz values the summary lists.
      negative_threshold: ε of the negative-eigenvalue estimate: the fraction of
        eigenvalues below −ε·‖H‖ (‖H‖ = max |Ritz value|).
      log_scale: also draw the density in log₁₀|λ|, its positive and negative parts apart,
        with the bulk at zero as its mass (:mod:`raylanczos.numerics.logdensity`); the
        figure is then that one, on a symmetric-log axis.
      log_sigma2: that kernel's variance, in decades².
      log_zero_threshold: ε of the bulk at zero: Ritz values with |θ| ≤ ε·‖H‖.
    """

    sigma2_relative: float = spectrum.DEFAULT_SIGMA2_RELATIVE
    sigma2: float | None = None
    sigma2_original: float | None = None
    grid_points: int = spectrum.DEFAULT_GRID_POINTS
    grid_range: tuple[float, float] | None = None
    top_k: int = 10
    negative_threshold: float = spectrum.DEFAULT_NEGATIVE_THRESHOLD
    log_scale: bool = False
    log_sigma2: float = logdensity.DEFAULT_LOG_SIGMA2
    log_zero_threshold: float = logdensity.DEFAULT_LOG_ZERO_THRESHOLD

    def __post_init__(self) -> None:
        _positive_number("sigma2_relative", self.sigma2_relative)
        for name in ("sigma2", "sigma2_original"):
            if getattr(self, name) is not None:
                _positive_number(name, getattr(self, name))
        _int("top_k", self.top_k)
        _int("grid_points", self.grid_points, minimum=2)
        if self.grid_range is not None:
            low, high = self.grid_range
            if not low < high:
                raise OptionError("grid_range", self.grid_range, "{name} must be increasing, got {value!r}")
        _positive_number("negative_threshold", self.negative_threshold)
        if not isinstance(self.log_scale, bool):
            raise OptionError("log_scale", self.log_scale, "{name} must be True or False, got {value!r}")
        _positive_number("log_sigma2", self.log_sigma2)
        _positive_number("log_zero_threshold", self.log_zero_threshold, allow_zero=True)


CONFIG_TYPES = (SpectrumConfig, ScalingConfig, OutputConfig, DensityConfig)


def split_options(options: Mapping[str, Any]) -> dict[type, dict[str, Any]]:
    """Route keyword options to the config type that has a field of that name."""
    routed: dict[type, dict[str, Any]] = {kind: {} for kind in CONFIG_TYPES}
    owners = {f.name: kind for kind in CONFIG_TYPES for f in dataclasses.fields(kind)}
    for name, value in options.items():
        if name not in owners:
            known = ", ".join(sorted(owners))
            raise TypeError(f"unknown option {name!r}; the options are {known}")
        routed[owners[name]][name] = value
    return routed


def build_configs(
    spectrum_config: SpectrumConfig | None,
    scaling: ScalingConfig | None,
    output: OutputConfig | None,
    density: DensityConfig | None,
    options: Mapping[str, Any],
) -> tuple[SpectrumConfig, ScalingConfig, OutputConfig, DensityConfig]:
    """The four configs: the ones given, with ``options`` (keyword fields) applied on top."""
    routed = split_options(options)
    given = dict(zip(CONFIG_TYPES, (spectrum_config, scaling, output, density)))
    built = []
    for kind in CONFIG_TYPES:
        base = given[kind]
        built.append(dataclasses.replace(base, **routed[kind]) if base is not None else kind(**routed[kind]))
    return tuple(built)  # type: ignore[return-value]
