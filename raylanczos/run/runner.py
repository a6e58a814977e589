"""The run: plan → operator → loop → outputs, over Ray.

Everything the driver can check is checked before any worker starts: the options, the
output location, the problem factory, the loss on the first rows, the shard plan, the
blocks and, when resuming, the checkpoint's configuration (:mod:`raylanczos.run.plan`).
Then the workers start (:mod:`raylanczos.distributed`), the
:class:`~raylanczos.run.loop.SpectrumLoop` runs the draws over the distributed operator,
and the outputs are written as draws finish and rendered at the end
(:mod:`raylanczos.run.sink`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import platform
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from raylanczos.config import (
    DensityConfig,
    OutputConfig,
    ScalingConfig,
    SpectrumConfig,
    build_configs,
)
from raylanczos.distributed.hessian import DistributedHessian, SlicedHessian
from raylanczos.distributed.keepers import KeeperActors, KeeperLost, keeper_nodes
from raylanczos.distributed.session import RaySession
from raylanczos.distributed.workers import WorkerGroup, WorkerOptions
from raylanczos.numerics.basis import BasisSweeps
from raylanczos.numerics.deflation import Deflation
from raylanczos.numerics.sharded import SliceLayout
from raylanczos.operators.contract import TIMING_COLUMNS, BlockOperator, WorkerError
from raylanczos.outputs.progress import Progress, make_progress, reporting
from raylanczos.outputs.record import (
    ConfigRecord,
    LayoutRecord,
    PartsRecord,
    RunInfo,
    SweepRecord,
    TimingRecord,
)
from raylanczos.outputs.render import (
    Result,
    load_result,
    operator_title,
    render_parts,
    rerender,
)
from raylanczos.outputs.store import OutputStore
from raylanczos.problem.definition import (
    Problem,
    ProblemSource,
    build_problem,
    load_factory,
    source_name,
)
from raylanczos.run.bases import new_bases
from raylanczos.run.checkpoint import Checkpoint, SaveCadence
from raylanczos.run.deflation import (
    deflated_plan,
    deflation_records,
    find_outliers,
    load_deflations,
    save_deflations,
)
from raylanczos.run.loop import (
    DrawTask,
    FinishedDraw,
    LoopHooks,
    LoopState,
    SpectrumLoop,
)
from raylanczos.run.plan import (
    RunPlan,
    chosen_shard_plan,
    config_record,
    plan_run,
    resumed_product_form,
    run_identity,
)
from raylanczos.run.residuals import residual_norms
from raylanczos.run.sink import RunOutputs, prepare_output
from raylanczos.run.startup import beside_ray, preload_plotting
from raylanczos.run.stores import KeeperStore
from raylanczos.run.sweep import SweepPoint, sweep_points, sweep_title
from raylanczos.run.target import target_gate

logger = logging.getLogger("raylanczos")


@dataclass(frozen=True)
class RunSettings:
    """A run's four configurations (see :mod:`raylanczos.config`)."""

    spectrum: SpectrumConfig
    scaling: ScalingConfig
    output: OutputConfig
    density: DensityConfig


