"""Spectra across training checkpoints: one run per factory argument, the same start vectors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import raylanczos as rl
from raylanczos import cli
from raylanczos.config import OptionError
from raylanczos.run.sweep import parse_sweep

FACTORY = "tests.problems:tiny_at_step"
POINTS = ["step=0", "step=30", "step=100"]


def test_sweep_values_are_python_literals():
    assert parse_sweep("step=100,1000") == ("step", [100, 1000])
    assert parse_sweep("lr=1e-3,0.1") == ("lr", [1e-3, 0.1])
    assert parse_sweep("name=base,'large'") == ("name", ["base", "large"])
    with pytest.raises(OptionError, match="must look like NAME=VALUE"):
        parse_sweep("100,1000")


def test_a_point_the_factory_cannot_build_is_refused_before_any_point_runs(tmp_path, capsys):
    """The last value is bad: the driver calls the factory for every point first, so the
    refusal comes in seconds, naming the call, before any worker or Ray address is used."""
    out = tmp_path / "run"
    code = cli.main([
        "run", "--problem", FACTORY, "--sweep", "step=0,'ten'", "--out", str(out), "--order", "8", "--draws", "2",
        "--address", "127.0.0.1:1",
    ])
    err = capsys.readouterr().err
    assert code == 2
    assert "problem factory \"tests.problems:tiny_at_step(step='ten')\" raised TypeError" in err, err
    assert "sweep point" not in err and not (out / "step=0" / "summary.json").exists()


def sweep_args(address: str, out, *extra: str) -> list[str]:
    return [
        "run", "--problem", FACTORY, "--sweep", "step=0,30,100", "--out", str(out), "--order", "8", "--draws", "2",
        "--workers", "2", "--cpus-per-worker", "0.5", "--address", address, "--progress", "lines", "--checkpoint-every", "0",
        *extra,
    ]


@pytest.fixture(scope="module")
def swept(ray_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "run"
    assert cli.main(sweep_args(ray_session.address, out, "--save-vectors")) == 0
    return out


@pytest.mark.slow
def test_each_point_is_a_run_with_the_same_start_vectors(swept):
    summaries = {point: json.loads((swept / point / "summary.json").read_text()) for point in POINTS}
    assert [s["config"]["arguments"] for s in summaries.values()] == [{"step": 0}, {"step": 30}, {"step": 100}]
    for point in POINTS:
        assert np.load(swept / point / "tridiag.npy").shape == (2, 8, 8)
    for draw in (0, 1):
        first = [np.load(swept / point / f"lanczos_vec_{draw}.npy")[0] for point in POINTS]
        assert all(np.array_equal(first[0], v) for v in first[1:]), "common random numbers: one start vector per draw"
    top = [s["lambda_max"] for s in summaries.values()]
    assert len(set(top)) == 3, "the points are different networks"
    bands = [s["cdf_band"] for s in summaries.values()]
    assert all(len(band["lower"]) == len(band["grid"]) > 0 for band in bands), "each point has its band"
    assert all(0 < s["ks_half_width"] <= 0.5 for s in summaries.values())
    pids = [sorted(w["pid"] for w in s["workers"]) for s in summaries.values()]
    assert pids[0] == pids[1] == pids[2], "the workers were kept from point to point"


@pytest.mark.slow
def test_the_top_level_has_the_table_and_the_overlay(swept):
    summary = json.loads((swept / "summary.json").read_text())
    assert summary["sweep"] == {"name": "step", "values": [0, 30, 100]} and list(summary["parts"]) == POINTS
    table = (swept / "statistics.csv").read_text().splitlines()
    assert table[0].startswith("part,dim,lambda_max") and [line.split(",")[0] for line in table[1:]] == POINTS
    assert (swept / "density.png").read_bytes()[:4] == b"\x89PNG"
    result = rl.load_result(swept)
    assert list(result.parts) == POINTS and result.parts["step=30"].tridiagonals.shape == (2, 8, 8)


@pytest.mark.slow
def test_a_sweep_killed_mid_way_resumes_bit_identically(ray_session, swept, tmp_path, capsys):
    """The driver is SIGKILLed in the second point; --resume keeps the first point, resumes
    the second from its checkpoint, runs the third, and every point has the undisturbed bits."""
    out = tmp_path / "killed"
    driver = subprocess.Popen(
        [sys.executable, "-m", "raylanczos", *sweep_args(ray_session.address, out)],
        stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    point = None
    for line in driver.stderr:
        if "sweep point" in line:
            point = line.split("sweep point ")[1].strip()
        if point == "step=30" and "pass 3 |" in line:
            os.kill(driver.pid, signal.SIGKILL)
            break
    driver.wait(timeout=60)
    assert driver.returncode == -signal.SIGKILL
    assert (out / "step=0" / "summary.json").exists() and not (out / "step=30" / "summary.json").exists()
    code = cli.main([*sweep_args(ray_session.address, out), "--resume"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "sweep point step=0: finished already, kept" in err and "resuming: 0 draw(s) finished, 2 in progress" in err
    for point in POINTS:
        assert np.array_equal(np.load(out / point / "tridiag.npy"), np.load(swept / point / "tridiag.npy")), point


@pytest.mark.slow
def test_a_sweep_of_per_layer_runs_gives_each_point_its_blocks(ray_session, tmp_path, capsys):
    """``--sweep`` with ``--per-layer``: every point is a blocks run of its own, the sweep's
    closing lines give one table of blocks per point, and it re-renders."""
    out = tmp_path / "sweep"
    argv = ["run", "--problem", "raylanczos.examples.digits:at_step", "--sweep", "step=0,30", "--per-layer",
            "--order", "6", "--draws", "1", "--workers", "2", "--cpus-per-worker", "0.5", "--out", str(out), "--quiet"]
    assert cli.main(argv) == 0
    closing = capsys.readouterr().out
    assert "step=0:\npart" in closing and "step=30:\npart" in closing
    for point in ("step=0", "step=30"):
        point_summary = json.loads((out / point / "summary.json").read_text())
        assert list(point_summary["parts"]) == ["0", "1"]
        assert all((out / point / "blocks" / block / "tridiag.npy").is_file() for block in ("0", "1"))
    assert cli.main(["density", "--run", str(out)]) == 0
