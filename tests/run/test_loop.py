"""The run's loop on its own (no Ray): B draws per pass over dense operators with known spectra.

Every draw of a run with B draws per pass must be the draw of a one-at-a-time run: the
same start vector, its own basis and tridiagonal, whatever else shares its passes.
"""

from __future__ import annotations

import numpy as np
import pytest

from raylanczos.numerics.basis import BasisSweeps, allocate_basis
from raylanczos.numerics.lanczos import lanczos
from raylanczos.operators.contract import InProcessOperator
from raylanczos.run.loop import DrawTask, LoopHooks, LoopState, SpectrumLoop
from tests.matrices import matrix_with_spectrum


class Dense:
    """A dense symmetric matrix as an in-process operator; counts the rows it multiplies."""

    def __init__(self, matrix: np.ndarray):
        self.matrix, self.dim, self.rows = matrix, matrix.shape[0], 0

    def matmat(self, vectors: np.ndarray) -> np.ndarray:
        self.rows += vectors.shape[0]
        return np.stack([self.matrix @ v for v in vectors])  # row by row: bits of a single product


def run_loop(matrix: np.ndarray, draws: int, order: int, block: int, *, seed: int = 3, hooks=LoopHooks(), state=None, bases=None):
    operator = InProcessOperator(Dense(matrix), block)
    tasks = [DrawTask(d, "", d, operator.dim) for d in range(draws)]
    bases = bases or [allocate_basis(min(order, operator.dim) + 1, operator.dim) for _ in range(block)]
    with BasisSweeps() as sweeps:
        loop = SpectrumLoop(operator, tasks, order, bases, seed=seed, distribution="gaussian", sweeps=sweeps, hooks=hooks)
        return loop.run(state), operator.operator


@pytest.fixture(scope="module")
def indefinite():
    rng = np.random.default_rng(11)
    lam = np.concatenate([rng.uniform(-1.0, 1.0, 195), [-3.0, 4.0, 6.0, 8.0, 10.0]])
    return lam, matrix_with_spectrum(lam, rng)


@pytest.mark.parametrize("block", [1, 2, 3, 4])
def test_every_draw_of_a_block_is_its_own_run(indefinite, block):
    """D = 5 draws (not a multiple of B = 2, 3, 4), order = n = 200: every draw's
    tridiagonal is bit-identical to ``rl.lanczos`` of the same draw, and its extreme Ritz
    values are the extreme eigenvalues to 1e-10·‖A‖."""
    lam, a = indefinite
    state, operator = run_loop(a, draws=5, order=200, block=block)
    assert sorted(state.finished) == list(range(5)) and all(entry is None for entry in state.slots)
    for d in range(5):
        alpha, beta = state.finished[d].tridiagonal()
        reference = lanczos(a, order=200, seed=3, draw=d)
        assert np.array_equal(alpha, reference.alpha) and np.array_equal(beta, reference.beta)
        ritz = np.linalg.eigvalsh(np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1))
        assert abs(ritz[-1] - lam.max()) <= 1e-10 * 10 and abs(ritz[0] - lam.min()) <= 1e-10 * 10
    passes = -(-5 // block) * 200
    assert state.passes == passes and len(state.timings) == passes
    assert operator.rows == passes * block, "every pass multiplies a full block (free slots: zero rows)"


def test_a_breakdown_frees_its_slot_for_the_next_draw():
    """A = diag with 4 distinct eigenvalues: every draw stops after 4 steps (an invariant
    subspace), so with B = 2 and order 12 the 5 draws take 3 blocks of 4 passes, not 3 × 12."""
    lam = np.repeat([-1.0, 0.5, 2.0, 3.0], 10)
    a = np.diag(lam)
    state, _ = run_loop(a, draws=5, order=12, block=2)
    assert [state.finished[d].steps for d in range(5)] == [4] * 5
    assert all(state.finished[d].breakdown for d in range(5))
    assert state.passes == 12
    for d in range(5):
        reference = lanczos(a, order=12, seed=3, draw=d)
        assert np.array_equal(state.finished[d].tridiagonal()[0], reference.alpha)


def test_a_breakdown_inside_a_block_leaves_the_other_draws_alone():
    """Task 0 is the block of the first 6 parameters, where A restricted is diag(1, 1, 2, 2,
    3, 3): 3 distinct eigenvalues, so it breaks down after 3 steps, while tasks 1 and 2 of
    the same pass (the whole matrix) run all 10 steps. The freed slot takes task 3 at once,
    and every draw equals its one-at-a-time run."""
    rng = np.random.default_rng(5)
    lam = np.concatenate([[1.0, 1.0, 2.0, 2.0, 3.0, 3.0], rng.uniform(-2.0, 5.0, 34)])
    a = np.diag(lam)
    operator = InProcessOperator(Dense(a), 3)
    block = np.arange(6)
    tasks = [DrawTask(0, "first6", 0, 6, block)] + [DrawTask(d, "", d, 40) for d in (1, 2, 3)]
    bases = [allocate_basis(11, 40) for _ in range(3)]
    with BasisSweeps() as sweeps:
        state = SpectrumLoop(operator, tasks, 10, bases, seed=1, distribution="gaussian", sweeps=sweeps).run()
    assert state.finished[0].steps == 3 and state.finished[0].breakdown
    assert [state.finished[d].steps for d in (1, 2, 3)] == [10, 10, 10]
    assert state.passes == 13, "task 3 started in task 0's slot after pass 3, so it ended at pass 13"
    restricted = lanczos(a[np.ix_(block, block)], order=10, seed=1, draw=0)
    assert np.array_equal(state.finished[0].tridiagonal()[0], restricted.alpha)
    for d in (1, 2, 3):
        reference = lanczos(a, order=10, seed=1, draw=d)
        assert np.array_equal(state.finished[d].tridiagonal()[0], reference.alpha)
    alpha, beta = state.finished[0].tridiagonal()
    nodes = np.linalg.eigvalsh(np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1))
    np.testing.assert_allclose(nodes, [1.0, 2.0, 3.0], rtol=0, atol=1e-12)


