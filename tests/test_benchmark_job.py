"""jobs/benchmark.py end to end on a tiny problem, against the session's Ray, split in two
runs as a long GPU benchmark is: the numpy-loop baseline alone, then our runs with the
jax-original baseline and the first run's figures."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
STEP_KEYS = {
    "mean_step_s", "mean_broadcast_s", "mean_hvp_max_s", "mean_gather_s", "mean_node_reduce_s", "mean_reduce_s",
    "mean_reorth_s", "mean_checkpoint_s", "mean_bytes_sent", "mean_bytes_received",
}
ORDER, N = 6, 310


def benchmark(*args: str) -> tuple[subprocess.CompletedProcess, dict | None]:
    command = [sys.executable, "jobs/benchmark.py", "--problem", "raylanczos.examples.digits:tiny_problem", "--repeats", "1", *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    report = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
    return done, report


def test_benchmark_in_two_runs_prints_its_figures_as_json_on_the_last_line(ray_session, tmp_path):
    done, baseline = benchmark("--order", str(ORDER), "--workers", "--baselines", "numpy-loop", "--out", str(tmp_path / "a"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert baseline["numpy_loop_step_s"] > 0 and "jax_original_step_s" not in baseline and "workers" not in baseline

    done, report = benchmark(
        "--order", str(ORDER), "--workers", "2", "--draws-per-pass", "1", "2", "--cpus-per-worker", "0.5",
        "--baselines", "jax-original", "--baseline-results", str(tmp_path / "a" / "benchmark.json"),
        "--address", ray_session.address, "--out", str(tmp_path / "b"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert report == json.loads((tmp_path / "b" / "benchmark.json").read_text())
    assert report["numpy_loop_step_s"] == baseline["numpy_loop_step_s"], "the first run's baseline, carried over"
    assert report["jax_original_step_s"] > 0
    assert report["num_params"] == N and report["basis_floor_bytes"] == N * (ORDER + 1) * 8
    assert set(report["workers"]) == {"2"} and set(report["workers"]["2"]) == {"1", "2"}
    assert set(report["hvp_floor_s"]) == {"1", "2"} and all(v > 0 for v in report["hvp_floor_s"].values())
    for workers, per_block in report["workers"].items():
        for block, figures in per_block.items():
            assert STEP_KEYS <= set(figures), figures
            summary = json.loads((tmp_path / "b" / f"run-{workers}-B{block}" / "summary.json").read_text())
            assert summary["config"]["draws_per_pass"] == int(block) and summary["steps_completed"] == [ORDER] * int(block)
            assert figures["mean_step_s"] == summary["timings"]["mean_step_s"], "the figures are the run's own"
            assert figures["draw_total_s"] > figures["draw_step_s"] * ORDER > 0
            assert {"speedup_vs_numpy_loop", "speedup_vs_jax_original"} <= set(figures)
    assert set(report["overhead_ratio"]) == {"1", "2"} and set(report["draw_step_speedup_vs_B1"]) == {"1", "2"}
    assert report["peak_driver_rss_bytes"] > 0
    assert re.search(rf"pass {ORDER} \| steps {2 * ORDER}/{2 * ORDER}", done.stderr), "progress lines of each run"

    done, _ = benchmark("--order", "7", "--workers", "--skip-baselines", "--baseline-results", str(tmp_path / "a" / "benchmark.json"))
    assert done.returncode != 0
    assert f"--baseline-results {tmp_path / 'a' / 'benchmark.json'} has order 6, this run 7" in done.stderr
