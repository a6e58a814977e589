"""The sharded Lanczos state in one process: keepers holding slices of every vector.

Dense test matrices with known spectra; the reference is the same loop with the vectors
on the driver (:class:`~raylanczos.run.stores.DriverStore`). With one keeper the
arithmetic is the driver's, bit for bit; with several, the partial dot products are added
in keeper order, so the Ritz values agree to rounding (1e-12·‖A‖) and two sharded runs
agree bit for bit.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from raylanczos.numerics.basis import BasisSweeps, allocate_basis
from raylanczos.numerics.lanczos import (
    SKIP_CHUNK,
    LanczosOptions,
    start_entries,
    start_vector,
)
from raylanczos.numerics.ritz import ritz_pairs
from raylanczos.numerics.sharded import (
    InProcessKeepers,
    Keeper,
    SliceLayout,
    spans_of,
    task_part,
)
from raylanczos.numerics.spectrum import gauss_quadrature
from raylanczos.operators.contract import (
    TIMING_COLUMNS,
    InProcessOperator,
    InProcessSlicedOperator,
)
from raylanczos.run.checkpoint import Checkpoint, CheckpointError
from raylanczos.run.loop import DrawTask, LoopHooks, SpectrumLoop
from raylanczos.run.stores import KeeperStore, choose_state
from tests.matrices import matrix_with_spectrum

N, ORDER, B, SEED = 300, 40, 2, 5
UNEVEN = [(0, 17, 150, 300), (0, 211, 300)]
BLOCK = np.r_[np.arange(10, 40), np.arange(140, 170), np.arange(290, 300)]  # crosses every slice


class Dense:
    """A dense symmetric matrix as an in-process operator (row by row: the bits of one product)."""

    def __init__(self, matrix: np.ndarray):
        self.matrix, self.dim = matrix, matrix.shape[0]

    def matmat(self, vectors: np.ndarray) -> np.ndarray:
        return np.stack([self.matrix @ v for v in vectors])


@pytest.fixture(scope="module")
def outliers():
    """n = 300: a bulk on [-1, 1] and five outliers; ‖A‖ = 9."""
    rng = np.random.default_rng(7)
    lam = np.concatenate([rng.uniform(-1.0, 1.0, N - 5), [-4.0, 5.0, 6.0, 7.0, 9.0]])
    return lam, matrix_with_spectrum(lam, rng)


def tasks_for(dim: int, draws: int, block: np.ndarray | None = None) -> list[DrawTask]:
    tasks = [DrawTask(d, "", d, dim) for d in range(draws)]
    if block is not None:
        tasks.append(DrawTask(draws, "block", 0, block.size, block))
    return tasks


def run_driver(a, tasks, *, order=ORDER, block=B, options=LanczosOptions(), hooks=LoopHooks()):
    operator = InProcessOperator(Dense(a), block)
    bases = [allocate_basis(order + 1, a.shape[0]) for _ in range(block)]
    loop = SpectrumLoop(operator, tasks, order, bases, seed=SEED, distribution="gaussian", sweeps=BasisSweeps(),
                        options=options, hooks=hooks)
    return loop.run()


def sharded_loop(a, tasks, bounds, *, order=ORDER, block=B, options=LanczosOptions(), hooks=LoopHooks(),
                 checkpoint: Checkpoint | None = None, resume: bool = False):
    """The loop over keepers holding ``bounds``' slices (their files in ``checkpoint``'s
    keeper directories when given, reopened when ``resume``)."""
    layout = SliceLayout(bounds)
    keepers = InProcessKeepers([
        Keeper(i, layout, block, order + 1, directory=checkpoint.keeper_directory(i) if checkpoint else None, resume=resume)
        for i in range(layout.parts)
    ])
    store = KeeperStore(keepers, a.shape[0], seed=SEED, distribution="gaussian",
                        resume_half=checkpoint.pending_half if resume else None)
    if checkpoint is not None:
        checkpoint.keep_slices(store)
    operator = InProcessSlicedOperator(Dense(a), block, layout.bounds)
    return SpectrumLoop(operator, tasks, order, store, seed=SEED, distribution="gaussian", options=options, hooks=hooks)


def ritz_values(record) -> np.ndarray:
    return gauss_quadrature(*record.tridiagonal())[0]


# --------------------------------------------------------------------------- slices


def test_the_state_is_the_drivers_while_the_bases_fit():
    assert choose_state(None, 4, 2 * 10**9, 8.0) == (
        "driver", "state: driver: 4 × 2 GB = 8 GB of bases fit basis_memory_gb 8 (choose with --state)"
    )
    state, reason = choose_state(None, 1, 728 * 10**9, 8.0)
    assert state == "sharded" and reason.startswith("state: sharded: 1 × 728 GB = 728 GB of bases exceed basis_memory_gb 8;")
    assert choose_state("sharded", 1, 10, 8.0)[0] == "sharded"
    with pytest.raises(ValueError, match="state must be one of 'driver', 'sharded', got 'keepers'"):
        choose_state("keepers", 1, 10, 8.0)



def test_slices_are_contiguous_and_not_empty():
    assert SliceLayout.balanced(10, 3).bounds == (0, 3, 6, 10)
    assert SliceLayout((0, 17, 150, 300)).span(1) == (17, 150)
    with pytest.raises(ValueError, match=r"rise strictly from 0 to n, got \[0, 5, 5, 10\]"):
        SliceLayout((0, 5, 5, 10))
    with pytest.raises(ValueError, match="cannot cut 2 parameters into 3 non-empty slices"):
        SliceLayout.balanced(2, 3)


@pytest.mark.parametrize("lo, hi", [(0, 300), (0, 17), (17, 150), (150, 300), (40, 140), (35, 295)])
def test_a_task_part_is_the_task_coordinates_inside_a_slice(lo, hi):
    """Against the positions themselves: coordinates [first, stop) of the block fall in
    [lo, hi), at these positions of the slice."""
    spans = spans_of(BLOCK)
    assert spans == ((10, 40), (140, 170), (290, 300))
    part = task_part(spans, lo, hi)
    inside = (BLOCK >= lo) & (BLOCK < hi)
    assert part.first == int(np.count_nonzero(BLOCK < lo)) and part.length == int(inside.sum())
    assert np.array_equal(part.positions, BLOCK[inside] - lo)
    whole = task_part(None, lo, hi)
    assert (whole.first, whole.stop, whole.positions) == (lo, hi, None)


@pytest.mark.parametrize("distribution", ["gaussian", "rademacher"])
def test_start_entries_are_slices_of_the_start_vector(distribution):
    """A keeper's entries, drawn after skipping more than one chunk of the stream, are the
    whole vector's; normalised, the whole is :func:`start_vector`, bit for bit."""
    dim = SKIP_CHUNK + 3001
    whole = start_entries(dim, seed=3, draw=4, distribution=distribution)
    for first, stop in [(0, 1000), (999, 1001), (SKIP_CHUNK + 5, dim), (dim, dim)]:
        piece = start_entries(dim, seed=3, draw=4, distribution=distribution, first=first, stop=stop)
        assert np.array_equal(piece, whole[first:stop])
    assert np.array_equal(whole / np.linalg.norm(whole), start_vector(dim, seed=3, draw=4, distribution=distribution))
    with pytest.raises(ValueError, match=r"entries \[5, 3\) are not inside a start vector of 10"):
        start_entries(10, seed=0, first=5, stop=3)


