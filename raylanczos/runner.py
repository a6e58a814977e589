"""The run: D draws × m Lanczos steps over the distributed Hessian, with outputs and resume.

Each step multiplies the current Lanczos vector by the Hessian on the worker group,
advances the float64 Lanczos state (re-orthogonalisation) and checkpoints atomically.
Each finished draw is appended to ``tridiag.npy`` at once, so no finished draw is lost.
"""

from __future__ import annotations

import logging
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np
import ray
from threadpoolctl import threadpool_limits

from raylanczos import spectrum
from raylanczos.data import ShardPlan
from raylanczos.distributed import DistributedHessian, WorkerGroup, connect
from raylanczos.lanczos import START_DISTRIBUTIONS, BasisSweeps, LanczosState, allocate_basis, start_vector
from raylanczos.plot import plot_density
from raylanczos.problem import Problem, ProblemSource, build_problem
from raylanczos.worker import DEFAULT_MAX_RESTARTS, DEFAULT_TIMEOUT_S
from raylanczos.results import TIMING_COLUMNS, Checkpoint, CheckpointError, DrawRecords
from raylanczos.store import OutputStore, json_writer, npy_writer, npz_writer

logger = logging.getLogger("raylanczos")

#: Without a checkpoint, a Lanczos basis larger than this (GB) is memory-mapped to a
#: temporary file rather than held in the driver's RAM.
DEFAULT_BASIS_MEMORY_GB = 8.0

DENSITY_UNITS = "sigma2 is an absolute variance (eigenvalue units squared); sigma2 = sigma2_relative * (lambda_max - lambda_min)^2"


@dataclass(frozen=True)
class SpectrumResult:
    """A finished run.

    Attributes:
      tridiagonals: float64 (D, m, m), zero-padded for draws that stopped early.
      steps: int (D,), Lanczos steps completed per draw.
      nodes, weights: float64 (D, m) Gauss quadrature (NaN / 0 padding).
      grid, density: float64 (G,), the smoothed density φ on its grid.
      sigma2: the absolute variance of the smoothing Gaussian.
      summary: the contents of ``summary.json``.
      out: the output location (a directory or URI), or None.
    """

    tridiagonals: np.ndarray
    steps: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    grid: np.ndarray
    density: np.ndarray
    sigma2: float
    summary: dict[str, Any]
    out: str | None


