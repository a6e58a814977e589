"""The ``raylanczos`` command as a user runs it: outputs, re-rendering, bad input, resume."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import raylanczos as rl
from raylanczos import cli
from tests.conftest import FAST, TINY
from tests.numerics.test_spectrum import reference_original_density


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = cli.main(list(args))
    return code, capsys.readouterr().err


@pytest.fixture
def finished_run(tiny_run) -> Path:
    return tiny_run


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
    assert summary["config"]["draws_per_pass"] == 2, "the default B, clamped to the 2 draws"
    assert timings.shape == (12, len(summary["timings"]["columns"])), "one row per pass over the data"
    assert np.all(timings[:, summary["timings"]["columns"].index("hvp_max")] > 0), "every pass records the slowest worker"
    assert summary["reduce"] == {"mode": "node", "node_groups": [[0, 1]], "sums_on_driver": True, "shared_memory": True}
    received = timings[:, summary["timings"]["columns"].index("bytes_received")]
    assert np.all(received == 2 * (2 * 310 * 8)), "the driver's node alone: the driver sums both partials itself"
    assert summary["lambda_max"] == pytest.approx(max(summary["top_ritz_values"]))
    assert len(summary["workers"]) == 2 and all(w["node_id"] for w in summary["workers"])
    assert all(w["cores"] == sorted(os.sched_getaffinity(0)) for w in summary["workers"]), "--no-pin-cpus"
    assert all(w["warm_up_s"] > 0 for w in summary["workers"]), "each worker compiles before the first step"
    assert all(w["sums_on_device"] for w in summary["workers"]), "batch products summed on the device"
    assert all(list(w["product_form_seconds"]) == ["jvp-grad"] for w in summary["workers"]), "a short block: no other form timed"
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
    # The next re-render with no options is back at the documented defaults, not at the last ones.
    code, err = run_cli(capsys, "density", "--out", str(finished_run))
    assert code == 0, err
    defaults = json.loads((finished_run / "summary.json").read_text())["density"]
    assert defaults["sigma2_relative"] == 1e-5 and defaults["grid_points"] == 10_000


def test_density_of_a_read_only_run_goes_elsewhere(finished_run, tmp_path, capsys):
    """A finished run is only read: its files keep their bytes, and the redrawn ones go to --to."""
    source = tmp_path / "read-only"
    shutil.copytree(finished_run, source)
    before = {p.name: p.read_bytes() for p in source.iterdir() if p.is_file()}
    code, err = run_cli(capsys, "density", "--out", str(source), "--to", str(tmp_path / "redrawn"), "--sigma2-relative", "1e-3")
    assert code == 0, err
    assert {p.name: p.read_bytes() for p in source.iterdir() if p.is_file()} == before
    redrawn = rl.load_result(tmp_path / "redrawn")
    assert redrawn.summary["density"]["sigma2_relative"] == 1e-3
    assert np.array_equal(redrawn.tridiagonals, np.load(source / "tridiag.npy"))
    assert (tmp_path / "redrawn" / "density.png").read_bytes()[:4] == b"\x89PNG"


def test_the_original_sigma2_convention_reproduces_its_density(finished_run, tmp_path, capsys):
    """--sigma2-original gives the density the original tridiag_to_density computes from
    tridiag.npy (its variance, grid and normalisation), to 1e-6 in L1."""
    code, err = run_cli(capsys, "density", "--out", str(finished_run), "--to", str(tmp_path / "o"), "--sigma2-original", "1e-4")
    assert code == 0, err
    with np.load(tmp_path / "o" / "spectrum.npz") as saved:
        grid, density = saved["grid"], saved["density"]
    stacked = np.load(finished_run / "tridiag.npy")
    want_grid, want, _ = reference_original_density(stacked, 1e-4, 10_000)
    assert np.array_equal(grid, want_grid)
    assert np.sum(np.abs(density - want)) * (grid[1] - grid[0]) < 1e-6


def kill_at_pass(argv: list[str], at: int) -> None:
    """Run ``raylanczos <argv>`` (with ``--progress lines``) as a driver process of its own
    and SIGKILL it as soon as it logs pass ``at``."""
    driver = subprocess.Popen(
        [sys.executable, "-m", "raylanczos", *argv], stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    for line in driver.stderr:
        if f"pass {at} |" in line:
            os.kill(driver.pid, signal.SIGKILL)
            break
    driver.wait(timeout=60)
    assert driver.returncode == -signal.SIGKILL


@pytest.mark.slow
@pytest.mark.parametrize("draws_per_pass, kill_at, finished", [(2, 14, 2)])
def test_killed_run_resumes_bit_identically(ray_session, tmp_path, capsys, draws_per_pass, kill_at, finished):
    """A real driver process is SIGKILLed mid-block (3 draws × 10 steps, 2 draws per pass:
    pass 14 is in the second block); ``--resume`` finishes with the same numbers. (Resuming
    from every kind of pass, B = 1 included, is test_loop's and test_checkpoint's.)"""
    address = ray_session.address
    args = [
        "run", "--problem", TINY, "--order", "10", "--draws", "3", "--workers", "2", "--address", address, *FAST,
        "--draws-per-pass", str(draws_per_pass), "--progress", "lines", "--checkpoint-every", "0",
    ]
    kill_at_pass([*args, "--out", str(tmp_path / "killed")], kill_at)
    assert np.load(tmp_path / "killed" / "tridiag.npy").shape[0] == finished, "finished draws were written before the kill"
    code, err = run_cli(capsys, *args, "--out", str(tmp_path / "killed"), "--resume")
    assert code == 0, err
    assert f"resuming: {finished} draw(s) finished, 1 in progress" in err
    code, err = run_cli(capsys, *args, "--out", str(tmp_path / "whole"))
    assert code == 0, err
    resumed = np.load(tmp_path / "killed" / "tridiag.npy")
    assert np.array_equal(resumed, np.load(tmp_path / "whole" / "tridiag.npy"))


#: A run drawn until target width 0.3, at most 8 draws, 2 per pass, 10 steps each: after 2
#: draws the trace's relative standard error is 0.33, after 4 it is 0.25 (ε is 0.12, then
#: 0.087), so it stops after 4 draws, at pass 20.
TARGET_RUN = ["--problem", TINY, "--order", "10", "--draws-per-pass", "2", "--workers", "2", *FAST, "--progress", "lines"]


@pytest.fixture(scope="module")
def four_draws(ray_session, tmp_path_factory) -> Path:
    """The fixed run of the 4 draws the target-width runs stop at."""
    out = tmp_path_factory.mktemp("fixed") / "four"
    assert cli.main(["run", *TARGET_RUN, "--draws", "4", "--address", ray_session.address, "--out", str(out), "--quiet"]) == 0
    return out


@pytest.mark.slow
def test_a_target_width_run_stops_early_with_the_draws_of_a_fixed_run(ray_session, four_draws, tmp_path, capsys):
    """--target-width 0.3 stops after 4 of at most 8 draws, says why in summary.json and the
    closing line, and its tridiagonals are bit for bit those of a fixed --draws 4 run."""
    out = tmp_path / "target"
    argv = ["run", *TARGET_RUN, "--draws", "8", "--target-width", "0.3", "--address", ray_session.address, "--out", str(out)]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "target width 0.3: checked every 2 draws from 2 on, at most 8 draws" in captured.err
    assert "stopped: target width 0.3 reached after 4 draws  →" in captured.out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop_reason"] == "target width 0.3 reached after 4 draws"
    assert summary["stopping"]["reached"] and summary["stopping"]["sampling_half_width"] <= 0.3
    assert summary["config"]["target_width"] == 0.3 and summary["config"]["draws"] == 8 and len(summary["steps_completed"]) == 4
    assert len(summary["timings"]["rows"]) == 20, "two rounds of 10 passes, none of the third"
    assert np.array_equal(np.load(out / "tridiag.npy"), np.load(four_draws / "tridiag.npy"))


@pytest.mark.slow
def test_a_killed_target_width_run_resumes_to_the_same_stop(ray_session, four_draws, tmp_path, capsys):
    """SIGKILLed in its second round (pass 12 of 20), the run resumes from its checkpoint,
    checks the same draws and stops after the same 4, with the fixed run's bits."""
    argv = ["run", *TARGET_RUN, "--draws", "8", "--target-width", "0.3", "--address", ray_session.address, "--checkpoint-every", "0"]
    kill_at_pass([*argv, "--out", str(tmp_path / "killed")], 12)
    assert np.load(tmp_path / "killed" / "tridiag.npy").shape[0] == 2, "the first round was written before the kill"
    assert cli.main([*argv, "--out", str(tmp_path / "killed"), "--resume"]) == 0
    captured = capsys.readouterr()
    assert "resuming: 2 draw(s) finished, 2 in progress" in captured.err
    assert "stopped: target width 0.3 reached after 4 draws" in captured.out
    assert np.array_equal(np.load(tmp_path / "killed" / "tridiag.npy"), np.load(four_draws / "tridiag.npy"))


