"""The vector/basis interface of a Lanczos step: a few operations on each slot's vectors,
sent in rounds, whose dot products are summed over the parts that hold the vectors.

A *slot* is one of the B draws advanced together. Its vectors are its basis V (rows
0 … m, one vector per row), ``pending`` (the vector multiplied next), ``correction``
(subtracted from that vector's product, see :func:`~raylanczos.numerics.lanczos.accept`),
the *work* vector ``"w"`` being turned into the next basis vector, ``"start"`` (a draw's
first vector, before the draw takes the slot), and the slot's last *product*.

The step (:mod:`raylanczos.numerics.lanczos`) is written once against a
:class:`VectorSpace`: it sends a *round* of operations (plain data, below) for all its
slots at once and gets back their reductions (dot products, projections Vᵀw, counts),
summed. Where the vectors live is the space's business (SLEPc's ``BV`` split):

- :class:`LocalSpace`: this process holds every vector whole, one *part*.
- :class:`~raylanczos.numerics.sharded.ShardedSpace`: K keepers each hold a contiguous
  slice of every vector; each runs the round on its slices with the same
  :class:`VectorKernel` and returns partial reductions, which are added in keeper order.

A round's reductions come back as one flat float64 array per part (:func:`reductions_size`
floats), so parts are summed elementwise in a fixed order, and a space with one part
returns the numbers the whole-vector arithmetic gives, bit for bit. A round with nothing
to reduce may be deferred by a space until its next message. numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence, Union

import numpy as np

from raylanczos.numerics.basis import BasisSweeps

#: A vector of a slot: ``"w"``, ``"pending"``, ``"correction"``, ``"start"``, or a basis
#: row's index.
Register = Union[str, int]

#: The registers a slot keeps with its state (the others are scratch of the kernel).
STATE_REGISTERS = ("pending", "correction")
SCRATCH_REGISTERS = ("w", "start")


@dataclass(frozen=True)
class Load:
    """``w`` ← a copy of the slot's product; reduces to its count of non-finite entries."""

    slot: int


@dataclass(frozen=True)
class Axpy:
    """``y`` −= ``a`` · ``x``."""

    slot: int
    a: float
    x: Register
    y: Register


@dataclass(frozen=True)
class Divide:
    """``x`` /= ``divisor``, in place."""

    slot: int
    x: Register
    divisor: float


@dataclass(frozen=True)
class Dot:
    """Reduces to ``x`` · ``y``."""

    slot: int
    x: Register
    y: Register


@dataclass(frozen=True)
class Project:
    """Reduces to V[:rows] · ``x``, float64[rows] (the first half of a Gram–Schmidt pass)."""

    slot: int
    x: Register
    rows: int


@dataclass(frozen=True)
class Subtract:
    """``x`` −= V[:k]ᵀ c for the summed coefficients c = ``coefficients`` float64[k]."""

    slot: int
    x: Register
    coefficients: np.ndarray


@dataclass(frozen=True)
class Combine:
    """``into`` ← V[:k]ᵀ c, a new vector, for c = ``coefficients`` float64[k]."""

    slot: int
    coefficients: np.ndarray
    into: Register


@dataclass(frozen=True)
class Copy:
    """``into`` ← a copy of ``x`` (a basis row is written in place)."""

    slot: int
    x: Register
    into: Register


@dataclass(frozen=True)
class Move:
    """``into`` ← ``x``, which is emptied: the array itself, not a copy (into a basis row:
    written there)."""

    slot: int
    x: Register
    into: Register


@dataclass(frozen=True)
class Zero:
    """``into`` ← zeros (a basis row is zeroed in place)."""

    slot: int
    into: Register


@dataclass(frozen=True)
class Release:
    """The slot's draw has ended: its vectors and work vector are no longer the kernel's
    (its basis storage is kept for the next draw; an incoming ``"start"`` stays)."""

    slot: int


Op = Union[Load, Axpy, Divide, Dot, Project, Subtract, Combine, Copy, Move, Zero, Release]


def reductions_size(ops: Sequence[Op]) -> int:
    """Floats a round's reductions take: 1 per :class:`Load` and :class:`Dot`, ``rows`` per
    :class:`Project`."""
    return sum(1 if isinstance(op, (Load, Dot)) else op.rows if isinstance(op, Project) else 0 for op in ops)


def split_reductions(ops: Sequence[Op], flat: np.ndarray) -> list[float | np.ndarray]:
    """The summed flat reductions of a round, one entry per reducing op in op order: a float
    for :class:`Load` and :class:`Dot`, a float64[rows] copy for :class:`Project`."""
    results: list[float | np.ndarray] = []
    at = 0
    for op in ops:
        if isinstance(op, (Load, Dot)):
            results.append(float(flat[at]))
            at += 1
        elif isinstance(op, Project):
            results.append(flat[at : at + op.rows].copy())
            at += op.rows
    return results


def sum_in_order(partials: Sequence[np.ndarray]) -> np.ndarray:
    """Σ of the parts' flat reductions in the order given, float64 (one part: itself)."""
    total = np.array(partials[0], dtype=np.float64)
    for partial in partials[1:]:
        total += partial
    return total


def root(sum_of_squares: float) -> float:
    """A norm from its summed square (what ``numpy.linalg.norm`` computes for one part)."""
    return math.sqrt(sum_of_squares)


