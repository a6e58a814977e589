"""The block-operator contract between the loop and whatever computes the products.

A *block operator* has ``dim``, ``block_size``, ``submit(vectors) -> pending`` and
``collect(pending) -> (products, StepTiming)``. With the Lanczos state on the driver the
vectors and products are float64 (B, n) blocks; with a sharded state they stay sliced:
the block arrives as the keepers' slices (:class:`SlicedBlock`, an all-gather for the
workers) and the products leave as each keeper's pieces (:class:`SlicedProducts`, a
reduce-scatter). The loop drives it; the distributed Hessian
(:mod:`raylanczos.distributed.hessian`), :class:`InProcessOperator` and
:class:`InProcessSlicedOperator` implement it. A shard's worker answers a pass with a small
account (:class:`PartialInfo`, :class:`NodeSumInfo`) apart from its products, and
reports failures as one line in that account (:class:`WorkerError` on the driver).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

#: Per-pass timing columns: seconds, but for the pass index, the active draws and bytes.
#: ``allgather``, ``scatter``, ``accept`` and ``driver_sums`` split a sharded state's pass
#: (see :class:`StepTiming` and :class:`~raylanczos.run.loop.LoopState`).
TIMING_COLUMNS = (
    "step", "active", "broadcast", "hvp_max", "gather", "node_reduce", "reduce", "reorth", "checkpoint", "total",
    "bytes_sent", "bytes_received", "allgather", "scatter", "accept", "driver_sums",
)


@dataclass(frozen=True)
class StepTiming:
    """What one block product cost.

    ``broadcast``: putting the block where the workers read it; ``hvp_max``: the slowest
    worker's own product time; ``gather``: from the broadcast to having all partials,
    beyond the slowest product (scheduling, transfer, node sums, and any driver work that
    outlasted the product when it was started before the re-orthogonalisation);
    ``node_reduce``: the slowest node's sum of its workers' partials (0 for the flat
    reduction); ``reduce``: the float64 sum and division on the driver; bytes the driver
    sent (the block, once per node that reads it) and received (the partials it summed);
    ``allgather``: the slowest worker's fetching and concatenating the keepers' slices of
    the block (a sharded state's all-gather, part of ``gather``; 0 with the driver's state).
    """

    broadcast: float = 0.0
    hvp_max: float = 0.0
    gather: float = 0.0
    node_reduce: float = 0.0
    reduce: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0
    allgather: float = 0.0


class BlockOperator(Protocol):
    dim: int
    block_size: int

    def submit(self, vectors: np.ndarray) -> Any: ...

    def collect(self, pending: Any) -> tuple[np.ndarray, StepTiming]: ...


class InProcessOperator:
    """A :class:`~raylanczos.worker.LocalHessian` (or anything with ``matmat`` and ``dim``)
    as a block operator: the product is computed in :meth:`collect`."""

    def __init__(self, operator: Any, block_size: int):
        self.operator = operator
        self.dim = int(operator.dim)
        self.block_size = block_size

    def submit(self, vectors: np.ndarray) -> np.ndarray:
        return np.array(vectors, dtype=np.float64)

    def collect(self, pending: np.ndarray) -> tuple[np.ndarray, StepTiming]:
        start = time.perf_counter()
        products = self.operator.matmat(pending)
        return products, StepTiming(hvp_max=time.perf_counter() - start)


@dataclass(frozen=True)
class SlicedBlock:
    """The next block as the keepers published it: ``pieces[i]`` is keeper i's slice,
    (B, slice length) in the compute dtype (an array, or an object reference to one);
    concatenated in keeper order they are the (B, n) block."""

    pieces: tuple[Any, ...]


@dataclass(frozen=True)
class SlicedProducts:
    """A block's products as the keepers receive them: ``pieces[i]`` are keeper i's pieces,
    one per node sum in node order (arrays or object references), to be added in that
    order and divided by ``count``."""

    pieces: tuple[tuple[Any, ...], ...]
    count: int


class InProcessSlicedOperator:
    """An in-process operator (``matmat``, ``dim``) for a sharded state: the block is
    assembled from the keepers' slices, multiplied in :meth:`collect`, and cut into one
    piece per keeper (the products are normalised already: ``count`` 1)."""

    def __init__(self, operator: Any, block_size: int, bounds: Sequence[int]):
        self.operator = operator
        self.dim = int(operator.dim)
        self.block_size = block_size
        self.bounds = tuple(bounds)

    def submit(self, block: SlicedBlock) -> np.ndarray:
        return np.concatenate([np.asarray(piece, dtype=np.float64) for piece in block.pieces], axis=1)

    def collect(self, pending: np.ndarray) -> tuple[SlicedProducts, StepTiming]:
        start = time.perf_counter()
        products = self.operator.matmat(pending)
        pieces = tuple((products[:, lo:hi],) for lo, hi in zip(self.bounds[:-1], self.bounds[1:]))
        return SlicedProducts(pieces, 1), StepTiming(hvp_max=time.perf_counter() - start)


class WorkerError(RuntimeError):
    """A worker failed to start or to compute; the message names the worker and its shard."""


@dataclass(frozen=True)
class PartialInfo:
    """A worker's account of one pass (small; travels apart from the products).

    ``count``: the shard's examples; ``seconds``: the worker's own product time;
    ``error``: one line naming worker, shard and cause when the pass failed, else "";
    ``allgather``: seconds it spent fetching and concatenating the keepers' slices of the
    block before its product (0 when the block came whole).
    """

    count: int
    seconds: float
    error: str = ""
    allgather: float = 0.0


@dataclass(frozen=True)
class NodeSumInfo:
    """A node group's account of one pass: its examples, its first worker's product time,
    the seconds spent summing the group's partials on the node, any error line, and its
    first worker's all-gather seconds (as :class:`PartialInfo`)."""

    count: int
    seconds: float
    node_reduce_seconds: float
    error: str = ""
    allgather: float = 0.0


def check_answer(error: str) -> None:
    """Raise the :class:`WorkerError` a worker's answer reports, if any."""
    if error:
        raise WorkerError(error)


def reduce_partials(products: Sequence[np.ndarray], counts: Sequence[int], num_examples: int) -> np.ndarray:
    """C V = (Σ_k partial_k) / N in float64, summed in the order given (deterministic)."""
    counted = sum(counts)
    if counted != num_examples:
        raise WorkerError(f"workers covered {counted} examples, the dataset has {num_examples}")
    total = products[0].copy()
    for partial in products[1:]:
        total += partial
    total /= num_examples
    return total