def hessian_spectrum(
    problem: ProblemSource,
    *,
    order: int = 90,
    draws: int = 10,
    num_workers: int | None = None,
    worker_resources: dict[str, Any] | None = None,
    shards: str | os.PathLike | ShardPlan | None = None,
    out: str | os.PathLike | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    seed: int = 0,
    resume: bool = False,
    overwrite: bool = False,
    compute_dtype: str | None = None,
    distribution: str = "gaussian",
    save_vectors: bool = False,
    sigma2_relative: float = spectrum.DEFAULT_SIGMA2_RELATIVE,
    grid_points: int = spectrum.DEFAULT_GRID_POINTS,
    top_k: int = 10,
    address: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    max_restarts: int = DEFAULT_MAX_RESTARTS,
    pin_cpus: bool | None = None,
    basis_memory_gb: float = DEFAULT_BASIS_MEMORY_GB,
) -> SpectrumResult:
    """Estimate the Hessian eigenvalue density of ``problem`` by SLQ on a Ray worker group.

    Args:
      problem: a :class:`Problem`, a factory returning one, or ``"module:function"``
        (imported in the driver and in every worker; preferred on clusters).
      order: Lanczos steps per draw, m (clamped to the number of parameters n).
      draws: independent start vectors, D.
      num_workers: workers (one shard each); default 1, or the shard plan's count.
      worker_resources: Ray options per worker, e.g. ``{"num_cpus": 1, "num_gpus": 1}``.
      shards: a :class:`ShardPlan` or the path of a JSON shard plan; default balanced rows.
      out: output directory or object-store URI such as ``s3://bucket/runs/x`` (see
        :mod:`raylanczos.results`); None keeps results in memory.
      checkpoint_dir: local directory for the per-step checkpoint and the memory-mapped
        basis; default ``<out>/checkpoint``, or a cache directory for a URI ``out``.
      seed: seeds the start vectors (draw d uses ``default_rng([seed, d])``).
      resume: continue the run checkpointed in ``out``.
      overwrite: replace a finished or interrupted run in ``out``.
      compute_dtype: None (the model's dtype) or ``"float64"`` (validation mode).
      distribution: ``"gaussian"`` or ``"rademacher"`` start vectors.
      save_vectors: also write each draw's Lanczos basis, ``lanczos_vec_<d>.npy``.
      sigma2_relative: the density's variance relative to the squared spectral width.
      grid_points: density grid size.
      top_k: how many extreme Ritz values the summary lists.
      address: Ray address; None connects to a running Ray or starts a local one.
      timeout: seconds to wait for a worker to start or to answer one step.
      max_restarts: how often a dead worker (killed process, lost node) is restarted;
        its step is then recomputed, so the result is unchanged.
      pin_cpus: pin each worker to its own cores (as many as its ``num_cpus``); None
        (default) pins CPU-only workers and not GPU workers.
      basis_memory_gb: without a checkpoint (``out`` None), a basis of n·(m+1)·8 bytes
        above this many GB is memory-mapped to a temporary file instead of held in RAM.
        With a checkpoint the basis is always the memory-mapped ``basis.npy`` there, so
        the operating system keeps in RAM what fits and pages out the rest.
    """
    _check_count("order", order)
    _check_count("draws", draws)
    if not basis_memory_gb >= 0:
        raise ValueError(f"basis_memory_gb must be >= 0 GB, got {basis_memory_gb!r}")
    if distribution not in START_DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {START_DISTRIBUTIONS}, got {distribution!r}")
    if resume and out is None:
        raise ValueError("resume needs the output directory of the run to continue (out)")
    described = build_problem(problem)
    plan = _shard_plan(shards, num_workers, described)
    out_dir = OutputStore(out) if out is not None else None
    checkpoint = _prepare_output(out_dir, checkpoint_dir, resume=resume, overwrite=overwrite)
    source = problem if isinstance(problem, str) else described

    started_ray = connect(address)
    group = None
    try:
        group = WorkerGroup(
            source, plan, resources=worker_resources, compute_dtype=compute_dtype, max_restarts=max_restarts,
            timeout=timeout, pin_cpus=pin_cpus,
        )
        hessian = DistributedHessian(group, described.num_examples)
        dim = hessian.dim
        if order > dim:
            logger.warning("order %d exceeds the number of parameters %d; using order %d", order, dim, dim)
        m = min(order, dim)
        config = {
            "problem": problem if isinstance(problem, str) else getattr(problem, "__qualname__", type(problem).__name__),
            "order": m,
            "draws": draws,
            "seed": seed,
            "distribution": distribution,
            "compute_dtype": compute_dtype or "model",
            "backend": described.backend,
            "training": described.training if described.backend == "keras" else None,
            "num_params": dim,
            "num_examples": described.num_examples,
            "batch_size": described.batch_size,
            "shard_plan": plan.to_json(),
        }
        threads = group.driver_threads()
        if threads.sweeps > 1:
            logger.info("driver: workers take every core; re-orthogonalisation split over %d threads, one per core", threads.sweeps)
        elif threads.blas is not None:
            logger.info("driver: %d BLAS thread(s), on the cores no worker on this node is pinned to", threads.blas)
        with threadpool_limits(limits=threads.blas, user_api="blas"), BasisSweeps(threads.sweeps) as sweeps:
            loop = _DrawLoop(hessian, config, checkpoint, out_dir, save_vectors, basis_memory_gb, sweeps)
            records, timings = loop.run(resume)
        summary = {
            "raylanczos_version": _version("raylanczos"),
            "versions": _versions(),
            "config": config,
            "dataset": described.data.describe(),
            "workers": group.infos,
            "parameter_layout": group.execute("parameter_layout")[0],
            "worker_resources": group.options,
            "broadcast_dtype": str(hessian.broadcast_dtype),
            "steps_completed": records.steps,
            "breakdown": records.breakdown,
            "orthogonality_loss": records.orthogonality,
            "second_reorthogonalisation_passes": records.second_passes,
            "fresh_products": records.fresh_products,
            "timings": _timing_summary(timings),
        }
    finally:
        if group is not None:
            group.shutdown()
        if started_ray:
            ray.shutdown()
    return render_spectrum(
        records.tridiagonals(),
        summary,
        out_dir,
        sigma2_relative=sigma2_relative,
        grid_points=grid_points,
        top_k=top_k,
    )