def hessian_spectrum(
    problem: ProblemSource,
    config: SpectrumConfig | None = None,
    scaling: ScalingConfig | None = None,
    output: OutputConfig | None = None,
    density: DensityConfig | None = None,
    *,
    sweep: Mapping[str, Sequence[Any]] | None = None,
    progress: str | Progress = "auto",
    session: RaySession | None = None,
    **options: Any,
) -> Result:
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
        ``"none"``, or a :class:`~raylanczos.outputs.progress.Progress`. Log lines go to the
        ``raylanczos`` logger; with no logging configured they are shown on standard error.
      session: a :class:`~raylanczos.distributed.session.RaySession` the caller opened and
        will close (its ``address`` is used instead of ``scaling.address``); by default the
        call opens its own and closes it before returning.
      **options: any field of the four configs by name, e.g. ``order=90, draws=10,
        draws_per_pass=4, num_workers=4, worker_resources={"num_gpus": 1}, out="runs/x",
        seed=0, resume=False`` (applied on top of the config objects).

    Returns:
      A :class:`~raylanczos.outputs.render.SpectrumResult`; with blocks or a sweep, a
      :class:`~raylanczos.outputs.render.PartsResult` with the parts' results by name.
    """
    settings = RunSettings(*build_configs(config, scaling, output, density, options))
    reporter = progress if isinstance(progress, Progress) else make_progress(progress)
    points = sweep_points(sweep, settings.output) if sweep is not None else None
    if settings.output.out is not None:
        preload_plotting()
    with reporting():
        if points is not None:
            _check_sweep_factories(problem, points)
        with contextlib.nullcontext(session) if session is not None else RaySession(settings.scaling.address) as ray_session:
            if points is None:
                return run_spectrum(problem, settings, ray_session, reporter)
            results = _run_points(problem, settings, ray_session, reporter, points)
        return _render_sweep(problem, sweep, settings, results)


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
    problem: ProblemSource, settings: RunSettings, session: RaySession, reporter: Progress, points: list[SweepPoint]
) -> dict[str, Result]:
    """Each point of a sweep in turn, on one set of workers."""
    results = {}
    for point in points:
        if point.finished:
            logger.info("sweep point %s: finished already, kept", point.name)
            results[point.name] = load_result(point.output.out)
        else:
            logger.info("sweep point %s", point.name)
            point_settings = dataclasses.replace(settings, output=point.output)
            results[point.name] = run_spectrum(problem, point_settings, session, reporter, point.arguments)
    return results


def _render_sweep(
    problem: ProblemSource, sweep: Mapping[str, Sequence[Any]], settings: RunSettings, results: dict[str, Result]
) -> Result:
    """A sweep's top level: the points' overlay and statistics, titled with what varies.
    Each point's name is its sub-directory and its legend label."""
    ((name, values),) = sweep.items()
    config = ConfigRecord(problem=source_name(problem), operator=settings.spectrum.operator)
    first = next(iter(results.values())).record.config
    record = PartsRecord(
        run=RunInfo("", {}, config, {}, None, None), parts={point: point for point in results},
        part_labels={point: point for point in results},
        parts_title=sweep_title(config.problem, operator_title(config.operator), name, first),
        part_statistics=[], sweep=SweepRecord(name, list(values)),
    )
    return render_parts(results, record, OutputStore(settings.output.out))


