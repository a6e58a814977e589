"""jobs/benchmark.py end to end on a tiny problem, against the session's Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEP_KEYS = {"mean_step_s", "mean_broadcast_s", "mean_hvp_max_s", "mean_gather_s", "mean_reduce_s", "mean_reorth_s", "mean_checkpoint_s"}


def test_benchmark_prints_its_figures_as_json_on_the_last_line(ray_session, tmp_path):
    order, n = 6, 310
    command = [
        sys.executable, "jobs/benchmark.py", "--problem", "raylanczos.examples.digits:tiny_problem",
        "--order", str(order), "--workers", "1", "2", "--cpus-per-worker", "0.5", "--repeats", "1",
        "--address", ray_session.address, "--out", str(tmp_path),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == json.loads((tmp_path / "benchmark.json").read_text())
    assert report["num_params"] == n and report["basis_floor_bytes"] == n * (order + 1) * 8
    assert set(report["workers"]) == {"1", "2"}
    for figures in report["workers"].values():
        assert STEP_KEYS <= set(figures) and figures["draw_total_s"] > figures["mean_step_s"] * order > 0
        assert figures["speedup_vs_tf_original"] == pytest.approx(report["tf_original_step_s"] / figures["mean_step_s"])
    assert report["hvp_floor_s"] == min(report["hvp_floor_before_s"], report["hvp_floor_after_s"]) > 0
    assert report["overhead_ratio"] == pytest.approx(report["mean_step_s"] / report["hvp_floor_s"])
    assert report["mean_step_s"] == report["workers"]["1"]["mean_step_s"]
    assert report["speedup_vs_jax_original"] == pytest.approx(report["jax_original_draw_total_s"] / report["draw_total_s"])
    assert report["tf_original_step_s"] > 0 and report["jax_original_step_s"] > 0
    assert report["peak_driver_rss_bytes"] > 0
    assert "draw 1/1 step 6/6" in done.stderr, "progress lines of each run"
