"""Tests for :mod:`raylanczos.outputs.store`: round trips, atomic writes, and errors that keep their cause.

Locations are a plain directory, a ``file://`` URI (read as a local path), a ``local://``
URI (read through ``pyarrow.fs.LocalFileSystem``) and a real local S3 server (moto).
No Ray.
"""

from __future__ import annotations

import io
import json
import os
import re
import uuid
import zipfile

import numpy as np
import pytest

from raylanczos.outputs.store import (
    DamagedFileError,
    OutputStore,
    json_writer,
    npy_writer,
    npz_writer,
)
from tests.conftest import free_port, s3_uri

LOCATION_KINDS = ["path", "file-uri", "pyarrow-local-uri"]


def location(kind: str, directory) -> str:
    """``directory`` spelled as a store location of the given kind."""
    return {"path": str(directory), "file-uri": f"file://{directory}", "pyarrow-local-uri": f"local://{directory}"}[kind]


@pytest.fixture(params=LOCATION_KINDS)
def store(request, tmp_path):
    """An empty store in ``tmp_path/out``, named each way a local directory can be."""
    (tmp_path / "out").mkdir()
    return OutputStore(location(request.param, tmp_path / "out"))


@pytest.fixture
def s3_store(s3_endpoint):
    """An empty store on the S3 server, under a key prefix of this test's own."""
    return OutputStore(s3_uri(s3_endpoint, f"runs/store-tests/{uuid.uuid4().hex}"))


def full_path(store: OutputStore, name: str) -> str:
    """The full path of file ``name``: the location without its scheme and query, then the name."""
    return f"{re.sub('^[a-z0-9]+://', '', store.location).split('?')[0]}/{name}"


def write_raw(store: OutputStore, name: str, data: bytes) -> None:
    store.write(name, lambda handle: handle.write(data))


# --------------------------------------------------------------------------- round trips


def test_npy_npz_json_round_trip(store):
    array = np.arange(12, dtype=np.float64).reshape(3, 4) / 7
    store.write("a.npy", npy_writer(array))
    store.write("b.npz", npz_writer(grid=array[0], steps=np.array([6, 5], dtype=np.int64), sigma2=np.float64(1e-5)))
    store.write("c.json", json_writer({"lambda_max": np.float64(2.5), "steps": np.array([6, 5]), "name": "x"}))

    loaded = store.load_npy("a.npy")
    assert loaded.dtype == np.float64 and np.array_equal(loaded, array)
    arrays = store.load_npz("b.npz")
    assert sorted(arrays) == ["grid", "sigma2", "steps"]
    assert np.array_equal(arrays["grid"], array[0]) and arrays["steps"].dtype == np.int64 and arrays["sigma2"] == 1e-5
    assert store.load_json("c.json") == {"lambda_max": 2.5, "steps": [6, 5], "name": "x"}


def test_s3_round_trip(s3_store):
    s3_store.write("a.npy", npy_writer(np.array([1.5, -2.0])))
    s3_store.write("c.json", json_writer({"k": 1}))
    assert np.array_equal(s3_store.load_npy("a.npy"), [1.5, -2.0])
    assert s3_store.load_json("c.json") == {"k": 1}
    assert s3_store.names() == ["a.npy", "c.json"]


def test_names_exists_remove(store):
    assert store.names() == [] and not store.exists("a.json")
    store.write("b.json", json_writer({}))
    store.write("a.json", json_writer({}))
    assert store.names() == ["a.json", "b.json"]
    assert store.exists("a.json")
    store.remove("a.json")
    assert not store.exists("a.json") and store.names() == ["b.json"]
    store.remove("a.json")  # removing what is not there is not an error
    assert store.names() == ["b.json"]


def test_names_lists_files_only(tmp_path):
    store = OutputStore(tmp_path)
    (tmp_path / "checkpoint").mkdir()
    store.write("summary.json", json_writer({}))
    assert store.names() == ["summary.json"]


# --------------------------------------------------------------------------- atomic writes


def test_failed_write_leaves_no_temporary_file_and_keeps_the_old_one(tmp_path):
    store = OutputStore(tmp_path)
    store.write("summary.json", json_writer({"version": 1}))

    def half_then_fail(handle):
        handle.write(b'{"version": ')
        raise RuntimeError("writer failed")

    with pytest.raises(RuntimeError, match="writer failed"):
        store.write("summary.json", half_then_fail)
    assert sorted(os.listdir(tmp_path)) == ["summary.json"], "no temporary file is left behind"
    assert store.load_json("summary.json") == {"version": 1}


def test_failed_first_write_leaves_nothing(tmp_path):
    store = OutputStore(tmp_path / "new")

    def fail(handle):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.write("tridiag.npy", fail)
    assert os.listdir(tmp_path / "new") == []


# --------------------------------------------------------------------------- reading errors


def test_missing_file_is_file_not_found_naming_the_path(store):
    with pytest.raises(FileNotFoundError, match=re.escape(f"cannot read {full_path(store, 'summary.json')}")) as info:
        store.read("summary.json")
    assert isinstance(info.value.__cause__, FileNotFoundError)
    for load in (store.load_json, store.load_npy, store.load_npz):
        with pytest.raises(FileNotFoundError, match=re.escape(full_path(store, "x"))):
            load("x")