def test_resume_of_a_finished_run_renders_it_again_without_ray(finished_run, tmp_path):
    """Nothing to compute: the run is re-rendered from its files, and Ray is never asked
    (an address nothing answers on would be refused at once)."""
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    tridiag = (copy / "tridiag.npy").read_bytes()
    args = ["run", "--problem", TINY, "--out", str(copy), "--order", "12", "--draws", "2", "--workers", "2", "--resume"]
    assert cli.main([*args, *FAST, "--address", "127.0.0.1:1"]) == 0
    assert (copy / "tridiag.npy").read_bytes() == tridiag
    assert json.loads((copy / "summary.json").read_text())["lambda_max"] == json.loads((finished_run / "summary.json").read_text())["lambda_max"]


def test_a_finished_run_carries_its_certificate(finished_run, capsys):
    """summary.json's band holds the dense Hessian's spectral CDF, and its interval the
    dense fraction of eigenvalues below the threshold; spectrum.npz has the band's arrays,
    and the closing line names the certified interval."""
    from tests.hessians import tiny_hessian

    summary = json.loads((finished_run / "summary.json").read_text())
    band = summary["cdf_band"]
    eigenvalues = np.linalg.eigvalsh(tiny_hessian())
    grid = np.array(band["grid"])
    exact = np.searchsorted(eigenvalues, grid, side="right") / eigenvalues.size
    assert band["confidence"] == 0.95 and len(band["lower"]) == grid.size
    assert np.all(np.array(band["lower"]) <= exact + 1e-12) and np.all(exact <= np.array(band["upper"]) + 1e-12)
    low, high = summary["negative_fraction_bounds"]
    assert low <= np.mean(eigenvalues < summary["negative_threshold"]) <= high
    assert 0 < summary["ks_half_width"] <= 0.5 and summary["w1_bound"] > 0
    with np.load(finished_run / "spectrum.npz", allow_pickle=False) as saved:
        assert np.array_equal(saved["cdf_grid"], grid) and saved["density_lower"].shape == saved["grid"].shape
    assert cli.main(["density", "--out", str(finished_run), "--to", str(finished_run.parent / "redrawn")]) == 0
    assert "certified (95%): in [" in capsys.readouterr().out
