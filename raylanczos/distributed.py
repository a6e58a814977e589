"""The Ray layer: one actor per shard, and the distributed operator as a block operator.

Per pass: one ``ray.put`` of the (B, n) block of vectors, every actor computes its shard's
Σ_b |b|·C_b v for the B vectors from that object reference, and the partials are summed
in float64 in a fixed order and divided by N:

- ``reduce="flat"``: the driver gets every worker's partial and sums them in worker order;
- ``reduce="node"``: the workers are grouped by the node they were placed on; each
  group's first worker adds the other members' partials to its own, reading them from
  its node's object store, in group order, and only one partial per node travels to the
  driver, which sums those in group order. The groups are fixed for the run (and kept in
  its checkpoint), so a worker moved to another node by a fault keeps its group, and the
  numbers stay the same.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import ray
from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from raylanczos.data import Shard, ShardPlan
from raylanczos.loop import StepTiming
from raylanczos.policy import DriverThreads, cpu_slots, driver_threads
from raylanczos.problem import ProblemSource, factory_search_path
from raylanczos.worker import NodeSumInfo, PartialInfo, ShardWorker, WorkerError, check_answer, reduce_partials

logger = logging.getLogger("raylanczos")

REDUCTIONS = ("node", "flat")


@dataclass(frozen=True)
class WorkerOptions:
    """What each worker is asked to compute and how it may fail.

    ``compute_dtype``: None (the model's dtype) or ``"float64"``; ``operator``:
    ``"hessian"`` or ``"ggn"``; ``arguments``: the factory's keyword arguments (a sweep
    point); ``max_restarts``: how often Ray may restart a dead worker (its call is then
    retried); ``timeout``: seconds to wait for a worker to start or to answer one call;
    ``pin_cpus``: pin each worker to as many cores as its ``num_cpus`` (rounded up), the
    workers of one node on distinct cores; None pins CPU-only workers and leaves GPU
    workers free (their host threads feed the device).
    """

    compute_dtype: str | None = None
    operator: str = "hessian"
    arguments: Mapping[str, Any] | None = None
    max_restarts: int = 3
    timeout: float = 3600.0
    pin_cpus: bool | None = None

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError(f"timeout must be positive seconds, got {self.timeout!r}")
        if isinstance(self.max_restarts, bool) or not isinstance(self.max_restarts, int) or self.max_restarts < 0:
            raise ValueError(f"max_restarts must be a non-negative integer, got {self.max_restarts!r}")


class WorkerGroup:
    """One :class:`~raylanczos.worker.ShardWorker` actor per shard of ``plan``.

    Args:
      source: the problem factory path (imported in each actor), or a picklable
        problem or factory.
      plan: a validated shard plan; worker i owns ``plan.shards[i]``.
      resources: Ray actor options per worker, e.g. ``{"num_cpus": 1, "num_gpus": 1}``
        (``num_cpus``, ``num_gpus``, ``resources`` and ``memory`` are accepted).
      options: :class:`WorkerOptions`.
      block_size: B, the vectors per pass (the workers compile for it at start-up).
      placement_timeout: seconds to wait for the cluster to offer what the workers need
        when it has too little now (an autoscaler adding nodes); 0 refuses at once.

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
        self.resources = resources = {"num_cpus": 1, **(resources or {})}
        unknown = set(resources) - {"num_cpus", "num_gpus", "resources", "memory"}
        if unknown:
            raise ValueError(f"unsupported worker resource option(s) {sorted(unknown)}; use num_cpus, num_gpus, resources, memory")
        bundles = [_bundle(resources, shard) for shard in plan.shards]
        self._place(bundles, placement_timeout)
        self.actors: list[Any] = []
        pin = options.pin_cpus if options.pin_cpus is not None else not resources.get("num_gpus")
        self.pinned = bool(pin)
        bundle_nodes = placement_group_table(self.placement)["bundles_to_node_id"]
        slots = cpu_slots(bundle_nodes, [b.get("CPU", 0.0) for b in bundles]) if pin else [None] * len(bundles)
        actor_class = ray.remote(ShardWorker)
        for index, (shard, slot) in enumerate(zip(plan.shards, slots)):
            actor_options = dict(resources, resources={**resources.get("resources", {}), **dict(shard.resources)})
            self.actors.append(
                actor_class.options(
                    **actor_options,
                    max_restarts=options.max_restarts,
                    max_task_retries=options.max_restarts,
                    scheduling_strategy=PlacementGroupSchedulingStrategy(self.placement, placement_group_bundle_index=index),
                ).remote(
                    source, shard, compute_dtype=options.compute_dtype, operator=options.operator,
                    arguments=options.arguments, sys_path=factory_search_path(), cpu_slot=slot,
                )
            )
        try:
            described = self.execute("describe")
            for info in described:
                check_answer(info["error"])
            placed = self.get([actor.__ray_call__.remote(_placement) for actor in self.actors])
            compiled = self.execute("warm_up", block_size)
            for info in compiled:
                check_answer(info.error)
        except BaseException:
            self.shutdown()
            raise
        self.infos = [dict(info, **where, warm_up_s=answer.seconds) for info, where, answer in zip(described, placed, compiled)]
        for info, shard in zip(self.infos, plan.shards):
            logger.info(
                "worker %d: %s, %d examples, node %s (%s), pid %d, cores %s, GPUs %s, first pass (compilation) %.1f s%s",
                shard.worker, shard.describe(), info["num_examples"], info["node_id"][:12], info["hostname"],
                info["pid"], _ranges(info["cores"]), info["gpu_ids"] or "none", info["warm_up_s"],
                f"; {info['accumulation_note']}" if info["accumulation_note"] else "",
            )

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

    def driver_threads(self, policy: Callable[..., DriverThreads] = driver_threads) -> DriverThreads:
        """Threads for the driver's re-orthogonalisation on this machine: ``policy`` (see
        :func:`~raylanczos.policy.driver_threads`) of the driver's cores and the cores the
        workers on its node are pinned to."""
        here = ray.get_runtime_context().get_node_id()
        taken = [core for info in self.infos if info["node_id"] == here for core in info["cores"]]
        return policy(self.pinned, os.sched_getaffinity(0), taken)

    def node_groups(self) -> list[list[int]]:
        """The workers grouped by the node they run on: groups in order of their first
        worker, workers in order within each group."""
        groups: dict[str, list[int]] = {}
        for index, info in enumerate(self.infos):
            groups.setdefault(info["node_id"], []).append(index)
        return list(groups.values())

    def nodes_in_use(self) -> int:
        """The nodes the workers run on now: their bundles' nodes, where a fault moved them."""
        return len(set(placement_group_table(self.placement)["bundles_to_node_id"].values()))

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
                raise WorkerError(
                    f"worker {shard.worker} ({shard.describe()}) did not answer within {self.timeout:g} s "
                    "(raise --timeout if starting or one step legitimately takes longer)"
                ) from err
            except ray.exceptions.RayError as err:
                raise WorkerError(f"worker {shard.worker} ({shard.describe()}) failed: {_root_cause(err)}") from err
        return results

    def load_point(self, arguments: Mapping[str, Any] | None, block_size: int) -> None:
        """Move every worker to the factory's ``arguments`` (a sweep point) and compile again."""
        described = self.execute("load_point", arguments)
        for info in described:
            check_answer(info["error"])
        compiled = self.execute("warm_up", block_size)
        for info in compiled:
            check_answer(info.error)
        for info, new, answer in zip(self.infos, described, compiled):
            info.update({k: v for k, v in new.items() if k not in ("pid", "cores", "hostname")}, warm_up_s=answer.seconds)
        logger.info(
            "workers moved to %s (%s), compiled in %.1f s",
            ", ".join(f"{k}={v!r}" for k, v in (arguments or {}).items()) or "the factory's defaults",
            "data kept" if all(new["reused_data"] for new in described) else "data read again",
            max(answer.seconds for answer in compiled),
        )

    def current_pids(self) -> list[int]:
        """Each worker's process id now (a worker restarted after a fault has a new one)."""
        return self.get([actor.__ray_call__.remote(_pid) for actor in self.actors])

    def shutdown(self) -> None:
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []
        remove_placement_group(self.placement)


