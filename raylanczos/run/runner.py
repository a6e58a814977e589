"""The run: from a problem and its configuration to finished, rendered spectra, over Ray.

Everything the driver can check is checked before any worker starts: the options, the
output location, the problem factory, the loss on the first batch, the shard plan, the
blocks and, when resuming, the checkpoint's configuration. Then the workers start, the
:class:`~raylanczos.loop.SpectrumLoop` runs the draws over the distributed operator, and
the outputs are rendered (:mod:`raylanczos.outputs.render`). Each finished draw is written to
``tridiag.npy`` at once, so no finished draw is lost.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import tempfile
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Mapping, Sequence

import numpy as np
import ray
from threadpoolctl import threadpool_limits

from raylanczos.backends import make_backend
from raylanczos.config import (
    DEFAULT_DRAWS_PER_PASS,
    DensityConfig,
    OptionError,
    OutputConfig,
    ScalingConfig,
    SpectrumConfig,
    build_configs,
)
from raylanczos.distributed.hessian import DistributedHessian
from raylanczos.distributed.policy import default_layout
from raylanczos.distributed.session import connect, single_machine
from raylanczos.distributed.workers import WorkerGroup, WorkerOptions
from raylanczos.numerics import spectrum
from raylanczos.numerics.basis import BasisSweeps, allocate_basis
from raylanczos.numerics.ritz import RitzPairs, best_pairs, ritz_pairs
from raylanczos.operators.contract import TIMING_COLUMNS
from raylanczos.outputs.progress import Progress, byte_size, make_progress, reporting
from raylanczos.outputs.render import (
    OPERATOR_TITLES,
    RENDERED_NAMES,
    SpectrumResult,
    load_result,
    render_parts,
    render_spectrum,
)
from raylanczos.outputs.store import OutputStore, npy_writer
from raylanczos.problem.blocks import BlockSelection, select_blocks
from raylanczos.problem.data import Shard, ShardPlan
from raylanczos.problem.definition import (
    Problem,
    ProblemSource,
    build_problem,
    source_name,
)
from raylanczos.problem.layout import ParameterLayout
from raylanczos.run.checkpoint import Checkpoint, CheckpointError
from raylanczos.run.loop import (
    DrawTask,
    FinishedDraw,
    LoopHooks,
    LoopState,
    SpectrumLoop,
)
from raylanczos.run.sweep import SweepPoint, sweep_points, sweep_title

logger = logging.getLogger("raylanczos")

#: Rows of the first batch the driver checks the loss on (on its own CPU, before workers start).
PREFLIGHT_ROWS = 64


def hessian_spectrum(
    problem: ProblemSource,
    config: SpectrumConfig | None = None,
    scaling: ScalingConfig | None = None,
    output: OutputConfig | None = None,
    density: DensityConfig | None = None,
    *,
    sweep: Mapping[str, Sequence[Any]] | None = None,
    progress: str | Progress = "auto",
    **options: Any,
) -> SpectrumResult:
    """Estimate the eigenvalue density of a problem's Hessian (or Gauss–Newton matrix) by
    stochastic Lanczos quadrature on a Ray worker group.

    Args:
      problem: a :class:`Problem`, a factory returning one, or ``"module:function"``
        (imported in the driver and in every worker; preferred on clusters).
      config, scaling, output, density: the run's configuration
        (:class:`~raylanczos.config.SpectrumConfig`, ``ScalingConfig``, ``OutputConfig``,
        ``DensityConfig``); defaults for any not given.
      sweep: ``{name: [values]}``: one run of ``factory(name=value)`` per value, with the same
        start vectors, each in ``<out>/name=value/`` (see :mod:`raylanczos.run.sweep`); the
        points' results are in ``parts`` by point name.
      progress: ``"auto"`` (a bar on a terminal, else log lines), ``"bar"``, ``"lines"``,
        ``"none"``, or a :class:`~raylanczos.progress.Progress`. Log lines go to the
        ``raylanczos`` logger; with no logging configured they are shown on standard error.
      **options: any field of the four configs by name, e.g. ``order=90, draws=10,
        draws_per_pass=4, num_workers=4, worker_resources={"num_gpus": 1}, out="runs/x",
        seed=0, resume=False`` (applied on top of the config objects).

    Returns:
      A :class:`~raylanczos.render.SpectrumResult`; with blocks, their results are in
      ``parts`` by block name.
    """
    spectrum_config, scaling, output, density = build_configs(config, scaling, output, density, options)
    reporter = progress if isinstance(progress, Progress) else make_progress(progress)
    points = sweep_points(sweep, output) if sweep is not None else None
    with reporting():
        if points is not None:
            _check_sweep_factories(problem, points)
        return _run_points(problem, spectrum_config, scaling, output, density, reporter, sweep, points)


def _check_sweep_factories(problem: ProblemSource, points: list[SweepPoint]) -> None:
    """Call the factory of every point still to run but the first, in the driver, before the
    first one starts (which builds its own problem before any worker does): a bad value or
    a missing checkpoint at the last point is refused in seconds, not after the other
    points have run."""
    later = [point for point in points if not point.finished][1:]
    for point in later:
        build_problem(problem, point.arguments)
    if later:
        logger.info("sweep: the factory builds the later points (%s)", ", ".join(p.name for p in later))


def _run_points(
    problem: ProblemSource, spectrum_config: SpectrumConfig, scaling: ScalingConfig, output: OutputConfig,
    density: DensityConfig, reporter: Progress, sweep: Mapping[str, Sequence[Any]] | None,
    points: list[SweepPoint] | None,
) -> SpectrumResult:
    """The run, or each point of the sweep in turn, on one set of workers."""
    with Workers(scaling.address) as workers:
        if points is None:
            return _Run(problem, spectrum_config, scaling, output, density, reporter).execute(workers)
        results = {}
        for point in points:
            if point.finished:
                logger.info("sweep point %s: finished already, kept", point.name)
                results[point.name] = load_result(point.output.out)
            else:
                logger.info("sweep point %s", point.name)
                run = _Run(problem, spectrum_config, scaling, point.output, density, reporter, point.arguments)
                results[point.name] = run.execute(workers)
    return _render_sweep(problem, sweep, spectrum_config, results, OutputStore(output.out))


def _render_sweep(
    problem: ProblemSource, sweep: Mapping[str, Sequence[Any]], config: SpectrumConfig,
    results: dict[str, SpectrumResult], out: OutputStore,
) -> SpectrumResult:
    """A sweep's top level: the points' overlay and statistics, titled with what varies.
    Each point's name is its sub-directory and its legend label."""
    ((name, values),) = sweep.items()
    operator = OPERATOR_TITLES.get(config.operator, config.operator)
    summary = {"config": {"problem": source_name(problem), "operator": config.operator}, "sweep": {"name": name, "values": list(values)}}
    title = sweep_title(source_name(problem), operator, name, next(iter(results.values())).summary["config"])
    names = {point: point for point in results}
    return render_parts(results, names, summary, out, title=title, labels=names)


