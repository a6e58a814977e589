"""The sharded Lanczos state: K keepers each hold one contiguous slice of every vector.

The flat parameter vector [0, n) is cut into K contiguous slices (:class:`SliceLayout`).
Keeper i holds slice i of every slot's basis, pending vector and correction, float64, and
runs the step's rounds on them with the same :class:`~raylanczos.numerics.vectors.VectorKernel`
as a whole-vector state. :class:`ShardedSpace` is the driver's side: it sends each round
to every keeper and adds their partial reductions in keeper order, so a driver moves
O(K·B·m) floats per pass whatever n is, and two runs on the same slices give the same bits.
With one keeper the arithmetic is that of the whole-vector state, bit for bit.

A keeper also draws its slice of each start vector (the seeded stream, skipped to its
first entry), publishes its slice of the next block in the compute dtype, receives its
slice of each node's products (and adds them in node order: a reduce-scatter), and writes
its slices to a checkpoint directory of its own. :class:`Keeper` is a plain class: an
in-process :class:`InProcessKeepers` group for tests, or one Ray actor per node
(:mod:`raylanczos.distributed.keepers`). numpy only.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from raylanczos.choices import check_int
from raylanczos.numerics.basis import BasisSweeps, allocate_basis, open_basis
from raylanczos.numerics.lanczos import start_entries
from raylanczos.numerics.vectors import (
    Op,
    Register,
    VectorKernel,
    op_bytes,
    reductions_size,
    split_reductions,
    sum_in_order,
)

#: Bytes counted for one object reference in a message (a Ray ObjectID is 28 bytes).
REFERENCE_BYTES = 28


@dataclass(frozen=True)
class SliceLayout:
    """K contiguous slices of [0, n): slice i is [bounds[i], bounds[i + 1]), none empty."""

    bounds: tuple[int, ...]

    def __post_init__(self) -> None:
        bounds = tuple(int(b) for b in self.bounds)
        if len(bounds) < 2 or bounds[0] != 0 or any(b <= a for a, b in zip(bounds[:-1], bounds[1:])):
            raise ValueError(f"slice bounds must rise strictly from 0 to n, got {list(self.bounds)}")
        object.__setattr__(self, "bounds", bounds)

    @classmethod
    def balanced(cls, dim: int, parts: int) -> "SliceLayout":
        """``parts`` slices of [0, ``dim``) whose lengths differ by at most one."""
        check_int("dim", dim)
        check_int("parts", parts)
        if parts > dim:
            raise ValueError(f"cannot cut {dim} parameters into {parts} non-empty slices")
        return cls(tuple(dim * i // parts for i in range(parts + 1)))

    @property
    def dim(self) -> int:
        return self.bounds[-1]

    @property
    def parts(self) -> int:
        return len(self.bounds) - 1

    def span(self, part: int) -> tuple[int, int]:
        return self.bounds[part], self.bounds[part + 1]


#: A task's place in the flat vector: its ascending (start, stop) spans, or None for all n.
Spans = tuple[tuple[int, int], ...] | None


def spans_of(indices: np.ndarray | None) -> Spans:
    """The ascending contiguous runs of a block's flat positions (None stays None)."""
    if indices is None:
        return None
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size and np.any(np.diff(indices) <= 0):
        raise ValueError("a block's positions must be ascending and distinct")
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    starts = np.concatenate([[0], breaks]) if indices.size else np.array([], dtype=np.int64)
    stops = np.concatenate([breaks, [indices.size]]) if indices.size else np.array([], dtype=np.int64)
    return tuple((int(indices[a]), int(indices[b - 1]) + 1) for a, b in zip(starts, stops))


@dataclass(frozen=True)
class TaskPart:
    """What of one task's vectors a keeper holds: the task coordinates [first, stop), at
    ``positions`` (int64, relative to the slice's start) of its slice, or the whole slice
    when ``positions`` is None (a task of all n parameters)."""

    first: int
    stop: int
    positions: np.ndarray | None

    @property
    def length(self) -> int:
        return self.stop - self.first


def task_part(spans: Spans, lo: int, hi: int) -> TaskPart:
    """The part of a task with these ``spans`` that falls in the slice [lo, hi)."""
    if spans is None:
        return TaskPart(lo, hi, None)
    before, positions = 0, []
    for start, stop in spans:
        inside_start, inside_stop = max(start, lo), min(stop, hi)
        if inside_start < inside_stop:
            positions.append(np.arange(inside_start - lo, inside_stop - lo, dtype=np.int64))
        before += max(0, min(stop, lo) - start)
    held = np.concatenate(positions) if positions else np.zeros(0, dtype=np.int64)
    return TaskPart(before, before + held.size, held)