def alive_node_resources() -> list[dict[str, float]]:
    """The total resources of each alive node of the connected cluster."""
    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]


def placement_shortfall(bundles: Sequence[Mapping[str, float]], nodes: Sequence[Mapping[str, float]]) -> str:
    """Why ``bundles`` cannot all be placed on ``nodes`` (their total resources), or "".

    A bundle must fit on one node, and all bundles together within the cluster's totals
    (several bundles may share a node). Pure: the caller gathers the nodes' resources.
    """
    asked: dict[str, float] = {}
    for bundle in bundles:
        for name, amount in bundle.items():
            asked[name] = asked.get(name, 0.0) + amount
    total: dict[str, float] = {}
    for node in nodes:
        for name, amount in node.items():
            total[name] = total.get(name, 0.0) + amount

    def listing(resources: Mapping[str, float]) -> str:
        """The amounts of the resources the workers ask for (0 where there are none)."""
        return ", ".join(f"{_amount(resources.get(name, 0.0))} {name}" for name in sorted(asked))

    short = {name: amount for name, amount in asked.items() if amount > total.get(name, 0.0) + 1e-9}
    if short:
        return (
            f"{len(bundles)} workers need {listing(asked)} in all, and the cluster has {listing(total)} "
            f"on {len(nodes)} node(s)"
        )
    for bundle in bundles:
        if not any(all(node.get(k, 0.0) + 1e-9 >= v for k, v in bundle.items()) for node in nodes):
            return f"a worker needs {listing(bundle)} on one node, and no node of the cluster has that"
    return ""


