"""Where a run's outputs live: a local directory or any URI pyarrow understands.

``OutputStore("runs/x")`` writes files atomically (a temporary file, then a rename);
``OutputStore("s3://bucket/runs/x")`` (or ``gs://``, ``hdfs://``, ...) writes each file as
one object through ``pyarrow.fs``, which appears whole or not at all. Arrays are read
back with ``allow_pickle=False``: outputs hold numbers and JSON only.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

Writer = Callable[[Any], None]


def atomic_write(path: Path, write: Writer) -> None:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def json_default(value: Any) -> Any:
    """JSON for numpy scalars and arrays and paths."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in JSON")


def npy_writer(array: np.ndarray) -> Writer:
    return lambda handle: np.save(handle, array, allow_pickle=False)


def npz_writer(**arrays: Any) -> Writer:
    return lambda handle: np.savez(handle, **arrays)


def json_writer(payload: dict[str, Any]) -> Writer:
    text = json.dumps(payload, indent=2, default=json_default) + "\n"
    return lambda handle: handle.write(text.encode())


class OutputStore:
    """A directory of named files, local or behind a pyarrow filesystem URI."""

    def __init__(self, location: str | os.PathLike):
        self.location = os.fspath(location)
        self.is_local = "://" not in self.location or self.location.startswith("file://")
        if self.is_local:
            self._root = Path(self.location.removeprefix("file://"))
            self._fs = None
        else:
            import pyarrow.fs as pafs

            try:
                self._fs, self._root = pafs.FileSystem.from_uri(self.location)
            except (ValueError, OSError) as err:
                raise ValueError(f"cannot use output location {self.location}: {err}") from None

    def __str__(self) -> str:
        return self.location

    @property
    def local_path(self) -> Path | None:
        return self._root if self.is_local else None

    def default_checkpoint_dir(self) -> Path:
        """``<out>/checkpoint`` locally; for a URI, a local cache directory named after it."""
        if self.is_local:
            return self._root / "checkpoint"
        digest = hashlib.sha256(self.location.encode()).hexdigest()[:16]
        return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "raylanczos" / "checkpoints" / digest

    def _path(self, name: str) -> str:
        return f"{str(self._root).rstrip('/')}/{name}"

    def write(self, name: str, writer: Writer) -> None:
        if self.is_local:
            atomic_write(self._root / name, writer)
        else:
            with self._fs.open_output_stream(self._path(name)) as stream:
                writer(stream)

    def read(self, name: str) -> bytes:
        try:
            if self.is_local:
                return (self._root / name).read_bytes()
            with self._fs.open_input_file(self._path(name)) as stream:
                return stream.read()
        except (OSError, ValueError) as err:
            raise FileNotFoundError(f"cannot read {self._path(name)}: {err}") from None

    def exists(self, name: str) -> bool:
        if self.is_local:
            return (self._root / name).exists()
        import pyarrow.fs as pafs

        return self._fs.get_file_info(self._path(name)).type != pafs.FileType.NotFound

    def remove(self, name: str) -> None:
        if self.is_local:
            (self._root / name).unlink(missing_ok=True)
        elif self.exists(name):
            self._fs.delete_file(self._path(name))

    def names(self) -> list[str]:
        """File names directly in the store."""
        if self.is_local:
            return sorted(p.name for p in self._root.iterdir() if p.is_file()) if self._root.is_dir() else []
        import pyarrow.fs as pafs

        infos = self._fs.get_file_info(pafs.FileSelector(self._root, allow_not_found=True))
        return sorted(info.base_name for info in infos if info.is_file)

    def ensure_writable(self) -> None:
        """Create the location and prove a file can be written there."""
        probe = f".write-test-{uuid.uuid4().hex[:8]}"
        try:
            if self.is_local:
                self._root.mkdir(parents=True, exist_ok=True)
            else:
                self._fs.create_dir(self._root, recursive=True)
            self.write(probe, lambda handle: handle.write(b""))
            self.remove(probe)
        except OSError as err:
            raise PermissionError(f"output location {self.location} is not writable: {err}") from None

    def load_npy(self, name: str) -> np.ndarray:
        try:
            return np.load(io.BytesIO(self.read(name)), allow_pickle=False)
        except (ValueError, EOFError) as err:
            raise ValueError(f"{self._path(name)} is not a valid .npy file (damaged or truncated): {err}") from None

    def load_npz(self, name: str) -> dict[str, np.ndarray]:
        try:
            with np.load(io.BytesIO(self.read(name)), allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (ValueError, EOFError, zipfile.BadZipFile) as err:
            raise ValueError(f"{self._path(name)} is not a valid .npz file (damaged or truncated): {err}") from None

    def load_json(self, name: str) -> dict[str, Any]:
        try:
            return json.loads(self.read(name))
        except ValueError as err:
            raise FileNotFoundError(f"cannot read {self._path(name)}: {err}") from None