def run_spectrum(
    source: ProblemSource, settings: RunSettings, session: RaySession, reporter: Progress,
    arguments: dict[str, Any] | None = None,
) -> Result:
    """One spectrum of :func:`hessian_spectrum` (or one point of a sweep, whose factory takes
    ``arguments``): plan, workers and operator, loop, outputs."""
    out, checkpoint = prepare_output(settings.output)
    problem, plan = _problem_and_plan(source, arguments, settings, session)
    if settings.output.resume and _finished_already(out, settings.spectrum, plan, source, arguments):
        logger.info("the run in %s is finished; its outputs are rendered again from tridiag.npy", out)
        return rerender(out.location, settings.density)
    logger.info("%s", plan.state_reason)
    shards, resources = chosen_shard_plan(settings.scaling, problem), settings.scaling.worker_resources
    if shards is None:
        shards, resources = session.default_layout(problem.num_examples, problem.data, settings.scaling.devices_per_worker)

    def identity_with(product_form: str | None) -> tuple[ConfigRecord, dict[str, Any]]:
        config = config_record(source, arguments, settings.spectrum, plan, shards, settings.scaling.devices_per_worker, product_form)
        return config, run_identity(config, settings.spectrum, settings.scaling)

    product_form, resumed = settings.scaling.product_form, None
    if settings.output.resume:  # the checkpoint's form, known before any worker starts
        product_form = resumed_product_form(checkpoint.product_form(), product_form, plan.facts.backend)
        resumed = checkpoint.load(identity_with(None if product_form == "auto" else product_form)[1], [task.dim for task in plan.tasks])
    group = _worker_group(
        source if isinstance(source, str) else problem, settings, session, plan, shards, resources, arguments, product_form
    )
    config, identity = identity_with(group.product_form)
    groups = resumed[2] if resumed is not None else group.node_groups()
    slices = _slices(plan, groups, checkpoint, resumed is not None)
    outputs = RunOutputs(out, checkpoint, settings.output, settings.density, plan)
    if resumed is None:
        outputs.begin(identity, groups, slices)
    else:
        outputs.resume(resumed[0])
        logger.info("resuming: %s", describe_progress(resumed[0]))
    home = vector_home(plan, settings, group, groups, checkpoint, resumed, slices, arguments)
    try:
        deflations = _deflations(home.operator, plan, settings.spectrum, checkpoint, resumed is not None)
        outputs.deflated(deflations)
        plan = deflated_plan(plan, deflations)
        reopen = functools.partial(_reopened, plan, settings, group, groups, slices, arguments, identity)
        home, state = _draws(home, plan, settings, resumed[0] if resumed is not None else None, outputs, reporter, reopen)
        products = home.operator if slices is None else _plain_operator(plan, settings, group, groups, arguments)
        residuals = {name: residual_norms(products, plan, name, pairs) for name, pairs in outputs.eigenvectors.items() if pairs}
    finally:
        home.close()
    group.record_pids()
    layout = LayoutRecord(
        workers=[dict(info) for info in group.infos], worker_resources=group.resources, reduce=settings.scaling.reduce,
        node_groups=home.operator.groups, broadcast_dtype=str(home.operator.broadcast_dtype),
        parameter_layout=plan.facts.layout.to_json(), sums_on_driver=home.operator.sums_on_driver, keepers=home.keepers,
        shared_memory=home.operator.shared is not None,
    )
    run = RunInfo(_version("raylanczos"), _versions(), config, problem.data.describe(), layout, timing_record(state.timings))
    return outputs.finish(run, residuals, deflation_records(plan, deflations, settings.spectrum))


def _problem_and_plan(
    source: ProblemSource, arguments: dict[str, Any] | None, settings: RunSettings, session: RaySession
) -> tuple[Problem, RunPlan]:
    """The problem and its plan; when the session has yet to start or join its Ray, the
    factory is called and the problem planned while it does
    (:func:`~raylanczos.run.startup.beside_ray`), after the factory's module is imported
    here (a misspelt module or function is refused at once, before any Ray starts). A
    resumed run builds first: a finished one is rendered again without Ray."""

    def prepare() -> tuple[Problem, RunPlan]:
        problem = build_problem(source, arguments)
        return problem, plan_run(problem, settings.spectrum, settings.scaling)

    if session.connected or settings.output.resume:
        return prepare()
    if isinstance(source, str):
        load_factory(source)
    return beside_ray(prepare, session.connect)


def _draws(
    home: VectorHome, plan: RunPlan, settings: RunSettings, state: LoopState | None, outputs: RunOutputs,
    reporter: Progress, reopen: Callable[[Checkpoint], tuple[VectorHome, LoopState]],
) -> tuple[VectorHome, LoopState]:
    """The loop (:func:`_loop`), and the vectors' home it ended with. A lost keeper's slices
    since the last checkpoint went with it, and the other keepers' are ahead of them: every
    keeper starts again from the checkpoint (``reopen``: a resume in this process), up to
    ``max_restarts`` times; past them, or with no checkpoint, the keeper's loss ends the
    run. A home it gives up is closed."""
    checkpoint, replaced = outputs.checkpoint, 0
    try:
        while True:
            try:
                return home, _loop(home, plan, settings, state, outputs, reporter)
            except (KeeperLost, WorkerError) as err:
                lost = home.lost_keeper(err)
                if lost is None:
                    raise
                replaceable = lost.replaceable and checkpoint is not None and checkpoint.exists()
                if not replaceable or replaced >= settings.scaling.max_restarts:
                    raise lost from err
            replaced += 1
            home.close()
            home, state = reopen(checkpoint)
            outputs.resume(state)
            logger.warning(
                "%s; new keepers read the slices of pass %d back from the checkpoint, and the passes since are "
                "computed again (%d of at most %d keeper replacements)", lost.summary, state.passes, replaced,
                settings.scaling.max_restarts,
            )
    except BaseException:
        home.close()
        raise


