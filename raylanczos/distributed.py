"""The Ray layer: one actor per shard, and the distributed Hessian as a float64 matvec.

Per matvec: one ``ray.put`` of the vector, every actor computes its shard's
Σ_b |b|·H_b v from that object reference, and the driver sums the partials in float64 in
worker order and divides by N.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import ray
from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from raylanczos.data import Shard, ShardPlan
from raylanczos.problem import ProblemSource
from raylanczos.worker import DEFAULT_MAX_RESTARTS, DEFAULT_TIMEOUT_S, PartialHVP, ShardWorker, reduce_partials

logger = logging.getLogger(__name__)


class WorkerError(RuntimeError):
    """A worker failed to start or to compute; the message names the worker and its shard."""


@dataclass(frozen=True)
class DriverThreads:
    """``blas``: the driver's BLAS thread limit (None: no limit); ``sweeps``: threads the
    basis sweeps are split over (:class:`~raylanczos.lanczos.BasisSweeps`)."""

    blas: int | None
    sweeps: int


@dataclass(frozen=True)
class StepTiming:
    """Seconds spent by one distributed matvec.

    ``broadcast``: ``ray.put`` of the vector; ``hvp_max``: the slowest worker's own HVP
    time; ``gather``: from the broadcast to having all partials, beyond the slowest HVP
    (scheduling and transfer, plus any driver work that outlasted the HVP when the
    product was started before the driver's re-orthogonalisation); ``reduce``: the
    float64 sum and division on the driver.
    """

    broadcast: float
    hvp_max: float
    gather: float
    reduce: float


def worker_sys_path() -> list[str]:
    """Import-path entries that make the driver's problem factory importable in actors."""
    entries = [os.getcwd()]
    entries += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return entries


class WorkerGroup:
    """One :class:`~raylanczos.worker.ShardWorker` actor per shard of ``plan``.

    Args:
      source: the problem factory path (imported in each actor), or a picklable
        problem or factory.
      plan: a validated shard plan; worker i owns ``plan.shards[i]``.
      resources: Ray actor options per worker, e.g. ``{"num_cpus": 1, "num_gpus": 1}``
        (``num_cpus``, ``num_gpus``, ``resources`` and ``memory`` are accepted).
      compute_dtype: None (the model's dtype) or ``"float64"``.
      max_restarts: how often Ray may restart a dead worker (its call is then retried).
      timeout: seconds to wait for a worker to start or to answer one call.
      pin_cpus: pin each worker to as many cores as its ``num_cpus`` (rounded up), the
        workers of one node on distinct cores; None (default) pins CPU-only workers and
        leaves GPU workers free (their host threads feed the device).

    Workers are placed through one placement group, one bundle per worker, spread over
    the cluster's nodes where resources allow (an autoscaler sees the whole demand at
    once); a shard's own ``resources`` pin its worker (see :class:`~raylanczos.Shard`).
    """

    def __init__(
        self,
        source: ProblemSource,
        plan: ShardPlan,
        *,
        resources: dict[str, Any] | None = None,
        compute_dtype: str | None = None,
        max_restarts: int = DEFAULT_MAX_RESTARTS,
        timeout: float = DEFAULT_TIMEOUT_S,
        pin_cpus: bool | None = None,
    ):
        if not timeout > 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout!r}")
        self.plan = plan
        self.timeout = timeout
        self.options = options = {"num_cpus": 1, **(resources or {})}
        unknown = set(options) - {"num_cpus", "num_gpus", "resources", "memory"}
        if unknown:
            raise ValueError(f"unsupported worker resource option(s) {sorted(unknown)}; use num_cpus, num_gpus, resources, memory")
        bundles = [_bundle(options, shard) for shard in plan.shards]
        self.placement = placement_group(bundles, strategy="SPREAD")
        self.actors = []
        try:
            ray.get(self.placement.ready(), timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            self.shutdown()
            raise WorkerError(
                f"the cluster could not place {len(bundles)} workers within {timeout:g} s; they need {bundles}"
            ) from None
        if pin_cpus is None:
            pin_cpus = not options.get("num_gpus")
        self.pinned = bool(pin_cpus)
        slots = _cpu_slots(self.placement, bundles) if pin_cpus else [None] * len(bundles)
        actor_class = ray.remote(ShardWorker)
        for index, (shard, slot) in enumerate(zip(plan.shards, slots)):
            actor_options = dict(options, resources={**options.get("resources", {}), **dict(shard.resources)})
            self.actors.append(
                actor_class.options(
                    **actor_options,
                    max_restarts=max_restarts,
                    max_task_retries=max_restarts,
                    scheduling_strategy=PlacementGroupSchedulingStrategy(self.placement, placement_group_bundle_index=index),
                ).remote(source, shard, compute_dtype=compute_dtype, sys_path=worker_sys_path(), cpu_slot=slot)
            )
        try:
            described = self.execute("describe")
            placed = self.get([actor.__ray_call__.remote(_placement) for actor in self.actors])
            compiled = self.execute("warm_up")
        except BaseException:
            self.shutdown()
            raise
        self.infos = [dict(info, **where, warm_up_s=seconds) for info, where, seconds in zip(described, placed, compiled)]
        for info, shard in zip(self.infos, plan.shards):
            logger.info(
                "worker %d: %s, %d examples, node %s (%s), pid %d, cores %s, GPUs %s, first HVP (compilation) %.1f s",
                shard.worker, shard.describe(), info["num_examples"], info["node_id"][:12], info["hostname"],
                info["pid"], _ranges(info["cores"]), info["gpu_ids"] or "none", info["warm_up_s"],
            )

    def driver_threads(self) -> DriverThreads:
        """Threads for the driver's re-orthogonalisation on this machine.

        Unpinned workers: BLAS as it is, one sweep thread. Pinned workers leaving cores
        free: BLAS on that many threads. Pinned workers on every core: single-threaded
        BLAS, and the basis sweeps split over one thread per core, so that each worker
        loses an equal share of its core to them instead of one worker losing the whole
        sweep (a second BLAS thread spinning between calls was measured slower).
        """
        if not self.pinned:
            return DriverThreads(blas=None, sweeps=1)
        here = ray.get_runtime_context().get_node_id()
        cores = os.sched_getaffinity(0)
        taken = {core for info in self.infos if info["node_id"] == here for core in info["cores"]}
        free = len(cores - taken)
        return DriverThreads(blas=free, sweeps=1) if free else DriverThreads(blas=1, sweeps=len(cores))

    def execute_async(self, method: str, *args: Any) -> list[ray.ObjectRef]:
        return [getattr(actor, method).remote(*args) for actor in self.actors]

    def execute(self, method: str, *args: Any) -> list[Any]:
        """Call ``method`` on every worker; results in worker order; errors name the worker."""
        return self.get(self.execute_async(method, *args))

    def get(self, refs: Sequence[ray.ObjectRef]) -> list[Any]:
        """Results of one call per worker, waiting at most ``timeout`` seconds in all."""
        deadline = time.monotonic() + self.timeout
        results = []
        for shard, ref in zip(self.plan.shards, refs):
            try:
                results.append(ray.get(ref, timeout=max(deadline - time.monotonic(), 0.0)))
            except ray.exceptions.GetTimeoutError:
                raise WorkerError(
                    f"worker {shard.worker} ({shard.describe()}) did not answer within {self.timeout:g} s "
                    "(raise the timeout if starting or one step legitimately takes longer)"
                ) from None
            except ray.exceptions.RayError as err:
                raise WorkerError(f"worker {shard.worker} ({shard.describe()}) failed: {_root_cause(err)}") from err
        return results

    def shutdown(self) -> None:
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []
        remove_placement_group(self.placement)


def _bundle(options: dict[str, Any], shard: Shard) -> dict[str, float]:
    """The placement-group bundle of one worker: its CPUs, GPUs, memory and resources."""
    bundle = {
        "CPU": options.get("num_cpus", 0),
        "GPU": options.get("num_gpus", 0),
        "memory": options.get("memory", 0),
        **options.get("resources", {}),
        **dict(shard.resources),
    }
    return {name: float(amount) for name, amount in bundle.items() if amount}


def _cpu_slots(placement: Any, bundles: list[dict[str, float]]) -> list[tuple[int, int]]:
    """``(first, count)`` core slots per bundle: consecutive and distinct within each node."""
    nodes = placement_group_table(placement)["bundles_to_node_id"]
    used: dict[str, int] = {}
    slots = []
    for index, bundle in enumerate(bundles):
        node, count = nodes.get(index, ""), max(math.ceil(bundle.get("CPU", 0.0)), 1)
        slots.append((used.get(node, 0), count))
        used[node] = used.get(node, 0) + count
    return slots


def _ranges(cores: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` → ``"0-2,5"``."""
    spans: list[list[int]] = []
    for core in cores:
        if spans and core == spans[-1][1] + 1:
            spans[-1][1] = core
        else:
            spans.append([core, core])
    return ",".join(f"{a}-{b}" if b > a else f"{a}" for a, b in spans)


def _placement(_actor: Any) -> dict[str, Any]:
    """The node and accelerator ids of the calling actor (runs inside it)."""
    context = ray.get_runtime_context()
    return {"node_id": context.get_node_id(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()]}


def _root_cause(err: BaseException) -> str:
    """The innermost user-facing message of a Ray error, on one line.

    Ray reports an exception raised in an actor as a traceback whose last unindented
    line is ``module.ExceptionType: message``; that line is kept, without the module.
    """
    cause = getattr(err, "cause", None)
    if isinstance(err, ray.exceptions.RayTaskError) and cause is not None:
        return f"{type(cause).__name__}: {cause}"
    lines = [line for line in re.sub(r"\x1b\[[0-9;]*m", "", str(err)).splitlines() if line.strip()]
    last = next((line for line in reversed(lines) if not line[0].isspace()), lines[-1] if lines else repr(err))
    name, sep, message = last.partition(": ")
    return f"{name.rsplit('.', 1)[-1]}: {message}" if sep and " " not in name else last


class DistributedHessian:
    """H = ∇²L as a float64 matvec over a :class:`WorkerGroup` (the driver-side operator).

    ``dim`` is n; ``last_timing`` holds the :class:`StepTiming` of the latest matvec.
    ``broadcast_dtype`` is float32 when every worker computes in float32 (the vector is
    rounded to float32 once on the driver instead of on each worker: the same numbers,
    half the bytes), else float64. Partial products always come back in float64.
    """

    def __init__(self, group: WorkerGroup, num_examples: int):
        dims = {info["num_params"] for info in group.infos}
        if len(dims) != 1:
            raise WorkerError(f"workers disagree on the number of parameters: {sorted(dims)}")
        self.group = group
        self.dim = dims.pop()
        self.num_examples = num_examples
        compute = {info["compute_dtype"] for info in group.infos}
        self.broadcast_dtype = np.dtype(np.float32 if compute == {"float32"} else np.float64)
        self.last_timing: StepTiming | None = None

    def submit(self, vector: np.ndarray) -> "PendingProduct":
        """Start H·vector on every worker (one ``ray.put``) and return without waiting."""
        start = time.perf_counter()
        ref = ray.put(np.ascontiguousarray(vector, dtype=self.broadcast_dtype))
        refs = self.group.execute_async("partial_hvp", ref)
        return PendingProduct(refs, submitted=time.perf_counter(), broadcast=time.perf_counter() - start)

    def collect(self, pending: "PendingProduct") -> np.ndarray:
        """H·vector of a :meth:`submit`, float64[n]; sets :attr:`last_timing`."""
        partials: list[PartialHVP] = self.group.get(pending.refs)
        gathered = time.perf_counter()
        product = reduce_partials(partials, self.num_examples)
        hvp_max = max(p.seconds for p in partials)
        self.last_timing = StepTiming(
            broadcast=pending.broadcast,
            hvp_max=hvp_max,
            gather=max(gathered - pending.submitted - hvp_max, 0.0),
            reduce=time.perf_counter() - gathered,
        )
        return product

    def matvec(self, vector: np.ndarray) -> np.ndarray:
        return self.collect(self.submit(vector))


@dataclass(frozen=True)
class PendingProduct:
    """A distributed HVP in flight: one object reference per worker, and when it started."""

    refs: list[ray.ObjectRef]
    submitted: float
    broadcast: float


def connect(address: str | None = None) -> bool:
    """Connect to Ray at ``address`` (or start a local Ray); True if this call started it."""
    if ray.is_initialized():
        return False
    logging.getLogger("ray").setLevel(logging.WARNING)
    ray.init(address=address, log_to_driver=True)
    return True
