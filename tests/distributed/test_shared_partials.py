"""Partials through the node's shared memory (:mod:`raylanczos.distributed.shared_partials`)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from raylanczos.distributed.hessian import DistributedHessian
from raylanczos.distributed.shared_partials import (
    SharedPartials,
    shared_memory_fits,
    write_partial,
)
from raylanczos.distributed.workers import WorkerGroup
from raylanczos.problem.data import ShardPlan
from tests.conftest import TINY, WORKER_RESOURCES

pytestmark = pytest.mark.skipif(not shared_memory_fits(2, 3, 50), reason="no POSIX shared memory in /dev/shm here")


def test_a_workers_write_is_what_the_driver_reads_in_place_until_closed():
    shared = SharedPartials(2, 3, 50)
    products = np.random.default_rng(0).standard_normal((2, 50))
    opened = {}
    assert write_partial(shared.paths[1], 3, products, opened)
    assert np.array_equal(shared.partial(1, 2), products) and not shared.partial(0, 3).any()
    assert write_partial(shared.paths[1], 3, 2 * products, opened) and np.array_equal(shared.partial(1, 2), 2 * products)
    assert list(opened) == [shared.paths[1]], "mapped once"
    paths = list(shared.paths)
    shared.close()
    assert not any(os.path.exists(path) for path in paths), "unlinked"


def test_a_buffer_that_cannot_take_the_partial_is_refused_not_written():
    shared = SharedPartials(1, 2, 50)
    try:
        assert not write_partial(shared.paths[0], 2, np.ones((3, 50)), {}), "more rows than the buffer"
        assert not write_partial(shared.paths[0], 2, np.ones((2, 40)), {}), "another width"
        assert not write_partial(shared.paths[0], 2, np.ones((1, 100)), {}), "another width, as many bytes a row pair"
        assert not write_partial(shared.paths[0] + "-gone", 2, np.ones((2, 50)), {}), "no such buffer here"
        assert not shared.partial(0, 2).any()
    finally:
        shared.close()


@pytest.mark.slow
def test_partials_through_shared_memory_have_the_object_stores_bits(ray_session):
    """Two workers on the driver's node: the shared buffers are used, and a block's products
    are bit-identical to those through Ray's object store; the buffers go with the group."""
    group = WorkerGroup(TINY, ShardPlan.balanced(1797, 2), resources=WORKER_RESOURCES, block_size=3)
    try:
        shared = DistributedHessian(group, 1797, block_size=3)
        through_ray = DistributedHessian(group, 1797, block_size=3, shared_memory=False)
        assert shared.shared is not None and through_ray.shared is None
        assert "shared memory" in shared.describe_partials() and "object store" in through_ray.describe_partials()
        vectors = np.random.default_rng(0).standard_normal((3, shared.dim))
        products, timing = shared.collect(shared.submit(vectors))
        assert products.tobytes() == through_ray.matmat(vectors).tobytes()
        assert timing.bytes_received == 2 * 3 * shared.dim * 8, "both partials, read in place"
        paths = list(shared.shared.paths)
        assert all(os.path.exists(path) for path in paths)
    finally:
        group.shutdown()
    assert not any(os.path.exists(path) for path in paths)
