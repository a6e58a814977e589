"""jobs/benchmark.py end to end on a tiny problem, against the session's Ray, split in two
runs as a long GPU benchmark is: the tf-original baseline alone, then our runs with the
jax-original baseline and the first run's figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEP_KEYS = {"mean_step_s", "mean_broadcast_s", "mean_hvp_max_s", "mean_gather_s", "mean_reduce_s", "mean_reorth_s", "mean_checkpoint_s"}
ORDER, N = 6, 310


def benchmark(*args: str) -> tuple[subprocess.CompletedProcess, dict | None]:
    command = [sys.executable, "jobs/benchmark.py", "--problem", "raylanczos.examples.digits:tiny_problem", "--repeats", "1", *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    report = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
    return done, report


def test_benchmark_in_two_runs_prints_its_figures_as_json_on_the_last_line(ray_session, tmp_path):
    done, baseline = benchmark("--order", str(ORDER), "--workers", "--baselines", "tf-original", "--out", str(tmp_path / "a"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert baseline["tf_original_step_s"] > 0 and "jax_original_step_s" not in baseline and "workers" not in baseline

    done, report = benchmark(
        "--order", str(ORDER), "--workers", "1", "2", "--cpus-per-worker", "0.5", "--baselines", "jax-original",
        "--baseline-results", str(tmp_path / "a" / "benchmark.json"), "--address", ray_session.address,
        "--out", str(tmp_path / "b"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert report == json.loads((tmp_path / "b" / "benchmark.json").read_text())
    assert report["tf_original_step_s"] == baseline["tf_original_step_s"] and report["jax_original_step_s"] > 0
    assert report["num_params"] == N and report["basis_floor_bytes"] == N * (ORDER + 1) * 8
    assert set(report["workers"]) == {"1", "2"}
    for figures in report["workers"].values():
        assert STEP_KEYS <= set(figures) and figures["draw_total_s"] > figures["mean_step_s"] * ORDER > 0
        assert figures["speedup_vs_tf_original"] == pytest.approx(report["tf_original_step_s"] / figures["mean_step_s"])
        assert figures["speedup_vs_jax_original"] == pytest.approx(report["jax_original_draw_total_s"] / figures["draw_total_s"])
    assert report["hvp_floor_s"] == min(report["hvp_floor_before_s"], report["hvp_floor_after_s"]) > 0
    assert report["overhead_ratio"] == pytest.approx(report["mean_step_s"] / report["hvp_floor_s"])
    assert report["mean_step_s"] == report["workers"]["1"]["mean_step_s"]
    assert report["speedup_vs_tf_original"] == report["workers"]["1"]["speedup_vs_tf_original"]
    assert report["peak_driver_rss_bytes"] > 0
    assert "draw 1/1 step 6/6" in done.stderr, "progress lines of each run"

    done, _ = benchmark("--order", "7", "--workers", "--skip-baselines", "--baseline-results", str(tmp_path / "a" / "benchmark.json"))
    assert done.returncode != 0
    assert f"--baseline-results {tmp_path / 'a' / 'benchmark.json'} has order 6, this run 7" in done.stderr
