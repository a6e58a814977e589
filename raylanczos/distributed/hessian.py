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

With a sharded Lanczos state (:class:`SlicedHessian`) the block is not put by the driver:
the workers assemble it from the keepers' slices, and each node's sum leaves as one piece
per keeper slice, which the keepers add in node order (a reduce-scatter through Ray's
object store; see :mod:`raylanczos.distributed.keepers`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import ray

from raylanczos.choices import REDUCTIONS, check_choice
from raylanczos.distributed.workers import WorkerGroup
from raylanczos.numerics.sharded import payload_bytes
from raylanczos.operators.contract import (
    NodeSumInfo,
    PartialInfo,
    SlicedBlock,
    SlicedProducts,
    StepTiming,
    WorkerError,
    check_answer,
    reduce_partials,
)


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
    rows: int


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
        restarted by Ray moves to them before it computes), or None. Every call names the
        group's product form too (:attr:`WorkerGroup.product_form`), which a restarted
        worker takes up in the same way.

    ``broadcast_dtype`` is float32 when every worker computes in float32 (the block is
    rounded to float32 once on the driver instead of on each worker: the same numbers,
    half the bytes), else float64. Partial products always come back in float64.

    ``sums_on_driver``: whether the driver sums the workers' partials itself. It does for
    the flat reduction, and for the node reduction when every worker shares the driver's
    node in one group in worker order: the sum then runs in the same order either way (the
    same bits), and the driver reads the partials from its own node's object store without
    waiting for a node sum.

    ``shared``: with every worker on the driver's node and the driver summing, the partials
    come through buffers in the node's shared memory instead of Ray's object store
    (:mod:`~raylanczos.distributed.shared_partials`; the same bits); None otherwise, or
    with ``shared_memory=False``.
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
        shared_memory: bool = True,
    ):
        check_choice("reduce", reduce, REDUCTIONS)
        dims = {info["num_params"] for info in group.infos}
        if len(dims) != 1:
            raise WorkerError(f"workers disagree on the number of parameters: {sorted(dims)}")
        self.group = group
        self.dim = dims.pop()
        self.block_size = block_size
        self.num_examples = num_examples
        self.reduce = reduce
        self.arguments = dict(arguments) if arguments else None
        self.product_form = group.product_form
        self.groups = [list(g) for g in groups] if groups is not None else group.node_groups()
        if sorted(w for g in self.groups for w in g) != list(range(len(group.actors))):
            raise ValueError(f"node groups {self.groups} do not cover the {len(group.actors)} workers exactly once")
        compute = {info["compute_dtype"] for info in group.infos}
        self.broadcast_dtype = np.dtype(np.float32 if compute == {"float32"} else np.float64)
        local = group.on_driver_node()
        one_local_group = len(self.groups) == 1 and self.groups[0] == sorted(self.groups[0]) and local
        self.sums_on_driver = reduce == "flat" or one_local_group
        self._driver_node = ray.get_runtime_context().get_node_id()
        self.shared = group.shared_partials(block_size, self.dim) if shared_memory and self.sums_on_driver and local else None

    def describe_partials(self) -> str:
        """How the partial products reach the driver, for the start-up line."""
        if self.shared is not None:
            return "each worker's through the node's shared memory (every worker on the driver's node), summed on the driver"
        if self.sums_on_driver:
            return "each worker's through Ray's object store, summed on the driver"
        return "summed on each node, one per node through Ray's object store"

    def submit(self, vectors: np.ndarray) -> PendingProducts:
        """Start C·v for every row of ``vectors`` (B, n) on every worker (one ``ray.put``)."""
        start = time.perf_counter()
        block = np.ascontiguousarray(vectors, dtype=self.broadcast_dtype)
        ref = ray.put(block)
        actors = self.group.actors
        infos, info_workers, products, product_workers = [], [], [], []
        if self.sums_on_driver:
            for worker, actor in enumerate(actors):
                if self.shared is not None:
                    info, product = actor.partial_products_shared.options(num_returns=2).remote(
                        ref, self.shared.paths[worker], self.shared.rows, self._driver_node, self.arguments, self.product_form
                    )
                else:
                    info, product = actor.partial_products.options(num_returns=2).remote(ref, self.arguments, self.product_form)
                infos.append(info), info_workers.append(worker), products.append(product), product_workers.append(worker)
        else:
            for members in self.groups:
                leader, others = members[0], members[1:]
                member_products = []
                for worker in others:
                    info, product = actors[worker].partial_products.options(num_returns=2).remote(ref, self.arguments, self.product_form)
                    infos.append(info), info_workers.append(worker), member_products.append(product)
                info, product = actors[leader].node_sum_of_refs.options(num_returns=2).remote(ref, member_products, 0, self.arguments, self.product_form)
                infos.append(info), info_workers.append(leader), products.append(product), product_workers.append(leader)
        submitted = time.perf_counter()
        return PendingProducts(
            infos, info_workers, products, product_workers, submitted, submitted - start, block.nbytes, block.shape[0]
        )

    def collect(self, pending: PendingProducts) -> tuple[np.ndarray, StepTiming]:
        """C·v of a :meth:`submit`, float64 (B, n), and what it cost. The block counts once per
        node the workers ran on, as placed once they have answered (after a fault too)."""
        infos: list[PartialInfo | NodeSumInfo] = self.group.get(pending.infos, pending.info_workers)
        for info in infos:
            check_answer(info.error)
        partials = self.group.get(pending.products, pending.product_workers)
        if self.shared is not None:  # None: written into the worker's shared buffer
            partials = [self.shared.partial(w, pending.rows) if p is None else p for w, p in zip(pending.product_workers, partials)]
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


