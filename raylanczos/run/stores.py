"""Where the loop's Lanczos vectors live: on the driver, or sliced over keepers.

:class:`~raylanczos.run.loop.SpectrumLoop` asks its *vector store* for everything that
touches an n-vector, so it runs the same way in both modes and knows no Ray:

- :class:`DriverStore` (``state="driver"``): the driver holds B bases (memory or memmap)
  and each slot's pending vector; the block to multiply is a float64 (B, n) array and the
  products come back as one.
- :class:`KeeperStore` (``state="sharded"``): keepers hold slices of every vector
  (:mod:`raylanczos.numerics.sharded`); the block is the keepers' published slices
  (:class:`~raylanczos.operators.contract.SlicedBlock`) and the products go straight to
  them (:class:`~raylanczos.operators.contract.SlicedProducts`). The driver keeps the
  scalars, and moves O(K·B·m) numbers per pass.

Both hand the step its :class:`~raylanczos.numerics.vectors.VectorSpace` (``space``), draw
the start vectors (``prepare``, ``begin``), give the finished-draw hook a view of the
draw with its basis (``view``), and measure a draw's orthogonality loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from raylanczos.choices import STATES, check_choice
from raylanczos.numerics.basis import BasisSweeps
from raylanczos.numerics.lanczos import (
    LanczosScalars,
    LanczosState,
    first_vector,
    start_scalars,
    start_state,
    start_vector,
)
from raylanczos.numerics.sharded import KeeperGroup, ShardedSpace, StartSpec, spans_of
from raylanczos.numerics.spectrum import orthogonality_loss
from raylanczos.numerics.vectors import (
    Copy,
    Divide,
    Dot,
    LocalSpace,
    Move,
    Release,
    VectorKernel,
    VectorSpace,
    Zero,
    root,
    sum_in_order,
)
from raylanczos.operators.contract import SlicedBlock, SlicedProducts

#: A row of the next block: (slot, its task, ``"pending"`` or ``"start"``), or None (zeros).
BlockRow = tuple[int, Any, str] | None


def choose_state(requested: str | None, block_size: int, basis_bytes: int, budget_gb: float) -> tuple[str, str]:
    """Where a run keeps its Lanczos vectors, and the start-up line that says why.

    ``requested``: ``"driver"``, ``"sharded"`` (``--state``), or None for the default: the
    driver while its B bases of ``basis_bytes`` (n·(m+1)·8) fit ``budget_gb``
    (``basis_memory_gb``), else sharded.
    """
    total = block_size * basis_bytes
    sizes = f"{block_size} × {basis_bytes / 1e9:.3g} GB = {total / 1e9:.3g} GB of bases"
    if requested is not None:
        check_choice("state", requested, STATES)
        return requested, f"state: {requested} (chosen with --state); {sizes}"
    if total <= budget_gb * 1e9:
        return "driver", f"state: driver: {sizes} fit basis_memory_gb {budget_gb:g} (choose with --state)"
    return "sharded", (
        f"state: sharded: {sizes} exceed basis_memory_gb {budget_gb:g}; keepers hold slices of them on the "
        "workers' nodes (choose with --state)"
    )


class VectorStore(Protocol):
    """What :class:`~raylanczos.run.loop.SpectrumLoop` needs of the vectors' home."""

    space: VectorSpace

    def adopt(self, entries: Sequence[tuple[int, Any, LanczosScalars]]) -> None: ...

    def prepare(self, incoming: Mapping[int, Any]) -> None: ...

    def block(self, rows: Sequence[BlockRow]) -> Any: ...

    def begin(self, incoming: Mapping[int, Any], order: int) -> dict[int, LanczosScalars]: ...

    def receive(self, products: Any, tasks: Mapping[int, Any]) -> None: ...

    def orthogonality(self, slot: int, lanczos: LanczosScalars) -> float: ...

    def view(self, slot: int, task: Any, lanczos: LanczosScalars) -> LanczosScalars: ...

    def release(self, slot: int) -> None: ...

    def take_counts(self) -> tuple[int, int, float]: ...


