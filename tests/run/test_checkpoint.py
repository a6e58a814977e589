"""The checkpoint on its own: what a pass writes, what a resume reads back, what it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from raylanczos.numerics.basis import BasisSweeps
from raylanczos.numerics.lanczos import Phase
from raylanczos.numerics.ritz import RitzPairs
from raylanczos.operators.contract import TIMING_COLUMNS, InProcessOperator
from raylanczos.run.checkpoint import Checkpoint, CheckpointError, SaveCadence, widened
from raylanczos.run.loop import DrawTask, LoopHooks, LoopState, SpectrumLoop
from tests.matrices import matrix_with_spectrum

IDENTITY = {"order": 8, "draws": 3, "draws_per_pass": 2, "seed": 4, "num_params": 60}
GROUPS = [[0, 2], [1]]


class Dense:
    def __init__(self, matrix):
        self.matrix, self.dim = matrix, matrix.shape[0]

    def matmat(self, vectors):
        return np.stack([self.matrix @ v for v in vectors])


@pytest.fixture
def matrix():
    rng = np.random.default_rng(3)
    return matrix_with_spectrum(rng.uniform(-1.0, 2.0, 60), rng)


def run_checkpointed(matrix, checkpoint: Checkpoint, *, stop_after: int | None = None, state=None, bases=None, every_s=0.0):
    """3 draws × 8 steps, 2 per pass, checkpointed with a :class:`SaveCadence` of ``every_s``
    seconds (0: after every pass), stopped after pass ``stop_after`` (None: run to the end)."""

    class Stop(Exception):
        pass

    def stop(loop_state, _row):
        if loop_state.passes == stop_after:
            raise Stop

    operator = InProcessOperator(Dense(matrix), 2)
    tasks = [DrawTask(d, "", d, 60) for d in range(3)]
    bases = bases if bases is not None else checkpoint.new_bases(2, 9, 60)
    hooks = LoopHooks(checkpoint=SaveCadence(checkpoint.save, every_s), progress=stop)
    loop = SpectrumLoop(operator, tasks, 8, bases, seed=4, distribution="gaussian", sweeps=BasisSweeps(), hooks=hooks)
    try:
        return loop.run(state)
    except Stop:
        return None


def test_a_resumed_loop_ends_with_the_undisturbed_bits(matrix, tmp_path):
    undisturbed = Checkpoint(tmp_path / "whole")
    undisturbed.begin(IDENTITY, GROUPS)
    whole = run_checkpointed(matrix, undisturbed)
    checkpoint = Checkpoint(tmp_path / "cut")
    checkpoint.begin(IDENTITY, GROUPS)
    assert run_checkpointed(matrix, checkpoint, stop_after=11) is None
    reopened = Checkpoint(tmp_path / "cut")
    assert reopened.exists()
    state, bases, groups = reopened.load(IDENTITY, [60, 60, 60])
    assert groups == GROUPS
    assert state.passes == 11 and sorted(state.finished) == [0, 1] and state.next_task == 3
    task, lanczos = next(entry for entry in state.slots if entry is not None)
    assert task == 2 and lanczos.steps == 3 and lanczos.phase is Phase.MULTIPLY
    finished = run_checkpointed(matrix, reopened, state=state, bases=bases)
    for d in range(3):
        assert np.array_equal(finished.finished[d].alpha, whole.finished[d].alpha)
        assert np.array_equal(finished.finished[d].beta, whole.finished[d].beta)
    assert len(finished.timings) == len(whole.timings) == finished.passes


def test_between_saves_a_resume_starts_from_the_last_ended_draw_with_the_same_bits(matrix, tmp_path):
    """Saved only when a draw ends (a cadence no run reaches), a loop stopped at pass 11
    resumes from pass 8, where draws 0 and 1 ended, computes passes 9-11 again and ends
    with the undisturbed run's bits."""
    undisturbed = Checkpoint(tmp_path / "whole")
    undisturbed.begin(IDENTITY, GROUPS)
    whole = run_checkpointed(matrix, undisturbed)
    checkpoint = Checkpoint(tmp_path / "cut")
    checkpoint.begin(IDENTITY, GROUPS)
    assert run_checkpointed(matrix, checkpoint, stop_after=11, every_s=1e9) is None
    reopened = Checkpoint(tmp_path / "cut")
    state, bases, _ = reopened.load(IDENTITY, [60, 60, 60])
    assert state.passes == 8 and sorted(state.finished) == [0, 1]
    finished = run_checkpointed(matrix, reopened, state=state, bases=bases, every_s=1e9)
    for d in range(3):
        assert np.array_equal(finished.finished[d].alpha, whole.finished[d].alpha)
        assert np.array_equal(finished.finished[d].beta, whole.finished[d].beta)