# --------------------------------------------------------------------------- against the driver's state


def test_one_keeper_is_the_driver_state_bit_for_bit(outliers):
    """K = 1: the same step, the same arithmetic: identical tridiagonals and orthogonality."""
    _, a = outliers
    tasks = tasks_for(N, 3, BLOCK)
    driver = run_driver(a, tasks)
    sharded = sharded_loop(a, tasks, (0, N)).run()
    for task in range(len(tasks)):
        assert np.array_equal(sharded.finished[task].alpha, driver.finished[task].alpha)
        assert np.array_equal(sharded.finished[task].beta, driver.finished[task].beta)
        assert sharded.finished[task].orthogonality == driver.finished[task].orthogonality
    assert sharded.passes == driver.passes


@pytest.mark.parametrize("bounds", UNEVEN)
def test_sharded_ritz_values_agree_with_the_driver_state(outliers, bounds):
    """K = 2, 3 uneven slices, a block crossing every slice: Ritz values to 1e-12·‖A‖, the
    extremes to 1e-10·‖A‖ of the eigenvalues, orthogonality at rounding level."""
    lam, a = outliers
    norm = np.max(np.abs(lam))
    tasks = tasks_for(N, 3, BLOCK)
    driver = run_driver(a, tasks)
    sharded = sharded_loop(a, tasks, bounds).run()
    for task in range(len(tasks)):
        np.testing.assert_allclose(ritz_values(sharded.finished[task]), ritz_values(driver.finished[task]), rtol=0, atol=1e-12 * norm)
        assert sharded.finished[task].orthogonality <= 1e-14
    for task in range(3):
        nodes = ritz_values(sharded.finished[task])
        assert abs(nodes[-1] - lam.max()) <= 1e-10 * norm and abs(nodes[0] - lam.min()) <= 1e-10 * norm


