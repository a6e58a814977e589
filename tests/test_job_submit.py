"""End to end: a raylanczos run submitted with `ray job submit` to a local Ray head that
this module starts, the way docs/clusters.md submits to a cluster.

The head is kept apart from everything else on the machine, including the Ray cluster the
rest of the test session runs inside this process:

- its own temp dir (sockets, session, logs and its own ``ray_current_cluster``, so a bare
  ``ray.init()`` elsewhere never finds it) and its own free ports;
- its own token: a fresh one in the temp dir (``RAY_AUTH_TOKEN_PATH``), with token
  authentication on (``RAY_AUTH_MODE=token``) for the head and for every client;
- the dashboard and job server bound to 127.0.0.1.

It runs as ``ray start --head --block`` in a session of its own: stopping it is a SIGTERM to
that one process, which drains and ends its node's processes. Whatever still runs under
the temp dir afterwards is killed by pid and fails the teardown. ``ray stop`` is never
used: it would end every Ray process of this user on the machine.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")
pytest.importorskip("aiohttp", reason="the Ray job server needs ray[default]")
pytest.importorskip("sklearn", reason="the digits example needs scikit-learn")
requests = pytest.importorskip("requests")

from tests.user_project import FACTORY, NUM_PARAMS, write_project  # noqa: E402

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
HEAD_START_TIMEOUT_S = 120
JOB_TIMEOUT_S = 300


@dataclass
class Head:
    """A running local head: where to reach it and the client environment that may."""

    url: str
    dashboard_port: int
    env: dict[str, str]
    root: Path
    token: str
    process: subprocess.Popen


def ray_executable() -> str:
    beside = Path(sys.executable).with_name("ray")
    found = str(beside) if beside.exists() else shutil.which("ray")
    if found is None:
        pytest.skip("the ray command is not installed")
    return found


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def client_env(token_file: Path) -> dict[str, str]:
    """This process's environment without any RAY_* setting, plus this head's token."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(token_file),
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONUNBUFFERED="1",
    )
    # The job's entrypoint (`raylanczos ...`) is looked up on the head's PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def pids_under(root: Path) -> list[int]:
    """Processes whose command line names ``root`` (Linux /proc; elsewhere none are found)."""
    mine, found = os.getpid(), []
    needle = str(root).encode()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if int(entry.name) != mine and needle in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


