"""The Ray session: which Ray a run uses (a cluster, a Ray already running on this
machine, or a private local one it starts), connecting to it, and what it is.

Ray's rule for ``ray.init()`` without an address: join the Ray named by ``RAY_ADDRESS``,
else the one whose address ``ray start`` (or a test cluster) left in Ray's temp folder
(``/tmp/ray/ray_current_cluster``), else start a new local one. Such a Ray belongs to
another program and may stop under the run, so the start-up line says when a run joined
one and how to get a private one instead (``--address local``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import ray

from raylanczos.distributed import reaper
from raylanczos.distributed.placement import alive_node_resources
from raylanczos.distributed.policy import default_layout
from raylanczos.distributed.workers import WorkerGroup
from raylanczos.problem.data import Dataset, ShardPlan

logger = logging.getLogger("raylanczos")

#: The environment variable through which Ray names the cluster to join.
RAY_ADDRESS = "RAY_ADDRESS"
#: Set in the driver of a ``ray job submit`` (with RAY_ADDRESS, the job's cluster).
RAY_JOB_CONFIG = "RAY_JOB_CONFIG_JSON_ENV_VAR"
#: Set to 1 to see the workers' own output (framework notices, prints in a factory) in the
#: driver's; by default it stays in Ray's log files (``<temp>/session_latest/logs``).
RAY_LOG_TO_DRIVER = "RAY_LOG_TO_DRIVER"


@dataclass(frozen=True)
class RayTarget:
    """The Ray a run uses: ``address`` None starts a private local Ray; otherwise the
    address of the Ray it joins, and ``found_in``, where that address came from:
    ``"--address"``, ``"ray job"`` (the driver of a submitted job), ``"RAY_ADDRESS"`` or
    the path of Ray's address file."""

    address: str | None
    found_in: str = ""

    @property
    def found_by_ray(self) -> bool:
        """Whether Ray chose, for a run given no address, a Ray that another program runs
        (named by RAY_ADDRESS or the address file)."""
        return self.address is not None and self.found_in not in ("--address", "ray job")


def address_file() -> str:
    """Where ``ray start`` leaves its address for a later ``ray.init()`` on this machine."""
    from ray._common.utils import get_ray_address_file

    return get_ray_address_file(None)


def resolve_target(address: str | None, environ: Mapping[str, str] = os.environ, recorded_in: str | None = None) -> RayTarget:
    """The Ray that ``ray.init(address)`` uses, by Ray's rule (module docstring).

    ``"local"`` always starts a new local Ray; any other address given (``host:port``,
    ``ray://...``, ``auto``) is used as it is. ``recorded_in`` is the address file to
    read (default: Ray's, :func:`address_file`).
    """
    if address == "local":
        return RayTarget(None)
    if address is not None:
        return RayTarget(address, "--address")
    if environ.get(RAY_ADDRESS):
        return RayTarget(environ[RAY_ADDRESS], "ray job" if RAY_JOB_CONFIG in environ else RAY_ADDRESS)
    path = recorded_in or address_file()
    try:
        with open(path) as recorded:
            found = recorded.read().strip()
    except FileNotFoundError:
        found = ""
    return RayTarget(found, path) if found else RayTarget(None)


#: The guard over the agents of the local Ray this process started
#: (:mod:`raylanczos.distributed.reaper`), and what to do if a Ray that another program
#: runs stops under this process (:func:`when_ray_stops`); ``ray.init`` is process-wide
#: state, so these are too.
_guard = None
_on_stopped: Callable[[str], None] | None = None

#: Seconds between checks that a Ray of another program still answers, and the failed
#: checks in a row that mean it has stopped.
WATCH_INTERVAL_S = 1.0
WATCH_MISSES = 3


def when_ray_stops(callback: Callable[[str], None] | None) -> None:
    """Call ``callback(address)`` from a background thread if a Ray that :func:`connect`
    joined by Ray's rule (RAY_ADDRESS, the address file: another program's Ray) stops
    answering while this process is connected to it. Ray itself ends the process in that
    case (after 60 s without its GCS, or at once when its node's object store has gone),
    printing nothing; the command line reports it in one line first. None: no call."""
    global _on_stopped
    _on_stopped = callback


def _watch(address: str, interval_s: float = WATCH_INTERVAL_S, misses: int = WATCH_MISSES) -> None:
    """Until this process disconnects: try a TCP connection to the GCS at ``address`` every
    ``interval_s`` seconds, and after ``misses`` failures in a row call the
    :func:`when_ray_stops` callback."""
    host, _, port = address.rpartition(":")
    missed = 0
    while ray.is_initialized() and missed < misses:
        time.sleep(interval_s)
        try:
            socket.create_connection((host, int(port)), timeout=interval_s).close()
            missed = 0
        except OSError:
            missed += 1
    if missed >= misses and _on_stopped is not None:
        _on_stopped(address)


