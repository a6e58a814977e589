"""The run's loop: D draws × m Lanczos steps, B draws per pass over the data.

The loop knows no Ray: it drives any *block operator* (``dim``, ``block_size``,
``submit(vectors) -> pending`` and ``collect(pending) -> (products, StepTiming)``) — the
distributed Hessian, or an in-process operator — and keeps the vectors in a *vector
store* (:mod:`raylanczos.run.stores`): on the driver (the block and products are float64
(B, n) arrays), or sliced over keepers (the block is their published slices and the
products go to them; the driver keeps only scalars). It keeps B Lanczos states in
lockstep, one per *slot*: each pass multiplies all B vectors at once, and each state is
advanced and re-orthogonalised against its own basis, all slots in the same rounds.
A draw that ends (its m steps, or a breakdown) frees its slot, and the next waiting draw
starts there, so the block stays full until the last draws. Empty slots multiply a zero
vector, so every pass has the same shape.

A *gate* (optional; :mod:`raylanczos.run.target`) may hold the next draw back until the
draws before it have ended, or skip the rest of a part's draws. It decides from the ended
draws' first Lanczos coefficients alone, so a resumed run decides the same.

Each step submits the next block as soon as its vectors are known (after every state's
``accept``), then re-orthogonalises and checkpoints while the product is computed. The
checkpoint after a step records every slot's state, the finished draws and the next
waiting draw; a draw that has just ended is recorded as finished before its slot's basis
is reused, so resuming from any checkpoint repeats exactly the blocks of the undisturbed
run and gives the same bits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from raylanczos.numerics.basis import BasisSweeps
from raylanczos.numerics.deflation import Deflation
from raylanczos.numerics.lanczos import (
    LanczosOptions,
    LanczosScalars,
    Phase,
    accept_block,
    reorthogonalize_block,
)
from raylanczos.operators.contract import TIMING_COLUMNS, BlockOperator
from raylanczos.run.stores import BlockRow, DriverStore, VectorStore


@dataclass(frozen=True)
class DrawTask:
    """One draw of one operator: the whole model's, or a parameter block's restriction.

    ``index``: the task's place in the run (records and outputs follow it); ``block``: the
    block's name ("" for the whole model); ``draw``: d, which seeds the start vector;
    ``indices``: int64[|b|], the block's positions in the flat parameter vector, or None
    for all n. Vectors of a block are zero outside it and products are restricted to it
    (the operator H_bb). ``deflation``: eigenpairs taken out of the operator, or None: the
    draw is then of P H P on range(P) (:mod:`raylanczos.numerics.deflation`), its start
    vector, the vectors it submits and its products all projected by P.
    """

    index: int
    block: str
    draw: int
    dim: int
    indices: np.ndarray | None = None
    deflation: Deflation | None = None

    def embed(self, vector: np.ndarray, out: np.ndarray) -> None:
        """Write ``vector`` (float64[dim]) into the full-length row ``out`` (zeros elsewhere)."""
        vector = self.start(vector)
        if self.indices is None:
            out[:] = vector
        else:
            out[:] = 0.0
            out[self.indices] = vector

    def restrict(self, product: np.ndarray) -> np.ndarray:
        product = product if self.indices is None else product[self.indices]
        return product if self.deflation is None else self.deflation.project(product)

    def start(self, vector: np.ndarray) -> np.ndarray:
        """``vector`` (float64[dim]) in the draw's space: P v when deflated, else as it is."""
        return vector if self.deflation is None else self.deflation.project(vector)


@dataclass
class FinishedDraw:
    """A finished task's tridiagonal and diagnostics (α, β float64[m_task])."""

    task: int
    alpha: np.ndarray
    beta: np.ndarray
    steps: int
    breakdown: bool
    orthogonality: float
    second_passes: int
    fresh_products: int

    def tridiagonal(self) -> tuple[np.ndarray, np.ndarray]:
        return self.alpha[: self.steps].copy(), self.beta[: max(self.steps - 1, 0)].copy()


@dataclass
class LoopState:
    """Where the loop stands, as plain data (what a checkpoint holds besides the bases).

    ``slots``: one entry per slot, ``(task index, state)`` or None when free (the state is
    a :class:`~raylanczos.numerics.lanczos.LanczosState` with its vectors on the driver,
    its :class:`~raylanczos.numerics.lanczos.LanczosScalars` when keepers hold them);
    ``next_task``: the first task not yet started; ``finished``: finished draws by task
    index; ``timings``: one row of :data:`TIMING_COLUMNS` per pass. The loop measures
    ``reorth``, ``checkpoint`` and ``total`` itself, and ``scatter`` (the store's receiving
    the products: with a sharded state, the keepers' reduce-scatter), ``accept`` (the
    step's first half: with a sharded state, the keepers' rounds and the driver's sums)
    and ``driver_sums`` (the seconds the driver spent adding keepers' partial reductions,
    in ``accept`` and ``reorth``); the rest comes from the operator's
    :class:`~raylanczos.operators.contract.StepTiming`.
    """

    slots: list[tuple[int, LanczosScalars] | None]
    next_task: int = 0
    finished: dict[int, FinishedDraw] = field(default_factory=dict)
    timings: list[list[float]] = field(default_factory=list)
    passes: int = 0

    @classmethod
    def empty(cls, block_size: int) -> "LoopState":
        return cls(slots=[None] * block_size)