@dataclass(frozen=True)
class StartSpec:
    """An incoming draw: its slot, where its task lies, and what seeds its start vector."""

    slot: int
    spans: Spans
    dim: int
    seed: int
    draw: int
    distribution: str


@dataclass
class KeeperSlot:
    """A keeper's slice of one slot's vectors (a :class:`~raylanczos.numerics.vectors.SlotArrays`)."""

    basis: np.ndarray
    pending: np.ndarray
    correction: np.ndarray
    part: TaskPart


class Keeper:
    """Slice ``index`` of every vector of ``block_size`` slots, float64 in host memory.

    Args:
      index: i, which slice of ``layout`` this keeper holds.
      layout: the run's slices.
      block_size: B, the slots.
      rows: m + 1, basis rows per slot.
      directory: where the slices are kept as memory-mapped ``.npy`` files (the bases,
        and each slot's pending vector and correction in two halves used in turn); None
        keeps them in memory, with no checkpoint.
      resume: reopen the files in ``directory`` instead of creating them.
      threads: threads of the basis sweeps.
    """

    def __init__(
        self, index: int, layout: SliceLayout, block_size: int, rows: int, *,
        directory: str | os.PathLike | None = None, resume: bool = False, threads: int = 1,
    ):
        if not 0 <= index < layout.parts:
            raise ValueError(f"keeper index {index} outside the {layout.parts} slices")
        self.index, self.layout, self.block_size, self.rows = index, layout, block_size, rows
        self.lo, self.hi = layout.span(index)
        width = self.hi - self.lo
        self.directory = Path(directory) if directory is not None else None
        self.bases, self.halves = self._storage(width, resume)
        self.kernel = VectorKernel({}, BasisSweeps(threads))
        self.incoming: dict[int, TaskPart] = {}

    def _storage(self, width: int, resume: bool) -> tuple[list[np.ndarray], np.ndarray | None]:
        shapes = {f"basis_{slot}.npy": (self.rows, width) for slot in range(self.block_size)}
        shapes["pending.npy"] = (2 * self.block_size * 2, width)
        if self.directory is None:
            return [allocate_basis(self.rows, width) for _ in range(self.block_size)], None
        if not resume:
            self.directory.mkdir(parents=True, exist_ok=True)
            arrays = {name: allocate_basis(*shape, self.directory / name) for name, shape in shapes.items()}
        else:
            arrays = {}
            for name, shape in shapes.items():
                path = self.directory / name
                array = open_basis(path)
                if array.shape != shape:
                    raise ValueError(
                        f"{path} holds {array.shape}, slice {self.index} [{self.lo}, {self.hi}) of {self.block_size} slots "
                        f"needs {shape}: the checkpoint's slices do not match this run"
                    )
                arrays[name] = array
        halves = arrays.pop("pending.npy").reshape(2, self.block_size, 2, width)
        return [arrays[f"basis_{slot}.npy"] for slot in range(self.block_size)], halves

    def serve(self, ops: Sequence[Op], method: str, *args: Any) -> Any:
        """Apply ``ops`` (rounds with nothing to reduce, deferred by the driver), then ``method``."""
        self.kernel.run(ops)
        return getattr(self, method)(*args)

    def run(self, ops: Sequence[Op]) -> np.ndarray:
        """A round on this keeper's slices: its partial reductions, flat float64."""
        return self.kernel.run(ops)

    def draw_starts(self, starts: Sequence[StartSpec]) -> np.ndarray:
        """This slice of each incoming draw's unnormalised start vector, into the slot's
        ``"start"`` register; returns each one's partial ‖v‖², float64[len(starts)]."""
        squares = np.empty(len(starts), dtype=np.float64)
        for i, spec in enumerate(starts):
            part = task_part(spec.spans, self.lo, self.hi)
            entries = start_entries(
                spec.dim, seed=spec.seed, draw=spec.draw, distribution=spec.distribution, first=part.first, stop=part.stop
            )
            self.incoming[spec.slot] = part
            self.kernel.scratch[(spec.slot, "start")] = entries
            squares[i] = float(entries @ entries)
        return squares

    def begin(self, slots: Sequence[int]) -> None:
        """The incoming draws take their slots: each slot's storage, sized to its task's part."""
        for slot in slots:
            part = self.incoming.pop(slot)
            pending, correction = np.zeros(part.length), np.zeros(part.length)
            self.kernel.slots[slot] = KeeperSlot(self.bases[slot][:, : part.length], pending, correction, part)

    def restore(self, slots: Sequence[tuple[int, Spans]], half: int) -> None:
        """Reattach resumed draws to their slots, with the pending vectors of ``half``."""
        for slot, spans in slots:
            part = task_part(spans, self.lo, self.hi)
            vectors = np.array(self.halves[half, slot, :, : part.length])
            self.kernel.slots[slot] = KeeperSlot(self.bases[slot][:, : part.length], vectors[0], vectors[1], part)

    def publish(self, rows: Sequence[tuple[int, Register] | None], dtype: str) -> np.ndarray:
        """This slice of the next block, (B, slice length) in ``dtype``: row b is the named
        register of slot ``rows[b]`` placed at its task's positions, zeros elsewhere."""
        block = np.zeros((len(rows), self.hi - self.lo), dtype=np.dtype(dtype))
        for b, row in enumerate(rows):
            if row is None:
                continue
            slot, register = row
            part = self.incoming[slot] if register == "start" else self.kernel.slots[slot].part
            vector = self.kernel.scratch[(slot, register)] if register == "start" else getattr(self.kernel.slots[slot], register)
            if part.positions is None:
                block[b] = vector
            else:
                block[b, part.positions] = vector
        return block

    def receive(self, pieces: Sequence[np.ndarray], count: int) -> None:
        """This slice of the block's products: the pieces (each float64 (B, slice length),
        a node's sum) added in the order given, then divided by ``count`` (N)."""
        total = sum_in_order(pieces)
        total /= count
        self.kernel.receive({
            slot: total[slot] if arrays.part.positions is None else total[slot, arrays.part.positions]
            for slot, arrays in self.kernel.slots.items()
        })

    def gram(self, slot: int, rows: int) -> np.ndarray:
        """This slice's part of V Vᵀ for the slot's first ``rows`` basis vectors: its upper
        triangle, row by row, float64[rows·(rows + 1)/2]."""
        basis = self.kernel.slots[slot].basis[:rows]
        return (basis @ basis.T)[np.triu_indices(rows)]

    def orthogonality(self, grams: Sequence[np.ndarray], rows: int) -> float:
        """‖V Vᵀ − I‖_max from every keeper's :meth:`gram`, added in keeper order (so the
        O(m²) partials travel between keepers, not to the driver)."""
        gram = np.zeros((rows, rows))
        gram[np.triu_indices(rows)] = sum_in_order(grams)
        gram[np.diag_indices(rows)] -= 1.0
        return float(np.max(np.abs(gram))) if rows else 0.0

    def combine_rows(self, slot: int, coefficients: np.ndarray) -> np.ndarray:
        """C V[:k] on this slice, (c, slice part) for C float64 (c, k): rows of Ritz vectors."""
        coefficients = np.asarray(coefficients, dtype=np.float64)
        return coefficients @ self.kernel.slots[slot].basis[: coefficients.shape[1]]

    def leading_rows(self, slot: int, count: int) -> np.ndarray:
        """The slot's first ``count`` basis rows on this slice, a float64 (count, slice part) copy."""
        return np.array(self.kernel.slots[slot].basis[:count])

    def save(self, half: int) -> None:
        """Write each live slot's pending vector and correction into ``half`` and flush every
        file (the basis rows are written by the steps themselves)."""
        if self.halves is None:
            raise RuntimeError(f"keeper {self.index} keeps its slices in memory: it has no checkpoint")
        for slot, arrays in self.kernel.slots.items():
            self.halves[half, slot, 0, : arrays.part.length] = arrays.pending
            self.halves[half, slot, 1, : arrays.part.length] = arrays.correction
        for array in (*self.bases, self.halves):
            array.flush()