@dataclass(frozen=True)
class PendingPieces:
    """A sliced block product in flight: the answers' references and when it started."""

    infos: list[ray.ObjectRef]
    info_workers: list[int]
    pieces: list[ray.ObjectRef]
    leaders: list[int]
    submitted: float
    broadcast: float
    bytes_sent: int


class SlicedHessian(DistributedHessian):
    """The operator C for a sharded Lanczos state: the block comes as the keepers' slices
    (:class:`~raylanczos.operators.contract.SlicedBlock`, object references) and the
    products leave as each node group's sum cut into the keepers' slices
    (:class:`~raylanczos.operators.contract.SlicedProducts`), for keeper i to add in node
    order. Only references and a few numbers per worker pass through the driver.

    ``bounds`` are the slices' bounds (keeper i holds [bounds[i], bounds[i + 1])). The
    reduction is always by node group (``reduce="flat"`` is a group per worker).
    """

    def __init__(self, group: WorkerGroup, num_examples: int, *, bounds: Sequence[int], **options: Any):
        super().__init__(group, num_examples, shared_memory=False, **options)  # no product comes to the driver
        if self.reduce == "flat":
            self.groups = [[worker] for members in self.groups for worker in members]
        self.bounds = tuple(int(b) for b in bounds)
        if self.bounds[-1] != self.dim:
            raise ValueError(f"slices {list(self.bounds)} do not cover the workers' {self.dim} parameters")

    def submit(self, block: SlicedBlock) -> PendingPieces:
        """Start the products of the keepers' block on every worker: members put their
        partials in their node's object store; each group's first worker adds them and puts
        its sum's slices there."""
        start = time.perf_counter()
        slices = list(block.pieces)
        actors = self.group.actors
        infos, info_workers, pieces, leaders = [], [], [], []
        sent = 0
        for members in self.groups:
            leader, others = members[0], members[1:]
            member_products = []
            for worker in others:
                info, product = actors[worker].partial_products_put.options(num_returns=2).remote(slices, self.arguments, self.product_form)
                infos.append(info), info_workers.append(worker), member_products.append(product)
            info, cut = actors[leader].node_sum_pieces.options(num_returns=2).remote(
                slices, member_products, 0, self.bounds, self.arguments, self.product_form
            )
            infos.append(info), info_workers.append(leader), pieces.append(cut), leaders.append(leader)
            sent += payload_bytes([slices] * len(members)) + payload_bytes([member_products, self.bounds, self.arguments])
        submitted = time.perf_counter()
        return PendingPieces(infos, info_workers, pieces, leaders, submitted, submitted - start, sent)

    def collect(self, pending: PendingPieces) -> tuple[SlicedProducts, StepTiming]:
        """Where each keeper finds its pieces of the node sums (in node order), and what the
        product cost; every worker's answer is checked first."""
        infos: list[PartialInfo | NodeSumInfo] = self.group.get(pending.infos, pending.info_workers)
        for info in infos:
            check_answer(info.error)
        counted = sum(info.count for info in infos)
        if counted != self.num_examples:
            raise WorkerError(f"workers covered {counted} examples, the dataset has {self.num_examples}")
        cuts = self.group.get(pending.pieces, pending.leaders)
        gathered = time.perf_counter()
        hvp_max = max(info.seconds for info in infos)
        node_reduce = max((info.node_reduce_seconds for info in infos if isinstance(info, NodeSumInfo)), default=0.0)
        keepers = len(self.bounds) - 1
        products = SlicedProducts(tuple(tuple(cut[i] for cut in cuts) for i in range(keepers)), self.num_examples)
        timing = StepTiming(
            broadcast=pending.broadcast,
            hvp_max=hvp_max,
            gather=max(gathered - pending.submitted - hvp_max, 0.0),
            node_reduce=node_reduce,
            bytes_sent=pending.bytes_sent,
            bytes_received=payload_bytes(infos) + payload_bytes(cuts),
            allgather=max(info.allgather for info in infos),
        )
        return products, timing