def wait_until_serving(head: Head, log: Path) -> None:
    deadline = time.monotonic() + HEAD_START_TIMEOUT_S
    auth = {"Authorization": f"Bearer {head.token}"}
    while time.monotonic() < deadline:
        if head.process.poll() is not None:
            pytest.fail(f"ray start --head exited with {head.process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if requests.get(f"{head.url}/api/jobs/", headers=auth, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    pytest.fail(f"the job server did not answer within {HEAD_START_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")


def stop(head: Head) -> None:
    """SIGTERM to `ray start --block` (it ends its node), then kill any straggler by pid."""
    if head.process.poll() is None:
        head.process.send_signal(signal.SIGTERM)
        try:
            head.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.process.kill()
            head.process.wait()
    deadline = time.monotonic() + 20
    while pids_under(head.root) and time.monotonic() < deadline:
        time.sleep(0.5)
    stragglers = pids_under(head.root)
    for pid in stragglers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not stragglers, f"processes of the test head outlived it and were killed: {stragglers}"


@pytest.fixture(scope="module")
def ray_head():
    # A short root: Ray's Unix socket paths under it must stay within ~107 bytes.
    root = Path(tempfile.mkdtemp(prefix="rl-head-", dir="/tmp" if os.path.isdir("/tmp") else None))
    token = secrets.token_hex(32)
    token_file = root / "auth_token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    env = client_env(token_file)
    gcs, dashboard, client, agent, agent_grpc, runtime_env_agent, metrics = free_ports(7)
    command = [
        ray_executable(), "start", "--head", "--block",
        f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
        "--include-dashboard=true", f"--ray-client-server-port={client}",
        f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--runtime-env-agent-port={runtime_env_agent}", f"--metrics-export-port={metrics}",
        "--min-worker-port=0", "--max-worker-port=0",
        "--num-cpus=2", "--num-gpus=0", f"--temp-dir={root / 'ray'}", "--disable-usage-stats",
    ]  # fmt: skip
    log = root / "head.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=root, start_new_session=True,
        )  # fmt: skip
    head = Head(f"http://127.0.0.1:{dashboard}", dashboard, env, root, token, process)
    try:
        wait_until_serving(head, log)
        yield head
    finally:
        try:
            stop(head)
        finally:
            shutil.rmtree(root, ignore_errors=True)


def ray_cli(head: Head, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [ray_executable(), *args], env=head.env, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_job_server_wants_the_token(ray_head):
    jobs = f"{ray_head.url}/api/jobs/"
    assert requests.get(jobs, timeout=10).status_code == 401
    wrong = secrets.token_hex(32)
    assert requests.get(jobs, headers={"Authorization": f"Bearer {wrong}"}, timeout=10).status_code == 403
    assert requests.get(jobs, headers={"Authorization": f"Bearer {ray_head.token}"}, timeout=10).status_code == 200


def test_job_server_listens_on_loopback_only(ray_head):
    from ray._private.services import get_node_ip_address

    address = get_node_ip_address()
    if address.startswith("127."):
        pytest.skip("this machine has no address besides loopback")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((address, ray_head.dashboard_port), timeout=5).close()


def test_submitted_run_succeeds_writes_outputs_and_logs_progress(ray_head, tmp_path):
    """A user's own factory module in a working directory of its own, submitted as a job
    that runs the installed ``raylanczos`` command."""
    out = tmp_path / "out"
    project = write_project(tmp_path / "project")
    submission = f"raylanczos-test-{uuid.uuid4().hex[:8]}"
    submit = ray_cli(
        ray_head,
        "job", "submit", "--address", ray_head.url, "--submission-id", submission,
        "--working-dir", str(project), "--runtime-env", str(REPO / "jobs" / "runtime-env.yaml"),
        "--",
        "raylanczos", "run", "--problem", FACTORY, "--out", str(out),
        "--order", "5", "--draws", "1", "--cpus-per-worker", "0.5",
        timeout=JOB_TIMEOUT_S,
    )  # fmt: skip
    transcript = submit.stdout + submit.stderr
    assert submit.returncode == 0, transcript[-6000:]
    assert f"Job '{submission}' succeeded" in transcript

    status = ray_cli(ray_head, "job", "status", "--address", ray_head.url, submission)
    assert f"Job '{submission}' succeeded" in status.stdout + status.stderr

    for name in ("tridiag.npy", "spectrum.npz", "summary.json", "density.png"):
        assert (out / name).is_file(), f"{name} missing from {sorted(p.name for p in out.iterdir())}"
    tridiag = np.load(out / "tridiag.npy", allow_pickle=False)
    assert tridiag.shape == (1, 5, 5) and tridiag.dtype == np.float64
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["problem"] == FACTORY and summary["config"]["num_params"] == NUM_PARAMS
    assert np.isfinite(summary["lambda_max"]) and summary["lambda_max"] > 0

    logs = ray_cli(ray_head, "job", "logs", "--address", ray_head.url, submission)
    assert logs.returncode == 0, logs.stderr[-4000:]
    text = logs.stdout
    for step in range(1, 6):
        assert re.search(rf"^\d\d:\d\d:\d\d pass {step} \| steps {step}/5, ", text, re.MULTILINE), text[-4000:]
    assert re.search(r"worker 0: shard 0 \(rows \[0, 300\)\), 300 examples, node \w+", text), text[-4000:]
    assert "λ_max" in text  # the closing summary line
    assert "Traceback" not in text and "os.fork()" not in text
