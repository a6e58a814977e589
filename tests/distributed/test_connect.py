"""Connecting to Ray: which Ray a run uses and says it uses, an address nothing answers on
refused in seconds, a private local Ray that leaves nothing behind, and a worker lost
with its Ray reported in one line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raylanczos.distributed import reaper
from raylanczos.distributed.session import (
    RayTarget,
    check_reachable,
    resolve_target,
    startup_line,
)
from tests.conftest import WORKER_RESOURCES, free_port

REPO = Path(__file__).resolve().parents[2]
TINY = "raylanczos.examples.digits:tiny_problem"


def test_reachability_is_checked_for_host_and_port_addresses_only():
    """A port nobody listens on is refused; one that listens passes; the addresses Ray
    resolves itself (none, auto, local, a bare host) are left to Ray."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        check_reachable(f"127.0.0.1:{listening.getsockname()[1]}")
        check_reachable(f"ray://127.0.0.1:{listening.getsockname()[1]}")
    closed = f"127.0.0.1:{free_port()}"
    with pytest.raises(ConnectionError, match=rf"cannot reach Ray at ray://{closed} \(Connection refused\)"):
        check_reachable(f"ray://{closed}")
    with pytest.raises(ConnectionError, match=rf"^cannot reach Ray at {closed} \(Connection refused\): has it stopped\?$"):
        check_reachable(closed, hint="has it stopped?")
    for address in (None, "auto", "local", "headnode"):
        check_reachable(address)


def test_the_ray_a_run_uses_follows_rays_rule(tmp_path):
    """No address: RAY_ADDRESS, else the address ``ray start`` left in Ray's temp folder,
    else a new local Ray. ``local`` always starts one; a given address is used as it is."""
    recorded = tmp_path / "ray_current_cluster"
    nothing = tmp_path / "absent"
    env = {"RAY_ADDRESS": "10.0.0.5:6379"}
    assert resolve_target(None, {}, recorded_in=str(nothing)) == RayTarget(None)
    assert resolve_target(None, env, recorded_in=str(nothing)) == RayTarget("10.0.0.5:6379", "RAY_ADDRESS")
    recorded.write_text("192.0.2.7:6379\n")
    assert resolve_target(None, {}, recorded_in=str(recorded)) == RayTarget("192.0.2.7:6379", str(recorded))
    assert resolve_target(None, env, recorded_in=str(recorded)).found_in == "RAY_ADDRESS"
    assert resolve_target("local", env, recorded_in=str(recorded)) == RayTarget(None)
    assert resolve_target("head:6379", env, recorded_in=str(recorded)) == RayTarget("head:6379", "--address")
    recorded.write_text("")
    assert resolve_target(None, {}, recorded_in=str(recorded)) == RayTarget(None)


def test_the_start_up_line_says_whether_the_run_joined_a_ray():
    resources = {"CPU": 4.0, "GPU": 1.0, "memory": 1e9}
    assert startup_line(RayTarget(None), resources, 1) == "started a local Ray (4 CPUs, 1 GPUs on 1 node)"
    assert startup_line(RayTarget("10.0.0.5:6379", "RAY_ADDRESS"), resources, 2) == (
        "joined a running Ray at 10.0.0.5:6379 (found in RAY_ADDRESS; 4 CPUs, 1 GPUs on 2 nodes); "
        "for a private one use --address local"
    )
    assert startup_line(RayTarget("head:6379", "--address"), resources, 3, "127.0.0.1:8265") == (
        "joined the Ray at head:6379 (4 CPUs, 1 GPUs on 3 nodes; dashboard http://127.0.0.1:8265)"
    )


CONNECT = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
from raylanczos.distributed.session import connect
connect(sys.argv[1] if len(sys.argv) > 1 else None)
"""


def python(code: str, *args: str, env: dict[str, str], **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    )


def driver_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    return dict(env, PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]), PYTHONUNBUFFERED="1", **extra)


@pytest.mark.slow
def test_a_run_that_joins_a_running_ray_says_so(ray_session, tmp_path):
    """A Ray found through RAY_ADDRESS, or through the address file ``ray start`` leaves
    in Ray's temp folder (RAY_TMPDIR here, so that no other program finds it)."""
    temp = tmp_path / "tmp"
    (temp / "ray").mkdir(parents=True)
    (temp / "ray" / "ray_current_cluster").write_text(ray_session.address)
    for env, found_in in (
        (driver_env(RAY_ADDRESS=ray_session.address), "RAY_ADDRESS"),
        (driver_env(RAY_TMPDIR=str(temp)), str(temp / "ray" / "ray_current_cluster")),
    ):
        out, err = python(CONNECT, env=env).communicate(timeout=120)
        assert out.splitlines()[-1] == (
            f"Ray: joined a running Ray at {ray_session.address} (found in {found_in}; 2 CPUs, 0 GPUs on 1 node); "
            "for a private one use --address local"
        ), out + err


def test_a_ray_that_left_its_address_behind_and_stopped_is_refused_in_seconds(tmp_path):
    temp = tmp_path / "tmp"
    (temp / "ray").mkdir(parents=True)
    gone = f"127.0.0.1:{free_port()}"
    (temp / "ray" / "ray_current_cluster").write_text(gone)
    started = time.monotonic()
    out, err = python(CONNECT, env=driver_env(RAY_TMPDIR=str(temp))).communicate(timeout=60)
    assert time.monotonic() - started < 30
    assert err.strip().splitlines()[-1] == (
        f"ConnectionError: cannot reach Ray at {gone} (Connection refused): it is the Ray named in "
        f"{temp / 'ray' / 'ray_current_cluster'}; has it stopped? For a private Ray use --address local"
    ), err


