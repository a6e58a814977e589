"""Shared fixtures: one local Ray cluster per test session, with explicit resources; a local S3 server."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import tempfile

import pytest

# The examples' trained weights go to a cache of this session (inherited by Ray workers
# and subprocesses), not to the user's own cache directory.
if "RAYLANCZOS_CACHE" not in os.environ:
    os.environ["RAYLANCZOS_CACHE"] = tempfile.mkdtemp(prefix="raylanczos-test-cache-")
    atexit.register(shutil.rmtree, os.environ["RAYLANCZOS_CACHE"], True)

# JAX's persistent compilation cache, of this session: a worker that compiles a product
# another worker has compiled reads it from the cache (about 1.3 s saved per worker start
# on the 2-core test machine). Numbers do not change: the cached program is the same.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="raylanczos-test-jax-cache-")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], True)

#: Actor options for tests: fractional CPUs so three workers fit on a 2-CPU node.
WORKER_RESOURCES = {"num_cpus": 0.5}
#: The tiny digits MLP (310 parameters), and the configuration of the session's run of it.
TINY = "raylanczos.examples.digits:tiny_problem"
TINY_RUN = ["--order", "12", "--draws", "2", "--workers", "2"]
#: Fractional CPUs so several workers fit on 2 CPUs; a timeout so no bug hangs the suite
#: (60 s, not less: on a loaded 2-CPU machine a worker's start alone took up to ~20 s).
FAST = ["--cpus-per-worker", "0.5", "--timeout", "60"]


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


@pytest.fixture(scope="session")
def tiny_run(ray_session, tmp_path_factory):
    """One finished run of the tiny MLP through the command line (2 draws × 12 steps on 2
    workers), shared by the tests that read a finished run or aim mistakes at one."""
    from raylanczos import cli

    out = tmp_path_factory.mktemp("tiny") / "run"
    assert cli.main(["run", "--problem", TINY, "--out", str(out), *TINY_RUN, *FAST, "--no-pin-cpus", "--timeout", "120"]) == 0
    assert (out / "summary.json").exists() and (out / "checkpoint" / "state.npz").exists()
    return out


@contextlib.contextmanager
def pair_and_solo(cluster, prefix: str):
    """Two more 1-CPU nodes on ``cluster`` (a ``ray.cluster_utils.Cluster``), by name:
    ``pair`` with the custom resource ``<prefix>_pair`` 2 (two workers pinned to it) and
    ``solo`` with ``<prefix>_solo`` 1. A test that replaces a node updates the mapping; the
    nodes in it at the end are removed."""
    nodes = {
        "pair": cluster.add_node(num_cpus=1, resources={f"{prefix}_pair": 2}),
        "solo": cluster.add_node(num_cpus=1, resources={f"{prefix}_solo": 1}),
    }
    cluster.wait_for_nodes()
    try:
        yield nodes
    finally:
        for node in nodes.values():
            cluster.remove_node(node)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    """A real S3 server (moto) on 127.0.0.1 with one bucket, ``runs``; yields its host:port.

    While it runs, the environment holds the test credentials, so a URI such as
    ``s3://runs/key?endpoint_override=<host:port>&scheme=http&region=us-east-1`` reaches it.
    """
    moto_server = pytest.importorskip("moto.server")
    pafs = pytest.importorskip("pyarrow.fs")
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        endpoint = f"127.0.0.1:{port}"
        s3 = pafs.S3FileSystem(endpoint_override=endpoint, scheme="http", region="us-east-1", allow_bucket_creation=True)
        s3.create_dir("runs")
        yield endpoint
    server.stop()


def s3_uri(endpoint: str, key: str) -> str:
    """The URI of ``key`` (``bucket/path``) on the :func:`s3_endpoint` server."""
    return f"s3://{key}?endpoint_override={endpoint}&scheme=http&region=us-east-1"