class _DrawLoop:
    """Runs the draws one step at a time, checkpointing after every step."""

    def __init__(
        self,
        hessian: Any,
        config: dict[str, Any],
        checkpoint: Checkpoint | None,
        out: OutputStore | None,
        save_vectors: bool,
        basis_memory_gb: float = DEFAULT_BASIS_MEMORY_GB,
        sweeps: BasisSweeps | None = None,
    ):
        self.basis_memory_gb = basis_memory_gb
        self.sweeps = sweeps or BasisSweeps()
        self.hessian = hessian
        self.config = config
        self.checkpoint = checkpoint
        self.out = out
        self.save_vectors = save_vectors
        self.order = config["order"]
        self.draws = config["draws"]

    def run(self, resume: bool) -> tuple[DrawRecords, np.ndarray]:
        records, timings, state, state_draw = DrawRecords(self.order), np.zeros((0, len(TIMING_COLUMNS))), None, -1
        if resume:
            state_draw, state, records, timings = self.checkpoint.load(self.config)
            logger.info("resuming: %d draw(s) finished, draw %d at step %d", len(records), state_draw + 1, state.steps)
        elif self.checkpoint is not None:
            _clear_previous_outputs(self.out)
            self.checkpoint.begin(self.config)
        basis = state.basis if state is not None else self._new_basis()
        self._clock = _Progress(self.order * self.draws, self.order * len(records) + (state.steps if state else 0))
        for draw in range(len(records), self.draws):
            if state is None or state_draw != draw:
                v0 = start_vector(self.config["num_params"], seed=self.config["seed"], draw=draw, distribution=self.config["distribution"])
                state = LanczosState.start(v0, self.order, basis=basis)
            state.sweeps = self.sweeps  # a resumed state too
            timings = self._run_draw(draw, state, records, timings)
            orthogonality = spectrum.orthogonality_loss(state.basis[: state.steps])
            records.add(state, orthogonality)
            if self.out is not None:
                if self.save_vectors:
                    self.out.write(f"lanczos_vec_{draw}.npy", npy_writer(np.asarray(state.basis[: state.steps])))
                self.out.write("tridiag.npy", npy_writer(spectrum.stack_tridiagonals(records.tridiagonals(), self.order)))
                self.checkpoint.save(draw, state, records, timings)
            logger.info(
                "draw %d/%d done: %d steps%s, orthogonality loss %.1e, %d second re-orthogonalisation passes, %d fresh products",
                draw + 1, self.draws, state.steps, " (invariant subspace found)" if state.breakdown else "", orthogonality,
                state.second_passes, state.fresh_products,
            )
        return records, timings

    def _new_basis(self) -> np.ndarray:
        rows, dim = self.order + 1, self.config["num_params"]
        gigabytes = rows * dim * 8 / 1e9
        if self.checkpoint is not None:
            logger.info("basis: %.3g GB, memory-mapped at %s", gigabytes, self.checkpoint.basis_path)
            return self.checkpoint.new_basis(rows, dim)
        if gigabytes <= self.basis_memory_gb:
            return allocate_basis(rows, dim)
        handle, path = tempfile.mkstemp(prefix="raylanczos-basis-", suffix=".npy")
        os.close(handle)
        basis = allocate_basis(rows, dim, path)
        os.unlink(path)  # the mapping keeps the file until the basis is released
        logger.info(
            "basis: %.3g GB > basis_memory_gb %g: memory-mapped to a temporary file in %s",
            gigabytes, self.basis_memory_gb, os.path.dirname(path),
        )
        return basis

    def _run_draw(self, draw: int, state: LanczosState, records: DrawRecords, timings: np.ndarray) -> np.ndarray:
        """Steps of one draw. The next HVP starts as soon as its vector is known (after
        ``accept``), so the re-orthogonalisation and the checkpoint run while it computes."""
        rows = [timings]
        in_flight = self.hessian.submit(state.vector) if not state.done else None
        while not state.done:
            step_start = time.perf_counter()
            product = self.hessian.collect(in_flight)
            split = self.hessian.last_timing
            state.accept(product)
            in_flight = None
            reorth = 0.0
            if state.awaiting_reorthogonalization:
                if state.steps < state.order:
                    in_flight = self.hessian.submit(state.vector)
                started = time.perf_counter()
                if state.reorthogonalize():
                    in_flight = self.hessian.submit(state.vector)  # the look-ahead product is discarded
                reorth = time.perf_counter() - started
            row = np.array([[draw, state.steps, split.broadcast, split.hvp_max, split.gather, split.reduce, reorth, 0.0, 0.0]])
            rows.append(row)
            if self.checkpoint is not None:
                started = time.perf_counter()
                self.checkpoint.save(draw, state, records, np.concatenate(rows))
                row[0, -2] = time.perf_counter() - started
            row[0, -1] = time.perf_counter() - step_start
            self._clock.step(draw, state.steps, self.draws, self.order, row[0])
        return np.concatenate(rows)


