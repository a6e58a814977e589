"""The scale model (benchmarks/scale_model.py): its bytes, its basis reads against what the
re-orthogonalisation reads, and its anchors."""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from raylanczos.numerics.basis import BasisSweeps
from raylanczos.numerics.lanczos import (
    Phase,
    accept,
    reorthogonalize,
    start_state,
    start_vector,
)
from raylanczos.numerics.sharded import InProcessKeepers, Keeper, SliceLayout
from raylanczos.operators.contract import InProcessSlicedOperator
from raylanczos.run.loop import DrawTask, LoopHooks, SpectrumLoop
from raylanczos.run.stores import KeeperStore

_spec = importlib.util.spec_from_file_location("scale_model", Path(__file__).parents[1] / "benchmarks" / "scale_model.py")
scale_model = importlib.util.module_from_spec(_spec)
sys.modules["scale_model"] = scale_model
_spec.loader.exec_module(scale_model)

COSTS = scale_model.DriverCosts(
    reduce=3e-10, node_reduce=6e-10, broadcast=1e-9, put=1e-9, accept=1e-9, reorth=5e-10, source="test"
)


def inputs(**fields) -> "scale_model.ClusterInputs":
    defaults = dict(num_params=1000, num_examples=64_000, nodes=4, gpus_per_node=8, hvp_throughput=1000.0,
                    nic_gbs=10.0, driver_bandwidth_gbs=50.0, order=20, draws=6, draws_per_pass=3)
    return scale_model.ClusterInputs(**{**defaults, **fields})


def test_bytes_per_pass():
    """Out: the float32 block once per node; in: one float64 partial per worker (flat) or per node."""
    cluster = inputs()
    flat, node = (scale_model.predict(cluster, COSTS, reduce) for reduce in ("flat", "node"))
    assert flat.bytes_out == node.bytes_out == 4 * 3 * 1000 * 4
    assert flat.bytes_in == 32 * 3 * 1000 * 8 and node.bytes_in == 4 * 3 * 1000 * 8
    assert flat.bases_bytes == node.bases_bytes == 3 * 1000 * 21 * 8
    assert flat.passes == node.passes == 2 * 20
    assert flat.hvp == pytest.approx(64_000 / 32 / 1000 * 3)  # B tangents cost B passes by default
    assert node.node_reduce == pytest.approx(8 * 3 * 1000 * 8 * 6e-10) and flat.node_reduce == 0
    assert flat.total == pytest.approx(flat.passes * flat.step) and flat.overhead == flat.step / flat.hvp
    assert scale_model.bases_fit(inputs(head_ram_gb=1.0)) == math.floor(1e9 / (1000 * 21 * 8))


def test_a_node_of_one_gpu_is_the_flat_reduction():
    flat, node = (scale_model.predict(inputs(gpus_per_node=1), COSTS, reduce) for reduce in ("flat", "node"))
    assert node.node_reduce == 0 and node.step == flat.step and node.bytes_in == flat.bytes_in


def test_basis_reads_are_those_of_the_reorthogonalisation():
    """Counting the basis rows each sweep reads in a real run of m steps gives
    ``basis_rows_read`` step by step (no second passes on this well-conditioned matrix)."""

    class CountingSweeps(BasisSweeps):
        rows = 0

        def dots(self, basis, w):
            self.rows += basis.shape[0]  # V w
            return super().dots(basis, w)

        def subtract(self, basis, w, coefficients):
            self.rows += basis.shape[0]  # w -= Vᵀ c
            return super().subtract(basis, w, coefficients)

        def combine(self, basis, coefficients):
            self.rows += basis.shape[0]
            return super().combine(basis, coefficients)

    matrix = np.diag(np.linspace(1.0, 2.0, 300))
    order = 12
    state = start_state(start_vector(300, seed=0), order)
    sweeps, per_step = CountingSweeps(), []
    while state.phase is not Phase.DONE:
        accept(state, matrix @ state.vector)
        before = sweeps.rows
        reorthogonalize(state, sweeps)
        per_step.append(sweeps.rows - before)
    assert state.second_passes == 0 and state.steps == order
    assert per_step == [scale_model.basis_rows_read(k, order) for k in range(1, order + 1)]
    assert scale_model.basis_bytes_per_draw(300, order) == sum(per_step) * 300 * 8


def test_anchor_convnet_is_design_sections_seven():
    """The conv net whose multiply-adds scale the §7 HVP has §7's 7,050,314 parameters."""
    params = sum(9 * cin * cout + cout for _, cin, cout in scale_model.ANCHOR_CONVOLUTIONS) + 512 * 10 + 10
    assert params == 7_050_314
    assert scale_model.anchor_convnet_macs() == 247_141_376
    assert scale_model.resnet50_throughput() == pytest.approx(50_000 / 1.09 * 247_141_376 / 4.09e9)


# --------------------------------------------------------------------------- sharded state

SHARDED = scale_model.ShardedCosts(sum=3e-10, put=1e-9, accept=2e-9, sweep=5e-10, round_trip=1e-3, source="test")


def test_the_sharded_drivers_bytes_do_not_depend_on_n():
    """References, accounts and the step's scalars: the same bytes at n = 10³ and 10¹⁰,
    more with more nodes (K² piece references, K·W slice references)."""
    small, large = (scale_model.predict_sharded(inputs(num_params=n), SHARDED) for n in (1000, 10**10))
    assert (small.bytes_out, small.bytes_in) == (large.bytes_out, large.bytes_in)
    assert large.bytes_in < 20_000 and large.bytes_out < 20_000
    more = scale_model.predict_sharded(inputs(nodes=8), SHARDED)
    assert more.bytes_out > small.bytes_out and more.bytes_in > small.bytes_in
    assert scale_model.predict(inputs(num_params=10**10), COSTS, "node").bytes_in == 4 * 3 * 10**10 * 8


