"""The Ray session: connecting to a cluster (or starting a local Ray), and what it is."""

from __future__ import annotations

import logging
import socket
import warnings
from typing import Any, Callable

import ray

from raylanczos.distributed.placement import alive_node_resources
from raylanczos.distributed.policy import default_layout
from raylanczos.distributed.workers import WorkerGroup
from raylanczos.problem.data import Dataset, ShardPlan

logger = logging.getLogger("raylanczos")


def connect(address: str | None = None) -> bool:
    """Connect to Ray at ``address`` (or to a running local Ray, or start one); True if
    this call connected (and should disconnect at the end), False if Ray was up already.

    Ray's start-up notices (the token notice, the dashboard address) are kept to the
    ``ray`` logger's warnings and errors; raylanczos logs one line of its own instead.
    """
    if ray.is_initialized():
        return False
    check_reachable(address)
    with warnings.catch_warnings():
        # Ray starts its processes with subprocess (fork + exec at once), which is safe
        # even after JAX started its threads in the driver.
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        context = ray.init(address=address, log_to_driver=True, logging_level=logging.ERROR)
    logging.getLogger("ray").setLevel(logging.WARNING)
    resources = ray.cluster_resources()
    dashboard = getattr(context, "dashboard_url", "")
    logger.info(
        "Ray: %s, %g CPUs, %g GPUs on %d node(s)%s", address or "this machine", resources.get("CPU", 0),
        resources.get("GPU", 0), len(alive_node_resources()), f"; dashboard http://{dashboard}" if dashboard else "",
    )
    return True


#: Seconds to wait for a TCP connection to a cluster's address before refusing it.
REACH_TIMEOUT_S = 5.0


def check_reachable(address: str | None, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """Refuse in seconds a ``host:port`` (or ``ray://host:port``) address that nothing
    answers on; Ray itself would retry for minutes. Other addresses (None, ``auto``,
    ``local``, a bare host) are left to Ray."""
    if not address or ("://" in address and not address.startswith("ray://")):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as err:
        reason = f"no answer within {timeout_s:g} s" if isinstance(err, TimeoutError) else err.strerror or str(err)
        raise ConnectionError(
            f"cannot reach Ray at {address} ({reason}): is the cluster up, and is this its head's "
            "address? (`ray status` on the head prints it)"
        ) from err


def single_machine() -> bool:
    """Whether the connected cluster is this machine alone (a plain local run)."""
    here = ray.get_runtime_context().get_node_id()
    alive = [node for node in ray.nodes() if node.get("Alive")]
    return len(alive) == 1 and alive[0]["NodeID"] == here


class RaySession:
    """A run's Ray connection and worker group, kept across the points of a sweep.

    The connection is made on first need (:meth:`connect`) and closed with the session if
    this session made it. The group is reused for a point whose workers would be the same
    (shard plan, resources, operator, block size); the workers then rebuild the problem with
    the point's factory arguments, keeping the shard's data when the dataset is the same.
    """

    def __init__(self, address: str | None):
        self.address = address
        self.group: WorkerGroup | None = None
        self._key: Any = None
        self._connected = False
        self._started_ray = False

    def connect(self) -> None:
        if not self._connected:
            self._started_ray = connect(self.address)
            self._connected = True

    def default_layout(self, num_examples: int, data: Dataset) -> tuple[ShardPlan, dict[str, float]]:
        """The default shard plan and worker resources on the connected cluster: one worker
        per GPU, else one 1-core worker per core (see :func:`~raylanczos.distributed.policy.default_layout`)."""
        self.connect()
        resources = ray.cluster_resources()
        layout = default_layout(int(resources.get("CPU", 1)), int(resources.get("GPU", 0)), local=single_machine())
        workers = min(layout.num_workers, num_examples)
        each = ", ".join(f"{v:g} {k.removeprefix('num_').upper().rstrip('S')}" for k, v in layout.resources.items())
        logger.info(
            "workers: %d × (%s): %s; choose with --workers and --cpus-per-worker/--gpus-per-worker", workers, each, layout.reason,
        )
        return ShardPlan.balanced(num_examples, workers).validate(data), layout.resources

    def placement_timeout(self, configured: float | None) -> float:
        """``configured``, or 0 s on a single machine (nothing will join) and 600 s on a cluster."""
        if configured is not None:
            return configured
        self.connect()
        return 0.0 if single_machine() else 600.0

    def group_for(self, key: Any, start: Callable[[], WorkerGroup], arguments: dict[str, Any] | None, block_size: int) -> WorkerGroup:
        """The group ``start()`` makes, or the current one moved to ``arguments`` if its ``key`` matches."""
        self.connect()
        if self.group is not None and key == self._key:
            self.group.load_point(arguments, block_size)
            return self.group
        if self.group is not None:
            self.group.shutdown()
            self.group = None
        self.group, self._key = start(), key
        return self.group

    def close(self) -> None:
        if self.group is not None:
            self.group.shutdown()
            self.group = None
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False

    def __enter__(self) -> "RaySession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