class _Progress:
    """One log line per step: position, elapsed, ETA and the time split."""

    def __init__(self, total_steps: int, done_steps: int):
        self.start = time.perf_counter()
        self.total = total_steps
        self.done_at_start = done_steps
        self.done = done_steps

    def step(self, draw: int, step: int, draws: int, order: int, row: np.ndarray) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.start
        eta = elapsed / (self.done - self.done_at_start) * max(self.total - self.done, 0)
        logger.info(
            "draw %d/%d step %d/%d | elapsed %s, ETA %s | hvp %.3fs gather %.3fs reduce %.3fs reorth %.3fs ckpt %.3fs",
            draw + 1, draws, step, order, _clock(elapsed), _clock(eta), row[3], row[4], row[5], row[6], row[7],
        )


def render_spectrum(
    tridiagonals: list[tuple[np.ndarray, np.ndarray]],
    summary: dict[str, Any],
    out: OutputStore | None,
    *,
    sigma2_relative: float | None = spectrum.DEFAULT_SIGMA2_RELATIVE,
    sigma2: float | None = None,
    grid_points: int = spectrum.DEFAULT_GRID_POINTS,
    grid_range: tuple[float, float] | None = None,
    top_k: int = 10,
) -> SpectrumResult:
    """Quadrature, density and statistics from tridiagonals; writes outputs when ``out`` is set.

    ``sigma2`` (absolute variance) takes precedence over ``sigma2_relative``.
    """
    order = summary["config"]["order"]
    nodes, weights = spectrum.slq_quadrature(tridiagonals, order)
    if sigma2 is None:
        sigma2 = spectrum.resolve_sigma2(nodes, weights, sigma2_relative)
        relative = sigma2_relative
    else:
        if not sigma2 > 0:
            raise ValueError(f"sigma2 must be > 0, got {sigma2!r}")
        relative = None
    if grid_range is None:
        grid = spectrum.default_grid(nodes, weights, sigma2, grid_points)
    else:
        if not grid_range[0] < grid_range[1]:
            raise ValueError(f"grid range must be increasing, got {grid_range!r}")
        grid = np.linspace(grid_range[0], grid_range[1], grid_points)
    density = spectrum.smoothed_density(nodes, weights, grid, sigma2)
    stats = spectrum.summarize(tridiagonals, summary["config"]["num_params"], sigma2=sigma2, k=top_k)
    summary = dict(summary)
    summary.update(
        lambda_max=stats.lambda_max,
        lambda_min=stats.lambda_min,
        top_ritz_values=stats.top_ritz_values,
        bottom_ritz_values=stats.bottom_ritz_values,
        trace_estimate=stats.trace_estimate,
        trace_std_error=stats.trace_std_error,
        negative_mass=stats.negative_mass,
        negative_weight=stats.negative_weight,
        density={
            "sigma2": sigma2,
            "sigma2_relative": relative,
            "units": DENSITY_UNITS,
            "grid_points": int(grid.size),
            "grid_min": float(grid[0]),
            "grid_max": float(grid[-1]),
        },
    )
    stacked = spectrum.stack_tridiagonals(tridiagonals, order)
    steps = np.array([len(a) for a, _ in tridiagonals])
    if out is not None:
        out.write("tridiag.npy", npy_writer(stacked))
        out.write(
            "spectrum.npz",
            npz_writer(
                nodes=nodes, weights=weights, steps=steps, grid=grid, density=density,
                sigma2=np.float64(sigma2), sigma2_relative=np.float64(np.nan if relative is None else relative),
            ),
        )
        out.write("summary.json", json_writer(summary))
        out.write("density.png", lambda handle: plot_density(grid, density, handle, title=_plot_title(summary)))
    return SpectrumResult(stacked, steps, nodes, weights, grid, density, float(sigma2), summary, str(out) if out else None)


