"""Keepers on Ray: one CPU actor per node, each holding one slice of every Lanczos vector.

Each :class:`KeeperActor` wraps a :class:`~raylanczos.numerics.sharded.Keeper` and is
pinned to its node (the node of one worker group, in group order). Two things move
through Ray's object store and never through the driver:

- the **all-gather**: a keeper puts its slice of the next block, in the compute dtype,
  into its node's object store (:meth:`KeeperActor.publish` returns the reference), and
  every worker concatenates the K slices (:class:`~raylanczos.distributed.hessian.SlicedHessian`);
- the **reduce-scatter**: each node group's first worker puts its node's sum cut into K
  slices, and keeper i fetches slice i of every node and adds them in node order
  (:meth:`KeeperActor.receive`).

No collective library is used: every sum is a numpy sum in a fixed order (node order for
the products, keeper order for the dot products on the driver), so a run repeats its bits
wherever its actors run. :class:`KeeperActors` is the group, a
:class:`~raylanczos.numerics.sharded.KeeperGroup`: calls go to every keeper and the answers
come back in keeper order, errors naming the keeper, its slice and node.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from raylanczos.distributed.policy import keeper_threads
from raylanczos.distributed.workers import (
    STOPPING_PATIENCE_S,
    lost_worker_line,
    root_cause,
    stopped_ray,
)
from raylanczos.errors import one_line
from raylanczos.numerics.sharded import Keeper, SliceLayout

logger = logging.getLogger("raylanczos")


class KeeperError(RuntimeError):
    """A keeper that cannot be placed, has no room for its slice, or failed."""


class KeeperLost(KeeperError):
    """A keeper that Ray lost (its node, a kill), and its slices since the last checkpoint
    with it. The message says to resume; ``summary`` only who was lost and why."""

    def __init__(self, line: str, *, replaceable: bool = True):
        super().__init__(line)
        self.summary = line.partition("; run again")[0]
        self.replaceable = replaceable


class KeeperActor(Keeper):
    """A :class:`~raylanczos.numerics.sharded.Keeper` as a Ray actor: its published slice
    goes into its node's object store, and it fetches its pieces of the node sums there."""

    def publish(self, rows: Sequence[tuple[int, Any] | None], dtype: str) -> ray.ObjectRef:
        return ray.put(super().publish(rows, dtype))

    def receive(self, pieces: Sequence[ray.ObjectRef], count: int) -> None:
        super().receive(ray.get(list(pieces)), count)

    def gram(self, slot: int, rows: int) -> ray.ObjectRef:
        return ray.put(super().gram(slot, rows))

    def orthogonality(self, grams: Sequence[ray.ObjectRef], rows: int) -> float:
        return super().orthogonality(ray.get(list(grams)), rows)

    def where(self) -> dict[str, Any]:
        """The node, host and process this keeper runs in."""
        return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}


def keeper_bytes(layout: SliceLayout, index: int, block_size: int, rows: int) -> int:
    """Host memory keeper ``index`` needs, in bytes: B bases of ``rows`` × slice length, the
    pending vectors and corrections (two halves), and B slots of work vectors (a few
    vectors per slot at a time), float64."""
    lo, hi = layout.span(index)
    return (block_size * rows + 2 * block_size * 2 + 4 * block_size) * (hi - lo) * 8


def room_shortfall(needed: Sequence[int], nodes: Sequence[str], memory: Mapping[str, float]) -> str:
    """Why keeper i (needing ``needed[i]`` bytes) cannot live on node ``nodes[i]``, whose
    schedulable memory is ``memory[node]`` (absent: the node is not alive), or "". Pure."""
    for index, (bytes_needed, node) in enumerate(zip(needed, nodes)):
        if node not in memory:
            return f"keeper {index} cannot be placed: node {node[:12]} is not alive"
        if bytes_needed > memory[node]:
            return (
                f"keeper {index} needs {bytes_needed / 2**30:.3g} GiB for its slice of the bases, and node "
                f"{node[:12]} has {memory[node] / 2**30:.3g} GiB of memory for Ray"
            )
    return ""