def first_coefficients(alpha: np.ndarray, beta: np.ndarray, steps: int) -> tuple[float, float]:
    """(α₀, β₁) of a draw of ``steps`` steps, as its tridiagonal has them (β₁ = 0 for one step)."""
    return float(alpha[0]), (float(beta[0]) if steps > 1 else 0.0)


#: A gate: ``gate(task, ended) -> task | None``. ``task`` is the next draw not started;
#: ``ended`` maps every ended draw's task index to its :func:`first_coefficients`. It
#: answers the task to start instead (``task``, or a later one when it skips the rest of a
#: part; ``len(tasks)`` when none is left), or None to wait for more draws to end.
Gate = Callable[[int, Mapping[int, tuple[float, float]]], int | None]


@dataclass(frozen=True)
class LoopHooks:
    """What the loop calls out to (all optional).

    ``checkpoint(state)``: after every pass; ``finished(task, lanczos_state, record)``:
    when a draw ends, before its slot is reused (to write its vectors, say): the state has
    a ``basis`` (an array on the driver, a :class:`~raylanczos.run.stores.KeptBasis` when
    keepers hold it); ``progress(state, row)``: after every pass, with the pass's timing row.
    """

    checkpoint: Callable[[LoopState], None] | None = None
    finished: Callable[[DrawTask, LanczosScalars, FinishedDraw], None] | None = None
    progress: Callable[[LoopState, list[float]], None] | None = None


