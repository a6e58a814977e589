"""Drawing until a target width, without Ray: the rule, the gate, and the loop with the gate
over dense matrices (the draws are the fixed run's, and a resumed run stops at the same place)."""

from __future__ import annotations

import numpy as np
import pytest

import raylanczos as rl
from raylanczos.numerics.basis import BasisSweeps, allocate_basis
from raylanczos.numerics.certificate import WidthCheck, sampling_half_width, width_check
from raylanczos.numerics.lanczos import lanczos
from raylanczos.operators.contract import InProcessOperator
from raylanczos.outputs.record import ConfigRecord
from raylanczos.outputs.render import draws_phrase
from raylanczos.run.loop import DrawTask, LoopHooks, SpectrumLoop
from raylanczos.run.target import TargetGate, stop_reason, stopping_record
from tests.matrices import matrix_with_spectrum
from tests.run.test_loop import Dense, copy_state

N = 200


@pytest.fixture(scope="module")
def positive():
    """A 200 × 200 matrix with eigenvalues in [1, 2]: its trace is well determined (relative
    standard error about 0.02/√D), so the band's ε ≈ 0.21/√D decides when a target is met."""
    rng = np.random.default_rng(8)
    return matrix_with_spectrum(rng.uniform(1.0, 2.0, N), rng)


def first_draws(matrix, draws, seed=3):
    runs = [lanczos(matrix, order=6, seed=seed, draw=d) for d in range(draws)]
    return np.array([r.alpha[0] for r in runs]), np.array([r.beta[0] for r in runs])


# ------------------------------------------------------------------ the rule


def test_the_rule_needs_both_figures_and_two_draws(positive):
    alphas, betas = first_draws(positive, 6)
    check = width_check(alphas[:4], betas[:4], N, 0.12)
    assert check.draws == 4 and check.sampling_half_width == sampling_half_width(N, 4)
    trace = N * alphas[:4].mean()
    assert check.trace_relative_std_error == pytest.approx(rl.numerics.spectrum.trace_std_error(betas[:4], N) / trace)
    assert check.sampling_half_width <= 0.12 and check.trace_relative_std_error <= 0.12 and check.met
    assert not width_check(alphas[:3], betas[:3], N, 0.12).met, "ε(3) = 0.122 > 0.12"
    assert not width_check(alphas[:1], betas[:1], N, 0.9).met, "one draw: no standard error to trust"
    assert not WidthCheck(0.1, 8, 0.05, 0.2).met, "the trace's relative error is over"
    assert width_check(np.array([1.0, -1.0]), np.array([0.1, 0.1]), N, 0.5).trace_relative_std_error == np.inf


def test_the_stop_reason_says_what_was_too_wide():
    assert stop_reason(WidthCheck(0.02, 6, 0.015, 0.01), 16) == "target width 0.02 reached after 6 draws"
    assert stop_reason(WidthCheck(0.02, 16, 0.031, 0.01), 16) == "maximum of 16 draws reached; sampling half-width 0.031 > 0.02"
    assert stop_reason(WidthCheck(0.02, 16, 0.031, 0.25), 16) == (
        "maximum of 16 draws reached; sampling half-width 0.031 > 0.02, trace relative standard error 0.25 > 0.02"
    )


# ------------------------------------------------------------------ the gate


def test_the_gate_checks_each_round_once_its_draws_have_ended():
    """B = 2, two parts of 6 draws (tasks 0–5 and 6–11): draws inside a round start at once;
    the round at d = 2 waits for draws 0 and 1; a met target skips to the next part."""
    tasks = [DrawTask(p * 6 + d, name, d, 10_000) for p, name in enumerate(("a", "b")) for d in range(6)]
    gate = TargetGate(tasks, 2, 0.1, "gaussian")
    steady = (1.0, 1e-3)  # α₀ = 1 every draw, β₁ tiny: the trace is nearly exact, ε(10⁴, 2) = 0.025
    assert gate(0, {}) == 0 and gate(1, {}) == 1
    assert gate(2, {0: steady}) is None, "draw 1 has not ended"
    assert gate(2, {0: steady, 1: steady}) == 6, "met after 2 draws: part b's first draw next"
    noisy = {0: (1.0, 30.0), 1: (1.0, 30.0)}
    assert gate(2, noisy) == 2, "the trace's relative error is √(2·10⁴·30²/2)/10⁴ = 0.3 > 0.1: the next round"
    assert gate(10, {6: steady, 7: steady, 8: steady, 9: steady}) == 12, "the last part's stop: no task left"
    assert gate(7, {}) == 7


# ------------------------------------------------------------------ the loop with the gate