def op_bytes(ops: Sequence[Op]) -> int:
    """The bytes of numbers a round carries: 8 per scalar field, the coefficient arrays."""
    total = 0
    for op in ops:
        for value in vars(op).values():
            total += value.nbytes if isinstance(value, np.ndarray) else 8
    return total


class SlotArrays(Protocol):
    """A slot's kept vectors on one part: float64 basis (rows, L), pending[L], correction[L].

    A :class:`~raylanczos.numerics.lanczos.LanczosState` is one (its own arrays, L = n), and
    so is a keeper's slice of a slot.
    """

    basis: np.ndarray
    pending: np.ndarray
    correction: np.ndarray


class VectorKernel:
    """Runs rounds of operations on the vectors one part holds (whole vectors, or a slice).

    Args:
      slots: slot → its :class:`SlotArrays` on this part.
      sweeps: the kernel of the O(L·k) basis products.

    ``pending`` and ``correction`` are only ever replaced, never written into, so a
    checkpoint may keep views of them. The products a :class:`Load` reads are given with
    :meth:`receive`; the scratch registers (``"w"``, ``"start"``) live here.
    """

    def __init__(self, slots: Mapping[int, SlotArrays], sweeps: BasisSweeps | None = None):
        self.slots = dict(slots)
        self.sweeps = sweeps or BasisSweeps()
        self.products: dict[int, np.ndarray] = {}
        self.scratch: dict[tuple[int, str], np.ndarray] = {}

    def receive(self, products: Mapping[int, np.ndarray]) -> None:
        """The slots' products (each float64[L], this part's entries) for the next :class:`Load`."""
        self.products = dict(products)

    def run(self, ops: Sequence[Op]) -> np.ndarray:
        """Apply ``ops`` in order; their reductions on this part, flat float64 (see the module)."""
        out = np.empty(reductions_size(ops), dtype=np.float64)
        at = 0
        for op in ops:
            at = self._apply(op, out, at)
        return out

    def _apply(self, op: Op, out: np.ndarray, at: int) -> int:
        if isinstance(op, Load):
            w = np.array(self.products[op.slot], dtype=np.float64, copy=True)
            expected = (self.slots[op.slot].basis.shape[1],)
            if w.shape != expected:
                raise ValueError(f"matvec returned shape {w.shape}, expected {expected}")
            self._set(op.slot, "w", w)
            out[at] = np.size(w) - np.count_nonzero(np.isfinite(w))
            return at + 1
        if isinstance(op, Dot):
            out[at] = float(self._get(op.slot, op.x) @ self._get(op.slot, op.y))
            return at + 1
        if isinstance(op, Project):
            out[at : at + op.rows] = self.sweeps.dots(self.slots[op.slot].basis[: op.rows], self._get(op.slot, op.x))
            return at + op.rows
        if isinstance(op, Axpy):
            x, y = self._get(op.slot, op.x), self._get(op.slot, op.y)
            if op.a == 1.0:
                y -= x
            else:
                y -= op.a * x
        elif isinstance(op, Divide):
            x = self._get(op.slot, op.x)
            x /= op.divisor
        elif isinstance(op, Subtract):
            rows = op.coefficients.shape[0]
            self.sweeps.subtract(self.slots[op.slot].basis[:rows], self._get(op.slot, op.x), op.coefficients)
        elif isinstance(op, Combine):
            rows = op.coefficients.shape[0]
            self._set(op.slot, op.into, self.sweeps.combine(self.slots[op.slot].basis[:rows], op.coefficients))
        elif isinstance(op, Copy):
            self._set(op.slot, op.into, np.array(self._get(op.slot, op.x), copy=True))
        elif isinstance(op, Move):
            self._set(op.slot, op.into, self._get(op.slot, op.x))
            self._drop(op.slot, op.x)
        elif isinstance(op, Zero):
            self._set(op.slot, op.into, np.zeros(self.slots[op.slot].basis.shape[1], dtype=np.float64))
        elif isinstance(op, Release):
            self.slots.pop(op.slot, None)
            self.products.pop(op.slot, None)
            self.scratch.pop((op.slot, "w"), None)
        else:
            raise TypeError(f"not a vector operation: {op!r}")
        return at

    def _get(self, slot: int, register: Register) -> np.ndarray:
        if isinstance(register, int):
            return self.slots[slot].basis[register]
        if register in STATE_REGISTERS:
            return getattr(self.slots[slot], register)
        return self.scratch[(slot, register)]

    def _set(self, slot: int, register: Register, value: np.ndarray) -> None:
        if isinstance(register, int):
            self.slots[slot].basis[register] = value
        elif register in STATE_REGISTERS:
            setattr(self.slots[slot], register, value)
        else:
            self.scratch[(slot, register)] = value

    def _drop(self, slot: int, register: Register) -> None:
        if not isinstance(register, int) and register in SCRATCH_REGISTERS:
            del self.scratch[(slot, register)]


class VectorSpace(Protocol):
    """Where a step's vectors live: runs a round for all slots and returns its reductions,
    summed over the parts in a fixed order (see :func:`split_reductions`)."""

    def run(self, ops: Sequence[Op]) -> list[float | np.ndarray]: ...


class LocalSpace:
    """Every vector whole in this process: one part, a :class:`VectorKernel`."""

    def __init__(self, kernel: VectorKernel):
        self.kernel = kernel

    def run(self, ops: Sequence[Op]) -> list[float | np.ndarray]:
        return split_reductions(ops, self.kernel.run(ops))
