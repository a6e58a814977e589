"""Shared fixtures: one local Ray cluster per test session, with explicit resources."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

# The examples' trained weights go to a cache of this session (inherited by Ray workers
# and subprocesses), not to the user's own cache directory.
if "RAYLANCZOS_CACHE" not in os.environ:
    os.environ["RAYLANCZOS_CACHE"] = tempfile.mkdtemp(prefix="raylanczos-test-cache-")
    atexit.register(shutil.rmtree, os.environ["RAYLANCZOS_CACHE"], True)

#: Actor options for tests: fractional CPUs so three workers fit on a 2-CPU node.
WORKER_RESOURCES = {"num_cpus": 0.5}


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster: a head node with 2 CPUs; tests may add and remove nodes.

    Token authentication stays on (the default); the driver connects with the token
    Ray keeps for this user.
    """
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 0, "include_dashboard": False})
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="session")
def ray_session(ray_cluster):
    """The session's Ray, connected; ``address`` is what a second driver passes to connect."""
    return ray_cluster