def _reopened(
    plan: RunPlan, settings: RunSettings, group: WorkerGroup, groups: list[list[int]], slices: tuple[int, ...] | None,
    arguments: dict[str, Any] | None, identity: dict[str, Any], checkpoint: Checkpoint,
) -> tuple[VectorHome, LoopState]:
    """New keepers reading the checkpoint's slices back, each on the node its group's first
    worker runs on now, and the checkpoint's loop state."""
    resumed = checkpoint.load(identity, [task.dim for task in plan.tasks])
    return vector_home(plan, settings, group, groups, checkpoint, resumed, slices, arguments, group.current_nodes()), resumed[0]


def _deflations(
    operator: BlockOperator, plan: RunPlan, config: SpectrumConfig, checkpoint: Checkpoint | None, resuming: bool,
) -> dict[str, Deflation]:
    """Each part's deflation (none without ``config.deflate``): the checkpoint's when resuming
    a run that found them, else found now (:func:`~raylanczos.run.deflation.find_outliers`)
    and checkpointed. A new run checkpoints an empty loop first, so that one interrupted in
    the search can be resumed too."""
    if not config.deflate:
        return {}
    saved = load_deflations(checkpoint) if resuming and checkpoint is not None else None
    if saved is not None:
        return saved
    if checkpoint is not None and not resuming:
        checkpoint.save(LoopState.empty(plan.block_size))
    with BasisSweeps() as sweeps:
        found = find_outliers(operator, plan, config, sweeps)
    if checkpoint is not None:
        save_deflations(checkpoint, found)
    return found


def _finished_already(
    out: OutputStore, config: SpectrumConfig, plan: RunPlan, source: ProblemSource, arguments: dict[str, Any] | None
) -> bool:
    """Whether ``out`` holds a rendered run of the same problem, factory arguments, operator,
    order, draws, draws per pass, seed, start distribution, compute dtype, blocks,
    deflation and target width: a ``--resume`` of it has nothing to compute. (Any other difference is the checkpoint's to
    refuse, naming it.)"""
    if not out.exists("summary.json"):
        return False
    try:
        previous = load_result(out.location)
    except (OSError, ValueError, KeyError, TypeError):
        return False  # not rendered (or damaged): the checkpoint decides
    held = previous.record.config
    wanted = (
        source_name(source), arguments, config.operator, min(config.order, plan.facts.num_params), config.draws,
        plan.block_size, config.seed, config.distribution, config.compute_dtype or "model",
        [p.pattern for p in plan.parts if p.name], config.deflate or None, config.deflate_tol if config.deflate else None,
        config.target_width,
    )
    return wanted == (
        held.problem, held.arguments, held.operator, held.order, held.draws, held.draws_per_pass, held.seed,
        held.distribution, held.compute_dtype, [block["pattern"] for block in held.blocks], held.deflate, held.deflate_tol,
        held.target_width,
    )


def _worker_group(
    source: Any, settings: RunSettings, session: RaySession, plan: RunPlan, shards: Any, resources: Any,
    arguments: dict[str, Any] | None, product_form: str,
) -> WorkerGroup:
    """The started worker group, computing in ``product_form`` (or choosing it: "auto"): the
    session's current one if it fits, else a new one."""
    scaling, spectrum_config = settings.scaling, settings.spectrum
    options = WorkerOptions(
        compute_dtype=spectrum_config.compute_dtype, operator=spectrum_config.operator, product_form=product_form,
        arguments=arguments,
        max_restarts=scaling.max_restarts, timeout=scaling.timeout, pin_cpus=scaling.pin_cpus,
        devices=scaling.devices_per_worker,
    )
    key = (source_name(source), json.dumps(shards.to_json()), json.dumps(resources, sort_keys=True, default=str),
           dataclasses.replace(options, arguments=None), plan.block_size)
    placement_timeout = session.placement_timeout(scaling.placement_timeout)
    return session.group_for(
        key,
        lambda: WorkerGroup(
            source, shards, resources=resources, options=options, block_size=plan.block_size,
            placement_timeout=placement_timeout,
        ),
        arguments,
        plan.block_size,
    )