class DriverStore:
    """The Lanczos vectors on the driver: one float64 basis (≥ m + 1, ≥ task dim) per slot
    (memory or memmap), and each slot's :class:`~raylanczos.numerics.lanczos.LanczosState`.
    A memory-mapped basis is used through a plain ndarray view of its mapping (numpy's
    ``memmap`` subclass costs microseconds of Python per slice, and a step slices the
    basis hundreds of times); writes reach the file all the same.

    Args:
      bases: one basis per slot.
      dim: n, the operator's dimension (the block's width).
      sweeps: the basis-sweep kernel of the re-orthogonalisation.
      seed, distribution: the start vectors' seed and distribution.
    """

    def __init__(self, bases: Sequence[np.ndarray], dim: int, sweeps: BasisSweeps, *, seed: int, distribution: str):
        self.bases = [np.asarray(basis) for basis in bases]
        self.dim = dim
        self.seed, self.distribution = seed, distribution
        self.kernel = VectorKernel({}, sweeps)
        self.space = LocalSpace(self.kernel)
        self.starts: dict[int, tuple[int, np.ndarray]] = {}

    def adopt(self, entries: Sequence[tuple[int, Any, LanczosScalars]]) -> None:
        """Resumed draws: their states (with their bases) take their slots."""
        for slot, _, lanczos in entries:
            lanczos.basis = np.asarray(lanczos.basis)
            self.kernel.slots[slot] = lanczos

    def prepare(self, incoming: Mapping[int, Any]) -> None:
        """Draw the start vector of each task about to take a slot (once per task), in the
        task's space (projected by a deflated task's P)."""
        for slot, task in incoming.items():
            if self.starts.get(slot, (None,))[0] != task.index:
                vector = task.start(start_vector(task.dim, seed=self.seed, draw=task.draw, distribution=self.distribution))
                self.starts[slot] = (task.index, vector)

    def block(self, rows: Sequence[BlockRow]) -> np.ndarray:
        """The next block, float64 (B, n): each row's vector placed in its task, zeros elsewhere."""
        block = np.zeros((len(rows), self.dim))
        for b, row in enumerate(rows):
            if row is None:
                continue
            slot, task, register = row
            vector = self.kernel.slots[slot].vector if register == "pending" else first_vector(self.starts[slot][1])
            task.embed(vector, block[b])
        return block

    def begin(self, incoming: Mapping[int, Any], order: int) -> dict[int, LanczosScalars]:
        states: dict[int, LanczosScalars] = {}
        for slot, task in incoming.items():
            basis = self.bases[slot][:, : task.dim]
            states[slot] = start_state(self.starts.pop(slot)[1], min(order, task.dim), basis=basis)
            self.kernel.slots[slot] = states[slot]
        return states

    def receive(self, products: np.ndarray, tasks: Mapping[int, Any]) -> None:
        """The block's products, float64 (B, n): each slot's row restricted to its task."""
        self.kernel.receive({slot: tasks[slot].restrict(products[slot]) for slot in self.kernel.slots})

    def orthogonality(self, slot: int, lanczos: LanczosState) -> float:
        return orthogonality_loss(lanczos.basis[: lanczos.steps])

    def view(self, slot: int, task: Any, lanczos: LanczosState) -> LanczosState:
        return lanczos

    def release(self, slot: int) -> None:
        self.space.run([Release(slot)])

    def take_counts(self) -> tuple[int, int, float]:
        """Nothing: the driver's own vectors move no message and need no sums of parts."""
        return 0, 0, 0.0


class KeptBasis:
    """A finished draw's basis as its keepers hold it, (rows, dim) in slices.

    ``combine(C)`` is C V[:k] for C float64 (c, k), assembled slice by slice (c·dim floats
    reach the driver: Ritz vectors); ``basis[:k]`` assembles the first k rows themselves
    (k·dim floats: for ``--save-vectors``).
    """

    def __init__(self, space: ShardedSpace, slot: int, rows: int, dim: int):
        self.space, self.slot, self.shape = space, slot, (rows, dim)

    def combine(self, coefficients: np.ndarray) -> np.ndarray:
        return np.concatenate(self.space.call("combine_rows", self.slot, np.asarray(coefficients, dtype=np.float64)), axis=1)

    def __getitem__(self, rows: slice) -> np.ndarray:
        if not isinstance(rows, slice) or rows.step not in (None, 1) or rows.start not in (None, 0):
            raise TypeError(f"a kept basis gives its leading rows, basis[:k]; got [{rows!r}]")
        count = min(self.shape[0] if rows.stop is None else rows.stop, self.shape[0])
        return np.concatenate(self.space.call("leading_rows", self.slot, count), axis=1)


@dataclass
class KeptLanczos(LanczosScalars):
    """A finished draw of a sharded run, for the finished-draw hook: its scalars and its
    :class:`KeptBasis` (where a driver-mode draw has its basis array)."""

    basis: KeptBasis | None = None