def run_gated(matrix, tasks, block, target, *, state=None, bases=None, hooks=None):
    operator = InProcessOperator(Dense(matrix), block)
    bases = bases or [allocate_basis(7, N) for _ in range(block)]
    gate = TargetGate(tasks, block, target, "gaussian") if target is not None else None
    with BasisSweeps() as sweeps:
        loop = SpectrumLoop(operator, tasks, 6, bases, seed=3, distribution="gaussian", sweeps=sweeps, hooks=hooks or LoopHooks(), gate=gate)
        return loop.run(state)


def whole_tasks(draws, name=""):
    return [DrawTask(d, name, d, N) for d in range(draws)]


@pytest.mark.parametrize("block, stopped", [(2, 4), (3, 6)])
def test_a_gated_run_stops_with_the_draws_of_a_fixed_run(positive, block, stopped):
    """Target 0.12 needs ε ≤ 0.12, 4 draws here: B = 2 stops after its second round (4
    draws), B = 3 after its second (6); each draw is bit for bit the fixed run's."""
    state = run_gated(positive, whole_tasks(16), block, 0.12)
    assert sorted(state.finished) == list(range(stopped)) and state.next_task == 16
    fixed = run_gated(positive, whole_tasks(stopped), block, None)
    for d in range(stopped):
        assert np.array_equal(state.finished[d].alpha, fixed.finished[d].alpha)
        assert np.array_equal(state.finished[d].beta, fixed.finished[d].beta)
    record = stopping_record([state.finished[d] for d in range(stopped)], N, 16, 0.12, "gaussian", 1)
    assert record.reached and record.reason == f"target width 0.12 reached after {stopped} draws"


def test_each_part_stops_on_its_own_and_the_last_at_its_maximum(positive):
    """Part a (n = 200) meets 0.12 after 4 draws; part b (the first 50 coordinates) would
    need 11 for ε ≤ 0.12 and stops at its maximum of 8, saying so."""
    block = np.arange(50)
    tasks = whole_tasks(8, "a") + [DrawTask(8 + d, "b", d, 50, block) for d in range(8)]
    state = run_gated(positive, tasks, 2, 0.12)
    assert sorted(state.finished) == [0, 1, 2, 3, *range(8, 16)]
    record = stopping_record([state.finished[t] for t in range(8, 16)], 50, 8, 0.12, "gaussian", 1)
    assert not record.reached and record.draws == 8
    assert record.reason == f"maximum of 8 draws reached; sampling half-width {sampling_half_width(50, 8):.2g} > 0.12"


def test_a_gated_run_resumed_from_any_pass_stops_at_the_same_draw(positive):
    """Stopped after pass 5 (first round), 6 (its last pass: the check's), 9 and 12 (the
    second round's end, after which the target is met): the resumed run ends with the
    undisturbed one's draws and bits."""
    whole = run_gated(positive, whole_tasks(16), 2, 0.12)

    class Stop(Exception):
        pass

    for stop_at in (5, 6, 9, 12):
        saved = {}

        def checkpoint(state, stop_at=stop_at, saved=saved):
            if state.passes == stop_at:
                saved["state"] = copy_state(state)
                raise Stop

        bases = [allocate_basis(7, N) for _ in range(2)]
        with pytest.raises(Stop):
            run_gated(positive, whole_tasks(16), 2, 0.12, bases=bases, hooks=LoopHooks(checkpoint=checkpoint))
        resumed = run_gated(positive, whole_tasks(16), 2, 0.12, state=saved["state"], bases=bases)
        assert sorted(resumed.finished) == sorted(whole.finished), stop_at
        for d in whole.finished:
            assert np.array_equal(resumed.finished[d].alpha, whole.finished[d].alpha), (stop_at, d)
        assert resumed.passes == whole.passes == 12


# ------------------------------------------------------------------ the option


def test_a_target_width_is_a_fraction_of_a_run_with_a_band():
    assert rl.SpectrumConfig(target_width=0.05, draws=16).target_width == 0.05
    assert draws_phrase(ConfigRecord("p", draws=16, target_width=0.05)) == "up to 16 draws (target width 0.05)"
    assert draws_phrase(ConfigRecord("p", draws=1)) == "1 draw"
    with pytest.raises(rl.OptionError, match="target_width must be below 1"):
        rl.SpectrumConfig(target_width=1.5)
    with pytest.raises(rl.OptionError, match="target_width must be a number > 0, got -0.1"):
        rl.SpectrumConfig(target_width=-0.1)
    with pytest.raises(rl.OptionError, match="is checked from 2 draws on"):
        rl.SpectrumConfig(target_width=0.1, draws=1)
    with pytest.raises(rl.OptionError, match="which a deflated run"):
        rl.SpectrumConfig(target_width=0.1, deflate=3)