@dataclass
class VectorHome:
    """Where the loop's Lanczos vectors live, and the operator that multiplies them: the
    driver's bases (``vectors`` a list of float64 (m + 1, n) arrays) with the distributed
    Hessian, or keepers' slices (``vectors`` a :class:`~raylanczos.run.stores.KeeperStore`)
    with the sliced Hessian. ``keepers``: each keeper's slice and place (sharded only)."""

    operator: DistributedHessian
    vectors: Any
    keepers: list[dict[str, Any]] | None = None
    actors: KeeperActors | None = None

    def close(self) -> None:
        if self.actors is not None:
            self.actors.shutdown()

    def lost_keeper(self, err: Exception) -> KeeperLost | None:
        """The lost keeper behind ``err``: a keeper's loss itself, or a worker's failure that
        echoes one (the slices a worker fetches go with their keeper); None for any other."""
        if isinstance(err, KeeperLost):
            return err
        if self.actors is not None:
            try:
                self.actors.check_alive()
            except KeeperLost as lost:
                return lost
        return None


def _slices(plan: RunPlan, groups: list[list[int]], checkpoint: Checkpoint | None, resuming: bool) -> tuple[int, ...] | None:
    """The sharded state's slice bounds, one slice per node group (a resumed run's are its
    checkpoint's), or None when the driver holds the state; a resume held otherwise is refused."""
    bounds = None
    if plan.state == "sharded":
        bounds = checkpoint.slices() if resuming else SliceLayout.balanced(plan.facts.num_params, len(groups)).bounds
    if resuming:
        checkpoint.check_slices(bounds)
    return bounds


def vector_home(
    plan: RunPlan, settings: RunSettings, group: WorkerGroup, groups: list[list[int]], checkpoint: Checkpoint | None,
    resumed: Any, slices: tuple[int, ...] | None, arguments: dict[str, Any] | None, nodes: list[str] | None = None,
) -> VectorHome:
    """The driver's bases (new, or the checkpoint's) and operator; or, with ``slices``, one
    keeper per node group on that group's node (reading their checkpoint files back when
    resuming) and the sliced operator. ``nodes``: each worker's node now, where a fault
    moved workers since they started (default: where they started)."""
    if slices is None:
        bases = resumed[1] if resumed is not None else new_bases(plan, checkpoint, settings.scaling.basis_memory_gb)
        return VectorHome(_plain_operator(plan, settings, group, groups, arguments), bases)
    layout = SliceLayout(slices)
    directories = [checkpoint.keeper_directory(i) for i in range(layout.parts)] if checkpoint is not None else None
    actors = KeeperActors(
        keeper_nodes(group.infos if nodes is None else [{"node_id": node} for node in nodes], groups), layout, plan.block_size, plan.basis_rows, directories=directories,
        resume=resumed is not None, timeout=settings.scaling.timeout,
    )
    try:
        operator = SlicedHessian(
            group, plan.facts.num_examples, bounds=slices, block_size=plan.block_size, reduce=settings.scaling.reduce,
            groups=groups, arguments=arguments,
        )
        store = KeeperStore(
            actors, plan.facts.num_params, dtype=str(operator.broadcast_dtype), seed=settings.spectrum.seed,
            distribution=settings.spectrum.distribution,
            resume_half=checkpoint.pending_half if resumed is not None else None,
        )
    except BaseException:
        actors.shutdown()
        raise
    if checkpoint is not None:
        checkpoint.keep_slices(store)
    keepers = [{"slice": list(layout.span(i)), **info, "threads": actors.threads[i]} for i, info in enumerate(actors.infos)]
    return VectorHome(operator, store, keepers, actors)