def test_two_sharded_runs_are_bit_identical(outliers):
    _, a = outliers
    tasks = tasks_for(N, 3, BLOCK)
    first = sharded_loop(a, tasks, UNEVEN[0]).run()
    second = sharded_loop(a, tasks, UNEVEN[0]).run()
    for task in range(len(tasks)):
        assert np.array_equal(first.finished[task].alpha, second.finished[task].alpha)
        assert np.array_equal(first.finished[task].beta, second.finished[task].beta)


def test_the_timing_rows_split_a_sharded_pass(outliers):
    """Each pass's row times the keepers' receiving of the products, the step's first half
    and the driver's sums of the keepers' partial reductions (none with the driver's state,
    which has no parts to add); no worker assembles slices in process (all-gather 0)."""
    _, a = outliers
    tasks = tasks_for(N, 2)
    sharded = sharded_loop(a, tasks, UNEVEN[0], order=10).run()
    driver = run_driver(a, tasks, order=10)
    rows, plain = np.array(sharded.timings), np.array(driver.timings)
    assert rows.shape == plain.shape == (10, len(TIMING_COLUMNS))
    col = {name: rows[:, i] for i, name in enumerate(TIMING_COLUMNS)}
    assert np.all(col["scatter"] > 0) and np.all(col["accept"] > 0) and np.all(col["driver_sums"] > 0)
    assert np.all(col["driver_sums"] < col["accept"] + col["reorth"]) and np.all(col["allgather"] == 0)
    assert np.all(plain[:, TIMING_COLUMNS.index("driver_sums")] == 0) and np.all(plain[:, TIMING_COLUMNS.index("accept")] > 0)


def test_a_breakdown_frees_its_slot_as_with_the_driver_state():
    """diag with 4 distinct eigenvalues: each draw ends after 4 steps on its invariant
    subspace, and with B = 2 the 5 draws take 12 passes, as with the driver's state."""
    a = np.diag(np.repeat([-1.0, 0.5, 2.0, 3.0], 10))
    tasks = tasks_for(40, 5)
    sharded = sharded_loop(a, tasks, (0, 7, 23, 40), order=12).run()
    driver = run_driver(a, tasks, order=12)
    assert [sharded.finished[d].steps for d in range(5)] == [4] * 5 == [driver.finished[d].steps for d in range(5)]
    assert all(sharded.finished[d].breakdown for d in range(5))
    assert sharded.passes == driver.passes == 12
    for d in range(5):
        np.testing.assert_allclose(ritz_values(sharded.finished[d]), [-1.0, 0.5, 2.0, 3.0], rtol=0, atol=1e-12 * 3)