@dataclass(frozen=True)
class ProblemFacts:
    """What the driver learns of a problem before any worker starts."""

    num_params: int
    layout: ParameterLayout
    dtype: str
    backend: str
    training: bool | None
    num_examples: int
    batch_size: int


def inspect_problem(problem: Problem, config: SpectrumConfig) -> ProblemFacts:
    """Build the backend on the first rows in the driver, on its CPU: the checks a worker
    would make at start-up (parameters finite, the loss a scalar on a batch, the operator
    available), seconds before any worker starts, and the parameter layout."""
    rows = min(problem.batch_size, PREFLIGHT_ROWS, problem.num_examples)
    arrays = problem.data.read(Shard(0, rows=((0, rows),)))
    backend = make_backend(problem, arrays, compute_dtype=config.compute_dtype, operator=config.operator, on_host=True)
    return ProblemFacts(
        num_params=backend.num_params, layout=backend.layout, dtype=str(backend.dtype), backend=problem.backend,
        training=backend.training, num_examples=problem.num_examples, batch_size=problem.batch_size,
    )


class Workers:
    """A run's Ray connection and worker group, kept across the points of a sweep.

    The group is reused for a point whose workers would be the same (shard plan,
    resources, operator, block size); the workers then rebuild the problem with the
    point's factory arguments, keeping the shard's data when the dataset is the same.
    """

    def __init__(self, address: str | None):
        self.address = address
        self.group: WorkerGroup | None = None
        self._key: Any = None
        self._connected = False
        self._started_ray = False

    def connect(self) -> None:
        if not self._connected:
            self._started_ray = connect(self.address)
            self._connected = True

    def group_for(self, key: Any, start, arguments: dict[str, Any] | None, block_size: int) -> WorkerGroup:
        """The group ``start()`` makes, or the current one moved to ``arguments`` if its ``key`` matches."""
        self.connect()
        if self.group is not None and key == self._key:
            self.group.load_point(arguments, block_size)
            return self.group
        if self.group is not None:
            self.group.shutdown()
            self.group = None
        self.group, self._key = start(), key
        return self.group

    def close(self) -> None:
        if self.group is not None:
            self.group.shutdown()
            self.group = None
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Run:
    """One spectrum of :func:`hessian_spectrum` (or one point of a sweep): the checks, the
    workers, the loop, the outputs. ``arguments`` are the factory's keyword arguments."""

    def __init__(self, source, config, scaling, output, density, progress, arguments: dict[str, Any] | None = None):
        self.source, self.config, self.scaling, self.output, self.density = source, config, scaling, output, density
        self.progress = progress
        self.arguments = dict(arguments) if arguments else None
        self.out = OutputStore(output.out) if output.out is not None else None
        self.checkpoint = _prepare_output(self.out, output)

    def execute(self, workers: Workers) -> SpectrumResult:
        problem = build_problem(self.source, self.arguments)
        facts = inspect_problem(problem, self.config)
        blocks = select_blocks(facts.layout, self.config.blocks, self.config.per_layer)
        self.parts = _parts(blocks, facts)
        draws = self.config.draws
        self.tasks = [
            DrawTask(p * draws + d, part.name, d, part.dim, part.indices)
            for p, part in enumerate(self.parts) for d in range(draws)
        ]
        for part in self.parts:
            if self.config.order > part.dim:
                logger.warning(
                    "order %d exceeds the number of parameters %d%s; using order %d",
                    self.config.order, part.dim, f" of block {part.name!r}" if part.name else "", part.dim,
                )
        largest = max(part.dim for part in self.parts)
        basis_bytes = (min(self.config.order, largest) + 1) * largest * 8
        block_size = self.config.block_size(len(self.tasks), basis_bytes, self.scaling.basis_memory_gb * 1e9)
        if self.config.draws_per_pass is None and block_size < min(DEFAULT_DRAWS_PER_PASS, len(self.tasks)):
            logger.info(
                "draws per pass: %d, as many bases of %s as fit in basis_memory_gb %g (choose with --draws-per-pass)",
                block_size, byte_size(basis_bytes), self.scaling.basis_memory_gb,
            )
        scaling = self.scaling
        explicit = scaling.shards is not None or scaling.num_workers is not None or scaling.worker_resources is not None
        plan = _shard_plan(scaling, problem) if explicit else None
        identity = self._identity(facts, plan, block_size) if plan is not None else None
        resumed = self._resume(identity) if identity is not None and self.output.resume else None

        resources = self.scaling.worker_resources
        if plan is None:
            workers.connect()
            plan, resources = self._default_layout(problem)
            identity = self._identity(facts, plan, block_size)
            resumed = self._resume(identity) if self.output.resume else None
        options = WorkerOptions(
            compute_dtype=self.config.compute_dtype, operator=self.config.operator, arguments=self.arguments,
            max_restarts=self.scaling.max_restarts, timeout=self.scaling.timeout, pin_cpus=self.scaling.pin_cpus,
        )
        source = self.source if isinstance(self.source, str) else problem
        key = (source_name(self.source), json.dumps(plan.to_json()), json.dumps(resources, sort_keys=True, default=str),
               dataclasses.replace(options, arguments=None), block_size)
        group = workers.group_for(
            key,
            lambda: WorkerGroup(
                source, plan, resources=resources, options=options, block_size=block_size,
                placement_timeout=self._placement_timeout(),
            ),
            self.arguments,
            block_size,
        )
        groups = resumed[2] if resumed is not None else group.node_groups()
        operator = DistributedHessian(
            group, facts.num_examples, block_size=block_size, reduce=self.scaling.reduce, groups=groups,
            arguments=self.arguments,
        )
        if resumed is None and self.checkpoint is not None:
            _clear_previous_outputs(self.out)
            self.checkpoint.begin(identity, groups)
        state, bases = resumed[:2] if resumed is not None else (None, self._new_bases(block_size))
        threads = group.driver_threads(self.scaling.thread_policy)
        logger.info("driver: %s", threads.describe())
        with threadpool_limits(limits=threads.blas, user_api="blas"), BasisSweeps(threads.sweeps) as sweeps:
            state = self._loop(operator, bases, sweeps, state)
        for info, pid in zip(group.infos, group.current_pids()):
            info.update(pid_at_end=pid, restarted=pid != info["pid"])
        summary = {
            "raylanczos_version": _version("raylanczos"),
            "versions": _versions(),
            "config": self._summary_config(facts, plan, block_size),
            "dataset": problem.data.describe(),
            "workers": [dict(info) for info in group.infos],
            "worker_resources": group.resources,
            "reduce": {"mode": self.scaling.reduce, "node_groups": operator.groups},
            "broadcast_dtype": str(operator.broadcast_dtype),
            "parameter_layout": facts.layout.to_json(),
            "timings": _timing_summary(state.timings),
        }
        return self._render(state, summary)

    # ----------------------------------------------------------------- before the workers

    def _identity(self, facts: ProblemFacts, plan: ShardPlan, block_size: int) -> dict[str, Any]:
        """What determines the run's numbers: a checkpoint resumes only a run with the same."""
        return {
            **self._summary_config(facts, plan, block_size),
            "lanczos": dataclasses.asdict(self.config.lanczos),
            "reduce": self.scaling.reduce,
        }

    def _summary_config(self, facts: ProblemFacts, plan: ShardPlan, block_size: int) -> dict[str, Any]:
        config = self.config
        return {
            "problem": source_name(self.source),
            "arguments": self.arguments,
            "order": min(config.order, facts.num_params),
            "draws": config.draws,
            "draws_per_pass": block_size,
            "seed": config.seed,
            "distribution": config.distribution,
            "compute_dtype": config.compute_dtype or "model",
            "model_dtype": facts.dtype,
            "operator": config.operator,
            "blocks": [{"name": p.name, "pattern": p.pattern, "dim": p.dim} for p in self.parts if p.name],
            "backend": facts.backend,
            "training": facts.training,
            "num_params": facts.num_params,
            "num_examples": facts.num_examples,
            "batch_size": facts.batch_size,
            "shard_plan": plan.to_json(),
        }

    def _resume(self, identity: dict[str, Any]) -> tuple[LoopState, list[np.ndarray], list[list[int]]]:
        state, bases, groups = self.checkpoint.load(identity, [task.dim for task in self.tasks])
        done = sum(record.steps for record in state.finished.values())
        logger.info(
            "resuming: %d draw(s) finished, %d in progress, %d Lanczos steps done",
            len(state.finished), sum(entry is not None for entry in state.slots), done,
        )
        return state, bases, groups

    def _default_layout(self, problem: Problem) -> tuple[ShardPlan, dict[str, Any]]:
        resources = ray.cluster_resources()
        layout = default_layout(int(resources.get("CPU", 1)), int(resources.get("GPU", 0)), local=single_machine())
        workers = min(layout.num_workers, problem.num_examples)
        each = ", ".join(f"{v:g} {k.removeprefix('num_').upper().rstrip('S')}" for k, v in layout.resources.items())
        logger.info(
            "workers: %d × (%s): %s; choose with --workers and --cpus-per-worker/--gpus-per-worker", workers, each, layout.reason,
        )
        return ShardPlan.balanced(problem.num_examples, workers).validate(problem.data), layout.resources

    def _placement_timeout(self) -> float:
        if self.scaling.placement_timeout is not None:
            return self.scaling.placement_timeout
        return 0.0 if single_machine() else 600.0

    def _new_bases(self, block_size: int) -> list[np.ndarray]:
        rows = min(self.config.order, max(p.dim for p in self.parts)) + 1
        dim = max(p.dim for p in self.parts)
        each = rows * dim * 8
        gigabytes = block_size * each / 1e9
        sizes = f"{block_size} × {byte_size(each)} = {byte_size(block_size * each)}"
        if self.checkpoint is not None:
            logger.info("bases: %s (B × n·(m+1)·8 bytes), memory-mapped in %s", sizes, self.checkpoint.directory)
            return self.checkpoint.new_bases(block_size, rows, dim)
        if gigabytes <= self.scaling.basis_memory_gb:
            logger.info("bases: %s (B × n·(m+1)·8 bytes) in memory", sizes)
            return [allocate_basis(rows, dim) for _ in range(block_size)]
        bases = []
        for _ in range(block_size):
            handle, path = tempfile.mkstemp(prefix="raylanczos-basis-", suffix=".npy")
            os.close(handle)
            bases.append(allocate_basis(rows, dim, path))
            os.unlink(path)  # the mapping keeps the file until the basis is released
        logger.info(
            "bases: %s > basis_memory_gb %g: memory-mapped to temporary files in %s",
            sizes, self.scaling.basis_memory_gb, tempfile.gettempdir(),
        )
        return bases

    # ----------------------------------------------------------------- the loop

    def _loop(self, operator: DistributedHessian, bases, sweeps: BasisSweeps, state: LoopState | None) -> LoopState:
        self.eigenvectors: dict[str, RitzPairs | None] = {part.name: None for part in self.parts}
        if state is not None and self.output.top_eigenvectors:
            self.eigenvectors.update(self.checkpoint.load_eigenvectors())
        loop = SpectrumLoop(
            operator, self.tasks, self.config.order, bases, seed=self.config.seed, distribution=self.config.distribution,
            sweeps=sweeps, options=self.config.lanczos,
            hooks=LoopHooks(
                checkpoint=self.checkpoint.save if self.checkpoint is not None else None,
                finished=self._finished,
                progress=self._report,
            ),
        )
        self._finished_so_far = dict(state.finished) if state is not None else {}
        done = sum(r.steps for r in self._finished_so_far.values()) + sum(
            entry[1].steps for entry in (state.slots if state is not None else []) if entry is not None
        )
        self.progress.start(loop.total_steps, done, operator.block_size)
        try:
            return loop.run(state)
        finally:
            self.progress.close()

    def _finished(self, task: DrawTask, lanczos, record: FinishedDraw) -> None:
        """A draw ended: log it, keep its Ritz pairs, write its part's finished tridiagonals."""
        self._finished_so_far[task.index] = record
        part = self._part(task.block)
        logger.info(
            "draw %d%s done: %d steps%s, orthogonality loss %.1e, %d second re-orthogonalisation passes, %d fresh products",
            task.draw + 1, f" of block {part.name!r}" if part.name else "", record.steps,
            " (invariant subspace found)" if record.breakdown else "", record.orthogonality,
            record.second_passes, record.fresh_products,
        )
        if self.output.top_eigenvectors:
            alpha, beta = record.tridiagonal()
            pairs = ritz_pairs(
                lanczos.basis, alpha, beta, float(lanczos.beta[lanczos.steps - 1]), self.output.top_eigenvectors
            )
            self.eigenvectors[part.name] = best_pairs(self.eigenvectors[part.name], pairs)
            if self.checkpoint is not None:
                self.checkpoint.save_eigenvectors(self.eigenvectors)
        if self.out is None:
            return
        store = self._store(part)
        if self.output.save_vectors:
            store.write(f"lanczos_vec_{task.draw}.npy", npy_writer(np.asarray(lanczos.basis[: lanczos.steps])))
        records = [r for i, r in sorted(self._finished_so_far.items()) if self.tasks[i].block == part.name]
        order = min(self.config.order, part.dim)
        store.write("tridiag.npy", npy_writer(spectrum.stack_tridiagonals([r.tridiagonal() for r in records], order)))

    def _report(self, state: LoopState, row: list[float]) -> None:
        done = sum(r.steps for r in state.finished.values()) + sum(
            entry[1].steps for entry in state.slots if entry is not None
        )
        self.progress.update(done, len(state.finished), len(self.tasks), dict(zip(TIMING_COLUMNS, row)))

    # ----------------------------------------------------------------- outputs

    def _part(self, name: str) -> "_Part":
        return next(part for part in self.parts if part.name == name)

    def _store(self, part: "_Part") -> OutputStore:
        return self.out.child(part.path) if part.path else self.out

    def _render(self, state: LoopState, summary: dict[str, Any]) -> SpectrumResult:
        results = {}
        for part in self.parts:
            indices = [task.index for task in self.tasks if task.block == part.name]
            records = [state.finished[i] for i in indices]
            part_summary = dict(summary, **self._draw_fields(records))
            part_summary["config"] = dict(summary["config"], num_params=part.dim, order=min(self.config.order, part.dim))
            if part.name:
                part_summary["part"] = part.name
                part_summary["block"] = {"pattern": part.pattern, "parameters": list(part.parameters), "dim": part.dim}
            store = self._store(part) if self.out is not None else None
            if store is not None:  # the final tridiagonals, whatever was written draw by draw
                order = min(self.config.order, part.dim)
                store.write("tridiag.npy", npy_writer(spectrum.stack_tridiagonals([r.tridiagonal() for r in records], order)))
            part_summary.update(self._write_eigenvectors(part, store))
            results[part.name] = render_spectrum([r.tridiagonal() for r in records], part_summary, store, self.density)
        if len(self.parts) == 1 and not self.parts[0].name:
            return results[""]
        return render_parts(results, {p.name: p.path for p in self.parts}, summary, self.out)

    def _draw_fields(self, records: list[FinishedDraw]) -> dict[str, Any]:
        return {
            "steps_completed": [r.steps for r in records],
            "breakdown": [r.breakdown for r in records],
            "orthogonality_loss": [r.orthogonality for r in records],
            "second_reorthogonalisation_passes": [r.second_passes for r in records],
            "fresh_products": [r.fresh_products for r in records],
        }

    def _write_eigenvectors(self, part: "_Part", store: OutputStore | None) -> dict[str, Any]:
        pairs = self.eigenvectors.get(part.name)
        if pairs is None:
            return {}
        if store is not None:
            store.write("eigenvectors.npy", npy_writer(pairs.vectors))
        return {
            "top_eigenvectors": {
                "file": "eigenvectors.npy",
                "shape": list(pairs.vectors.shape),
                "values": pairs.values.tolist(),
                "residual_norms": pairs.residuals.tolist(),
                "residual_norms_note": "||H y - theta y||, from the Lanczos relation (no extra products)",
                "layout": "rows follow parameter_layout" if not part.name else "rows follow the block's parameters, in layout order",
            }
        }