def rerender(
    out: str | os.PathLike,
    *,
    sigma2_relative: float | None = None,
    sigma2: float | None = None,
    grid_points: int | None = None,
    grid_range: tuple[float, float] | None = None,
    top_k: int = 10,
) -> SpectrumResult:
    """Recompute ``spectrum.npz``, ``density.png`` and the summary's statistics from saved outputs."""
    store = OutputStore(out)
    summary = store.load_json("summary.json")
    stacked = store.load_npy("tridiag.npy")
    tridiagonals = spectrum.split_tridiagonals(stacked, summary.get("steps_completed"))
    previous = summary.get("density", {})
    if sigma2 is None and sigma2_relative is None:
        sigma2_relative = previous.get("sigma2_relative") or spectrum.DEFAULT_SIGMA2_RELATIVE
    return render_spectrum(
        tridiagonals,
        summary,
        store,
        sigma2_relative=sigma2_relative,
        sigma2=sigma2,
        grid_points=grid_points or previous.get("grid_points", spectrum.DEFAULT_GRID_POINTS),
        grid_range=grid_range,
        top_k=top_k,
    )


def load_result(out: str | os.PathLike) -> SpectrumResult:
    """A finished run's outputs, read back from ``out`` (numbers and JSON only)."""
    store = OutputStore(out)
    summary = store.load_json("summary.json")
    arrays = store.load_npz("spectrum.npz")
    stacked = store.load_npy("tridiag.npy")
    return SpectrumResult(
        stacked, arrays["steps"], arrays["nodes"], arrays["weights"], arrays["grid"], arrays["density"],
        float(arrays["sigma2"]), summary, str(store),
    )


def _shard_plan(shards: Any, num_workers: int | None, problem: Problem) -> ShardPlan:
    if num_workers is not None:
        _check_count("num_workers", num_workers)
    if shards is None:
        plan = ShardPlan.balanced(problem.num_examples, num_workers or 1)
    elif isinstance(shards, ShardPlan):
        plan = shards
    else:
        plan = ShardPlan.from_json(shards)
    if num_workers is not None and plan.num_workers != num_workers:
        raise ValueError(f"the shard plan has {plan.num_workers} workers but num_workers={num_workers}")
    return plan.validate(problem.data)


OUTPUT_NAMES = ("tridiag.npy", "spectrum.npz", "summary.json", "density.png")


def _prepare_output(
    out: OutputStore | None, checkpoint_dir: str | os.PathLike | None, *, resume: bool, overwrite: bool
) -> Checkpoint | None:
    if out is None:
        if checkpoint_dir is not None:
            raise ValueError("checkpoint_dir needs an output location (out)")
        return None
    checkpoint = Checkpoint(checkpoint_dir if checkpoint_dir is not None else out.default_checkpoint_dir())
    if resume:
        if not checkpoint.exists():
            raise CheckpointError(f"nothing to resume: {checkpoint.directory} holds no checkpoint")
        return checkpoint
    occupied = checkpoint.exists() or any(out.exists(name) for name in OUTPUT_NAMES)
    if occupied and not overwrite:
        raise FileExistsError(f"{out} already holds a run; resume it (--resume), overwrite it (--overwrite) or choose another --out")
    out.ensure_writable()
    return checkpoint


def _clear_previous_outputs(out: OutputStore) -> None:
    """Remove an overwritten run's outputs, once the new run's workers are up."""
    for name in out.names():
        if name in OUTPUT_NAMES or (name.startswith("lanczos_vec_") and name.endswith(".npy")):
            out.remove(name)


def _timing_summary(timings: np.ndarray) -> dict[str, Any]:
    """Per-step rows (see ``TIMING_COLUMNS``; ``total`` is the step's wall time) and means."""
    means = {f"mean_{name}_s": float(timings[:, i].mean()) if timings.size else None for i, name in enumerate(TIMING_COLUMNS) if i >= 2}
    return {"columns": list(TIMING_COLUMNS), "unit": "seconds", "rows": timings.tolist(), "mean_step_s": means.pop("mean_total_s"), **means}


def _plot_title(summary: dict[str, Any]) -> str:
    config = summary["config"]
    return f"Hessian density: n={config['num_params']:,}, {len(summary['steps_completed'])} draws × {config['order']} steps"


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


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