def test_a_block_larger_than_the_draws_runs_them_all_at_once(indefinite):
    _, a = indefinite
    state, _ = run_loop(a, draws=2, order=15, block=5)
    assert sorted(state.finished) == [0, 1] and state.passes == 15


def test_a_run_resumed_from_any_pass_is_bit_identical(indefinite):
    """The loop's state after pass k (slots, finished draws, next draw) and the bases are
    all a resumed run needs: it ends with the undisturbed run's bits, for k inside the
    first block, at a block boundary and inside the last block."""
    _, a = indefinite
    whole, _ = run_loop(a, draws=5, order=12, block=2)
    for stop_at in (5, 12, 30):
        saved = {}

        class Stop(Exception):
            pass

        def checkpoint(state: LoopState) -> None:
            if state.passes == stop_at:
                saved["state"] = copy_state(state)
                raise Stop

        bases = [allocate_basis(13, 200) for _ in range(2)]
        with pytest.raises(Stop):
            run_loop(a, draws=5, order=12, block=2, hooks=LoopHooks(checkpoint=checkpoint), bases=bases)
        resumed, _ = run_loop(a, draws=5, order=12, block=2, state=saved["state"], bases=bases)
        for d in range(5):
            assert np.array_equal(resumed.finished[d].alpha, whole.finished[d].alpha), (stop_at, d)
            assert np.array_equal(resumed.finished[d].beta, whole.finished[d].beta), (stop_at, d)


def copy_state(state: LoopState) -> LoopState:
    """A deep copy of the loop's state but the bases (which a checkpoint keeps on disk)."""
    import copy

    slots = []
    for entry in state.slots:
        if entry is None:
            slots.append(None)
            continue
        task, lanczos_state = entry
        fields = {k: copy.copy(v) for k, v in vars(lanczos_state).items() if k != "basis"}
        slots.append((task, type(lanczos_state)(basis=lanczos_state.basis, **fields)))
    return LoopState(slots, state.next_task, dict(state.finished), [list(r) for r in state.timings], state.passes)


def test_one_basis_per_slot_is_required(indefinite):
    _, a = indefinite
    operator = InProcessOperator(Dense(a), 2)
    with pytest.raises(ValueError, match="2 slots, 1 bases"):
        SpectrumLoop(operator, [], 5, [allocate_basis(6, 200)], seed=0, distribution="gaussian", sweeps=BasisSweeps())


def test_steps_done_counts_draws_in_progress(indefinite):
    """The resume line's count: the finished draws' steps and those of the draws in progress."""
    from raylanczos.run.runner import describe_progress, steps_done

    states: list[LoopState] = []
    run_loop(indefinite[1], draws=3, order=15, block=2, hooks=LoopHooks(checkpoint=lambda s: states.append(copy_state(s))))
    middle = next(state for state in states if state.finished and any(state.slots))
    in_progress = sum(entry[1].steps for entry in middle.slots if entry is not None)
    assert in_progress > 0
    assert steps_done(middle) == sum(record.steps for record in middle.finished.values()) + in_progress
    assert describe_progress(middle).endswith(f"{len(middle.finished)} draw(s) finished, 1 in progress, {steps_done(middle)} Lanczos steps done")