class KeeperActors:
    """One :class:`KeeperActor` per slice, keeper i on ``nodes[i]``.

    Args:
      nodes: the Ray node ids, in slice order (one per worker group, in group order).
      layout: the slices.
      block_size, rows: B slots of ``rows`` = m + 1 basis rows.
      directories: keeper i keeps its files in ``directories[i]`` (a checkpoint's keeper
        directories, on a filesystem each node sees), or None for memory only.
      resume: reopen those files.
      threads: threads of each keeper's basis sweeps; None: as many as its node has CPUs
        (:func:`~raylanczos.distributed.policy.keeper_threads`).
      num_cpus: CPUs each keeper reserves (0: it shares its node's cores with the workers).
      timeout: seconds to wait for a keeper to start or to answer one call.
    """

    def __init__(
        self, nodes: Sequence[str], layout: SliceLayout, block_size: int, rows: int, *,
        directories: Sequence[str | os.PathLike] | None = None, resume: bool = False, threads: int | None = None,
        num_cpus: float = 0.0, timeout: float = 600.0,
    ):
        if len(nodes) != layout.parts:
            raise KeeperError(f"{layout.parts} slices need {layout.parts} keeper nodes, got {len(nodes)}")
        self.layout, self.nodes, self.timeout = layout, list(nodes), timeout
        self.parts = layout.parts
        needed = [keeper_bytes(layout, i, block_size, rows) for i in range(layout.parts)]
        alive = [node for node in ray.nodes() if node.get("Alive")]
        memory = {node["NodeID"]: node["Resources"].get("memory", 0.0) for node in alive}
        cpus = {node["NodeID"]: node["Resources"].get("CPU", 1.0) for node in alive}
        shortfall = room_shortfall(needed, self.nodes, memory)
        if shortfall:
            raise KeeperError(shortfall)
        self.threads = [threads if threads is not None else keeper_threads(cpus[node]) for node in self.nodes]
        actor_class = ray.remote(KeeperActor)
        self.actors = [
            actor_class.options(
                num_cpus=num_cpus, max_restarts=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
            ).remote(
                index, layout, block_size, rows, resume=resume, threads=self.threads[index],
                directory=str(Path(directories[index])) if directories is not None else None,
            )
            for index, node in enumerate(self.nodes)
        ]
        try:
            self.infos = self.call_each("where", [()] * self.parts)
        except BaseException:
            self.shutdown()
            raise
        for index, info in enumerate(self.infos):
            lo, hi = layout.span(index)
            logger.info(
                "keeper %d: slice [%d, %d), %.3g GiB, node %s, pid %d, %d sweep thread(s)", index, lo, hi,
                needed[index] / 2**30, info["node_id"][:12], info["pid"], self.threads[index],
            )

    def call(self, method: str, *args: Any) -> list[Any]:
        return self.call_each(method, [args] * self.parts)

    def call_one(self, index: int, method: str, *args: Any) -> Any:
        return self._answers({index: getattr(self.actors[index], method).remote(*args)})[0]

    def call_each(self, method: str, arguments: Sequence[tuple[Any, ...]]) -> list[Any]:
        """``method(*arguments[i])`` on keeper i; answers in keeper order, waiting at most
        ``timeout`` seconds in all."""
        return self._answers({i: getattr(actor, method).remote(*args) for i, (actor, args) in enumerate(zip(self.actors, arguments))})

    def _answers(self, refs: Mapping[int, ray.ObjectRef]) -> list[Any]:
        """The keepers' answers in keeper order, within ``timeout`` seconds in all; errors name the keeper."""
        deadline = time.monotonic() + self.timeout
        answers = []
        for index, ref in refs.items():
            lo, hi = self.layout.span(index)
            where = f"keeper {index} (slice [{lo}, {hi}), node {self.nodes[index][:12]})"
            try:
                answers.append(ray.get(ref, timeout=max(deadline - time.monotonic(), 0.0)))
            except ray.exceptions.GetTimeoutError as err:
                raise KeeperError(f"{where} did not answer within {self.timeout:g} s") from err
            except ray.exceptions.RayError as err:
                # A keeper's slices live in its process: one that Ray lost (its node, a
                # kill) ends the run in the line a lost worker's would, pointing to --resume.
                lost = isinstance(err, ray.exceptions.RayActorError) and not err.actor_init_failed
                stopped = stopped_ray(patience_s=STOPPING_PATIENCE_S if lost else 0.0)
                line = lost_worker_line(where, err, stopped)
                if line is not None:
                    # Lost with the Ray, or with the driver's own node: nothing to replace it on.
                    raise KeeperLost(line, replaceable=stopped is None and "of this driver" not in line) from err
                raise KeeperError(f"{where} failed: {one_line(root_cause(err), limit=500)}") from err
        return answers

    def check_alive(self, timeout: float = 30.0) -> None:
        """Raise the :class:`KeeperLost` of a keeper Ray lost (its node, a kill), if any: a
        worker's call that fails in a sharded run may only be the echo of a lost keeper,
        whose published slices went with it. Any other answer (a keeper that is slow to
        answer within ``timeout`` seconds) raises nothing: the worker's error stands."""
        patience, self.timeout = self.timeout, min(self.timeout, timeout)
        try:
            self.call_each("where", [()] * self.parts)
        except KeeperLost:
            raise
        except KeeperError:
            pass
        finally:
            self.timeout = patience

    def shutdown(self) -> None:
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []


def keeper_nodes(infos: Sequence[Mapping[str, Any]], groups: Sequence[Sequence[int]]) -> list[str]:
    """The node of each worker group's first worker, in group order: where the keepers go."""
    return [infos[members[0]]["node_id"] for members in groups]
