"""Outputs written to an S3-compatible object store: a real local S3 server (moto)."""

from __future__ import annotations

import socket

import numpy as np
import pytest

import raylanczos as rl
from raylanczos import cli

moto_server = pytest.importorskip("moto.server")
pafs = pytest.importorskip("pyarrow.fs")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    """An S3 server on 127.0.0.1 with one bucket, ``runs``; yields its host:port."""
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        endpoint = f"127.0.0.1:{port}"
        s3 = pafs.S3FileSystem(endpoint_override=endpoint, scheme="http", region="us-east-1", allow_bucket_creation=True)
        s3.create_dir("runs")
        yield endpoint
    server.stop()


def test_run_writes_to_s3_and_reads_back(ray_session, s3_endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    uri = f"s3://runs/digits/tiny?endpoint_override={s3_endpoint}&scheme=http&region=us-east-1"
    args = ["run", "--problem", "raylanczos.examples.digits:tiny_problem", "--out", uri, "--order", "6", "--draws", "2"]
    assert cli.main([*args, "--cpus-per-worker", "0.5"]) == 0

    s3 = pafs.S3FileSystem(endpoint_override=s3_endpoint, scheme="http", region="us-east-1")
    names = {info.base_name for info in s3.get_file_info(pafs.FileSelector("runs/digits/tiny"))}
    assert {"tridiag.npy", "spectrum.npz", "summary.json", "density.png"} <= names
    assert list((tmp_path / "cache" / "raylanczos" / "checkpoints").glob("*/basis.npy")), "checkpoint stays on local disk"

    result = rl.load_result(uri)
    assert result.tridiagonals.shape == (2, 6, 6) and result.summary["steps_completed"] == [6, 6]
    assert cli.main(["density", "--out", uri, "--sigma2", "1e-5"]) == 0
    assert rl.load_result(uri).sigma2 == 1e-5
    assert np.array_equal(rl.load_result(uri).tridiagonals, result.tridiagonals)
    assert cli.main(args) == 2, "an existing run in the bucket is not overwritten"


def test_unreachable_bucket_is_named(ray_session, s3_endpoint, tmp_path, capsys):
    uri = f"s3://no-such-bucket/x?endpoint_override={s3_endpoint}&scheme=http&region=us-east-1"
    code = cli.main(["run", "--problem", "raylanczos.examples.digits:tiny_problem", "--out", uri, "--checkpoint-dir", str(tmp_path)])
    assert code == 2
    assert "not writable" in capsys.readouterr().err
