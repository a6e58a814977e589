"""Outputs written to an S3-compatible object store: a real local S3 server (moto)."""

from __future__ import annotations

import numpy as np
import pytest

import raylanczos as rl
from raylanczos import cli
from tests.conftest import s3_uri

pytest.importorskip("moto.server")
pafs = pytest.importorskip("pyarrow.fs")

pytestmark = pytest.mark.slow


def test_run_writes_to_s3_and_reads_back(ray_session, s3_endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    uri = s3_uri(s3_endpoint, "runs/digits/tiny")
    args = ["run", "--problem", "raylanczos.examples.digits:tiny_problem", "--out", uri, "--order", "6", "--draws", "2"]
    assert cli.main([*args, "--cpus-per-worker", "0.5"]) == 0

    s3 = pafs.S3FileSystem(endpoint_override=s3_endpoint, scheme="http", region="us-east-1")
    names = {info.base_name for info in s3.get_file_info(pafs.FileSelector("runs/digits/tiny"))}
    assert {"tridiag.npy", "spectrum.npz", "summary.json", "density.png"} <= names
    assert list((tmp_path / "cache" / "raylanczos" / "checkpoints").glob("*/basis_0.npy")), "checkpoint stays on local disk"

    result = rl.load_result(uri)
    assert result.tridiagonals.shape == (2, 6, 6) and result.summary["steps_completed"] == [6, 6]
    assert cli.main(["density", "--out", uri, "--sigma2", "1e-5"]) == 0
    assert rl.load_result(uri).sigma2 == 1e-5
    assert np.array_equal(rl.load_result(uri).tridiagonals, result.tridiagonals)
    assert cli.main(args) == 2, "an existing run in the bucket is not overwritten"


def test_unreachable_bucket_is_named(ray_session, s3_endpoint, tmp_path, capsys):
    uri = s3_uri(s3_endpoint, "no-such-bucket/x")
    code = cli.main(["run", "--problem", "raylanczos.examples.digits:tiny_problem", "--out", uri, "--checkpoint-dir", str(tmp_path)])
    assert code == 2
    assert "not writable" in capsys.readouterr().err