@dataclass(frozen=True)
class _Part:
    """An operator of the run: the whole model (name "") or one block; ``path`` is its
    output sub-directory ("" for the top level)."""

    name: str
    pattern: str
    parameters: tuple[str, ...]
    dim: int
    indices: np.ndarray | None
    path: str


def _parts(blocks: list[BlockSelection], facts: ProblemFacts) -> list[_Part]:
    if not blocks:
        return [_Part("", "", tuple(facts.layout.names), facts.num_params, None, "")]
    return [_Part(b.name, b.pattern, b.parameters, b.dim, b.indices, f"blocks/{b.name}") for b in blocks]


def _shard_plan(scaling: ScalingConfig, problem: Problem) -> ShardPlan:
    shards, num_workers = scaling.shards, scaling.num_workers
    if shards is None:
        plan = ShardPlan.balanced(problem.num_examples, num_workers or 1)
    elif isinstance(shards, ShardPlan):
        plan = shards
    else:
        plan = ShardPlan.from_json(shards)
    if num_workers is not None and plan.num_workers != num_workers:
        raise OptionError("num_workers", num_workers, "{name} {value} does not match the shard plan's " + f"{plan.num_workers} workers")
    return plan.validate(problem.data)


OUTPUT_NAMES = ("tridiag.npy", *RENDERED_NAMES, "eigenvectors.npy")


