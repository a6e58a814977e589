"""The worker group: one :class:`~raylanczos.operators.shard_worker.ShardWorker` actor per
shard, placed in one placement group, started, warmed up, restarted by Ray after a fault,
and shut down."""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import ray
from ray.util.placement_group import (
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from raylanczos.choices import check_int
from raylanczos.distributed.placement import (
    _bundle,
    alive_node_resources,
    device_environment,
    device_resources,
    placement_shortfall,
)
from raylanczos.distributed.policy import (
    DriverThreads,
    cpu_slots,
    driver_threads,
    fastest_product_form,
    measures_product_forms,
    times_other_forms,
)
from raylanczos.distributed.shared_partials import (
    SharedPartials,
    shared_memory_fits,
    write_partial,
)
from raylanczos.operators.contract import (
    NodeSumInfo,
    PartialInfo,
    WorkerError,
    check_answer,
)
from raylanczos.operators.shard_worker import ShardWorker
from raylanczos.outputs.progress import byte_size
from raylanczos.problem.data import ShardPlan
from raylanczos.problem.definition import ProblemSource, factory_search_path

logger = logging.getLogger("raylanczos")


class ShardActor(ShardWorker):
    """A :class:`~raylanczos.operators.shard_worker.ShardWorker` as a Ray actor: its node
    sum fetches the group's other partials (object references, in group order) from this
    node's object store.

    With a sharded Lanczos state the block arrives as the keepers' slices (object
    references in keeper order, concatenated here: the all-gather), the members put their
    partials in their node's object store, and the node's sum leaves cut into one piece per
    keeper slice, each put in this node's object store (the first half of the
    reduce-scatter): no vector passes through the driver.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        self._shared_buffers: dict[str, np.ndarray] = {}  # the driver's shared buffers this worker has mapped
        self._node_id = ray.get_runtime_context().get_node_id()  # a restart on another node constructs the actor again
        super().__init__(*args, **kwargs)

    def node_sum_of_refs(
        self, vectors: np.ndarray, member_refs: Sequence[Any], own_index: int, arguments: Mapping[str, Any] | None = None,
        product_form: str | None = None,
    ) -> tuple[NodeSumInfo, np.ndarray | None]:
        return self.node_sum(vectors, lambda: ray.get(list(member_refs)), own_index, arguments, product_form)

    def partial_products_put(
        self, slice_refs: Sequence[Any], arguments: Mapping[str, Any] | None = None, product_form: str | None = None
    ) -> tuple[PartialInfo, Any]:
        """This shard's partial products of the block the keepers' slices make up, as an
        object reference (None when the pass failed)."""
        block, allgather = _assembled(slice_refs)
        info, products = self.partial_products(block, arguments, product_form)
        return replace(info, allgather=allgather), None if products is None else ray.put(products)

    def node_sum_pieces(
        self, slice_refs: Sequence[Any], member_refs: Sequence[Any], own_index: int, bounds: Sequence[int],
        arguments: Mapping[str, Any] | None = None, product_form: str | None = None,
    ) -> tuple[NodeSumInfo, list[Any] | None]:
        """The node's sum of partial products (:meth:`node_sum`) of the keepers' block, as one
        object reference per slice [bounds[i], bounds[i + 1]) (None when the pass failed)."""

        def members() -> list[np.ndarray | None]:
            return [None if ref is None else ray.get(ref) for ref in ray.get(list(member_refs))]

        block, allgather = _assembled(slice_refs)
        info, total = self.node_sum(block, members, own_index, arguments, product_form)
        info = replace(info, allgather=allgather)
        if total is None:
            return info, None
        return info, [ray.put(np.ascontiguousarray(total[:, lo:hi])) for lo, hi in zip(bounds[:-1], bounds[1:])]


    def partial_products_shared(
        self, vectors: np.ndarray, path: str, rows: int, driver_node: str, arguments: Mapping[str, Any] | None = None,
        product_form: str | None = None,
    ) -> tuple[PartialInfo, np.ndarray | None]:
        """:meth:`partial_products`, the products written into the driver's shared buffer of
        ``rows`` rows at ``path`` (:mod:`~raylanczos.distributed.shared_partials`) and None
        returned in their place; returned as before when this worker is not on
        ``driver_node`` (a fault moved it) or cannot write there."""
        info, products = self.partial_products(vectors, arguments, product_form)
        if products is None or self._node_id != driver_node:
            return info, products
        return info, None if write_partial(path, rows, products, self._shared_buffers) else products


def _assembled(slice_refs: Sequence[Any]) -> tuple[np.ndarray, float]:
    """The (B, n) block from the keepers' slices (object references, in keeper order), and
    the seconds its fetch and concatenation took (this worker's part of the all-gather)."""
    start = time.perf_counter()
    block = np.concatenate(ray.get(list(slice_refs)), axis=1)
    return block, time.perf_counter() - start


@dataclass(frozen=True)
class WorkerOptions:
    """What each worker is asked to compute and how it may fail.

    ``compute_dtype``: None (the model's dtype) or ``"float64"``; ``operator``:
    ``"hessian"``, ``"ggn"`` or ``"preconditioned"``; ``arguments``: the factory's keyword arguments (a sweep
    point); ``max_restarts``: how often Ray may restart a dead worker (its call is then
    retried); ``timeout``: seconds to wait for a worker to start or to answer one call;
    ``pin_cpus``: pin each worker to as many cores as its ``num_cpus`` (rounded up), the
    workers of one node on distinct cores; None pins CPU-only workers and leaves GPU
    workers free (their host threads feed the device); ``devices``: G, the devices each
    worker shards its (JAX) model over: G GPUs for a GPU worker, else G host devices;
    ``product_form``: the JAX products' form, or "auto" (timed at the warm-up; see
    :class:`~raylanczos.config.ScalingConfig`).
    """

    compute_dtype: str | None = None
    operator: str = "hessian"
    product_form: str = "auto"
    arguments: Mapping[str, Any] | None = None
    max_restarts: int = 3
    timeout: float = 3600.0
    pin_cpus: bool | None = None
    devices: int = 1

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError(f"timeout must be positive seconds, got {self.timeout!r}")
        check_int("max_restarts", self.max_restarts, minimum=0)
        check_int("devices", self.devices)


#: Seconds the workers may take to end their calls when the group is shut down.
SETTLE_S = 10.0
#: Seconds :meth:`WorkerGroup.nodes_in_use` keeps Ray's answer before asking again.
NODES_REFRESH_S = 2.0


class WorkerGroup:
    """One :class:`~raylanczos.worker.ShardWorker` actor per shard of ``plan``.

    Args:
      source: the problem factory path (imported in each actor), or a picklable
        problem or factory.
      plan: a validated shard plan; worker i owns ``plan.shards[i]``.
      resources: Ray actor options per worker, e.g. ``{"num_cpus": 1, "num_gpus": 1}``
        (``num_cpus``, ``num_gpus``, ``resources`` and ``memory`` are accepted); with
        ``options.devices`` G > 1, a GPU worker's ``num_gpus`` becomes G and a CPU worker's
        process is given G host devices (:func:`~raylanczos.distributed.placement.device_environment`).
      options: :class:`WorkerOptions`.
      block_size: B, the vectors per pass (the workers compile for it at start-up).
      placement_timeout: seconds to wait for the cluster to offer what the workers need
        when it has too little now (an autoscaler adding nodes); 0 refuses at once.

    ``product_form`` is the form every worker computes in (None for a backend without a
    choice, Keras): the one asked for, or with "auto" at B > 1 the one whose slowest worker
    was fastest on its first batch (:func:`~raylanczos.distributed.policy.fastest_product_form`;
    ``form_seconds`` the slowest worker's seconds per form, each worker's in its info).

    Workers are placed through one placement group, one bundle per worker, spread over
    the cluster's nodes where resources allow (an autoscaler sees the whole demand at
    once); a shard's own ``resources`` pin its worker (see :class:`~raylanczos.Shard`).
    """

    def __init__(
        self,
        source: ProblemSource,
        plan: ShardPlan,
        *,
        resources: Mapping[str, Any] | None = None,
        options: WorkerOptions = WorkerOptions(),
        block_size: int = 1,
        placement_timeout: float = 0.0,
    ):
        self.plan = plan
        self.timeout = options.timeout
        self._nodes_in_use: tuple[int, float] | None = None
        self._shared: SharedPartials | None = None
        self._unresponsive = False  # a worker did not answer within the timeout
        resources = {"num_cpus": 1, **(resources or {})}
        unknown = set(resources) - {"num_cpus", "num_gpus", "resources", "memory"}
        if unknown:
            raise ValueError(f"unsupported worker resource option(s) {sorted(unknown)}; use num_cpus, num_gpus, resources, memory")
        self.resources = resources = device_resources(resources, options.devices)
        environment = device_environment(resources, options.devices)
        bundles = [_bundle(resources, shard) for shard in plan.shards]
        self._place(bundles, placement_timeout)
        self.actors: list[Any] = []
        pin = options.pin_cpus if options.pin_cpus is not None else not resources.get("num_gpus")
        self.pinned = bool(pin)
        bundle_nodes = placement_group_table(self.placement)["bundles_to_node_id"]
        slots = cpu_slots(bundle_nodes, [b.get("CPU", 0.0) for b in bundles]) if pin else [None] * len(bundles)
        actor_class = ray.remote(ShardActor)
        for index, (shard, slot) in enumerate(zip(plan.shards, slots)):
            actor_options = dict(resources, resources={**resources.get("resources", {}), **dict(shard.resources)})
            if environment is not None:
                actor_options["runtime_env"] = environment
            self.actors.append(
                actor_class.options(
                    **actor_options,
                    max_restarts=options.max_restarts,
                    max_task_retries=options.max_restarts,
                    scheduling_strategy=PlacementGroupSchedulingStrategy(self.placement, placement_group_bundle_index=index),
                ).remote(
                    source, shard, compute_dtype=options.compute_dtype, operator=options.operator,
                    arguments=options.arguments, sys_path=factory_search_path(), cpu_slot=slot, devices=options.devices,
                )
            )
        try:
            timed = self._time_product_forms(options.product_form, block_size)  # a worker that failed to start answers its error
            self.product_form, self.form_seconds = fastest_product_form(timed) if timed else (_forced(options.product_form), {})
            compiled = self.execute("warm_up", block_size, self.product_form)
            for info in compiled:
                check_answer(info.error)
            described = self.execute("describe")  # after the warm-up, which measures the devices' memory
            placed = self.get([actor.__ray_call__.remote(_placement) for actor in self.actors])
        except BaseException:
            self.shutdown()
            raise
        self.infos = [dict(info, **where, warm_up_s=answer.seconds) for info, where, answer in zip(described, placed, compiled)]
        for info, seconds in zip(self.infos, timed or [{}] * len(self.infos)):
            info["product_form_seconds"] = seconds
        self.product_form = self.infos[0]["product_form"]
        if self.product_form is not None:
            logger.info("%s", product_form_line(self.product_form, self.form_seconds, block_size))
        for info, shard in zip(self.infos, plan.shards):
            logger.info(
                "worker %d: %s, %d examples, node %s (%s), pid %d, cores %s, GPUs %s%s, first pass (compilation) %.1f s%s",
                shard.worker, shard.describe(), info["num_examples"], info["node_id"][:12], info["hostname"],
                info["pid"], _ranges(info["cores"]), info["gpu_ids"] or "none", _devices(info), info["warm_up_s"],
                f"; {info['accumulation_note']}" if info["accumulation_note"] else "",
            )

    def _time_product_forms(self, requested: str, block_size: int) -> list[dict[str, float]]:
        """Each worker's seconds per block of ``block_size`` by product form, when the form is
        the run's to choose (:func:`~raylanczos.distributed.policy.measures_product_forms`);
        else none (empty). The default form is timed first, and the others only when
        :func:`~raylanczos.distributed.policy.times_other_forms` finds them worth it."""
        if not measures_product_forms(requested, block_size):
            return []
        timed = self._timed_forms("time_default_product_form", block_size)
        if times_other_forms(timed):
            timed = self._timed_forms("time_other_product_forms", block_size)
        return timed

    def _timed_forms(self, method: str, block_size: int) -> list[dict[str, float]]:
        timed = self.execute(method, block_size)
        for _, error in timed:
            check_answer(error)
        return [times for times, _ in timed]

    def _place(self, bundles: list[dict[str, float]], placement_timeout: float) -> None:
        """Reserve the workers' bundles, or refuse in seconds when the cluster cannot hold them."""
        shortfall = placement_shortfall(bundles, alive_node_resources())
        if shortfall and placement_timeout <= 0:
            raise WorkerError(shortfall)
        self.placement = placement_group(bundles, strategy="SPREAD")
        wait = max(placement_timeout, 0.0) if shortfall else self.timeout
        if shortfall:
            logger.info("%s; waiting up to %g s for the cluster to add nodes (--placement-timeout)", shortfall, wait)
        try:
            ray.get(self.placement.ready(), timeout=wait)
        except ray.exceptions.GetTimeoutError as err:
            remove_placement_group(self.placement)
            now = placement_shortfall(bundles, alive_node_resources())
            raise WorkerError(
                f"the cluster could not place {len(bundles)} workers within {wait:g} s"
                + (f": {now}" if now else f"; they need {bundles} and other work holds the resources")
            ) from err

    def driver_threads(self, dim: int, policy: Callable[..., DriverThreads] = driver_threads) -> DriverThreads:
        """Threads for the driver's re-orthogonalisation of vectors of ``dim`` entries on this
        machine: ``policy`` (see :func:`~raylanczos.policy.driver_threads`) of the driver's
        cores, the cores the workers on its node are pinned to, and ``dim``."""
        here = ray.get_runtime_context().get_node_id()
        taken = [core for info in self.infos if info["node_id"] == here for core in info["cores"]]
        return policy(self.pinned, os.sched_getaffinity(0), taken, dim)

    def node_groups(self) -> list[list[int]]:
        """The workers grouped by the node they run on: groups in order of their first
        worker, workers in order within each group."""
        groups: dict[str, list[int]] = {}
        for index, info in enumerate(self.infos):
            groups.setdefault(info["node_id"], []).append(index)
        return list(groups.values())

    def on_driver_node(self) -> bool:
        """Whether every worker was placed on the driver's node."""
        here = ray.get_runtime_context().get_node_id()
        return all(info["node_id"] == here for info in self.infos)

    def current_nodes(self) -> list[str]:
        """Each worker's node now, in worker order: where a fault moved it (waiting, as any
        call does, for a worker Ray is restarting)."""
        return [placed["node_id"] for placed in self.get([actor.__ray_call__.remote(_placement) for actor in self.actors])]

    def nodes_in_use(self) -> int:
        """The nodes the workers run on now: their bundles' nodes, where a fault moved them,
        as Ray's placement table said at most :data:`NODES_REFRESH_S` seconds ago (one
        request to Ray's control store per refresh, not per pass)."""
        now = time.monotonic()
        if self._nodes_in_use is None or now - self._nodes_in_use[1] >= NODES_REFRESH_S:
            nodes = len(set(placement_group_table(self.placement)["bundles_to_node_id"].values()))
            self._nodes_in_use = (nodes, now)
        return self._nodes_in_use[0]

    def execute_async(self, method: str, *args: Any) -> list[ray.ObjectRef]:
        return [getattr(actor, method).remote(*args) for actor in self.actors]

    def execute(self, method: str, *args: Any) -> list[Any]:
        """Call ``method`` on every worker; results in worker order; errors name the worker."""
        return self.get(self.execute_async(method, *args))

    def get(self, refs: Sequence[ray.ObjectRef], workers: Sequence[int] | None = None) -> list[Any]:
        """Results of one call per worker (``workers``: whose; default all, in order),
        waiting at most ``timeout`` seconds in all."""
        deadline = time.monotonic() + self.timeout
        results = []
        for worker, ref in zip(range(len(refs)) if workers is None else workers, refs):
            shard = self.plan.shards[worker]
            try:
                results.append(ray.get(ref, timeout=max(deadline - time.monotonic(), 0.0)))
            except ray.exceptions.GetTimeoutError as err:
                self._unresponsive = True
                where = f"worker {shard.worker} ({shard.describe()})"
                raise WorkerError(
                    lost_worker_line(where, err, stopped_ray())
                    or f"{where} did not answer within {self.timeout:g} s "
                    "(raise --timeout if starting or one step legitimately takes longer)"
                ) from err
            except ray.exceptions.RayError as err:
                where = f"worker {shard.worker} ({shard.describe()})"
                # A Ray that is stopping loses its workers a moment before its GCS goes.
                lost = isinstance(err, ray.exceptions.RayActorError) and not err.actor_init_failed
                stopped = stopped_ray(patience_s=STOPPING_PATIENCE_S if lost else 0.0)
                raise WorkerError(lost_worker_line(where, err, stopped) or f"{where} failed: {root_cause(err)}") from err
        return results

    def load_point(self, arguments: Mapping[str, Any] | None, block_size: int) -> None:
        """Move every worker to the factory's ``arguments`` (a sweep point) and compile again."""
        loaded = self.execute("load_point", arguments)
        for info in loaded:
            check_answer(info["error"])
        compiled = self.execute("warm_up", block_size, self.product_form)
        for info in compiled:
            check_answer(info.error)
        described = self.execute("describe")
        for info, new, answer in zip(self.infos, described, compiled):
            info.update({k: v for k, v in new.items() if k not in ("pid", "cores", "hostname")}, warm_up_s=answer.seconds)
        logger.info(
            "workers moved to %s (%s), compiled in %.1f s",
            ", ".join(f"{k}={v!r}" for k, v in (arguments or {}).items()) or "the factory's defaults",
            "data kept" if all(new["reused_data"] for new in loaded) else "data read again",
            max(answer.seconds for answer in compiled),
        )

    def shared_partials(self, rows: int, dim: int) -> SharedPartials | None:
        """The group's buffers in shared memory for partials of (rows, dim), one per worker
        (made on first use, kept until :meth:`shutdown`), or None where they do not fit."""
        if self._shared is not None and (self._shared.rows, self._shared.dim) != (rows, dim):
            self._shared.close()
            self._shared = None
        if self._shared is None and shared_memory_fits(len(self.actors), rows, dim):
            self._shared = SharedPartials(len(self.actors), rows, dim)
        return self._shared

    def current_pids(self) -> list[int]:
        """Each worker's process id now (a worker restarted after a fault has a new one)."""
        return self.get([actor.__ray_call__.remote(_pid) for actor in self.actors])

    def record_pids(self) -> None:
        """Note in each worker's description its process id now, and whether it was restarted."""
        for info, pid in zip(self.infos, self.current_pids()):
            info.update(pid_at_end=pid, restarted=pid != info["pid"])

    def shutdown(self, settle_s: float = SETTLE_S) -> None:
        """Stop the workers, once each has ended the calls it was given (at most
        ``settle_s`` seconds): a worker killed in a call (Ctrl-C or an error mid-pass) makes
        Ray announce the call's retry, after the run's own last line. After a worker did not
        answer within the group's timeout, at once: it would not end its calls either."""
        try:
            finished = [actor.__ray_call__.remote(_pid) for actor in self.actors]  # queued after those calls
            ray.wait(finished, num_returns=len(finished), timeout=0.0 if self._unresponsive else settle_s)
        finally:
            for actor in self.actors:
                ray.kill(actor, no_restart=True)
            self.actors = []
            remove_placement_group(self.placement)
            if self._shared is not None:
                self._shared.close()
                self._shared = None


def _forced(requested: str) -> str | None:
    """The form a run computes in when none is measured: the one asked for, or None (the
    backend's default) for "auto"."""
    return None if requested == "auto" else requested


def product_form_line(form: str, seconds: Mapping[str, float], block_size: int) -> str:
    """The start-up line of the run's product form, with the measured seconds per block
    when the form was chosen by them (the slowest worker's, on its first batch)."""
    if not seconds:
        return f"product form {form} (not measured: {'chosen' if block_size > 1 else 'one draw per pass'})"
    measured = ", ".join(f"{name} {value:.3g} s" for name, value in seconds.items())
    return f"product form {form} ({measured} per block of {block_size} on the first batch, the slowest worker's)"


def _ranges(cores: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` → ``"0-2,5"``."""
    spans: list[list[int]] = []
    for core in cores:
        if spans and core == spans[-1][1] + 1:
            spans[-1][1] = core
        else:
            spans.append([core, core])
    return ",".join(f"{a}-{b}" if b > a else f"{a}" for a, b in spans)


def _devices(info: Mapping[str, Any]) -> str:
    """``", 2 gpu devices, product 1.2 GB per device of 80 GB"``: a worker's devices and its
    compiled product's peak memory on each (and what a device holds, where it says); "" for
    a worker on one device."""
    memory = info.get("device_memory")
    if memory is None:
        return ""
    limit = f" of {byte_size(memory['limit_bytes'])}" if memory["limit_bytes"] is not None else ", no device limit known"
    return f", {memory['devices']} {memory['platform']} devices, product {byte_size(memory['peak_bytes'])} per device{limit}"


def _placement(_actor: Any) -> dict[str, Any]:
    """The node and accelerator ids of the calling actor (runs inside it)."""
    context = ray.get_runtime_context()
    return {"node_id": context.get_node_id(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()]}


def _pid(_actor: Any) -> int:
    return os.getpid()


#: Seconds to wait for the connected Ray's GCS to accept a connection, after a worker call failed.
GCS_PROBE_TIMEOUT_S = 2.0
#: Seconds to keep probing the GCS after Ray lost a worker, and between probes.
STOPPING_PATIENCE_S = 3.0
PROBE_INTERVAL_S = 0.5


def stopped_ray(patience_s: float = 0.0, timeout_s: float = GCS_PROBE_TIMEOUT_S) -> str | None:
    """The address of the connected Ray if its GCS does not accept a connection (the Ray
    has stopped under the run) now or within ``patience_s`` seconds, else None."""
    address = ray.get_runtime_context().gcs_address
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + patience_s
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=timeout_s).close()
        except OSError:
            return address
        if time.monotonic() >= deadline:
            return None
        time.sleep(PROBE_INTERVAL_S)


#: What Ray's reasons for an actor's death mean for a run, by a phrase of the reason, in
#: the order they are tried.
ACTOR_LOSSES = (
    ("never ran", "Ray cancelled it before it started"),
    ("ray.kill", "it was killed with ray.kill, from outside the run"),
    ("owner's node has crashed", "the Ray node of this driver stopped"),
    ("owner has died", "the Ray node of this driver stopped"),
    ("node", "its node was lost"),
)


def lost_worker_line(where: str, err: BaseException, stopped: str | None) -> str | None:
    """One line for a worker that Ray lost, naming it (``where``) and what to do, or None
    for an error that is not a loss (the worker's own exception, a crash Ray reports).

    ``stopped``: the address of the connected Ray when it no longer answers (the Ray a run
    joined was shut down under it, say); that explains any error.
    """
    again = "run again (--resume continues from the last checkpoint"
    if stopped is not None:
        return f"{where} was lost: the Ray at {stopped} has stopped; {again}; --address local starts a Ray of the run's own)"
    if isinstance(err, ray.exceptions.OutOfMemoryError) or (
        isinstance(err, ray.exceptions.RayActorError) and "out of memory" in str(err).lower()
    ):
        return (
            f"{where} was lost: Ray's memory monitor killed it, as its node's memory passed the kill threshold "
            "(RAY_memory_usage_threshold, 0.95 of the node by default); fewer workers per node (--workers, "
            f"--cpus-per-worker) or smaller batches need less; {again})"
        )
    if not isinstance(err, ray.exceptions.RayActorError) or err.actor_init_failed:
        return None
    reason = str(err).lower()
    what = next((meaning for phrase, meaning in ACTOR_LOSSES if phrase in reason), None)
    return None if what is None else f"{where} was lost: {what}; {again})"


def root_cause(err: BaseException) -> str:
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
