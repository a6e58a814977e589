"""Resource policy on described machines: no Ray, no processes, just the rules."""

from __future__ import annotations

import os

import pytest

from raylanczos.distributed.placement import placement_shortfall
from raylanczos.distributed.policy import (
    SWEEP_THREADS_MIN_DIM,
    DriverThreads,
    cpu_slots,
    default_layout,
    driver_threads,
    keeper_threads,
    pin_to_cores,
)


def test_unpinned_workers_leave_the_driver_its_library_threads():
    assert driver_threads(False, range(16), [], 10**6) == DriverThreads(blas=None, sweeps=1)


def test_pinned_workers_leave_the_driver_the_free_cores():
    assert driver_threads(True, range(16), [0, 1, 2, 3], 10**6) == DriverThreads(blas=12, sweeps=1)
    assert driver_threads(True, range(2), [0], 310).describe() == "1 BLAS thread(s), on the cores no worker on this node is pinned to"


def test_workers_on_every_core_get_an_equal_share_of_the_sweeps_of_long_vectors():
    assert driver_threads(True, range(4), [0, 1, 2, 3], SWEEP_THREADS_MIN_DIM) == DriverThreads(1, 4, every_core_taken=True)
    assert "split over 4 threads" in driver_threads(True, range(4), range(4), 10**6).describe()


def test_short_vectors_are_swept_on_the_drivers_own_thread():
    threads = driver_threads(True, range(4), [0, 1, 2, 3], SWEEP_THREADS_MIN_DIM - 1)
    assert threads == DriverThreads(1, 1, every_core_taken=True)
    assert "on the driver's thread (vectors under 200,000 entries" in threads.describe()


def test_a_keeper_sweeps_on_one_thread_per_cpu_of_its_node():
    """Whole CPUs of the keeper's node, at least one (a node of fractional or no CPUs)."""
    assert [keeper_threads(cpus) for cpus in (16, 8.0, 2.5, 1, 0.5, 0)] == [16, 8, 2, 1, 1, 1]


def test_core_slots_are_consecutive_and_distinct_within_each_node():
    nodes = {0: "a", 1: "b", 2: "a", 3: "a"}
    assert cpu_slots(nodes, [2, 1, 0.5, 3]) == [(0, 2), (0, 1), (2, 1), (3, 3)]


def test_pinning_wraps_around_the_allowed_cores():
    allowed = sorted(os.sched_getaffinity(0))
    try:
        assert pin_to_cores(len(allowed), 1) == [allowed[0]], "a slot past the last core takes the first"
        assert sorted(os.sched_getaffinity(0)) == [allowed[0]]
    finally:
        os.sched_setaffinity(0, allowed)


@pytest.mark.parametrize(
    "cpus, gpus, local, expected",
    [
        (16, 0, True, (16, 1.0, 0.0)),
        (2, 0, True, (2, 1.0, 0.0)),
        (32, 4, True, (4, 1.0, 1.0)),
        (64, 8, False, (1, 1.0, 0.0)),
        (0, 0, True, (1, 1.0, 0.0)),
    ],
    ids=["workstation", "laptop", "gpu-box", "cluster-address", "no-cpu-reported"],
)
def test_default_layout_uses_the_local_machine(cpus, gpus, local, expected):
    layout = default_layout(cpus, gpus, local=local)
    assert (layout.num_workers, layout.num_cpus, layout.num_gpus) == expected
    assert layout.resources == ({"num_cpus": 1.0, "num_gpus": 1.0} if expected[2] else {"num_cpus": 1.0})
    assert layout.reason


def test_a_shortfall_names_the_ask_and_the_cluster():
    four = [{"CPU": 1.0}] * 4
    assert placement_shortfall(four, [{"CPU": 2.0}, {"CPU": 2.0}]) == ""
    assert placement_shortfall(four, [{"CPU": 2.0}]) == "4 workers need 4 CPU in all, and the cluster has 2 CPU on 1 node(s)"
    gpu = [{"CPU": 1.0, "GPU": 1.0}] * 2
    assert placement_shortfall(gpu, [{"CPU": 8.0}, {"GPU": 4.0}]) == (
        "a worker needs 1 CPU, 1 GPU on one node, and no node of the cluster has that"
    )
