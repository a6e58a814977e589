"""The installed ``raylanczos`` command, run as a new user runs it: from a directory of
their own holding their factory module (not ``python -m`` from the repository)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import free_port
from tests.user_project import FACTORY, NUM_PARAMS, console_script, write_project

pytestmark = pytest.mark.slow


def run_command(directory, *args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing but the cwd finds my_problem
    return subprocess.run(
        [console_script(), *args], cwd=directory, capture_output=True, text=True, timeout=timeout, env={**environment, **(env or {})},
    )


def processes_naming(text: str) -> list[int]:
    """The pids of the processes whose command line contains ``text``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            pass
    return found


def test_the_command_finds_a_factory_in_the_current_directory(tmp_path):
    """The user's default on a workstation: a private local Ray of the run's own. The
    command ends as soon as its outputs are written, and the guard ends that Ray's
    processes (each names the Ray's temporary directory on its command line) in seconds."""
    project = write_project(tmp_path / "project")
    ray_tmp = tempfile.mkdtemp(prefix="rl-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    done = run_command(
        project, "run", "--problem", FACTORY, "--out", "runs/first", "--order", "8", "--draws", "3",
        "--cpus-per-worker", "0.5", "--address", "local", "--progress", "lines", env={"RAY_TMPDIR": ray_tmp},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and processes_naming(ray_tmp):
        time.sleep(0.2)
    assert not processes_naming(ray_tmp), "the run's local Ray still runs 20 s after the command ended"
    shutil.rmtree(ray_tmp, ignore_errors=True)
    summary = json.loads((project / "runs" / "first" / "summary.json").read_text())
    assert summary["config"]["num_params"] == NUM_PARAMS and summary["steps_completed"] == [8, 8, 8]
    assert np.load(project / "runs" / "first" / "tridiag.npy").shape == (3, 8, 8)
    assert re.search(r"^λ_max \S+  λ_min \S+  trace ≈ \S+ ± \S+  negative eigenvalues \S+% ± \S+%", done.stdout, re.M), done.stdout
    assert "Traceback" not in done.stderr and "os.fork()" not in done.stderr and "WARNING" not in done.stderr, done.stderr
    assert "partials: each worker's through the node's shared memory" in done.stderr, done.stderr


def test_the_command_names_a_factory_it_cannot_find(tmp_path):
    """A typo in the module name: one line, naming the module and where it was looked for."""
    project = write_project(tmp_path / "project")
    done = run_command(project, "run", "--problem", "my_problme:problem", "--out", "runs/x")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "raylanczos: error: cannot import module 'my_problme' for problem factory 'my_problme:problem': "
        f"ModuleNotFoundError: No module named 'my_problme' (looked on sys.path and in {project})"
    ]


def test_a_misspelt_factory_function_is_refused_before_any_ray_starts(tmp_path):
    project = write_project(tmp_path / "project")
    done = run_command(project, "run", "--problem", "my_problem:problme", "--out", "runs/x", "--address", "local")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "raylanczos: error: module 'my_problem' has no attribute 'problme' (problem factory 'my_problem:problme')"
    ], "one line, and no Ray started"


def test_a_factory_failing_while_ray_starts_is_one_line_and_leaves_no_ray(tmp_path):
    """The factory runs while the run's private Ray starts: its error is the run's one
    line, and that Ray is ended as after any run."""
    project = write_project(tmp_path / "project")
    ray_tmp = tempfile.mkdtemp(prefix="rl-", dir="/tmp")
    done = run_command(
        project, "run", "--problem", "my_problem:broken", "--out", "runs/x", "--address", "local", env={"RAY_TMPDIR": ray_tmp},
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == (
        "raylanczos: error: problem factory 'my_problem:broken' raised FileNotFoundError: weights.npz: no such checkpoint"
    ), done.stderr
    assert "Traceback" not in done.stderr and not (project / "runs" / "x" / "summary.json").exists()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and processes_naming(ray_tmp):
        time.sleep(0.2)
    assert not processes_naming(ray_tmp), "the run's local Ray still runs 20 s after the command ended"
    shutil.rmtree(ray_tmp, ignore_errors=True)


def test_an_address_nothing_answers_on_is_refused_in_seconds(tmp_path):
    """A typo in the port: one line naming the address, not minutes of Ray's reconnection logs."""
    project = write_project(tmp_path / "project")
    address = f"127.0.0.1:{free_port()}"
    done = run_command(project, "run", "--problem", FACTORY, "--out", "runs/x", "--address", address, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(f"raylanczos: error: cannot reach Ray at {address} ("), done.stderr
    assert "Traceback" not in done.stderr and not (project / "runs" / "x" / "summary.json").exists()


def test_version(tmp_path):
    done = run_command(tmp_path, "--version")
    assert done.returncode == 0 and re.fullmatch(r"raylanczos \d+\.\d+\.\d+\n", done.stdout)
