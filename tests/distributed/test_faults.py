"""Real faults on a local Ray cluster: killed workers, failing restarts, lost nodes.

A driver runs ``python -m raylanczos run`` as its own process against the session's
cluster; the test reads its progress lines and injects the fault at a chosen step.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from raylanczos import cli
from tests import problems

pytestmark = pytest.mark.slow

ORDER, DRAWS, DRAWS_PER_PASS = "10", "3", "2"  # passes 1-10 hold draws 1 and 2, passes 11-20 draw 3


def run_args(cluster, factory: str, out: Path, *extra: str) -> list[str]:
    return [
        "run", "--problem", factory, "--order", ORDER, "--draws", DRAWS, "--draws-per-pass", DRAWS_PER_PASS,
        "--workers", "2", "--cpus-per-worker", "0.5", "--timeout", "120", "--address", cluster.address,
        "--out", str(out), "--progress", "lines", *extra,
    ]


class Driver:
    """A ``raylanczos run`` process whose stderr is read line by line."""

    def __init__(self, args: list[str]):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "raylanczos", *args],
            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self.lines: list[str] = []

    def read_until(self, text: str) -> str:
        for line in self.process.stderr:
            self.lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"the driver ended before printing {text!r}:\n{''.join(self.lines)}")

    @contextlib.contextmanager
    def held(self):
        """The driver stopped (SIGSTOP) while the ``with`` block runs, then continued: a
        fault made inside lands between two passes, however fast the passes are."""
        os.kill(self.process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.process.pid, signal.SIGCONT)

    def finish(self) -> int:
        _, rest = self.process.communicate(timeout=300)
        self.lines.append(rest)
        return self.process.returncode

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def worker_line(self, worker: int) -> str:
        return next(line for line in self.lines if line.split(" ", 1)[1].startswith(f"worker {worker}: "))


def worker_pid(line: str) -> int:
    return int(re.search(r"pid (\d+)", line).group(1))


@pytest.fixture(scope="module")
def undisturbed(ray_cluster, tmp_path_factory) -> np.ndarray:
    """Tridiagonals of the same run with no fault."""
    out = tmp_path_factory.mktemp("faults") / "undisturbed"
    assert cli.main(run_args(ray_cluster, "tests.problems:fails_when_flagged", out)) == 0
    return np.load(out / "tridiag.npy")


def test_killed_worker_is_restarted_bit_identically(ray_cluster, undisturbed, tmp_path):
    """Worker 1 is SIGKILLed mid-block: Ray restarts it (a new process), the block's products
    are recomputed, and the result is the undisturbed run's, bit for bit."""
    driver = Driver(run_args(ray_cluster, "tests.problems:fails_when_flagged", tmp_path / "run"))
    driver.read_until("pass 4 |")
    killed = worker_pid(driver.worker_line(1))
    os.kill(killed, signal.SIGKILL)
    assert driver.finish() == 0, driver.log
    assert np.array_equal(np.load(tmp_path / "run" / "tridiag.npy"), undisturbed)
    worker = json.loads((tmp_path / "run" / "summary.json").read_text())["workers"][1]
    assert worker["pid"] == killed and worker["pid_at_end"] != killed and worker["restarted"]


def test_worker_that_keeps_failing_ends_the_run_and_resume_finishes_it(ray_cluster, undisturbed, tmp_path):
    """Worker 1 is killed and its restart fails (its factory raises): the run stops
    naming worker and shard, keeps the finished draw and the checkpoint, and
    ``--resume`` (factory fixed) ends with the undisturbed numbers."""
    out = tmp_path / "run"
    driver = Driver(run_args(ray_cluster, "tests.problems:fails_when_flagged", out))
    flag = problems.fail_flag()
    try:
        driver.read_until("pass 13 |")
        flag.touch()
        os.kill(worker_pid(driver.worker_line(1)), signal.SIGKILL)
        assert driver.finish() == 2
    finally:
        flag.unlink(missing_ok=True)
    error = driver.log.strip().splitlines()[-1]
    assert error.startswith("raylanczos: error: worker 1 (shard 1 (rows [898, 1797))) failed")
    assert "fail-factory" in error and "Traceback" not in driver.log
    assert np.array_equal(np.load(out / "tridiag.npy"), undisturbed[:2])
    assert cli.main(run_args(ray_cluster, "tests.problems:fails_when_flagged", out, "--resume")) == 0
    assert np.array_equal(np.load(out / "tridiag.npy"), undisturbed)


def test_lost_node_moves_its_shard(ray_cluster, undisturbed, tmp_path):
    node = ray_cluster.add_node(num_cpus=1)
    ray_cluster.wait_for_nodes()
    try:
        driver = Driver(run_args(ray_cluster, "tests.problems:fails_when_flagged", tmp_path / "run"))
        driver.read_until("pass 3 |")
        placed = [driver.worker_line(w) for w in (0, 1)]
        assert any(f"node {node.node_id[:12]}" in line for line in placed), placed
        ray_cluster.remove_node(node)
        node = None
        assert driver.finish() == 0, driver.log
    finally:
        if node is not None:
            ray_cluster.remove_node(node)
    assert np.array_equal(np.load(tmp_path / "run" / "tridiag.npy"), undisturbed)
