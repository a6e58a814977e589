"""The node reduction on three nodes: 2 workers on one node, 1 on each of the other two.

The session's head is one node; two nodes are added, and every worker is pinned by its
shard's resources: workers 0 and 2 on node ``pair``, worker 1 on node ``solo``, worker 3
on the head. Their node groups are ``[[0, 2], [1], [3]]``, so three partials per pass
reach the driver against four with the flat reduction.

The problem is the 2,410-parameter digits MLP with B = 6 draws per pass: one partial is
6 · 2410 · 8 = 115,680 bytes, above the 100 KiB under which Ray returns a task's result
inline to the caller, so partials stay in their node's object store and a node group's
first worker reads its member's partial there, as at scale.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import raylanczos as rl
from raylanczos.examples import digits
from raylanczos.operators.contract import TIMING_COLUMNS
from raylanczos.operators.shard_worker import ShardWorker
from tests.conftest import pair_and_solo
from tests.distributed.test_faults import Driver

PROBLEM = "raylanczos.examples.digits:problem"
PARAMS, EXAMPLES = 2410, 1797
ORDER, DRAWS, B = 8, 6, 6
PARTIAL_BYTES = B * PARAMS * 8
GROUPS = [[0, 2], [1], [3]]
CPUS_PER_WORKER = 0.25
TIMEOUT_S = 300  # seconds for a worker to start or answer one pass: generous on a loaded 2-core machine


def test_a_node_of_one_worker_sums_nothing():
    """A group of one: its own partial is the node's sum, returned without a copy (0 s of node
    sum) and without Ray."""
    worker = ShardWorker(digits.tiny_problem(), rl.Shard(0, rows=((0, 1000),)), compute_dtype="float64")
    vectors = np.random.default_rng(0).standard_normal((2, worker.backend.num_params))
    own_info, own = worker.partial_products(vectors)
    info, total = worker.node_sum(vectors, lambda: [], 0)
    assert info.node_reduce_seconds == 0.0 and info.count == own_info.count == 1000 and not info.error
    assert np.array_equal(total, own)


def pinned_plan() -> rl.ShardPlan:
    """Four balanced row shards, pinned: 0 and 2 to ``reduction_pair``, 1 to
    ``reduction_solo``, 3 to the head."""
    pins = [{"reduction_pair": 1}, {"reduction_solo": 1}, {"reduction_pair": 1}, {"node:__internal_head__": 0.01}]
    shards = rl.ShardPlan.balanced(EXAMPLES, 4).shards
    return rl.ShardPlan(tuple(rl.Shard(s.worker, s.rows, resources=tuple(pins[s.worker].items())) for s in shards))


@pytest.fixture(scope="module")
def three_nodes(ray_cluster):
    """The head plus nodes ``pair`` and ``solo`` (by name); a test that replaces a node updates the mapping."""
    with pair_and_solo(ray_cluster, "reduction") as nodes:
        yield nodes


def run_reduced(reduce: str) -> rl.SpectrumResult:
    return rl.hessian_spectrum(
        PROBLEM, order=ORDER, draws=DRAWS, draws_per_pass=B, compute_dtype="float64", shards=pinned_plan(),
        worker_resources={"num_cpus": CPUS_PER_WORKER}, reduce=reduce, timeout=TIMEOUT_S, progress="none",
    )


def column(summary: dict, name: str) -> list[float]:
    return [row[TIMING_COLUMNS.index(name)] for row in summary["timings"]["rows"]]


@pytest.fixture(scope="module")
def node_run(three_nodes) -> rl.SpectrumResult:
    return run_reduced("node")


@pytest.mark.slow
def test_workers_are_placed_two_one_one(three_nodes, node_run):
    nodes = [w["node_id"] for w in node_run.summary["workers"]]
    assert nodes[0] == nodes[2] == three_nodes["pair"].node_id
    assert nodes[1] == three_nodes["solo"].node_id
    assert len(set(nodes)) == 3
    assert node_run.summary["reduce"] == {"mode": "node", "node_groups": GROUPS, "sums_on_driver": False, "shared_memory": False}


@pytest.mark.slow
def test_driver_receives_one_partial_per_node(node_run):
    """3 partials per pass (one per node) with the node reduction; 4 (one per worker) flat.
    The block goes out once per node either way (float64, as the workers compute in float64)."""
    assert len(node_run.summary["timings"]["rows"]) == ORDER
    assert column(node_run.summary, "bytes_received") == [3 * PARTIAL_BYTES] * ORDER
    assert column(node_run.summary, "bytes_sent") == [3 * PARTIAL_BYTES] * ORDER
    assert max(column(node_run.summary, "node_reduce")) > 0

    flat = run_reduced("flat")
    assert flat.summary["reduce"] == {"mode": "flat", "node_groups": GROUPS, "sums_on_driver": True, "shared_memory": False}
    assert column(flat.summary, "bytes_received") == [4 * PARTIAL_BYTES] * ORDER
    assert column(flat.summary, "bytes_sent") == [3 * PARTIAL_BYTES] * ORDER
    assert column(flat.summary, "node_reduce") == [0.0] * ORDER

    # Summed in another order, so equal to rounding: Ritz values within 1e-12·‖H‖.
    scale = np.nanmax(np.abs(flat.nodes))
    assert np.nanmax(np.abs(node_run.nodes - flat.nodes)) <= 1e-12 * scale
    assert np.allclose(node_run.weights, flat.weights, rtol=0, atol=1e-12)


@pytest.mark.slow
def test_lost_node_keeps_the_groups_and_the_bits(ray_cluster, three_nodes, node_run, tmp_path):
    """Node ``pair`` (group [0, 2]: its first worker and its member) is lost while the driver
    is held after pass 3. Two nodes join with room for one of those workers each, so they
    restart apart; the group stays [0, 2] (worker 0 now reads worker 2's partial from
    another node), three partials still reach the driver, the bits are the undisturbed
    run's (so a node-reduced run repeats its bits, a fault or not), and the block is
    counted once per node the workers now run on."""
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(pinned_plan().to_json()))
    driver = Driver([
        "run", "--problem", PROBLEM, "--order", str(ORDER), "--draws", str(DRAWS), "--draws-per-pass", str(B),
        "--float64", "--shards", str(plan), "--cpus-per-worker", str(CPUS_PER_WORKER), "--timeout", str(TIMEOUT_S),
        "--address", ray_cluster.address, "--out", str(tmp_path / "run"), "--progress", "lines",
    ])
    try:
        driver.read_until("pass 3 |")
        with driver.held():
            lost = three_nodes.pop("pair")
            ray_cluster.remove_node(lost)
            for name in ("pair_a", "pair_b"):
                three_nodes[name] = ray_cluster.add_node(num_cpus=1, resources={"reduction_pair": 1})
        assert driver.finish() == 0, driver.log
    finally:
        if driver.process.poll() is None:
            driver.process.kill()

    assert np.array_equal(np.load(tmp_path / "run" / "tridiag.npy"), node_run.tridiagonals)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    workers = summary["workers"]
    assert workers[0]["node_id"] == workers[2]["node_id"] == lost.node_id
    assert [w["restarted"] for w in workers] == [True, False, True, False]
    assert summary["reduce"] == {"mode": "node", "node_groups": GROUPS, "sums_on_driver": False, "shared_memory": False}
    assert column(summary, "bytes_received") == [3 * PARTIAL_BYTES] * ORDER
    # The block goes to the nodes the workers run on: three before the fault, four after.
    sent = column(summary, "bytes_sent")
    assert sent[:3] == [3 * PARTIAL_BYTES] * 3 and sent[-1] == 4 * PARTIAL_BYTES
