"""Datasets and shard plans: which examples each worker owns.

A dataset is a fixed, ordered set of N examples, each a mapping of named arrays whose
first axis is the example axis. A shard plan assigns every example to exactly one
worker, as row ranges or (for Parquet) whole files; it is validated before any
Hessian-vector product runs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

Batch = dict[str, np.ndarray]


class ShardPlanError(ValueError):
    """A shard plan that does not cover every example exactly once, or cannot be read."""


def row_span(start: int, stop: int) -> str:
    """Half-open rows ``[start, stop)`` as plans write them: ``"[898, 1797)"``."""
    return f"[{start}, {stop})"


@dataclass(frozen=True)
class Shard:
    """What one worker owns: half-open row ranges ``[start, stop)`` or whole files.

    ``resources`` are extra Ray resources the worker must be placed with, e.g.
    ``{"node:10.0.0.5": 0.01}`` to pin it to the node that holds its files.
    """

    worker: int
    rows: tuple[tuple[int, int], ...] = ()
    files: tuple[str, ...] = ()
    resources: tuple[tuple[str, float], ...] = ()

    def describe(self) -> str:
        if self.files:
            names = ", ".join(os.path.basename(f) for f in self.files[:3])
            more = f" and {len(self.files) - 3} more" if len(self.files) > 3 else ""
            return f"shard {self.worker} (files {names}{more})"
        spans = ", ".join(row_span(a, b) for a, b in self.rows)
        return f"shard {self.worker} (rows {spans})"

    def to_json(self) -> dict[str, Any]:
        owned = {"files": list(self.files)} if self.files else {"rows": [list(r) for r in self.rows]}
        return {**owned, "resources": dict(self.resources)} if self.resources else owned

    def locate(self, first: int, stop: int) -> str:
        """Describe shard-local rows ``[first, stop)`` in dataset terms (global rows if known)."""
        if self.files:
            return f"rows {row_span(first, stop)} of the shard's files, in order"
        offsets = np.cumsum([0] + [b - a for a, b in self.rows])

        def global_row(local: int) -> int:
            index = int(np.searchsorted(offsets, local, side="right")) - 1
            return self.rows[index][0] + local - int(offsets[index])

        return f"dataset rows {row_span(global_row(first), global_row(stop - 1) + 1)}"


@dataclass(frozen=True)
class ShardPlan:
    """One :class:`Shard` per worker, in worker order."""

    shards: tuple[Shard, ...]

    @property
    def num_workers(self) -> int:
        return len(self.shards)

    @classmethod
    def balanced(cls, num_examples: int, num_workers: int) -> "ShardPlan":
        """Contiguous row ranges whose sizes differ by at most one."""
        if num_workers <= 0:
            raise ShardPlanError(f"the number of workers must be positive, got {num_workers!r}")
        if num_workers > num_examples:
            raise ShardPlanError(f"{num_workers} workers for only {num_examples} examples: some would own nothing")
        bounds = np.linspace(0, num_examples, num_workers + 1).round().astype(int)
        return cls(tuple(Shard(i, ((int(a), int(b)),)) for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))))

    @classmethod
    def from_json(cls, source: str | os.PathLike | Mapping[str, Any]) -> "ShardPlan":
        """Read ``{"workers": [{"rows": [[start, stop], ...]} | {"files": [...]}, ...]}``.

        ``source`` is a path to such a JSON file or the parsed mapping. Row ranges are
        half-open, ``[start, stop)``. A worker entry may add ``"resources": {name: amount}``
        to pin it, e.g. ``{"node:10.0.0.5": 0.01}``.
        """
        where = "shard plan"
        if not isinstance(source, Mapping):
            where = f"shard plan {source}"
            try:
                source = json.loads(Path(source).read_text())
            except (OSError, ValueError) as err:  # ValueError: bad JSON or not UTF-8
                raise ShardPlanError(f"cannot read {where}: {err}") from err
        workers = source.get("workers") if isinstance(source, Mapping) else None
        if not isinstance(workers, list) or not workers:
            raise ShardPlanError(f'{where}: expected {{"workers": [...]}} with one entry per worker')
        shards = []
        for i, entry in enumerate(workers):
            if not isinstance(entry, Mapping) or set(entry) - {"resources"} not in ({"rows"}, {"files"}):
                raise ShardPlanError(f'{where}: worker {i} must be {{"rows": [[start, stop], ...]}} or {{"files": [...]}}, got {entry!r}')
            resources = _parse_resources(where, i, entry.get("resources", {}))
            if "rows" in entry:
                if not isinstance(entry["rows"], list) or not entry["rows"]:
                    raise ShardPlanError(f"{where}: worker {i} rows must be a non-empty list of [start, stop] ranges, got {entry['rows']!r}")
                shards.append(Shard(i, rows=tuple(_parse_range(where, i, r) for r in entry["rows"]), resources=resources))
            else:
                files = entry["files"]
                if not isinstance(files, list) or not all(isinstance(f, str) for f in files) or not files:
                    raise ShardPlanError(f"{where}: worker {i} files must be a non-empty list of paths, got {files!r}")
                shards.append(Shard(i, files=tuple(files), resources=resources))
        return cls(tuple(shards))

    def to_json(self) -> dict[str, Any]:
        return {"workers": [s.to_json() for s in self.shards]}

    def validate(self, dataset: "Dataset") -> "ShardPlan":
        """Check that every example belongs to exactly one worker; return the plan.

        File plans are resolved to the dataset's full file paths. Raises
        :class:`ShardPlanError` naming the rows or files that are wrong.
        """
        kinds = {bool(s.files) for s in self.shards}
        if len(kinds) > 1:
            raise ShardPlanError("a shard plan must use rows for every worker or files for every worker, not both")
        if kinds == {True}:
            return self._validate_files(dataset)
        self._validate_rows(dataset.num_examples)
        return self

    def _validate_rows(self, num_examples: int) -> None:
        spans = sorted((a, b, s.worker) for s in self.shards for a, b in s.rows)
        for s in self.shards:
            if not s.rows:
                raise ShardPlanError(f"worker {s.worker} has no rows")
        position, owner = 0, None
        for start, stop, worker in spans:
            if stop > num_examples:
                raise ShardPlanError(
                    f"worker {worker}: rows {row_span(start, stop)} go past the end of the dataset's {num_examples} rows"
                )
            if start > position:
                raise ShardPlanError(f"rows {row_span(position, start)} are assigned to no worker")
            if start < position:
                raise ShardPlanError(
                    f"rows {row_span(start, min(stop, position))} are assigned to both worker {owner} and worker {worker}"
                )
            position, owner = stop, worker
        if position < num_examples:
            raise ShardPlanError(f"rows {row_span(position, num_examples)} are assigned to no worker")

    def _validate_files(self, dataset: "Dataset") -> "ShardPlan":
        known = getattr(dataset, "files", None)
        if not known:
            raise ShardPlanError("a files shard plan needs a ParquetDataset; use row ranges for array data")
        by_name: dict[str, list[str]] = {}
        for path in known:
            by_name.setdefault(path, []).append(path)
            if os.path.basename(path) != path:
                by_name.setdefault(os.path.basename(path), []).append(path)
        owner: dict[str, int] = {}
        resolved = []
        for shard in self.shards:
            paths = []
            for name in shard.files:
                matches = by_name.get(name, [])
                if len(matches) != 1:
                    problem = "is not in the dataset" if not matches else "matches several dataset files"
                    raise ShardPlanError(f"worker {shard.worker}: file {name!r} {problem}")
                path = matches[0]
                if path in owner:
                    raise ShardPlanError(f"file {path} is assigned to both worker {owner[path]} and worker {shard.worker}")
                owner[path] = shard.worker
                paths.append(path)
            resolved.append(Shard(shard.worker, files=tuple(paths), resources=shard.resources))
        missing = [p for p in known if p not in owner]
        if missing:
            raise ShardPlanError(f"{len(missing)} file(s) assigned to no worker, e.g. {missing[0]}")
        return ShardPlan(tuple(resolved))


def _parse_resources(where: str, worker: int, value: Any) -> tuple[tuple[str, float], ...]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for k, v in value.items()
    ):
        raise ShardPlanError(f"{where}: worker {worker} resources must map names to positive amounts, got {value!r}")
    return tuple(sorted((k, float(v)) for k, v in value.items()))


def _parse_range(where: str, worker: int, value: Any) -> tuple[int, int]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in value)
        or not 0 <= value[0] < value[1]
    ):
        raise ShardPlanError(f"{where}: worker {worker} has an invalid row range {value!r}; expected [start, stop) with 0 <= start < stop")
    return int(value[0]), int(value[1])


class Dataset:
    """Interface: ``num_examples`` and ``read(shard) -> Batch`` (arrays of the shard's rows)."""

    num_examples: int

    def read(self, shard: Shard) -> Batch:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:  # pragma: no cover - interface
        raise NotImplementedError


class ArrayDataset(Dataset):
    """An in-memory dataset: a mapping of equal-length arrays (first axis = examples)."""

    def __init__(self, arrays: Mapping[str, Any]):
        if not isinstance(arrays, Mapping) or not arrays:
            raise ValueError(f"ArrayDataset needs a non-empty mapping of arrays, got {type(arrays).__name__}")
        self.arrays = {str(k): np.asarray(v) for k, v in arrays.items()}
        lengths = {k: (v.shape[0] if v.ndim else None) for k, v in self.arrays.items()}
        if None in lengths.values() or len(set(lengths.values())) != 1:
            listing = ", ".join(f"{k!r}: {n}" for k, n in lengths.items())
            raise ValueError(f"ArrayDataset arrays must have equal lengths along axis 0, got {listing}")
        self.num_examples = next(iter(lengths.values()))
        if self.num_examples == 0:
            raise ValueError("ArrayDataset has no examples")

    def read(self, shard: Shard) -> Batch:
        if shard.files:
            raise ShardPlanError(f"{shard.describe()}: an ArrayDataset is sharded by rows, not files")
        return {k: np.concatenate([v[a:b] for a, b in shard.rows]) for k, v in self.arrays.items()}

    def describe(self) -> dict[str, Any]:
        return {
            "type": "ArrayDataset",
            "num_examples": self.num_examples,
            "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in self.arrays.items()},
        }


class ParquetDataset(Dataset):
    """Examples stored in Parquet files, read with pyarrow (local paths or any URI it knows).

    Args:
      source: a directory (all ``*.parquet`` files under it, sorted), one file, or a list
        of files; local or a URI such as ``s3://bucket/train/``.
      columns: the columns to read (default: all).
      shapes: optional per-column example shape, e.g. ``{"x": (32, 32, 3)}``; list columns
        are otherwise returned as (rows, length) arrays.

    Files are read in the order given (sorted for a directory); rows are numbered
    consecutively across files.
    """

    def __init__(
        self,
        source: str | os.PathLike | Sequence[str | os.PathLike],
        *,
        columns: Sequence[str] | None = None,
        shapes: Mapping[str, Sequence[int]] | None = None,
    ):
        import pyarrow.fs as pafs
        import pyarrow.parquet as pq

        sources = [source] if isinstance(source, (str, os.PathLike)) else list(source)
        if not sources:
            raise ValueError("ParquetDataset needs at least one file or directory")
        self.columns = list(columns) if columns is not None else None
        self.shapes = {k: tuple(v) for k, v in (shapes or {}).items()}
        files: list[str] = []
        filesystems: list[pafs.FileSystem] = []
        for item in sources:
            filesystem, path = pafs.FileSystem.from_uri(_as_uri(item))
            info = filesystem.get_file_info(path)
            if info.type == pafs.FileType.NotFound:
                raise FileNotFoundError(f"Parquet source not found: {item}")
            if info.type == pafs.FileType.Directory:
                found = filesystem.get_file_info(pafs.FileSelector(path, recursive=True))
                listed = sorted(f.path for f in found if f.is_file and f.path.endswith(".parquet"))
                if not listed:
                    raise FileNotFoundError(f"no .parquet files under {item}")
            else:
                listed = [path]
            files.extend(listed)
            filesystems.extend([filesystem] * len(listed))
        self.files = files
        self._filesystems = filesystems
        counts = []
        for path, filesystem in zip(files, filesystems):
            try:
                counts.append(pq.ParquetFile(path, filesystem=filesystem).metadata.num_rows)
            except (OSError, ValueError) as err:
                raise ValueError(f"cannot read Parquet file {path}: {err}") from err
        self.file_rows = counts
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(int)
        self.num_examples = int(self.offsets[-1])
        if self.num_examples == 0:
            raise ValueError(f"ParquetDataset {source} has no rows")

    def read(self, shard: Shard) -> Batch:
        if shard.files:
            indices = [self.files.index(path) for path in shard.files]
            parts = [self._read_file(index) for index in indices if self.file_rows[index]]
        else:
            parts = []
            for start, stop in shard.rows:
                first = int(np.searchsorted(self.offsets, start, side="right")) - 1
                for index in range(first, len(self.files)):
                    lo, hi = self.offsets[index], self.offsets[index + 1]
                    if lo >= stop:
                        break
                    if hi == lo:
                        continue
                    table = self._read_file(index)
                    a, b = max(start, lo) - lo, min(stop, hi) - lo
                    parts.append({k: v[a:b] for k, v in table.items()})
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _read_file(self, index: int) -> Batch:
        """The columns of file ``self.files[index]``, read through that file's own filesystem."""
        import pyarrow.parquet as pq

        path = self.files[index]
        try:
            table = pq.read_table(path, columns=self.columns, filesystem=self._filesystems[index])
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read Parquet file {path}: {err}") from err
        out = {}
        for name in table.column_names:
            values = column_to_numpy(table.column(name), name, path)
            if name in self.shapes:
                values = values.reshape((len(values), *self.shapes[name]))
            out[name] = values
        return out

    def describe(self) -> dict[str, Any]:
        return {"type": "ParquetDataset", "num_examples": self.num_examples, "files": self.files, "rows": self.file_rows}


def column_to_numpy(column: Any, name: str = "", path: str = "") -> np.ndarray:
    """A pyarrow column as an ndarray: scalars → (rows,), (nested) lists → (rows, …)."""
    import pyarrow as pa

    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    shape = [len(array)]
    while pa.types.is_list(array.type) or pa.types.is_large_list(array.type) or pa.types.is_fixed_size_list(array.type):
        if array.null_count:
            raise ValueError(f"column {name!r} of {path} has {array.null_count} null values")
        if pa.types.is_fixed_size_list(array.type):
            lengths = np.array([array.type.list_size])
        else:
            lengths = np.unique(array.value_lengths().to_numpy(zero_copy_only=False)) if len(array) else np.array([0])
        if lengths.size != 1:
            raise ValueError(f"column {name!r} of {path} has lists of unequal lengths {lengths[:5].tolist()}")
        shape.append(int(lengths[0]))
        array = array.flatten()
    if array.null_count:
        raise ValueError(f"column {name!r} of {path} has {array.null_count} null values")
    return array.to_numpy(zero_copy_only=False).reshape(shape)


def _as_uri(item: str | os.PathLike) -> str:
    text = os.fspath(item)
    return text if "://" in text else os.path.abspath(text)


@dataclass
class BatchPlan:
    """Contiguous batches of at most ``batch_size`` rows over one shard's arrays."""

    arrays: Batch
    batch_size: int
    sizes: list[int] = field(init=False)

    def __post_init__(self) -> None:
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size!r}")
        total = len(next(iter(self.arrays.values())))
        full, rest = divmod(total, self.batch_size)
        self.sizes = [self.batch_size] * full + ([rest] if rest else [])

    def __iter__(self):
        start = 0
        for size in self.sizes:
            yield {k: v[start : start + size] for k, v in self.arrays.items()}
            start += size
