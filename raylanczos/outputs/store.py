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


class DamagedFileError(ValueError):
    """A file that exists but cannot be parsed: truncated, garbage, wrong format."""


def _same_kind(err: OSError, message: str) -> OSError:
    """A new error with ``message``, of the built-in ``OSError`` class ``err`` belongs to.

    A ``FileNotFoundError`` stays one, a ``PermissionError`` stays one, and so on; an
    error of a library's own ``OSError`` subclass becomes its nearest built-in class.
    """
    kind = next(cls for cls in type(err).__mro__ if cls.__module__ == "builtins")
    return kind(message)


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
                raise ValueError(f"cannot use output location {self.location}: {err}") from err

    def __str__(self) -> str:
        return self.location

    def child(self, name: str) -> "OutputStore":
        """The store of the sub-directory ``name`` (for a URI, before its query string)."""
        base, query, params = self.location.partition("?")
        return OutputStore(f"{base.rstrip('/')}/{name}{query}{params}")

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
        """The bytes of file ``name``.

        Raises ``FileNotFoundError`` when it is not there, ``PermissionError`` when it may
        not be read, and another ``OSError`` for anything else (a directory, a network
        failure); each names the full path and chains the filesystem's error.
        """
        path = self._path(name)
        try:
            if self.is_local:
                return (self._root / name).read_bytes()
            with self._fs.open_input_file(path) as stream:
                return stream.read()
        except OSError as err:
            raise _same_kind(err, f"cannot read {path}: {err.strerror or err}") from err
        except ValueError as err:  # pyarrow's ArrowInvalid, e.g. a path its filesystem rejects
            raise OSError(f"cannot read {path}: {err}") from err

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
        if self.is_local and self._root.exists() and not self._root.is_dir():
            raise FileExistsError(f"output location {self.location} is a file, not a directory")
        try:
            if self.is_local:
                self._root.mkdir(parents=True, exist_ok=True)
            else:
                self._fs.create_dir(self._root, recursive=True)
            self.write(probe, lambda handle: handle.write(b""))
            self.remove(probe)
        except OSError as err:
            raise _same_kind(err, f"output location {self.location} is not writable: {err}") from err

    def load_npy(self, name: str) -> np.ndarray:
        """The array in ``.npy`` file ``name``; :class:`DamagedFileError` if it does not parse."""
        data = self.read(name)
        try:
            return np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, EOFError) as err:
            raise DamagedFileError(f"{self._path(name)} is not a valid .npy file (damaged or truncated): {err}") from err

    def load_npz(self, name: str) -> dict[str, np.ndarray]:
        """The arrays in ``.npz`` file ``name`` by key; :class:`DamagedFileError` if it does not parse."""
        data = self.read(name)
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                return {key: arrays[key] for key in arrays.files}
        except (ValueError, EOFError, zipfile.BadZipFile) as err:
            raise DamagedFileError(f"{self._path(name)} is not a valid .npz file (damaged or truncated): {err}") from err

    def load_json(self, name: str) -> dict[str, Any]:
        """The JSON in file ``name``; :class:`DamagedFileError` if it is not valid UTF-8 JSON."""
        data = self.read(name)
        try:
            return json.loads(data)
        except ValueError as err:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise DamagedFileError(f"{self._path(name)} is not a valid JSON file (damaged or truncated): {err}") from err
