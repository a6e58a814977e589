"""Faults of a sharded run (``--state sharded``) at the command line, on three nodes.

The session's head is one node; nodes ``pair`` and ``solo`` are added, and the four
workers of the tiny MLP are pinned by their shards' resources: 0 and 2 on ``pair``, 1 on
``solo``, 3 on the head. The node groups are ``[[0, 2], [1], [3]]``, so one keeper sits
on each node: keeper 0 on ``pair``, keeper 1 on ``solo``, keeper 2 on the head. A
``raylanczos run`` process (:class:`tests.distributed.test_faults.Driver`) joins the
session's Ray; the test reads its progress lines and injects the fault after a chosen
pass. The tridiagonals must be the undisturbed sharded run's, bit for bit.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal

import numpy as np
import pytest

import raylanczos as rl
from raylanczos import cli
from tests.conftest import TINY, pair_and_solo
from tests.distributed.test_faults import Driver

pytestmark = pytest.mark.slow

EXAMPLES = 1797
PINS = [{"faults_pair": 1}, {"faults_solo": 1}, {"faults_pair": 1}, {"node:__internal_head__": 0.01}]
# 3 draws × 8 steps, 2 per pass: passes 1-8 hold draws 1 and 2, passes 9-16 draw 3.
ORDER, DRAWS, DRAWS_PER_PASS = "8", "3", "2"
#: Keeper 0's or 1's bytes: B = 2 bases of m + 1 = 9 rows, and 8·B work and pending vectors, of its 103 entries.
KEEPER_BYTES = (2 * 9 + 8 * 2) * 103 * 8


@pytest.fixture(scope="module")
def three_nodes(ray_cluster):
    """The head plus nodes ``pair`` and ``solo`` (by name); a test that replaces a node updates the mapping."""
    with pair_and_solo(ray_cluster, "faults") as nodes:
        yield nodes


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory):
    shards = rl.ShardPlan.balanced(EXAMPLES, 4).shards
    plan = rl.ShardPlan(tuple(rl.Shard(s.worker, s.rows, resources=tuple(PINS[s.worker].items())) for s in shards))
    path = tmp_path_factory.mktemp("sharded-faults") / "plan.json"
    path.write_text(json.dumps(plan.to_json()))
    return path


def run_args(cluster, plan, out, *extra: str) -> list[str]:
    return [
        "run", "--problem", TINY, "--order", ORDER, "--draws", DRAWS, "--draws-per-pass", DRAWS_PER_PASS,
        "--state", "sharded", "--shards", str(plan), "--cpus-per-worker", "0.25", "--timeout", "120",
        "--address", cluster.address, "--out", str(out), "--progress", "lines", "--checkpoint-every", "0", *extra,
    ]


@pytest.fixture(scope="module")
def undisturbed(ray_cluster, three_nodes, plan_file, tmp_path_factory) -> np.ndarray:
    """Tridiagonals of the same sharded run with no fault (in this process)."""
    out = tmp_path_factory.mktemp("sharded-faults") / "undisturbed"
    assert cli.main(run_args(ray_cluster, plan_file, out)) == 0
    keepers = json.loads((out / "summary.json").read_text())["keepers"]
    assert [k["node_id"] for k in keepers] == [
        three_nodes["pair"].node_id, three_nodes["solo"].node_id, ray_cluster.head_node.node_id
    ]
    return np.load(out / "tridiag.npy")


def test_a_killed_sharded_driver_resumes_bit_identically(ray_cluster, three_nodes, plan_file, undisturbed, tmp_path, capsys):
    """The driver is SIGKILLed mid-block (pass 5 of the first block); its keepers end with
    it. A copy of the run without keeper 1's files, and the run on a node without room for
    keeper 1's slice, are refused in one line each. ``--resume`` on a node with room starts
    new keepers, which read their slices back from the checkpoint's keeper directories, and
    the run ends with the undisturbed tridiagonals."""
    out = tmp_path / "run"
    driver = Driver(run_args(ray_cluster, plan_file, out))
    try:
        driver.read_until("pass 5 |")
        os.kill(driver.process.pid, signal.SIGKILL)
        assert driver.process.wait(timeout=60) == -signal.SIGKILL
    finally:
        if driver.process.poll() is None:
            driver.process.kill()
    assert sorted(p.name for p in (out / "checkpoint").glob("keeper_*")) == ["keeper_0", "keeper_1", "keeper_2"]

    # A copy whose slices do not match its checkpoint (keeper 1's files gone: an --out that
    # is not on a filesystem every node sees looks so from elsewhere) is refused on the
    # driver, before any worker starts.
    damaged = tmp_path / "damaged"
    shutil.copytree(out, damaged)
    shutil.rmtree(damaged / "checkpoint" / "keeper_1")
    capsys.readouterr()
    assert cli.main(run_args(ray_cluster, plan_file, damaged, "--resume")) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith(
        f"raylanczos: error: checkpoint in {damaged / 'checkpoint'} is incomplete: [Errno 2] No such file or directory: "
        f"'{damaged / 'checkpoint' / 'keeper_1' / 'basis_0.npy'}'"
    ), err
    assert "worker 0: " not in err and "Traceback" not in err

    # Node ``solo`` (keeper 1) comes back without room for keeper 1's slice: one line.
    ray_cluster.remove_node(three_nodes.pop("solo"))
    three_nodes["solo"] = ray_cluster.add_node(num_cpus=1, memory=KEEPER_BYTES // 2, resources={"faults_solo": 1})
    assert cli.main(run_args(ray_cluster, plan_file, out, "--resume")) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == (
        f"raylanczos: error: keeper 1 needs {KEEPER_BYTES / 2**30:.3g} GiB for its slice of the bases, and node "
        f"{three_nodes['solo'].node_id[:12]} has {KEEPER_BYTES // 2 / 2**30:.3g} GiB of memory for Ray"
    ), err
    ray_cluster.remove_node(three_nodes.pop("solo"))
    three_nodes["solo"] = ray_cluster.add_node(num_cpus=1, resources={"faults_solo": 1})
    ray_cluster.wait_for_nodes()

    assert cli.main(run_args(ray_cluster, plan_file, out, "--resume")) == 0
    assert "resuming: 0 draw(s) finished, 2 in progress" in capsys.readouterr().err
    assert np.array_equal(np.load(out / "tridiag.npy"), undisturbed)


def test_a_lost_keeper_node_is_replaced_in_process_bit_identically(ray_cluster, three_nodes, plan_file, undisturbed, tmp_path):
    """Node ``pair`` (keeper 0, workers 0 and 2) is lost while the driver is held after
    pass 3, and a new node with its resources joins. Ray restarts workers 0 and 2 there;
    keeper 0's slices since the last checkpoint went with it, so every keeper starts again
    from the checkpoint, keeper 0 on the new node, where it reads the lost keeper's slices
    back from the checkpoint's directory. The run goes on in its process and ends with
    the undisturbed tridiagonals."""
    out = tmp_path / "run"
    driver = Driver(run_args(ray_cluster, plan_file, out))
    try:
        driver.read_until("pass 3 |")
        with driver.held():
            lost = three_nodes.pop("pair")
            ray_cluster.remove_node(lost)
            three_nodes["pair"] = ray_cluster.add_node(num_cpus=1, resources={"faults_pair": 2})
        assert driver.finish() == 0, driver.log
    finally:
        if driver.process.poll() is None:
            driver.process.kill()
    assert re.search(
        rf"keeper 0 \(slice \[0, 103\), node {lost.node_id[:12]}\) was lost: its node was lost; new keepers read the "
        r"slices of pass \d+ back from the checkpoint, and the passes since are computed again \(1 of at most 3",
        driver.log,
    ), driver.log
    assert "Traceback" not in driver.log
    assert np.array_equal(np.load(out / "tridiag.npy"), undisturbed)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["keepers"][0]["node_id"] == three_nodes["pair"].node_id
    assert [w["restarted"] for w in summary["workers"]] == [True, False, True, False]