def test_s3_missing_object_is_file_not_found_naming_the_path(s3_store):
    with pytest.raises(FileNotFoundError, match=re.escape(f"cannot read {full_path(s3_store, 'summary.json')}")) as info:
        s3_store.load_json("summary.json")
    assert isinstance(info.value.__cause__, FileNotFoundError), "pyarrow reports a missing object as FileNotFoundError"


@pytest.mark.slow
def test_s3_unreachable_server_is_an_os_error_not_file_not_found(s3_endpoint):
    store = OutputStore(s3_uri(f"127.0.0.1:{free_port()}", "runs/x"))
    with pytest.raises(OSError, match=re.escape("cannot read runs/x/summary.json")) as info:
        store.read("summary.json")
    assert not isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value.__cause__, OSError) and "connect" in str(info.value.__cause__).lower()


def test_directory_read_as_a_file_is_an_os_error_not_file_not_found(store, tmp_path):
    (tmp_path / "out" / "summary.json").mkdir(parents=True)
    with pytest.raises(OSError, match=re.escape(f"cannot read {full_path(store, 'summary.json')}")) as info:
        store.read("summary.json")
    assert not isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value.__cause__, OSError)


@pytest.mark.parametrize("kind", ["path", "pyarrow-local-uri"])
def test_unreadable_file_is_permission_error(kind, tmp_path):
    store = OutputStore(location(kind, tmp_path))
    store.write("summary.json", json_writer({}))
    (tmp_path / "summary.json").chmod(0)
    if os.access(tmp_path / "summary.json", os.R_OK):
        pytest.skip("running as a user that file permissions do not stop (root); the directory test covers other OSErrors")
    with pytest.raises(PermissionError, match=re.escape(f"cannot read {full_path(store, 'summary.json')}")) as info:
        store.read("summary.json")
    assert isinstance(info.value.__cause__, PermissionError)


def written_bytes(writer) -> bytes:
    """What ``writer`` (e.g. ``npy_writer(array)``) writes."""
    buffer = io.BytesIO()
    writer(buffer)
    return buffer.getvalue()


#: case: (file name, its damaged bytes, the loader, the type of the parser's error)
DAMAGED = {
    "json-garbage": ("summary.json", b'{"steps": [6, 5', "load_json", json.JSONDecodeError),
    "json-not-utf8": ("summary.json", b'{"name": "\xc3"}', "load_json", UnicodeDecodeError),
    "npy-garbage": ("tridiag.npy", b"not an array at all", "load_npy", ValueError),
    "npy-truncated": ("tridiag.npy", written_bytes(npy_writer(np.arange(100.0)))[:200], "load_npy", ValueError),
    "npz-garbage": ("spectrum.npz", b"PK\x03\x04 garbage", "load_npz", zipfile.BadZipFile),
    "npz-truncated": ("spectrum.npz", written_bytes(npz_writer(a=np.arange(100.0)))[:50], "load_npz", zipfile.BadZipFile),
}


def check_damaged(store: OutputStore, case: str) -> None:
    name, data, loader, cause_type = DAMAGED[case]
    write_raw(store, name, data)
    with pytest.raises(DamagedFileError, match=re.escape(full_path(store, name))) as info:
        getattr(store, loader)(name)
    assert isinstance(info.value, ValueError), "callers that catch ValueError still catch it"
    assert not isinstance(info.value, OSError)
    assert isinstance(info.value.__cause__, cause_type)


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_damaged_file_is_damaged_file_error_with_its_cause(store, case):
    check_damaged(store, case)


@pytest.mark.parametrize("case", ["json-garbage", "npy-truncated", "npz-garbage"])
def test_s3_damaged_file_is_damaged_file_error(s3_store, case):
    check_damaged(s3_store, case)


# --------------------------------------------------------------------------- writability


def test_ensure_writable_creates_the_location_and_leaves_nothing(store, tmp_path):
    store.ensure_writable()
    assert os.listdir(tmp_path / "out") == []


@pytest.mark.parametrize("kind", ["path", "pyarrow-local-uri"])
def test_ensure_writable_below_a_regular_file_names_the_location_with_its_cause(kind, tmp_path):
    (tmp_path / "blocker").write_text("a file, not a directory")
    store = OutputStore(location(kind, tmp_path / "blocker" / "run"))
    with pytest.raises(NotADirectoryError, match=re.escape(f"output location {store} is not writable")) as info:
        store.ensure_writable()
    assert isinstance(info.value.__cause__, NotADirectoryError)


def test_ensure_writable_on_a_file_says_it_is_a_file(tmp_path):
    (tmp_path / "run").write_text("a file, not a directory")
    store = OutputStore(tmp_path / "run")
    with pytest.raises(FileExistsError, match=re.escape(f"output location {store} is a file, not a directory")):
        store.ensure_writable()
    assert (tmp_path / "run").read_text() == "a file, not a directory"


def test_ensure_writable_on_a_missing_bucket_is_an_os_error_with_its_cause(s3_endpoint):
    store = OutputStore(s3_uri(s3_endpoint, "no-such-bucket/run"))
    with pytest.raises(OSError, match=re.escape(f"output location {store} is not writable")) as info:
        store.ensure_writable()
    assert "no-such-bucket" in str(info.value.__cause__)