def _plain_operator(
    plan: RunPlan, settings: RunSettings, group: WorkerGroup, groups: list[list[int]], arguments: dict[str, Any] | None
) -> DistributedHessian:
    """The distributed Hessian over whole vectors (the driver's state, and the residuals' pass)."""
    return DistributedHessian(
        group, plan.facts.num_examples, block_size=plan.block_size, reduce=settings.scaling.reduce, groups=groups,
        arguments=arguments,
    )


def _loop(
    home: VectorHome, plan: RunPlan, settings: RunSettings, state: LoopState | None, outputs: RunOutputs,
    reporter: Progress,
) -> LoopState:
    """The loop over the draws, reporting progress and writing each finished draw; the
    driver's threads are chosen for its re-orthogonalisation (driver state only)."""
    config = settings.spectrum

    def report(current: LoopState, row: list[float]) -> None:
        reporter.update(steps_done(current), len(current.finished), len(plan.tasks), dict(zip(TIMING_COLUMNS, row)))

    def finished(task: DrawTask, lanczos: Any, record: FinishedDraw) -> None:
        log_finished_draw(task, record)
        outputs.draw_finished(task, lanczos, record)

    threads = home.operator.group.driver_threads(max(task.dim for task in plan.tasks), settings.scaling.thread_policy)
    if home.keepers is None:
        logger.info("driver: %s", threads.describe())
        logger.info("partials: %s", home.operator.describe_partials())
    hooks = LoopHooks(
        checkpoint=SaveCadence(outputs.checkpoint.save, settings.output.checkpoint_every_s) if outputs.checkpoint is not None else None,
        finished=finished, progress=report,
    )
    with threadpool_limits(limits=threads.blas, user_api="blas"), BasisSweeps(threads.sweeps) as sweeps:
        loop = SpectrumLoop(
            home.operator, list(plan.tasks), config.order, home.vectors, seed=config.seed,
            distribution=config.distribution, sweeps=sweeps, options=config.lanczos, hooks=hooks,
            gate=target_gate(plan, config),
        )
        reporter.start(loop.total_steps, steps_done(state) if state is not None else 0, home.operator.block_size)
        try:
            return loop.run(state)
        finally:
            reporter.close()


def log_finished_draw(task: DrawTask, record: FinishedDraw) -> None:
    """``draw 3 of block 'hidden' done: 90 steps, orthogonality loss 4.4e-16, ...``."""
    logger.info(
        "draw %d%s done: %d steps%s, orthogonality loss %.1e, %d second re-orthogonalisation passes, %d fresh products",
        task.draw + 1, f" of block {task.block!r}" if task.block else "", record.steps,
        " (invariant subspace found)" if record.breakdown else "", record.orthogonality,
        record.second_passes, record.fresh_products,
    )


def steps_done(state: LoopState) -> int:
    """Lanczos steps taken so far: the finished draws' and the draws in progress'."""
    return sum(record.steps for record in state.finished.values()) + sum(
        entry[1].steps for entry in state.slots if entry is not None
    )


def describe_progress(state: LoopState) -> str:
    """``2 draw(s) finished, 4 in progress, 480 Lanczos steps done``."""
    active = sum(entry is not None for entry in state.slots)
    return f"{len(state.finished)} draw(s) finished, {active} in progress, {steps_done(state)} Lanczos steps done"


def timing_record(rows: list[list[float]]) -> TimingRecord:
    """Per-pass rows (see ``TIMING_COLUMNS``; ``total`` is the pass's wall time) and means."""
    timings = np.array(rows, dtype=np.float64).reshape(-1, len(TIMING_COLUMNS))
    means = {
        f"mean_{name}" + ("" if name.startswith("bytes") else "_s"): float(timings[:, i].mean()) if timings.size else None
        for i, name in enumerate(TIMING_COLUMNS)
        if i >= 2
    }
    means = {"mean_step_s": means.pop("mean_total_s"), **means}
    return TimingRecord(columns=list(TIMING_COLUMNS), rows=timings.tolist(), means=means)


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