GUARDED = """
import os, sys
from raylanczos.distributed import reaper
from raylanczos.distributed.session import connect
connect("local")
print(*(pid for pid, _ in reaper.grandchildren(os.getpid(), reaper.process_table())), flush=True)
sys.stdin.read()
"""


@pytest.mark.slow
def test_a_private_local_ray_leaves_no_agent_behind_when_its_driver_is_killed():
    """``--address local`` starts a new Ray even where another is running (RAY_ADDRESS
    names the session's); SIGKILL its driver, and its node's processes end within
    seconds (without the guard, the dashboard and runtime-env agents stay about 60 s)."""
    driver = python(GUARDED, env=driver_env(RAY_ADDRESS="127.0.0.1:1"), stdin=subprocess.PIPE, start_new_session=True)
    try:
        line = driver.stdout.readline()
        spawned = [int(pid) for pid in line.split()]
        assert spawned, driver.stderr.read() if driver.poll() is not None else "no Ray process found"
        names = {Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode() for pid in spawned}
        assert {"ray::DashboardAgent", "ray::RuntimeEnvAgent"} <= names, names
    finally:
        driver.kill()
        driver.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}") and not zombie(pid) for pid in spawned):
        time.sleep(0.2)
    left = [pid for pid in spawned if os.path.exists(f"/proc/{pid}") and not zombie(pid)]
    assert not left, f"still running 20 s after the driver was killed: {left}"


def zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def test_the_guard_ends_only_the_processes_it_was_given_that_are_still_the_same(tmp_path):
    """A process the guard was given is ended when its stdin closes; one whose pid came
    back with another start time (pid reuse) and this test's own process are left."""
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        table = reaper.process_table()
        pid, start = target.pid, table[target.pid][1]
        mine = (os.getpid(), str(int(table[os.getpid()][1]) + 1))  # "same pid, later process"
        guard = reaper.start_guard([(pid, start), mine])
        reaper.stop_guard(guard)
        assert target.wait(timeout=10) == -signal.SIGKILL
    finally:
        target.kill()
        target.wait()
    assert reaper.grandchildren(os.getpid(), {1: (0, "1"), 2: (os.getpid(), "5"), 3: (2, "9"), 4: (3, "11")}) == [(3, "9")]


@pytest.mark.slow
def test_a_worker_killed_from_outside_is_reported_as_lost(ray_session):
    import ray

    import raylanczos as rl
    from raylanczos.distributed.workers import WorkerGroup
    from raylanczos.operators.contract import WorkerError

    group = WorkerGroup(TINY, rl.ShardPlan.balanced(1797, 2), resources=WORKER_RESOURCES)
    try:
        ray.kill(group.actors[1], no_restart=True)
        # ray.kill is asynchronous: a call sent before the kill lands is still answered.
        # Wait for the death itself (a call that fails), then ask the group.
        with pytest.raises(ray.exceptions.RayActorError):
            while True:
                ray.get(group.actors[1].__ray_ready__.remote(), timeout=30)
        with pytest.raises(WorkerError) as lost:
            group.execute("describe")
    finally:
        group.shutdown()
    assert str(lost.value) == (
        "worker 1 (shard 1 (rows [898, 1797))) was lost: it was killed with ray.kill, from outside the run; "
        "run again (--resume continues from the last checkpoint)"
    )


OTHER_RAY = """
import sys, ray
context = ray.init(address="local", num_cpus=2, include_dashboard=False)
print(context.address_info["gcs_address"], flush=True)
sys.stdin.read()
ray.shutdown()
"""


@pytest.mark.slow
def test_a_run_whose_joined_ray_stops_ends_in_one_line(tmp_path):
    """Another program's Ray, joined through RAY_ADDRESS, is shut down while the workers
    start (the case of a test session's Ray that ends): the run ends with one line that
    names the worker, says the Ray stopped and what to do. (Stopped during a pass, the Ray
    may instead end the driver at once, exit status 1: docs/reliability.md.)"""
    other = python(OTHER_RAY, env=driver_env(), stdin=subprocess.PIPE, start_new_session=True)
    try:
        address = other.stdout.readline().strip()
        assert address, other.stderr.read()
        args = [
            "run", "--problem", TINY, "--order", "300", "--draws", "8", "--draws-per-pass", "1", "--workers", "2",
            "--cpus-per-worker", "0.5", "--out", str(tmp_path / "run"), "--progress", "lines", "--timeout", "120",
        ]
        # A Ray started with Ray >= 2.52 asks for a token, which a client sends only if told to.
        joining = driver_env(RAY_ADDRESS=address, RAY_AUTH_MODE="token")
        driver = python("from raylanczos.cli import main; raise SystemExit(main())", *args, env=joining)
        lines = []
        for line in driver.stderr:
            lines.append(line)
            if "Ray: joined" in line:
                break
        other.stdin.close()
        other.wait(timeout=120)
        out, rest = driver.communicate(timeout=300)
        lines += rest.splitlines(keepends=True)
    finally:
        for process in (other, locals().get("driver")):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    log = "".join(lines)
    assert f"Ray: joined a running Ray at {address} (found in RAY_ADDRESS;" in log, log
    assert driver.returncode == 2, log
    assert log.strip().splitlines()[-1] == (
        f"raylanczos: error: the Ray at {address} that this run joined has stopped; run again "
        "(--resume continues from the last checkpoint; --address local starts a Ray of the run's own)"
    ), log
    assert "Traceback" not in log, log