def _amount(value: float) -> str:
    return f"{value:g}" if value < 1e6 else f"{value / 2**30:.3g}Gi"


def _bundle(options: Mapping[str, Any], shard: Shard) -> dict[str, float]:
    """The placement-group bundle of one worker: its CPUs, GPUs, memory and resources."""
    bundle = {
        "CPU": options.get("num_cpus", 0),
        "GPU": options.get("num_gpus", 0),
        "memory": options.get("memory", 0),
        **options.get("resources", {}),
        **dict(shard.resources),
    }
    return {name: float(amount) for name, amount in bundle.items() if amount}


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


def _pid(_actor: Any) -> int:
    return os.getpid()


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


@dataclass(frozen=True)
class PendingProducts:
    """A distributed block product in flight: the answers' references, when it started, and
    the bytes of the block every node reads."""

    infos: list[ray.ObjectRef]
    info_workers: list[int]
    products: list[ray.ObjectRef]
    product_workers: list[int]
    submitted: float
    broadcast: float
    block_bytes: int


class DistributedHessian:
    """The full-batch operator C (Hessian or Gauss–Newton) as a block operator over a
    :class:`WorkerGroup` (the driver side; see the module docstring for the reductions).

    Args:
      group: the started workers.
      num_examples: N, the dataset's size.
      block_size: B, vectors per pass.
      reduce: ``"node"`` or ``"flat"``.
      groups: the node groups (worker indices) to sum in; default the group's own
        placement (:meth:`WorkerGroup.node_groups`); a resumed run passes its checkpoint's.
      arguments: the factory arguments of the sweep point the products are for (a worker
        restarted by Ray moves to them before it computes), or None.

    ``broadcast_dtype`` is float32 when every worker computes in float32 (the block is
    rounded to float32 once on the driver instead of on each worker: the same numbers,
    half the bytes), else float64. Partial products always come back in float64.
    """

    def __init__(
        self,
        group: WorkerGroup,
        num_examples: int,
        *,
        block_size: int = 1,
        reduce: str = "node",
        groups: Sequence[Sequence[int]] | None = None,
        arguments: Mapping[str, Any] | None = None,
    ):
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
        dims = {info["num_params"] for info in group.infos}
        if len(dims) != 1:
            raise WorkerError(f"workers disagree on the number of parameters: {sorted(dims)}")
        self.group = group
        self.dim = dims.pop()
        self.block_size = block_size
        self.num_examples = num_examples
        self.reduce = reduce
        self.arguments = dict(arguments) if arguments else None
        self.groups = [list(g) for g in groups] if groups is not None else group.node_groups()
        if sorted(w for g in self.groups for w in g) != list(range(len(group.actors))):
            raise ValueError(f"node groups {self.groups} do not cover the {len(group.actors)} workers exactly once")
        compute = {info["compute_dtype"] for info in group.infos}
        self.broadcast_dtype = np.dtype(np.float32 if compute == {"float32"} else np.float64)

    def submit(self, vectors: np.ndarray) -> PendingProducts:
        """Start C·v for every row of ``vectors`` (B, n) on every worker (one ``ray.put``)."""
        start = time.perf_counter()
        block = np.ascontiguousarray(vectors, dtype=self.broadcast_dtype)
        ref = ray.put(block)
        actors = self.group.actors
        infos, info_workers, products, product_workers = [], [], [], []
        if self.reduce == "flat":
            for worker, actor in enumerate(actors):
                info, product = actor.partial_products.options(num_returns=2).remote(ref, self.arguments)
                infos.append(info), info_workers.append(worker), products.append(product), product_workers.append(worker)
        else:
            for members in self.groups:
                leader, others = members[0], members[1:]
                member_products = []
                for worker in others:
                    info, product = actors[worker].partial_products.options(num_returns=2).remote(ref, self.arguments)
                    infos.append(info), info_workers.append(worker), member_products.append(product)
                info, product = actors[leader].node_sum.options(num_returns=2).remote(ref, member_products, 0, self.arguments)
                infos.append(info), info_workers.append(leader), products.append(product), product_workers.append(leader)
        submitted = time.perf_counter()
        return PendingProducts(infos, info_workers, products, product_workers, submitted, submitted - start, block.nbytes)

    def collect(self, pending: PendingProducts) -> tuple[np.ndarray, StepTiming]:
        """C·v of a :meth:`submit`, float64 (B, n), and what it cost. The block counts once per
        node the workers ran on, as placed once they have answered (after a fault too)."""
        infos: list[PartialInfo | NodeSumInfo] = self.group.get(pending.infos, pending.info_workers)
        for info in infos:
            check_answer(info.error)
        partials = self.group.get(pending.products, pending.product_workers)
        gathered = time.perf_counter()
        counts = [info.count for info in infos]
        product = reduce_partials(partials, counts, self.num_examples)
        hvp_max = max(info.seconds for info in infos)
        node_reduce = max((info.node_reduce_seconds for info in infos if isinstance(info, NodeSumInfo)), default=0.0)
        timing = StepTiming(
            broadcast=pending.broadcast,
            hvp_max=hvp_max,
            gather=max(gathered - pending.submitted - hvp_max, 0.0),
            node_reduce=node_reduce,
            reduce=time.perf_counter() - gathered,
            bytes_sent=pending.block_bytes * self.group.nodes_in_use(),
            bytes_received=sum(p.nbytes for p in partials),
        )
        return product, timing

    def matmat(self, vectors: np.ndarray) -> np.ndarray:
        return self.collect(self.submit(vectors))[0]

    def matvec(self, vector: np.ndarray) -> np.ndarray:
        return self.matmat(np.asarray(vector)[None, :])[0]


