"""The JAX product forms: each against the dense float64 matrices, the auto choice by a
timer passed in, and the form in the run's identity and its resume."""

from __future__ import annotations

import types

import numpy as np
import pytest

from raylanczos.backends import make_backend
from raylanczos.backends.base import FORM_REPEATS, FormTimer
from raylanczos.choices import JAX_PRODUCT_FORMS
from raylanczos.config import OptionError, ScalingConfig, SpectrumConfig
from raylanczos.distributed.policy import (
    FORM_MARGIN,
    FORM_MIN_SECONDS,
    fastest_product_form,
    measures_product_forms,
    times_other_forms,
)
from raylanczos.distributed.workers import product_form_line
from raylanczos.examples import digits
from raylanczos.operators.shard_worker import ShardWorker
from raylanczos.outputs.record import ConfigRecord
from raylanczos.problem.data import ShardPlan
from raylanczos.run.checkpoint import Checkpoint
from raylanczos.run.plan import plan_run, resumed_product_form
from tests.hessians import tiny_ggn, tiny_hessian

DENSE = {"hessian": tiny_hessian, "ggn": tiny_ggn}


@pytest.fixture(scope="module", params=["hessian", "ggn"])
def float64_backend(request):
    """The tiny MLP's float64 backend over the whole data (8 batches, a ragged last one), and its dense matrix."""
    problem = digits.tiny_problem()
    arrays = problem.data.read(ShardPlan.balanced(problem.num_examples, 1).shards[0])
    return make_backend(problem, arrays, compute_dtype="float64", operator=request.param), DENSE[request.param]()


@pytest.mark.parametrize("form", JAX_PRODUCT_FORMS)
@pytest.mark.parametrize("block_size", [pytest.param(1, marks=pytest.mark.slow), 3])
def test_each_form_agrees_with_the_dense_matrix(float64_backend, form, block_size):
    backend, dense = float64_backend
    vectors = np.random.default_rng(5).standard_normal((block_size, backend.num_params))
    backend.use_product_form(form)
    products, examples = backend.product_sum(vectors)
    want = examples * vectors @ dense
    assert backend.product_form == form
    assert np.linalg.norm(products - want) / np.linalg.norm(want) < 1e-12


def test_the_default_form_is_jvp_grad_and_switching_back_gives_its_bits():
    """float32: jvp-grad is the default; a block in another form and back in jvp-grad is the
    first block's bits (the programs are kept per form)."""
    problem = digits.tiny_problem()
    backend = make_backend(problem, problem.data.read(ShardPlan.balanced(problem.num_examples, 1).shards[0]))
    vectors = np.random.default_rng(2).standard_normal((2, backend.num_params))
    assert backend.product_form == "jvp-grad"
    first = backend.product_sum(vectors)[0]
    backend.use_product_form("map")
    backend.product_sum(vectors)
    backend.use_product_form("jvp-grad")
    assert np.array_equal(backend.product_sum(vectors)[0], first)
    with pytest.raises(ValueError, match="product_form must be one of"):
        backend.use_product_form("auto")


@pytest.fixture(scope="module")
def worker() -> ShardWorker:
    problem = digits.tiny_problem()
    return ShardWorker(problem, ShardPlan.balanced(problem.num_examples, 1).shards[0])


@pytest.mark.parametrize("times, chosen", [((2.0, 1.0, 3.0), "linearize"), ((1.0, 2.0, 3.0), "jvp-grad"), ((2.0, 2.0, 1.5), "map")])
def test_the_auto_choice_takes_the_form_the_timer_finds_fastest(worker, times, chosen):
    """A worker times each form with the timer it is given (each ``run`` computes the block);
    the fastest is chosen."""
    fake = dict(zip(JAX_PRODUCT_FORMS, times))
    computed = []

    def timer(form, run):
        computed.append(run().shape)
        return fake[form]

    measured, error = worker.time_product_forms(3, timer)
    assert error == "" and measured == fake and computed == [(3, worker.backend.num_params)] * len(JAX_PRODUCT_FORMS)
    assert fastest_product_form([measured]) == (chosen, fake)
    assert worker.backend.product_form == "jvp-grad", "timing keeps the form in use"


def test_the_default_timer_compiles_then_takes_a_median_and_gives_up_on_a_slow_form():
    calls = []
    timer = FormTimer()
    assert timer("jvp-grad", lambda: calls.append("jvp-grad")) == timer.fastest > 0
    timer.fastest = 0.0  # every call is slower than that
    timer("map", lambda: calls.append("map"))
    assert calls == ["jvp-grad"] * (1 + FORM_REPEATS) + ["map"] * 2, "map: compiled, timed once, given up"