def _prepare_output(out: OutputStore | None, output: OutputConfig) -> Checkpoint | None:
    if out is None:
        return None
    checkpoint = Checkpoint(output.checkpoint_dir if output.checkpoint_dir is not None else out.default_checkpoint_dir())
    if output.resume:
        if not checkpoint.exists():
            raise CheckpointError(f"nothing to resume: {checkpoint.directory} holds no checkpoint")
        return checkpoint
    occupied = checkpoint.exists() or any(out.exists(name) for name in OUTPUT_NAMES)
    if occupied and not output.overwrite:
        hint = "resume it (--resume), overwrite it (--overwrite)" if checkpoint.exists() else "overwrite it (--overwrite)"
        raise FileExistsError(f"{out} already holds a run; {hint} or choose another --out")
    out.ensure_writable()
    return checkpoint


def _clear_previous_outputs(out: OutputStore) -> None:
    """Remove an overwritten run's outputs (its parts' too), once the new run's workers are up."""
    stores = [out]
    if out.exists("summary.json"):
        try:
            stores += [out.child(path) for path in out.load_json("summary.json").get("parts", {}).values()]
        except ValueError:
            pass
    for store in stores:
        for name in store.names():
            if name in OUTPUT_NAMES or (name.startswith("lanczos_vec_") and name.endswith(".npy")):
                store.remove(name)


def _timing_summary(rows: list[list[float]]) -> dict[str, Any]:
    """Per-pass rows (see ``TIMING_COLUMNS``; ``total`` is the pass's wall time) and means."""
    timings = np.array(rows, dtype=np.float64).reshape(-1, len(TIMING_COLUMNS))
    means = {
        f"mean_{name}" + ("" if name.startswith("bytes") else "_s"): float(timings[:, i].mean()) if timings.size else None
        for i, name in enumerate(TIMING_COLUMNS)
        if i >= 2
    }
    return {
        "columns": list(TIMING_COLUMNS),
        "unit": "seconds (bytes for bytes_*)",
        "rows": timings.tolist(),
        "mean_step_s": means.pop("mean_total_s"),
        **means,
    }


def _versions() -> dict[str, str]:
    names = ("numpy", "scipy", "ray", "jax", "jaxlib", "tensorflow", "keras", "pyarrow")
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    versions.update({name: _version(name) for name in names})
    return {name: version for name, version in versions.items() if version}


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return ""
