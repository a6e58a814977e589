"""The run's plan, before any worker starts (pure; the problem is built in this process)."""

from __future__ import annotations

import pytest

import raylanczos as rl
from raylanczos.config import OptionError, ScalingConfig, SpectrumConfig
from raylanczos.examples import digits
from raylanczos.run.plan import chosen_shard_plan, config_record, plan_run, run_identity


@pytest.fixture(scope="module")
def tiny():
    return digits.tiny_problem()


def test_a_whole_model_plan_has_one_part_and_a_task_per_draw(tiny):
    plan = plan_run(tiny, SpectrumConfig(order=20, draws=3), ScalingConfig())
    (part,) = plan.parts
    assert part.name == "" and part.dim == 310 and part.indices is None and part.layout.num_params == 310
    assert [(task.index, task.draw, task.block) for task in plan.tasks] == [(0, 0, ""), (1, 1, ""), (2, 2, "")]
    assert plan.block_size == 3, "the default B, clamped to the draws"
    assert (plan.basis_rows, plan.basis_dim, plan.basis_bytes) == (21, 310, 21 * 310 * 8)


def test_blocks_get_their_own_layout_and_tasks_part_by_part(tiny):
    plan = plan_run(tiny, SpectrumConfig(order=300, draws=2, blocks=("*/w", "1/b")), ScalingConfig())
    assert [(p.name, p.dim, p.path) for p in plan.parts] == [("all_w", 296, "blocks/all_w"), ("1_b", 10, "blocks/1_b")]
    assert plan.parts[0].layout.to_json() == [
        {"name": "0/w", "shape": [64, 4], "offset": 0, "size": 256},
        {"name": "1/w", "shape": [4, 10], "offset": 256, "size": 40},
    ]
    assert [task.block for task in plan.tasks] == ["all_w", "all_w", "1_b", "1_b"]
    assert plan.part_order(plan.parts[1]) == 10 and plan.basis_dim == 296


def test_the_default_draws_per_pass_fit_the_basis_budget(tiny):
    one_basis = 91 * 310 * 8
    plan = plan_run(tiny, SpectrumConfig(order=90, draws=10), ScalingConfig(basis_memory_gb=2.5 * one_basis / 1e9))
    assert plan.block_size == 2
    given = plan_run(tiny, SpectrumConfig(order=90, draws=10, draws_per_pass=5), ScalingConfig(basis_memory_gb=0.0))
    assert given.block_size == 5, "a B the caller chose is kept"


def test_the_shard_plan_is_the_callers_or_none_for_the_default_layout(tiny):
    assert chosen_shard_plan(ScalingConfig(), tiny) is None
    assert chosen_shard_plan(ScalingConfig(num_workers=3), tiny).num_workers == 3
    with pytest.raises(OptionError, match="num_workers 2 does not match the shard plan's 3 workers"):
        chosen_shard_plan(ScalingConfig(num_workers=2, shards=rl.ShardPlan.balanced(1797, 3)), tiny)


def test_the_identity_holds_what_determines_the_numbers(tiny):
    config = SpectrumConfig(order=20, draws=3, seed=4)
    plan = plan_run(tiny, config, ScalingConfig())
    shards = rl.ShardPlan.balanced(1797, 2)
    record = config_record("raylanczos.examples.digits:tiny_problem", None, config, plan, shards)
    identity = run_identity(record, config, ScalingConfig(reduce="flat"))
    assert identity["seed"] == 4 and identity["draws_per_pass"] == 3 and identity["reduce"] == "flat"
    assert identity["shard_plan"] == shards.to_json() and "lanczos" in identity
    other = run_identity(record, SpectrumConfig(order=20, draws=3, seed=4), ScalingConfig())
    assert other != identity, "another reduction is another run"


def test_deflation_with_a_sharded_state_is_refused_naming_both(tiny):
    with pytest.raises(OptionError, match=r"deflate needs the driver's state \(--state driver\)"):
        plan_run(tiny, SpectrumConfig(order=20, draws=2, deflate=2), ScalingConfig(state="sharded"))