class SpectrumLoop:
    """Runs ``tasks`` × ``order`` Lanczos steps over ``operator``, ``operator.block_size``
    draws per pass.

    Args:
      operator: a block operator of dimension n (see the module docstring).
      tasks: the draws, in order; task i's start vector is
        ``start_vector(task.dim, seed=seed, draw=task.draw, distribution=distribution)``.
      order: m, Lanczos steps per draw (each task's clamped to its dimension).
      bases: where the vectors live: one float64 (≥ m + 1, ≥ max task dim) array per slot
        (memory or memmap: the driver holds the vectors), or a vector store
        (:mod:`raylanczos.run.stores`, e.g. keepers holding slices).
      seed, distribution: the start vectors' seed and distribution.
      sweeps: the basis-sweep kernel for re-orthogonalisation (with ``bases`` arrays).
      options: the Lanczos step's thresholds.
      hooks: checkpoint, finished-draw and progress callbacks.
      gate: which draw starts next (:data:`Gate`); None starts them all, in order.
    """

    def __init__(
        self,
        operator: BlockOperator,
        tasks: Sequence[DrawTask],
        order: int,
        bases: Sequence[np.ndarray] | VectorStore,
        *,
        seed: int,
        distribution: str,
        sweeps: BasisSweeps | None = None,
        options: LanczosOptions = LanczosOptions(),
        hooks: LoopHooks = LoopHooks(),
        gate: Gate | None = None,
    ):
        if hasattr(bases, "space"):
            self.store = bases
        else:
            if len(bases) != operator.block_size:
                raise ValueError(f"need one basis per slot: {operator.block_size} slots, {len(bases)} bases")
            self.store = DriverStore(bases, operator.dim, sweeps or BasisSweeps(), seed=seed, distribution=distribution)
        self.operator = operator
        self.tasks = list(tasks)
        self.order = order
        self.options = options
        self.hooks = hooks
        self.gate = gate

    @property
    def total_steps(self) -> int:
        """Σ over tasks of their (clamped) orders: the steps of an undisturbed run at most."""
        return sum(min(self.order, task.dim) for task in self.tasks)

    def run(self, state: LoopState | None = None) -> LoopState:
        """Run to the end, from ``state`` (a resumed checkpoint) or from the start."""
        state = state or LoopState.empty(self.operator.block_size)
        self.store.adopt([(slot, self.tasks[task], lanczos) for slot, (task, lanczos) in self._occupied(state)])
        self._fill(state, self._assign(state))
        in_flight = self._submit(state, {})
        space = self.store.space
        while self._occupied(state):
            started = time.perf_counter()
            products, timing = self.operator.collect(in_flight)
            active = len(self._occupied(state))
            scatter_started = time.perf_counter()
            self.store.receive(products, {slot: self.tasks[task] for slot, (task, _) in self._occupied(state)})
            accept_started = time.perf_counter()
            accept_block([(slot, lanczos) for slot, (_, lanczos) in self._occupied(state)], space, self.options)
            accept = time.perf_counter() - accept_started
            ending = [slot for slot, (_, lanczos) in self._occupied(state) if _ends_this_step(lanczos)]
            assigned = self._assign(state, ending)
            in_flight = self._submit(state, assigned[0])
            reorth_started = time.perf_counter()
            waiting = [(slot, lanczos) for slot, (_, lanczos) in self._occupied(state) if lanczos.phase is Phase.REORTHOGONALIZE]
            restarted = bool(reorthogonalize_block(waiting, space, self.options)) if waiting else False
            reorth = time.perf_counter() - reorth_started
            # A draw that broke down in re-orthogonalisation ends now too; its look-ahead
            # row, like a row whose vector was replaced for a fresh product, is stale: the
            # block is taken again.
            late = [slot for slot, (_, lanczos) in self._occupied(state) if lanczos.done and slot not in ending]
            if restarted or late:
                ending += late
                assigned = self._assign(state, ending)
                if in_flight is not None:
                    self.operator.collect(in_flight)
                in_flight = self._submit(state, assigned[0])
            for slot in ending:
                self._finish(state, slot)
            state.passes += 1
            sent, received, driver_sums = self.store.take_counts()
            row = [
                state.passes, active, timing.broadcast, timing.hvp_max, timing.gather, timing.node_reduce,
                timing.reduce, reorth, 0.0, 0.0, timing.bytes_sent + sent, timing.bytes_received + received,
                timing.allgather, accept_started - scatter_started, accept, driver_sums,
            ]
            state.timings.append(row)
            checkpoint_started = time.perf_counter()
            if self.hooks.checkpoint is not None:
                self.hooks.checkpoint(state)
            row[TIMING_COLUMNS.index("checkpoint")] = time.perf_counter() - checkpoint_started
            self._fill(state, assigned)
            row[TIMING_COLUMNS.index("total")] = time.perf_counter() - started
            if self.hooks.progress is not None:
                self.hooks.progress(state, row)
        return state

    def _assign(self, state: LoopState, ending: Sequence[int] = ()) -> tuple[dict[int, int], int]:
        """Slot → task for the slots free after this pass (free now, or ``ending``), in
        slot order from ``state.next_task`` as the gate admits them, and the next task
        not started after them (the same rule whether resumed or not)."""
        free = sorted({slot for slot, entry in enumerate(state.slots) if entry is None} | set(ending))
        ended = self._ended(state, ending) if self.gate is not None and free else {}
        incoming, task = {}, state.next_task
        for slot in free:
            admitted = task if self.gate is None or task >= len(self.tasks) else self.gate(task, ended)
            if admitted is None or admitted >= len(self.tasks):
                task = task if admitted is None else admitted
                break
            incoming[slot], task = admitted, admitted + 1
        return incoming, task

    def _ended(self, state: LoopState, ending: Sequence[int]) -> dict[int, tuple[float, float]]:
        """Task → (α₀, β₁) of every draw that has ended: the finished ones and ``ending``'s."""
        ended = {task: first_coefficients(r.alpha, r.beta, r.steps) for task, r in state.finished.items()}
        for slot in ending:
            task, lanczos = state.slots[slot]
            ended[task] = first_coefficients(lanczos.alpha, lanczos.beta, lanczos.steps)
        return ended

    def _fill(self, state: LoopState, assigned: tuple[dict[int, int], int]) -> None:
        """Start the assigned tasks' states in their slots (after their predecessors were recorded)."""
        incoming, state.next_task = assigned
        described = {slot: self.tasks[task] for slot, task in incoming.items()}
        self.store.prepare(described)
        started = self.store.begin(described, self.order)
        for slot, task in incoming.items():
            state.slots[slot] = (task, started[slot])

    def _submit(self, state: LoopState, incoming: dict[int, int]) -> Any:
        """Submit the block: each live slot's next vector, the start vector of a task about
        to take a slot, zeros elsewhere; None (nothing submitted) when no row is live."""
        rows: list[BlockRow] = [None] * self.operator.block_size
        for slot, (task, lanczos) in self._occupied(state):
            if slot not in incoming and not lanczos.done and lanczos.steps < lanczos.order:
                rows[slot] = (slot, self.tasks[task], "pending")
        for slot, task in incoming.items():
            rows[slot] = (slot, self.tasks[task], "start")
        if all(row is None for row in rows):
            return None
        self.store.prepare({slot: self.tasks[task] for slot, task in incoming.items()})
        return self.operator.submit(self.store.block(rows))

    def _finish(self, state: LoopState, slot: int) -> None:
        task, lanczos = state.slots[slot]
        record = FinishedDraw(
            task=task,
            alpha=lanczos.alpha.copy(),
            beta=lanczos.beta.copy(),
            steps=lanczos.steps,
            breakdown=lanczos.breakdown,
            orthogonality=self.store.orthogonality(slot, lanczos),
            second_passes=lanczos.second_passes,
            fresh_products=lanczos.fresh_products,
        )
        if self.hooks.finished is not None:
            self.hooks.finished(self.tasks[task], self.store.view(slot, self.tasks[task], lanczos), record)
        state.finished[task] = record
        state.slots[slot] = None
        self.store.release(slot)

    @staticmethod
    def _occupied(state: LoopState):
        return [(slot, entry) for slot, entry in enumerate(state.slots) if entry is not None]


def _ends_this_step(lanczos: LanczosScalars) -> bool:
    """Whether a state that has just accepted its product ends with this step."""
    return lanczos.phase is Phase.DONE or lanczos.steps >= lanczos.order