def connect(address: str | None = None) -> bool:
    """Connect to the Ray that :func:`resolve_target` names, or start a private local one;
    True if this call connected (and should disconnect at the end, with :func:`disconnect`),
    False if Ray was up already.

    A local Ray started here has no dashboard (nothing of a run needs it; start Ray with
    ``ray start --head`` for one and pass its address), and a guard that ends its agents
    if this process dies without shutting Ray down. Ray's start-up notices (the token
    notice, the dashboard address) are kept to the ``ray`` logger's warnings and errors,
    and the workers' own output to Ray's log files (set ``RAY_LOG_TO_DRIVER=1`` to see
    it); raylanczos logs one line of its own instead.
    """
    if ray.is_initialized():
        return False
    target = resolve_target(address)
    if target.found_by_ray:
        check_reachable(
            target.address,
            hint=f"it is the Ray named in {target.found_in}; has it stopped? For a private Ray use --address local",
        )
    else:
        check_reachable(target.address)
    starting = target.address is None
    with warnings.catch_warnings():
        # Ray starts its processes with subprocess (fork + exec at once), which is safe
        # even after JAX started its threads in the driver.
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        try:
            context = ray.init(
                # Ray resolves an address it finds itself (so that it also turns on token
                # authentication for a Ray it found, as it does for no other address).
                address="local" if starting else address,
                log_to_driver=os.environ.get(RAY_LOG_TO_DRIVER, "0").lower() in ("1", "true"),
                logging_level=logging.ERROR,
                **({"include_dashboard": False} if starting else {}),
            )
        except ConnectionError as err:
            if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
                raise
            raise ConnectionError(
                f"{err}; if it asks for a token (a Ray started with Ray 2.52 or later does, unless told not to), "
                "export RAY_AUTH_MODE=token (the token is read from ~/.ray/auth_token or RAY_AUTH_TOKEN)"
            ) from err
    logging.getLogger("ray").setLevel(logging.WARNING)
    if starting:
        global _guard
        _guard = reaper.start_guard(reaper.grandchildren(os.getpid(), reaper.process_table()))
    joined = getattr(context, "address_info", {}).get("gcs_address") or target.address
    if target.found_by_ray and ":" in joined:
        threading.Thread(target=_watch, args=(joined,), name="raylanczos-ray-watch", daemon=True).start()
    logger.info(
        "Ray: %s",
        startup_line(
            target if starting else RayTarget(joined, target.found_in), ray.cluster_resources(),
            len(alive_node_resources()), getattr(context, "dashboard_url", ""),
        ),
    )
    return True


def disconnect() -> None:
    """Shut down this process's connection to Ray (and a local Ray it started), then let
    the guard end whatever of that Ray's agents is left."""
    global _guard
    ray.shutdown()
    if _guard is not None:
        reaper.stop_guard(_guard)
        _guard = None


def startup_line(target: RayTarget, resources: Mapping[str, float], nodes: int, dashboard: str = "") -> str:
    """What a run says about its Ray: started or joined, where, and what it holds."""
    holds = f"{resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs on {nodes} node{'s' if nodes != 1 else ''}"
    holds += f"; dashboard http://{dashboard}" if dashboard else ""
    if target.address is None:
        return f"started a local Ray ({holds})"
    if target.found_by_ray:
        return (
            f"joined a running Ray at {target.address} (found in {target.found_in}; {holds}); "
            "for a private one use --address local"
        )
    if target.found_in == "ray job":
        return f"joined the Ray of this job at {target.address} ({holds})"
    return f"joined the Ray at {target.address} ({holds})"


#: Seconds to wait for a TCP connection to a cluster's address before refusing it.
REACH_TIMEOUT_S = 5.0


def check_reachable(address: str | None, timeout_s: float = REACH_TIMEOUT_S, hint: str = "") -> None:
    """Refuse in seconds a ``host:port`` (or ``ray://host:port``) address that nothing
    answers on; Ray itself would retry for minutes. Other addresses (None, ``auto``,
    ``local``, a bare host) are left to Ray. ``hint`` replaces the advice that ends the
    message."""
    if not address or ("://" in address and not address.startswith("ray://")):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as err:
        reason = f"no answer within {timeout_s:g} s" if isinstance(err, TimeoutError) else err.strerror or str(err)
        advice = hint or "is the cluster up, and is this its head's address? (`ray status` on the head prints it)"
        raise ConnectionError(f"cannot reach Ray at {address} ({reason}): {advice}") from err


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

    @property
    def connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        if not self._connected:
            self._started_ray = connect(self.address)
            self._connected = True

    def default_layout(self, num_examples: int, data: Dataset, devices: int = 1) -> tuple[ShardPlan, dict[str, float]]:
        """The default shard plan and worker resources on the connected cluster: one worker
        per GPU (per ``devices`` GPUs), else one 1-core worker per core (see
        :func:`~raylanczos.distributed.policy.default_layout`)."""
        self.connect()
        resources = ray.cluster_resources()
        cpus, gpus = int(resources.get("CPU", 1)), int(resources.get("GPU", 0))
        layout = default_layout(cpus, gpus, local=single_machine(), devices=devices)
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

    def close(self, *, leave_local_ray: bool = False) -> None:
        """End the worker group, then disconnect (and stop a local Ray this session started).

        With ``leave_local_ray``, a local Ray this session started is left running, for a
        process about to end at once: its guard then ends the Ray's processes with SIGKILL
        when this process is gone (as when a driver is killed), in milliseconds, where
        Ray's graceful shutdown takes about 1.5 s.
        """
        if self.group is not None:
            self.group.shutdown()
            self.group = None
        if self._started_ray and not leave_local_ray:
            disconnect()
            self._started_ray = False

    def __enter__(self) -> "RaySession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