@pytest.mark.parametrize("nodes, sent, received", [(1, 1013, 280), (2, 2210, 616), (4, 5156, 1456)])
def test_the_sharded_drivers_bytes_are_those_measured(nodes, sent, received):
    """docs/scaling.md: w = 2, B = 2, m = 10, the same bytes at n = 1M and 4M; the model within 7%."""
    cluster = inputs(nodes=nodes, gpus_per_node=2, order=10, draws_per_pass=2)
    out, back = scale_model.sharded_driver_bytes(cluster)
    assert out == pytest.approx(sent, rel=0.07) and back == pytest.approx(received, rel=0.07)


def test_the_sharded_overhead_falls_with_each_nodes_bandwidth():
    overheads = [
        scale_model.predict_sharded(inputs(num_params=10**8, nic_gbs=gbs), SHARDED).overhead for gbs in (1, 5, 12.5, 50, 400)
    ]
    assert all(a > b for a, b in itertools.pairwise(overheads)) and overheads[-1] > 1


def test_a_sharded_pass_adds_its_terms_to_the_hvp():
    """One node of one GPU: no transfer; publish, copy, put, sum, accept and round trips in series."""
    p = scale_model.predict_sharded(inputs(nodes=1, gpus_per_node=1, draws_per_pass=1, order=2), SHARDED)
    n = 1000
    assert p.allgather == pytest.approx(n * 4 * 1e-9) and p.publish == pytest.approx(n * 4 * 1e-9)
    assert p.node_work == pytest.approx(n * 8 * 1e-9) and p.scatter == pytest.approx(n * 8 * 3e-10)
    assert p.round_trips == pytest.approx(4e-3) and p.hvp == pytest.approx(64.0)
    assert p.step == pytest.approx(p.hvp + p.publish + p.allgather + p.node_work + p.scatter + p.accept + p.round_trips)
    on_gpus = scale_model.predict_sharded(inputs(num_params=10**8, gpu_node_sum_gbs=450.0), SHARDED)
    assert on_gpus.node_work < scale_model.predict_sharded(inputs(num_params=10**8), SHARDED).node_work / 10


def test_seven_billion_parameters_fit_32_nodes_but_not_one_head():
    """m = 90, B = 1: one draw's basis is 5.1 TB (the head's 2 TB hold none); a keeper of
    n/32 holds 99 rows of 218.75M float64 entries, 173 GB, in a 2 TB node up to B = 11."""
    seven = scale_model.transformer_inputs(7 * 10**9, 256)
    assert seven.nodes == 32 and scale_model.bases_fit(seven) == 0
    assert scale_model.predict(seven, COSTS, "node").bases_bytes == 7 * 10**9 * 91 * 8
    assert scale_model.keeper_node_bytes(7 * 10**9, 32, 90, 1) == 99 * 218_750_000 * 8
    assert max(b for b in range(1, 40) if scale_model.keeper_node_bytes(7 * 10**9, 32, 90, b) <= 2048e9) == 11
    sharded = scale_model.predict_sharded(seven, SHARDED)
    assert sharded.node_bytes == 173_250_000_000 and sharded.head_bytes < 10_000


def test_the_examples_for_an_overhead_reach_it():
    cluster = inputs(num_params=10**7)
    needed = scale_model.examples_for_overhead(cluster, SHARDED, 1.10)
    at = scale_model.predict_sharded(dataclasses.replace(cluster, num_examples=needed), SHARDED)
    short = scale_model.predict_sharded(dataclasses.replace(cluster, num_examples=needed * 9 // 10), SHARDED)
    assert at.overhead <= 1.10 < short.overhead


def test_transformer_throughput_is_its_flops_at_the_stated_utilisation():
    assert scale_model.transformer_throughput(10**9) == pytest.approx(989e12 * 0.40 / (12 * 10**9))
    one = scale_model.transformer_inputs(10**9, 64)
    assert (one.nodes, one.gpus_per_node, one.broadcast_itemsize, one.num_examples) == (8, 8, 2, 2**27)


class Diagonal:
    """diag(d) as an in-process operator."""

    def __init__(self, diagonal: np.ndarray):
        self.diagonal, self.dim = diagonal, diagonal.size

    def matmat(self, vectors: np.ndarray) -> np.ndarray:
        return vectors * self.diagonal


def test_a_sharded_pass_makes_the_models_round_trips():
    """Counting the keepers' messages in an in-process sharded run: every pass but a draw's
    first and last sends ``SHARDED_ROUND_TRIPS`` (no second re-orthogonalisation passes here)."""

    class Counting(InProcessKeepers):
        messages = 0

        def call_each(self, method, arguments):
            self.messages += 1
            return super().call_each(method, arguments)

    n, order = 300, 10
    layout = SliceLayout.balanced(n, 3)
    keepers = Counting([Keeper(i, layout, 1, order + 1) for i in range(3)])
    store = KeeperStore(keepers, n, seed=0, distribution="gaussian")
    operator = InProcessSlicedOperator(Diagonal(np.linspace(1.0, 2.0, n)), 1, layout.bounds)
    counts = []
    hooks = LoopHooks(progress=lambda state, row: counts.append(keepers.messages))
    state = SpectrumLoop(operator, [DrawTask(0, "", 0, n)], order, store, seed=0, distribution="gaussian", hooks=hooks).run()
    assert state.finished[0].second_passes == 0
    assert set(np.diff(counts)[:-1]) == {scale_model.SHARDED_ROUND_TRIPS}
