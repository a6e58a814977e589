"""The sharded Lanczos state on Ray: keepers on three nodes, workers 2/1/1.

The session's head is one node; nodes ``pair`` and ``solo`` are added, and the workers
are pinned by their shards' resources: 0 and 2 on ``pair``, 1 on ``solo``, 3 on the head,
so the node groups are ``[[0, 2], [1], [3]]`` and one keeper sits on each node. Both
states run over the same workers: with the driver's state the driver puts the block and
sums the node partials; with the sharded state the workers assemble the block from the
keepers' slices, and keeper i adds slice i of the node sums. The products are the same
bits either way (the same sums in the same order); the step's dot products are added per
keeper, so the Ritz values agree to rounding.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import raylanczos as rl
from raylanczos.distributed.hessian import DistributedHessian, SlicedHessian
from raylanczos.distributed.keepers import (
    KeeperActors,
    KeeperError,
    KeeperLost,
    keeper_bytes,
    keeper_nodes,
    room_shortfall,
)
from raylanczos.distributed.workers import WorkerGroup, WorkerOptions
from raylanczos.examples.digits_data import load_digits
from raylanczos.numerics.basis import BasisSweeps, allocate_basis
from raylanczos.numerics.sharded import SliceLayout
from raylanczos.numerics.spectrum import gauss_quadrature
from raylanczos.operators.contract import TIMING_COLUMNS
from raylanczos.run.checkpoint import Checkpoint
from raylanczos.run.loop import DrawTask, LoopHooks, LoopState, SpectrumLoop
from raylanczos.run.stores import KeeperStore
from tests.hessians import digits_hessian

PROBLEM = "tests.problems:digits_or_quadratic"
EXAMPLES = 1797
GROUPS = [[0, 2], [1], [3]]
DRAWS, B, SEED = 2, 2, 0
TIMEOUT_S = 300  # a worker's start or one pass, on a loaded 2-core machine
BUDGET = 64 * 1024  # the driver's bytes per pass, each way


def pinned_plan() -> rl.ShardPlan:
    pins = [{"sharded_pair": 1}, {"sharded_solo": 1}, {"sharded_pair": 1}, {"node:__internal_head__": 0.01}]
    shards = rl.ShardPlan.balanced(EXAMPLES, 4).shards
    return rl.ShardPlan(tuple(rl.Shard(s.worker, s.rows, resources=tuple(pins[s.worker].items())) for s in shards))


@pytest.fixture(scope="module")
def three_nodes(ray_cluster):
    nodes = {
        "pair": ray_cluster.add_node(num_cpus=1, resources={"sharded_pair": 2}),
        "solo": ray_cluster.add_node(num_cpus=1, resources={"sharded_solo": 1}),
    }
    ray_cluster.wait_for_nodes()
    yield nodes
    for node in nodes.values():
        ray_cluster.remove_node(node)


@pytest.fixture(scope="module")
def group(three_nodes):
    options = WorkerOptions(compute_dtype="float64", arguments={"kind": "digits"}, timeout=TIMEOUT_S)
    workers = WorkerGroup(PROBLEM, pinned_plan(), resources={"num_cpus": 0.25}, options=options, block_size=B)
    assert workers.node_groups() == GROUPS
    yield workers
    workers.shutdown()


def run_with_state(
    group: WorkerGroup, state: str, order: int, arguments: dict, *, checkpoint: Checkpoint | None = None,
    resumed: LoopState | None = None, stop_after: int | None = None,
) -> tuple:
    """D = 2 draws × ``order`` steps, B = 2 per pass, with the given state; (loop state, keepers' infos).

    Sharded: with ``checkpoint``, the keepers keep their files in its keeper directories
    (reopened to continue ``resumed``), and the loop saves after every pass, stopping (None
    returned) after ``stop_after``."""
    dim = group.infos[0]["num_params"]
    tasks = [DrawTask(d, "", d, dim) for d in range(DRAWS)]
    if state == "driver":
        operator = DistributedHessian(group, EXAMPLES, block_size=B, groups=GROUPS, arguments=arguments)
        bases = [allocate_basis(order + 1, dim) for _ in range(B)]
        loop = SpectrumLoop(operator, tasks, order, bases, seed=SEED, distribution="gaussian", sweeps=BasisSweeps())
        return loop.run(), None
    layout = SliceLayout.balanced(dim, len(GROUPS))
    directories = [checkpoint.keeper_directory(i) for i in range(layout.parts)] if checkpoint else None
    keepers = KeeperActors(
        keeper_nodes(group.infos, GROUPS), layout, B, order + 1, directories=directories, resume=resumed is not None,
        timeout=TIMEOUT_S,
    )
    try:
        operator = SlicedHessian(group, EXAMPLES, bounds=layout.bounds, block_size=B, groups=GROUPS, arguments=arguments)
        store = KeeperStore(
            keepers, dim, dtype=str(operator.broadcast_dtype), seed=SEED, distribution="gaussian",
            resume_half=checkpoint.pending_half if resumed is not None else None,
        )
        hooks = LoopHooks()
        if checkpoint is not None:
            checkpoint.keep_slices(store)

            def save(loop_state: LoopState) -> None:
                checkpoint.save(loop_state)
                if loop_state.passes == stop_after:
                    raise Stopped

            hooks = LoopHooks(checkpoint=save)
        loop = SpectrumLoop(operator, tasks, order, store, seed=SEED, distribution="gaussian", hooks=hooks)
        try:
            return loop.run(resumed), keepers.infos
        except Stopped:
            return None, keepers.infos
    finally:
        keepers.shutdown()


class Stopped(Exception):
    """The driver stops after a pass (its checkpoint written), as if killed there."""


def column(state, name: str) -> list[float]:
    return [row[TIMING_COLUMNS.index(name)] for row in state.timings]


def ritz(state, draw: int) -> np.ndarray:
    return gauss_quadrature(*state.finished[draw].tridiagonal())[0]


@pytest.mark.slow
def test_sharded_ritz_values_agree_with_driver_mode_on_the_digits_mlp(group, three_nodes):
    """Float64 products, order 60: each draw's Ritz values agree with the driver state's to
    1e-12·‖H‖, the extremes with the dense Hessian's to 1e-8·‖H‖, two sharded runs give
    the same bits, and one keeper sits on each node group's node."""
    arguments = {"kind": "digits"}
    driver, _ = run_with_state(group, "driver", 60, arguments)
    sharded, keepers = run_with_state(group, "sharded", 60, arguments)
    again, _ = run_with_state(group, "sharded", 60, arguments)
    assert [info["node_id"] for info in keepers] == [group.infos[g[0]]["node_id"] for g in GROUPS]
    assert keepers[0]["node_id"] == three_nodes["pair"].node_id and keepers[1]["node_id"] == three_nodes["solo"].node_id
    eigenvalues = np.linalg.eigvalsh(digits_hessian())
    norm = np.max(np.abs(eigenvalues))
    for draw in range(DRAWS):
        np.testing.assert_allclose(ritz(sharded, draw), ritz(driver, draw), rtol=0, atol=1e-12 * norm)
        assert np.array_equal(sharded.finished[draw].alpha, again.finished[draw].alpha)
        assert np.array_equal(sharded.finished[draw].beta, again.finished[draw].beta)
        assert sharded.finished[draw].orthogonality <= 1e-13
    nodes = np.concatenate([ritz(sharded, draw) for draw in range(DRAWS)])
    assert abs(nodes.max() - eigenvalues[-1]) <= 1e-8 * norm and abs(nodes.min() - eigenvalues[0]) <= 1e-8 * norm
    # The driver state receives three node partials of B·n·8 bytes per pass; the sharded one numbers.
    assert min(column(driver, "bytes_received")) == 3 * B * 2410 * 8
    assert max(column(sharded, "bytes_received")) <= BUDGET and max(column(sharded, "bytes_sent")) <= BUDGET


@pytest.mark.slow
def test_the_driver_moves_the_same_bytes_at_n_20000_and_1000000(group):
    """The quadratic of n parameters (Hessian c·diag(d), its outlier c·4): the driver's bytes
    per pass, sent and received, are the same figures at n = 20,000 and 1,000,000, under
    64 KiB, the largest Ritz value is the outlier, and every pass times the workers'
    all-gather and the keepers' reduce-scatter."""
    x, _ = load_digits()
    c = 1.0 + float(np.mean(x.mean(axis=1).astype(np.float32), dtype=np.float64))
    counted = {}
    for n in (20_000, 1_000_000):
        arguments = {"kind": "quadratic", "n": n}
        group.load_point(arguments, B)
        state, _ = run_with_state(group, "sharded", 8, arguments)
        counted[n] = (column(state, "bytes_sent"), column(state, "bytes_received"))
        assert min(column(state, "allgather")) > 0 and min(column(state, "scatter")) > 0, "the pass split is timed"
        nodes = np.concatenate([ritz(state, draw) for draw in range(DRAWS)])
        assert abs(nodes.max() - 4.0 * c) <= 1e-6 * c
    assert counted[20_000] == counted[1_000_000]
    assert max(counted[20_000][0]) <= BUDGET and max(counted[20_000][1]) <= BUDGET
    group.load_point({"kind": "digits"}, B)


@pytest.mark.slow
def test_keepers_on_ray_write_their_slices_and_a_resumed_run_repeats_the_bits(group, tmp_path):
    """Each keeper actor writes its own slices in its checkpoint directory after every pass;
    the driver stops after pass 7 (of 12), new keepers reopen the files, and the run ends
    with the undisturbed run's bits."""
    arguments = {"kind": "digits"}
    whole, _ = run_with_state(group, "sharded", 12, arguments)
    identity = {"problem": PROBLEM, "order": 12, "state": "sharded"}
    checkpoint = Checkpoint(tmp_path)
    bounds = SliceLayout.balanced(group.infos[0]["num_params"], len(GROUPS)).bounds
    checkpoint.begin(identity, GROUPS, slices=bounds)
    assert run_with_state(group, "sharded", 12, arguments, checkpoint=checkpoint, stop_after=7)[0] is None
    assert sorted(p.name for p in tmp_path.glob("keeper_*")) == ["keeper_0", "keeper_1", "keeper_2"]
    reopened = Checkpoint(tmp_path)
    reopened.check_slices(bounds)
    state, _, groups = reopened.load(identity, [2410] * DRAWS)
    assert state.passes == 7 and groups == GROUPS
    resumed, _ = run_with_state(group, "sharded", 12, arguments, checkpoint=reopened, resumed=state)
    for draw in range(DRAWS):
        assert np.array_equal(resumed.finished[draw].alpha, whole.finished[draw].alpha)
        assert np.array_equal(resumed.finished[draw].beta, whole.finished[draw].beta)


@pytest.mark.slow
def test_a_keeper_without_room_or_node_is_named(ray_cluster):
    """Checked before any keeper starts: a node that is not alive, a slice larger than its
    node's memory for Ray."""
    layout = SliceLayout.balanced(1000, 2)
    here = ray_cluster.head_node.node_id
    with pytest.raises(KeeperError, match=r"keeper 1 cannot be placed: node 0123456789ab is not alive"):
        KeeperActors([here, "0123456789abcdef"], layout, 2, 11)
    with pytest.raises(KeeperError, match=r"keeper 0 needs .* GiB for its slice of the bases, and node \w+ has .* GiB"):
        KeeperActors([here, here], SliceLayout.balanced(10**9, 2), 4, 10**3)


@pytest.mark.slow
def test_a_lost_keeper_is_named_and_points_to_resume(ray_cluster, tmp_path):
    """A keeper killed from outside: its next call, and the check after a worker's failure,
    end in the line of a lost worker; a group whose keepers all live passes the check."""
    import ray

    here = ray_cluster.head_node.node_id
    keepers = KeeperActors([here, here], SliceLayout.balanced(1000, 2), 2, 11, timeout=TIMEOUT_S)
    try:
        keepers.check_alive()
        assert keepers.threads == [2, 2], "one sweep thread per CPU of the head"
        ray.kill(keepers.actors[1], no_restart=True)
        lost = (
            r"^keeper 1 \(slice \[500, 1000\), node \w+\) was lost: it was killed with ray.kill, from outside the run; "
            r"run again \(--resume continues from the last checkpoint\)$"
        )
        with pytest.raises(KeeperLost, match=lost):
            keepers.check_alive()
        with pytest.raises(KeeperLost, match=lost):
            keepers.call("run", [])
    finally:
        keepers.shutdown()
    # A keeper that cannot open its files (a checkpoint this node does not see) names them.
    nowhere = tmp_path / "nowhere"
    with pytest.raises(KeeperError, match=rf"^keeper 0 \(slice \[0, 1000\), node \w+\) failed: FileNotFoundError: .*{nowhere}/basis_0.npy"):
        KeeperActors([here], SliceLayout.balanced(1000, 1), 2, 11, directories=[nowhere], resume=True, timeout=TIMEOUT_S)


def test_room_is_checked_per_keeper():
    needed = [keeper_bytes(SliceLayout((0, 10, 30)), i, 2, 5) for i in range(2)]
    per_entry = (2 * 5 + 2 * 2 * 2 + 4 * 2) * 8  # B bases of 5 rows, two halves of 2 vectors, 4 work vectors per slot
    assert needed == [per_entry * 10, per_entry * 20]
    assert room_shortfall(needed, ["a", "b"], {"a": 3000.0, "b": 5000.0}) == ""
    assert room_shortfall(needed, ["a", "b"], {"a": 3000.0, "b": 4000.0}).startswith("keeper 1 needs")


@pytest.mark.slow
def test_the_command_runs_blocks_ggn_and_sweeps_with_a_sharded_state(ray_session, tmp_path, capsys):
    """``--state sharded`` through the command line: a blocks run of the Gauss–Newton matrix
    gives driver mode's Ritz values (float64 products) and records its keepers; a sweep runs
    every point sharded."""
    from raylanczos import cli

    common = ["--problem", "raylanczos.examples.digits:tiny_problem", "--order", "20", "--draws", "2", "--float64",
              "--blocks", "*/w", "1/b", "--operator", "ggn", "--workers", "2", "--cpus-per-worker", "0.5", "--quiet"]
    for state in ("sharded", "driver"):
        assert cli.main(["run", *common, "--state", state, "--out", str(tmp_path / state)]) == 0
    for block in ("all_w", "1_b"):
        sharded = json.loads((tmp_path / "sharded" / "blocks" / block / "summary.json").read_text())
        driver = json.loads((tmp_path / "driver" / "blocks" / block / "summary.json").read_text())
        assert sharded["config"]["state"] == "sharded" and driver["config"]["state"] == "driver"
        slices = [k["slice"] for k in sharded["keepers"]]
        assert slices[0][0] == 0 and slices[-1][1] == 310 and "keepers" not in driver
        assert all(a[1] == b[0] for a, b in zip(slices, slices[1:])), "contiguous, one keeper per node"
        assert len(slices) == len(sharded["reduce"]["node_groups"])
        scale = abs(driver["lambda_max"])
        assert np.allclose(sharded["top_ritz_values"], driver["top_ritz_values"], rtol=0, atol=1e-12 * scale)
    sweep = ["run", "--problem", "raylanczos.examples.digits:at_step", "--sweep", "step=0,30", "--order", "8",
             "--draws", "1", "--workers", "2", "--cpus-per-worker", "0.5", "--state", "sharded", "--quiet"]
    assert cli.main([*sweep, "--out", str(tmp_path / "sweep")]) == 0
    for point in ("step=0", "step=30"):
        assert json.loads((tmp_path / "sweep" / point / "summary.json").read_text())["config"]["state"] == "sharded"