def connect(address: str | None = None) -> bool:
    """Connect to Ray at ``address`` (or to a running local Ray, or start one); True if
    this call connected (and should disconnect at the end), False if Ray was up already.

    Ray's start-up notices (the token notice, the dashboard address) are kept to the
    ``ray`` logger's warnings and errors; raylanczos logs one line of its own instead.
    """
    if ray.is_initialized():
        return False
    check_reachable(address)
    with warnings.catch_warnings():
        # Ray starts its processes with subprocess (fork + exec at once), which is safe
        # even after JAX started its threads in the driver.
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        context = ray.init(address=address, log_to_driver=True, logging_level=logging.ERROR)
    logging.getLogger("ray").setLevel(logging.WARNING)
    resources = ray.cluster_resources()
    dashboard = getattr(context, "dashboard_url", "")
    logger.info(
        "Ray: %s, %g CPUs, %g GPUs on %d node(s)%s", address or "this machine", resources.get("CPU", 0),
        resources.get("GPU", 0), len(alive_node_resources()), f"; dashboard http://{dashboard}" if dashboard else "",
    )
    return True


#: Seconds to wait for a TCP connection to a cluster's address before refusing it.
REACH_TIMEOUT_S = 5.0


def check_reachable(address: str | None, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """Refuse in seconds a ``host:port`` (or ``ray://host:port``) address that nothing
    answers on; Ray itself would retry for minutes. Other addresses (None, ``auto``,
    ``local``, a bare host) are left to Ray."""
    if not address or ("://" in address and not address.startswith("ray://")):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as err:
        reason = f"no answer within {timeout_s:g} s" if isinstance(err, TimeoutError) else err.strerror or str(err)
        raise ConnectionError(
            f"cannot reach Ray at {address} ({reason}): is the cluster up, and is this its head's "
            "address? (`ray status` on the head prints it)"
        ) from err


def single_machine() -> bool:
    """Whether the connected cluster is this machine alone (a plain local run)."""
    here = ray.get_runtime_context().get_node_id()
    alive = [node for node in ray.nodes() if node.get("Alive")]
    return len(alive) == 1 and alive[0]["NodeID"] == here