def test_the_choice_is_the_form_whose_slowest_worker_is_fastest():
    times = [{"jvp-grad": 1.0, "linearize": 3.0}, {"jvp-grad": 2.0, "linearize": 1.5}]
    assert fastest_product_form(times) == ("jvp-grad", {"jvp-grad": 2.0, "linearize": 3.0})
    assert fastest_product_form([{"jvp-grad": 1.0, "map": 1.0}])[0] == "jvp-grad", "a tie keeps the default"
    assert fastest_product_form([{"jvp-grad": 1.0, "map": 0.9}])[0] == "jvp-grad", "10% is within the margin"
    assert fastest_product_form([{"jvp-grad": 1.0, "map": 1.0 / FORM_MARGIN}])[0] == "map"
    short = FORM_MIN_SECONDS / 2
    assert fastest_product_form([{"jvp-grad": short, "map": short / 10}])[0] == "jvp-grad", "too short to choose by"
    assert fastest_product_form([{}, {}]) == (None, {}), "Keras has no forms"


def test_a_second_round_times_the_other_forms_and_keeps_the_first(worker):
    first, error = worker.time_default_product_form(3)
    assert error == "" and list(first) == ["jvp-grad"]
    every, error = worker.time_other_product_forms(3)
    assert error == "" and list(every) == list(JAX_PRODUCT_FORMS) and every["jvp-grad"] == first["jvp-grad"]


def test_the_other_forms_are_timed_only_when_the_default_block_is_long_enough():
    short, long = FORM_MIN_SECONDS / 2, FORM_MIN_SECONDS
    assert not times_other_forms([{"jvp-grad": short}, {"jvp-grad": short}])
    assert times_other_forms([{"jvp-grad": short}, {"jvp-grad": long}]), "the slowest worker decides"
    assert not times_other_forms([{}, {}]), "Keras has no forms"


def test_auto_measures_only_with_several_draws_per_pass():
    assert measures_product_forms("auto", 2)
    assert not measures_product_forms("auto", 1), "B = 1 keeps jvp-grad's plain product, unmeasured"
    assert not measures_product_forms("linearize", 4)
    assert product_form_line("map", {"jvp-grad": 0.0612, "map": 0.0431}, 4) == (
        "product form map (jvp-grad 0.0612 s, map 0.0431 s per block of 4 on the first batch, the slowest worker's)"
    )
    assert product_form_line("jvp-grad", {}, 1) == "product form jvp-grad (not measured: one draw per pass)"


def test_the_identity_includes_the_form():
    record = ConfigRecord(problem="p", order=10, product_form="linearize")
    assert record.identity()["product_form"] == "linearize"
    assert record.to_json()["product_form"] == "linearize"
    assert ConfigRecord.from_json(record.to_json()).product_form == "linearize"
    assert "product_form" not in ConfigRecord(problem="p", order=10, product_form="jvp-grad").identity(), (
        "jvp-grad, the form before the choice, is left out: older checkpoints resume"
    )


def test_a_resume_computes_in_the_checkpoints_form_and_refuses_another(tmp_path):
    checkpoint = Checkpoint(tmp_path / "checkpoint")
    checkpoint.begin(ConfigRecord(problem="p", product_form="map").identity(), [[0]])
    assert resumed_product_form(checkpoint.product_form(), "auto", "jax") == "map", "the recorded form, not a new measurement"
    assert resumed_product_form(checkpoint.product_form(), "map", "jax") == "map"
    with pytest.raises(OptionError, match="product_form linearize differs from the form the checkpointed run computed in, map"):
        resumed_product_form(checkpoint.product_form(), "linearize", "jax")
    checkpoint.begin(ConfigRecord(problem="p", product_form="jvp-grad").identity(), [[0]])
    assert resumed_product_form(checkpoint.product_form(), "auto", "jax") == "jvp-grad"
    with pytest.raises(OptionError, match="product_form map differs .* jvp-grad"):
        resumed_product_form(checkpoint.product_form(), "map", "jax")


def test_a_forced_form_is_refused_for_a_keras_problem():
    keras_like = types.SimpleNamespace(backend="keras", check_devices=lambda devices: None)
    with pytest.raises(OptionError, match="product_form linearize is a JAX form: a keras problem computes its products one way"):
        plan_run(keras_like, SpectrumConfig(), ScalingConfig(product_form="linearize"))
    with pytest.raises(OptionError, match="product_form must be one of 'auto', 'jvp-grad', 'linearize', 'map', got 'fast'"):
        ScalingConfig(product_form="fast")
