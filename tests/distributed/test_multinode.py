"""Several nodes on one machine: workers spread over nodes, shards pinned, same numbers."""

from __future__ import annotations

import time

import numpy as np
import pytest

import raylanczos as rl

pytestmark = pytest.mark.slow

TINY = "raylanczos.examples.digits:tiny_problem"
OPTIONS = dict(order=8, draws=1, compute_dtype="float64", num_workers=2)


@pytest.fixture
def two_gpu_nodes(ray_cluster):
    """Two extra nodes, each with one ``fake_gpu`` (a GPU stand-in) and its own ``pin_<i>``."""
    nodes = [ray_cluster.add_node(num_cpus=1, resources={"fake_gpu": 1, f"pin_{i}": 1}) for i in range(2)]
    ray_cluster.wait_for_nodes()
    yield [node.node_id for node in nodes]
    for node in nodes:
        ray_cluster.remove_node(node)


def test_workers_spread_over_nodes_and_match_one_node(ray_cluster, two_gpu_nodes):
    one_node = rl.hessian_spectrum(TINY, worker_resources={"num_cpus": 0.5}, **OPTIONS)
    spread = rl.hessian_spectrum(TINY, worker_resources={"num_cpus": 0.5, "resources": {"fake_gpu": 1}}, **OPTIONS)
    assert sorted(w["node_id"] for w in spread.summary["workers"]) == sorted(two_gpu_nodes)
    assert np.array_equal(spread.tridiagonals, one_node.tridiagonals)

    plan = rl.ShardPlan.balanced(1797, 2)
    pinned_plan = rl.ShardPlan(tuple(rl.Shard(s.worker, s.rows, resources=((f"pin_{1 - s.worker}", 0.5),)) for s in plan.shards))
    pinned = rl.hessian_spectrum(TINY, worker_resources={"num_cpus": 0.5}, shards=pinned_plan, **OPTIONS)
    assert [w["node_id"] for w in pinned.summary["workers"]] == two_gpu_nodes[::-1]
    assert pinned.summary["workers"][0]["shard"]["resources"] == {"pin_1": 0.5}
    assert np.array_equal(pinned.tridiagonals, one_node.tridiagonals)


def test_unplaceable_workers_are_refused_at_once(ray_cluster):
    """A cluster without what the workers need: refused naming the ask and what the cluster
    has, before any placement wait (the run's --timeout is an hour)."""
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"2 workers need 2 CPU, 2 no_such_accelerator in all, and the cluster has 2 CPU, 0 no_such_accelerator on 1 node"):
        rl.hessian_spectrum(TINY, worker_resources={"resources": {"no_such_accelerator": 1}}, **OPTIONS)
    assert time.monotonic() - started < 60, "refused without waiting for the placement"


def test_a_cluster_short_of_resources_is_given_the_placement_timeout(ray_cluster):
    """With a placement timeout (a cluster whose autoscaler may add nodes) the run waits that
    long for the resources, then fails naming what is still missing."""
    with pytest.raises(RuntimeError, match=r"could not place 2 workers within 2 s: 2 workers need .*2 no_such_accelerator"):
        rl.hessian_spectrum(TINY, worker_resources={"resources": {"no_such_accelerator": 1}}, placement_timeout=2, **OPTIONS)

