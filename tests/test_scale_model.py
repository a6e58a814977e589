"""The scale model (benchmarks/scale_model.py): its bytes, its basis reads against what the
re-orthogonalisation reads, and its anchors."""

from __future__ import annotations

import importlib.util
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