@pytest.mark.parametrize("options, counter", [
    (LanczosOptions(dgks_eta=2.0), "second_passes"),
    (LanczosOptions(lookahead_min_rho=2.0), "fresh_products"),
    (LanczosOptions(), "fresh_products"),
])
def test_second_passes_and_fresh_products_as_with_the_driver_state(outliers, options, counter):
    """Forcing a second Gram–Schmidt pass, or a fresh product, at every step: the sharded
    state takes the same branches (same counts) and agrees to 1e-12·‖A‖; by default the
    look-ahead product is used every time (no fresh products)."""
    lam, a = outliers
    tasks = tasks_for(N, 2)
    driver = run_driver(a, tasks, options=options)
    sharded = sharded_loop(a, tasks, UNEVEN[0], options=options).run()
    for task in range(2):
        counts = [getattr(run.finished[task], counter) for run in (sharded, driver)]
        assert counts[0] == counts[1] == (0 if options == LanczosOptions() else ORDER - 1 + (counter == "second_passes"))
        np.testing.assert_allclose(
            ritz_values(sharded.finished[task]), ritz_values(driver.finished[task]), rtol=0, atol=1e-12 * np.max(np.abs(lam))
        )


def test_ritz_vectors_are_assembled_slice_by_slice(outliers):
    """The finished-draw hook gets the draw with its basis: the top Ritz vectors combined on
    each keeper's slice agree with the driver's, and the leading rows are the basis."""
    _, a = outliers
    kept: dict[str, dict] = {"driver": {}, "sharded": {}}

    def keep(name):
        def finished(task, lanczos, record):
            alpha, beta = record.tridiagonal()
            pairs = ritz_pairs(lanczos.basis, alpha, beta, float(lanczos.beta[lanczos.steps - 1]), 3)
            kept[name][task.index] = (pairs, np.asarray(lanczos.basis[:5]))
        return finished

    tasks = tasks_for(N, 1, BLOCK)
    run_driver(a, tasks, hooks=LoopHooks(finished=keep("driver")))
    sharded_loop(a, tasks, UNEVEN[0], hooks=LoopHooks(finished=keep("sharded"))).run()
    for task in range(2):
        (driver, rows), (sharded, sharded_rows) = kept["driver"][task], kept["sharded"][task]
        assert sharded.vectors.shape == driver.vectors.shape == (3, tasks[task].dim)
        signs = np.sign(np.sum(sharded.vectors * driver.vectors, axis=1))
        np.testing.assert_allclose(sharded.vectors * signs[:, None], driver.vectors, rtol=0, atol=1e-9)
        np.testing.assert_allclose(sharded_rows, rows, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- checkpoints


IDENTITY = {"order": ORDER, "draws": 3, "state": "sharded"}
GROUPS = [[0], [1], [2]]  # one keeper per node group: UNEVEN[0]'s three slices


def test_a_resumed_sharded_run_is_bit_identical(outliers, tmp_path):
    """Each keeper writes its slices; the driver writes the scalars. Resumed after pass k
    (inside the first block, at a block boundary, inside the last) with keepers that reopen
    their files, the run ends with the undisturbed run's bits."""
    _, a = outliers
    tasks = tasks_for(N, 3, BLOCK)
    bounds = UNEVEN[0]
    whole = sharded_loop(a, tasks, bounds).run()

    class Stop(Exception):
        pass

    for stop_at in (5, ORDER, 70):
        checkpoint = Checkpoint(tmp_path / f"cut{stop_at}")
        checkpoint.begin(IDENTITY, GROUPS, slices=bounds)

        def save(state, checkpoint=checkpoint, stop_at=stop_at):
            checkpoint.save(state)
            if state.passes == stop_at:
                raise Stop

        with pytest.raises(Stop):
            sharded_loop(a, tasks, bounds, checkpoint=checkpoint, hooks=LoopHooks(checkpoint=save)).run()
        reopened = Checkpoint(tmp_path / f"cut{stop_at}")
        reopened.check_slices(bounds)
        state, bases, groups = reopened.load(IDENTITY, [task.dim for task in tasks])
        assert bases == [] and groups == GROUPS and state.passes == stop_at
        resumed = sharded_loop(a, tasks, bounds, checkpoint=reopened, resume=True).run(state)
        for task in range(len(tasks)):
            assert np.array_equal(resumed.finished[task].alpha, whole.finished[task].alpha), (stop_at, task)
            assert np.array_equal(resumed.finished[task].beta, whole.finished[task].beta), (stop_at, task)


def test_a_checkpoint_of_other_slices_is_refused(outliers, tmp_path):
    _, a = outliers
    checkpoint = Checkpoint(tmp_path)
    checkpoint.begin(IDENTITY, [[0]], slices=UNEVEN[0])
    with pytest.raises(CheckpointError, match=r"holds the Lanczos state in 3 slices \[0, 17, 150, 300\], this run holds it in 2"):
        checkpoint.check_slices(UNEVEN[1])
    with pytest.raises(CheckpointError, match="this run holds it on the driver"):
        checkpoint.check_slices(None)
    Keeper(1, SliceLayout(UNEVEN[0]), B, ORDER + 1, directory=checkpoint.keeper_directory(1))
    with pytest.raises(ValueError, match=r"keeper_1/basis_0.npy holds \(41, 133\), slice 1 \[211, 300\) .* do not match this run"):
        Keeper(1, SliceLayout(UNEVEN[1]), B, ORDER + 1, directory=checkpoint.keeper_directory(1), resume=True)


def test_keeper_files_that_do_not_match_the_slices_are_refused_on_the_driver(outliers, tmp_path):
    """Checked by :meth:`Checkpoint.load`, before any worker or keeper starts: a keeper's
    file of another width, one missing, and node groups that are not one per slice."""
    _, a = outliers
    tasks = tasks_for(N, 3, BLOCK)
    bounds = UNEVEN[0]

    class Stop(Exception):
        pass

    def stop(state):
        checkpoint.save(state)
        raise Stop

    checkpoint = Checkpoint(tmp_path / "run")
    checkpoint.begin(IDENTITY, GROUPS, slices=bounds)
    with pytest.raises(Stop):
        sharded_loop(a, tasks, bounds, checkpoint=checkpoint, hooks=LoopHooks(checkpoint=stop)).run()
    dims = [task.dim for task in tasks]
    Checkpoint(tmp_path / "run").load(IDENTITY, dims)

    wider = tmp_path / "wider"
    shutil.copytree(tmp_path / "run", wider)
    allocate_basis(ORDER + 1, 140, wider / "keeper_1" / "basis_1.npy")
    with pytest.raises(CheckpointError, match=r"does not match its slices: .*keeper_1/basis_1.npy holds \(41, 140\), "
                       r"keeper 1's slice \[17, 150\) needs 133 columns"):
        Checkpoint(wider).load(IDENTITY, dims)

    missing = tmp_path / "missing"
    shutil.copytree(tmp_path / "run", missing)
    shutil.rmtree(missing / "keeper_2")
    with pytest.raises(CheckpointError, match=r"is incomplete: .*keeper_2/basis_0.npy"):
        Checkpoint(missing).load(IDENTITY, dims)

    regrouped = Checkpoint(tmp_path / "regrouped")
    shutil.copytree(tmp_path / "run", regrouped.directory)
    config = json.loads((regrouped.directory / "config.json").read_text())
    (regrouped.directory / "config.json").write_text(json.dumps({**config, "node_groups": [[0, 1], [2]]}))
    with pytest.raises(CheckpointError, match=r"3 slices \[0, 17, 150, 300\] for 2 node groups \[\[0, 1\], \[2\]\]"):
        regrouped.load(IDENTITY, dims)
