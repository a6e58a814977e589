"""The ``raylanczos`` command as a user runs it: outputs, re-rendering, bad input, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from raylanczos import cli
from tests import problems

TINY = "raylanczos.examples.digits:tiny_problem"
FAST = ["--cpus-per-worker", "0.5"]


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = cli.main(list(args))
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def finished_run(ray_session, tmp_path_factory) -> Path:
    """A 2-draw × 12-step run of the tiny MLP with 2 workers, through the CLI."""
    out = tmp_path_factory.mktemp("cli") / "run"
    args = ["run", "--problem", TINY, "--out", str(out), "--order", "12", "--draws", "2", "--workers", "2", "--no-pin-cpus"]
    assert cli.main([*args, *FAST]) == 0
    return out


def test_run_writes_every_output(finished_run):
    tridiag = np.load(finished_run / "tridiag.npy", allow_pickle=False)
    assert tridiag.shape == (2, 12, 12) and tridiag.dtype == np.float64
    assert np.array_equal(tridiag, np.transpose(tridiag, (0, 2, 1)))
    assert np.count_nonzero(np.triu(tridiag, 2)) == 0
    with np.load(finished_run / "spectrum.npz", allow_pickle=False) as saved:
        assert saved["nodes"].shape == saved["weights"].shape == (2, 12)
        assert np.allclose(saved["weights"].sum(axis=1), 1.0)
        assert saved["grid"].shape == saved["density"].shape
    summary = json.loads((finished_run / "summary.json").read_text())
    assert summary["config"]["order"] == 12 and summary["config"]["draws"] == 2
    assert summary["config"]["num_params"] == 310 and summary["config"]["num_examples"] == 1797
    assert summary["steps_completed"] == [12, 12]
    assert summary["config"]["backend"] == "jax" and summary["config"]["training"] is None
    layout = summary["parameter_layout"]
    assert [block["name"] for block in layout] == ["0/b", "0/w", "1/b", "1/w"]
    assert layout[-1]["offset"] + layout[-1]["size"] == 310
    timings = np.array(summary["timings"]["rows"])
    assert timings.shape == (24, len(summary["timings"]["columns"]))
    assert np.all(timings[:, 3] > 0), "every step records the slowest worker's HVP time"
    assert summary["lambda_max"] == pytest.approx(max(summary["top_ritz_values"]))
    assert len(summary["workers"]) == 2 and all(w["node_id"] for w in summary["workers"])
    assert all(w["cores"] == sorted(os.sched_getaffinity(0)) for w in summary["workers"]), "--no-pin-cpus"
    assert all(w["warm_up_s"] > 0 for w in summary["workers"]), "each worker compiles before the first step"
    assert all(w["sums_on_device"] for w in summary["workers"]), "batch products summed on the device"
    assert len(summary["second_reorthogonalisation_passes"]) == len(summary["fresh_products"]) == 2
    assert (finished_run / "density.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_density_command_rerenders_with_another_sigma2(finished_run, capsys):
    before = json.loads((finished_run / "summary.json").read_text())
    code, err = run_cli(capsys, "density", "--out", str(finished_run), "--sigma2", "1e-6", "--grid-points", "500")
    assert code == 0, err
    with np.load(finished_run / "spectrum.npz", allow_pickle=False) as saved:
        assert float(saved["sigma2"]) == 1e-6 and saved["grid"].shape == (500,)
    after = json.loads((finished_run / "summary.json").read_text())
    assert after["density"]["sigma2"] == 1e-6 and after["density"]["sigma2_relative"] is None
    assert after["lambda_max"] == before["lambda_max"]
    assert after["negative_mass"] != before["negative_mass"]


def test_existing_run_is_not_overwritten(finished_run, capsys):
    before = (finished_run / "tridiag.npy").read_bytes()
    code, err = run_cli(capsys, "run", "--problem", TINY, "--out", str(finished_run), "--order", "5", "--draws", "1")
    assert code == 2 and "already holds a run" in err
    assert (finished_run / "tridiag.npy").read_bytes() == before


BAD_PLANS = {
    "overlap": ({"workers": [{"rows": [[0, 1000]]}, {"rows": [[900, 1797]]}]}, "rows 900-999 are assigned to both worker 0 and worker 1"),
    "gap": ({"workers": [{"rows": [[0, 800]]}, {"rows": [[900, 1797]]}]}, "rows 800-899 are assigned to no worker"),
}


@pytest.mark.parametrize("name", sorted(BAD_PLANS))
def test_bad_shard_plan_is_refused_before_any_work(finished_run, tmp_path, capsys, name):
    plan, message = BAD_PLANS[name]
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    before = (finished_run / "tridiag.npy").read_bytes()
    code, err = run_cli(
        capsys, "run", "--problem", TINY, "--out", str(finished_run), "--overwrite", "--shards", str(tmp_path / "plan.json")
    )
    assert code == 2 and message in err and "Traceback" not in err
    assert (finished_run / "tridiag.npy").read_bytes() == before


@pytest.mark.parametrize(
    "factory, message",
    [
        ("no_such_module:problem", "cannot import module 'no_such_module'"),
        ("tests.problems:missing", "has no attribute 'missing'"),
        ("tests.problems:not_a_problem", "returned dict, expected raylanczos.Problem"),
        ("tests.problems:raises", "raised FileNotFoundError: weights.ckpt"),
    ],
)
def test_bad_factory_is_named(ray_session, tmp_path, capsys, factory, message):
    code, err = run_cli(capsys, "run", "--problem", factory, "--out", str(tmp_path / "x"))
    assert code == 2 and message in err and factory in err


def test_non_scalar_loss_names_the_worker(ray_session, tmp_path, capsys):
    code, err = run_cli(capsys, "run", "--problem", "tests.problems:vector_loss", "--out", str(tmp_path / "x"), *FAST)
    assert code == 2
    assert "worker 0" in err and "must return a scalar" in err


def test_nan_data_names_worker_and_shard(ray_session, tmp_path, capsys):
    code, err = run_cli(
        capsys, "run", "--problem", "tests.problems:nan_data", "--out", str(tmp_path / "x"), "--workers", "2", *FAST
    )
    assert code == 2
    assert "non-finite Hessian-vector product on worker 1, shard 1 (rows 898-1796)" in err
    first, last = map(int, err.split("dataset rows ")[1].split(" ")[0].split("-"))
    assert first <= problems.NAN_ROW <= last


def test_bad_numbers_are_named(ray_session, tmp_path, capsys):
    code, err = run_cli(capsys, "run", "--problem", TINY, "--out", str(tmp_path / "x"), "--order", "0")
    assert code == 2 and "order must be a positive integer, got 0" in err
    code, err = run_cli(capsys, "run", "--problem", TINY, "--out", str(tmp_path / "x"), "--draws", "-2")
    assert code == 2 and "draws must be a positive integer, got -2" in err


def test_killed_run_resumes_bit_identically(ray_session, tmp_path, capsys):
    """A real driver process is SIGKILLed mid-draw; ``--resume`` finishes the same numbers."""
    address = ray_session.address
    args = ["run", "--problem", TINY, "--order", "10", "--draws", "3", "--workers", "2", "--address", address, *FAST]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    driver = subprocess.Popen(
        [sys.executable, "-m", "raylanczos", *args, "--out", str(tmp_path / "killed")],
        stderr=subprocess.PIPE, text=True, env=env,
    )
    for line in driver.stderr:
        if "draw 2/3 step 4/10" in line:
            os.kill(driver.pid, signal.SIGKILL)
            break
    driver.wait(timeout=60)
    assert driver.returncode == -signal.SIGKILL
    assert np.load(tmp_path / "killed" / "tridiag.npy").shape[0] == 1, "the first draw was written before the kill"
    code, err = run_cli(capsys, *args, "--out", str(tmp_path / "killed"), "--resume")
    assert code == 0, err
    assert "resuming: 1 draw(s) finished" in err
    code, err = run_cli(capsys, *args, "--out", str(tmp_path / "whole"))
    assert code == 0, err
    resumed = np.load(tmp_path / "killed" / "tridiag.npy")
    assert np.array_equal(resumed, np.load(tmp_path / "whole" / "tridiag.npy"))


def test_resume_with_another_configuration_is_refused(finished_run, capsys):
    code, err = run_cli(capsys, "run", "--problem", TINY, "--out", str(finished_run), "--order", "12", "--draws", "2", "--seed", "5", "--resume", *FAST)
    assert code == 2 and "different configuration" in err and "seed" in err