class KeeperGroup(Protocol):
    """The keepers of a run, in slice order: each call goes to every keeper, and the
    answers come back in keeper order. ``call_each`` gives keeper i ``arguments[i]``."""

    parts: int

    def call(self, method: str, *args: Any) -> list[Any]: ...

    def call_each(self, method: str, arguments: Sequence[tuple[Any, ...]]) -> list[Any]: ...

    def call_one(self, index: int, method: str, *args: Any) -> Any: ...


class InProcessKeepers:
    """:class:`Keeper` objects in this process (for tests and the single-process reference)."""

    def __init__(self, keepers: Sequence[Keeper]):
        self.keepers = list(keepers)
        self.parts = len(self.keepers)

    def call(self, method: str, *args: Any) -> list[Any]:
        return [getattr(keeper, method)(*args) for keeper in self.keepers]

    def call_each(self, method: str, arguments: Sequence[tuple[Any, ...]]) -> list[Any]:
        return [getattr(keeper, method)(*args) for keeper, args in zip(self.keepers, arguments)]

    def call_one(self, index: int, method: str, *args: Any) -> Any:
        return getattr(self.keepers[index], method)(*args)


def payload_bytes(value: Any) -> int:
    """The bytes of numbers in a message: arrays' bytes, 8 per scalar, :data:`REFERENCE_BYTES`
    per object reference, the contents of containers and dataclasses."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if value is None:
        return 0
    if isinstance(value, (bool, int, float, np.generic)):
        return 8
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (list, tuple)):
        return sum(payload_bytes(item) for item in value)
    if isinstance(value, dict):
        return sum(payload_bytes(k) + payload_bytes(v) for k, v in value.items())
    if hasattr(value, "__dataclass_fields__"):
        return sum(payload_bytes(getattr(value, name)) for name in value.__dataclass_fields__)
    if hasattr(value, "binary"):  # an object reference
        return REFERENCE_BYTES
    raise TypeError(f"cannot count the bytes of a {type(value).__name__}")


class ShardedSpace:
    """The driver's side of the sharded vectors: a :class:`~raylanczos.numerics.vectors.VectorSpace`
    over a :class:`KeeperGroup`.

    A round with reductions goes to every keeper at once, with the rounds deferred before
    it; their partial reductions are added in keeper order. A round with nothing to reduce
    waits for the next message. :attr:`bytes_sent` and :attr:`bytes_received` count the
    numbers the driver sent and received (see :func:`payload_bytes`), and
    :attr:`sum_seconds` the seconds it spent adding the rounds' partial reductions, until
    :meth:`take_counts`.
    """

    def __init__(self, keepers: KeeperGroup):
        self.keepers = keepers
        self.deferred: list[Op] = []
        self.bytes_sent = 0
        self.bytes_received = 0
        self.sum_seconds = 0.0

    def run(self, ops: Sequence[Op]) -> list[float | np.ndarray]:
        if reductions_size(ops) == 0:
            self.deferred += ops
            return []
        partials = self.call("run", list(ops))
        started = time.perf_counter()
        reduced = split_reductions(ops, sum_in_order(partials))
        self.sum_seconds += time.perf_counter() - started
        return reduced

    def call(self, method: str, *args: Any) -> list[Any]:
        """``method(*args)`` on every keeper after the deferred rounds; answers in keeper order."""
        return self.call_each(method, [args] * self.keepers.parts)

    def call_each(self, method: str, arguments: Sequence[tuple[Any, ...]]) -> list[Any]:
        """``method(*arguments[i])`` on keeper i after the deferred rounds; answers in keeper order."""
        deferred, self.deferred = self.deferred, []
        self.bytes_sent += sum(op_bytes(deferred) + payload_bytes([method, *args]) for args in arguments)
        answers = self.keepers.call_each("serve", [(deferred, method, *args) for args in arguments])
        self.bytes_received += sum(payload_bytes(answer) for answer in answers)
        return answers

    def call_one(self, index: int, method: str, *args: Any) -> Any:
        """``method(*args)`` on keeper ``index`` alone (the deferred rounds go to all first)."""
        if self.deferred:
            self.call("run", [])
        self.bytes_sent += payload_bytes([method, *args])
        answer = self.keepers.call_one(index, method, *args)
        self.bytes_received += payload_bytes(answer)
        return answer

    def take_counts(self) -> tuple[int, int, float]:
        """(bytes sent, bytes received, seconds of sums) since the last call, and start
        counting again."""
        counted = (self.bytes_sent, self.bytes_received, self.sum_seconds)
        self.bytes_sent = self.bytes_received = 0
        self.sum_seconds = 0.0
        return counted