class KeeperStore:
    """The Lanczos vectors sliced over keepers; the driver keeps each slot's scalars.

    Args:
      keepers: the run's keepers, in slice order.
      dim: n.
      dtype: the compute dtype of the published block (``"float32"`` or ``"float64"``).
      seed, distribution: the start vectors' seed and distribution.
      resume_half: for a resumed run, the half of the keepers' pending files its
        checkpoint names (:attr:`~raylanczos.run.checkpoint.Checkpoint.pending_half`).
    """

    def __init__(
        self, keepers: KeeperGroup, dim: int, *, dtype: str = "float64", seed: int, distribution: str,
        resume_half: int | None = None,
    ):
        self.keepers = keepers
        self.dim, self.dtype = dim, dtype
        self.seed, self.distribution = seed, distribution
        self.resume_half = resume_half
        self.space = ShardedSpace(keepers)
        self.prepared: dict[int, int] = {}

    def adopt(self, entries: Sequence[tuple[int, Any, LanczosScalars]]) -> None:
        """Resumed draws: each keeper reattaches its slices of their vectors."""
        if entries:
            if self.resume_half is None:
                raise ValueError("resumed draws need the checkpoint's pending half (resume_half)")
            self.space.call("restore", [(slot, spans_of(task.indices)) for slot, task, _ in entries], self.resume_half)

    def prepare(self, incoming: Mapping[int, Any]) -> None:
        """Each keeper draws its slice of the incoming tasks' start vectors; two normalisations
        follow (as :func:`~raylanczos.numerics.lanczos.start_vector`, then
        :func:`~raylanczos.numerics.lanczos.first_vector`, do on the driver)."""
        fresh = {slot: task for slot, task in incoming.items() if self.prepared.get(slot) != task.index}
        if not fresh:
            return
        specs = [
            StartSpec(slot, spans_of(task.indices), task.dim, self.seed, task.draw, self.distribution)
            for slot, task in fresh.items()
        ]
        squares = sum_in_order(self.space.call("draw_starts", specs))
        ops = [op for spec, square in zip(specs, squares) for op in (
            Divide(spec.slot, "start", root(float(square))), Dot(spec.slot, "start", "start"),
        )]
        norms = self.space.run(ops)
        self.space.run([Divide(spec.slot, "start", root(square)) for spec, square in zip(specs, norms)])
        self.prepared.update({slot: task.index for slot, task in fresh.items()})

    def block(self, rows: Sequence[BlockRow]) -> SlicedBlock:
        """The next block as each keeper's published slice (in the compute dtype)."""
        spec = [None if row is None else (row[0], row[2]) for row in rows]
        return SlicedBlock(tuple(self.space.call("publish", spec, self.dtype)))

    def begin(self, incoming: Mapping[int, Any], order: int) -> dict[int, LanczosScalars]:
        if not incoming:
            return {}
        self.space.call("begin", list(incoming))
        self.space.run([op for slot in incoming for op in (
            Copy(slot, "start", 0), Move(slot, "start", "pending"), Zero(slot, "correction"),
        )])
        for slot in incoming:
            self.prepared.pop(slot, None)
        return {slot: start_scalars(min(order, task.dim)) for slot, task in incoming.items()}

    def receive(self, products: SlicedProducts, tasks: Mapping[int, Any]) -> None:
        """Keeper i adds its pieces of the node sums in node order and divides by N."""
        self.space.call_each("receive", [(pieces, products.count) for pieces in products.pieces])

    def orthogonality(self, slot: int, lanczos: LanczosScalars) -> float:
        """‖V Vᵀ − I‖_max of the draw's basis: keeper 0 adds every keeper's partial Gram
        matrix (references, where the keepers are actors) in keeper order."""
        return self.space.call_one(0, "orthogonality", self.space.call("gram", slot, lanczos.steps), lanczos.steps)

    def view(self, slot: int, task: Any, lanczos: LanczosScalars) -> KeptLanczos:
        fields = {name: getattr(lanczos, name) for name in LanczosScalars.__dataclass_fields__}
        return KeptLanczos(**fields, basis=KeptBasis(self.space, slot, lanczos.steps, task.dim))

    def release(self, slot: int) -> None:
        self.space.run([Release(slot)])

    def save(self, half: int) -> None:
        """Every keeper writes its slices (pending vectors into ``half``) and flushes its files."""
        self.space.call("save", half)

    def take_counts(self) -> tuple[int, int, float]:
        """The bytes the driver sent to and received from the keepers since the last call,
        and the seconds it spent adding their partial reductions."""
        return self.space.take_counts()
