"""The Ray session: connecting to a cluster (or starting a local Ray), and what it is."""

from __future__ import annotations

import logging
import socket
import warnings

import ray

from raylanczos.distributed.placement import alive_node_resources

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