def test_the_cadence_saves_when_a_draw_ended_or_its_seconds_passed():
    now, saved = [0.0], []
    cadence = SaveCadence(lambda state: saved.append(state.passes), 5.0, clock=lambda: now[0])
    state = LoopState.empty(2)
    for passes, seconds, ended in [(1, 1.0, 0), (2, 2.0, 0), (3, 3.0, 1), (4, 4.0, 1), (5, 8.1, 1), (6, 9.0, 1), (7, 9.5, 2)]:
        now[0], state.passes = seconds, passes
        state.finished.update({d: None for d in range(ended)})
        cadence(state)
    assert saved == [1, 3, 5, 7], "the first pass, a draw ended (3, 7), 5 s after the last save (5)"


def test_another_configuration_is_refused_naming_what_differs(matrix, tmp_path):
    checkpoint = Checkpoint(tmp_path)
    checkpoint.begin(IDENTITY, GROUPS)
    run_checkpointed(matrix, checkpoint, stop_after=2)
    with pytest.raises(CheckpointError, match=r"different configuration \(seed: checkpoint 4, now 5\)"):
        checkpoint.load(dict(IDENTITY, seed=5), [60] * 3)


def test_a_run_that_never_finished_a_pass_leaves_no_checkpoint(tmp_path):
    checkpoint = Checkpoint(tmp_path)
    checkpoint.begin(IDENTITY, GROUPS)
    assert not checkpoint.exists(), "config.json alone: a failed start, nothing to resume"


def test_timing_rows_of_an_older_checkpoint_gain_the_new_columns_as_zeros():
    """A checkpoint written before the sharded pass's columns resumes into one table."""
    old = np.arange(24, dtype=np.float64).reshape(2, 12)
    rows = widened(old)
    assert np.array_equal(np.array(rows)[:, :12], old) and np.all(np.array(rows)[:, 12:] == 0)
    assert len(rows[0]) == len(TIMING_COLUMNS) and widened(np.zeros((0, 12))) == []
    with pytest.raises(ValueError, match="more than the"):
        widened(np.zeros((1, len(TIMING_COLUMNS) + 1)))


def test_a_damaged_state_is_named(matrix, tmp_path):
    checkpoint = Checkpoint(tmp_path)
    checkpoint.begin(IDENTITY, GROUPS)
    run_checkpointed(matrix, checkpoint, stop_after=2)
    (tmp_path / "state.npz").write_bytes(b"garbage" * 50)
    with pytest.raises(CheckpointError, match=rf"cannot read checkpoint in {tmp_path}: .*state.npz") as info:
        Checkpoint(tmp_path).load(IDENTITY, [60] * 3)
    assert info.value.__cause__ is not None, "the cause is kept for --debug"


def test_a_truncated_basis_is_refused_before_it_is_mapped(matrix, tmp_path):
    checkpoint = Checkpoint(tmp_path)
    checkpoint.begin(IDENTITY, GROUPS)
    run_checkpointed(matrix, checkpoint, stop_after=2)
    basis = tmp_path / "basis_1.npy"
    basis.write_bytes(basis.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"basis_1.npy is truncated"):
        Checkpoint(tmp_path).load(IDENTITY, [60] * 3)


def test_a_missing_file_is_an_incomplete_checkpoint(matrix, tmp_path):
    checkpoint = Checkpoint(tmp_path)
    checkpoint.begin(IDENTITY, GROUPS)
    run_checkpointed(matrix, checkpoint, stop_after=2)
    (tmp_path / "pending.npy").unlink()
    with pytest.raises(CheckpointError, match=r"is incomplete: .*pending.npy"):
        Checkpoint(tmp_path).load(IDENTITY, [60] * 3)


def test_best_ritz_pairs_round_trip_per_part(tmp_path):
    checkpoint = Checkpoint(tmp_path)
    checkpoint.begin(IDENTITY, GROUPS)
    pairs = RitzPairs(np.array([2.0, 1.5]), np.eye(2, 60), np.array([1e-9, 1e-6]))
    checkpoint.save_eigenvectors({"": pairs, "blocks/a": None})
    loaded = checkpoint.load_eigenvectors()
    assert set(loaded) == {""}
    assert np.array_equal(loaded[""].vectors, pairs.vectors) and np.array_equal(loaded[""].residuals, pairs.residuals)
