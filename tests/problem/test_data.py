"""Tests for :mod:`raylanczos.problem.data`: shard plans, array and Parquet datasets, batch plans.

Pure numpy + pyarrow: no Ray, no JAX.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raylanczos.problem.data import (
    ArrayDataset,
    BatchPlan,
    ParquetDataset,
    Shard,
    ShardPlan,
    ShardPlanError,
    column_to_numpy,
)
from tests.conftest import s3_uri

# --------------------------------------------------------------------------- helpers

FILE_ROWS = {"a.parquet": 10, "b.parquet": 7, "c.parquet": 13}  # 30 rows in all


def x_values(start: int, stop: int) -> np.ndarray:
    """Row i of column "x" is [i, i + 0.25, i + 0.5, i + 0.75] (float32, exact)."""
    rows = np.arange(start, stop, dtype=np.float32)[:, None]
    return rows + np.array([0.0, 0.25, 0.5, 0.75], dtype=np.float32)


def write_part(path, start: int, stop: int, *, fixed: bool = True) -> None:
    """A Parquet file with rows ``start..stop-1``: "x" list<float32>[4], "y" int64 = row index."""
    x = x_values(start, stop)
    list_type = pa.list_(pa.float32(), 4) if fixed else pa.list_(pa.float32())
    table = pa.table(
        {
            "x": pa.array([list(r) for r in x], type=list_type),
            "y": pa.array(np.arange(start, stop, dtype=np.int64), type=pa.int64()),
        }
    )
    pq.write_table(table, str(path))


@pytest.fixture
def parquet_dir(tmp_path):
    """A directory with a.parquet (10 rows), b.parquet (7), c.parquet (13), plus a non-Parquet file."""
    root = tmp_path / "parts"
    root.mkdir()
    start = 0
    offsets = {}
    for name in sorted(FILE_ROWS):
        offsets[name] = start
        start += FILE_ROWS[name]
    # Written out of order, so that sorting (not creation order) decides the file order.
    for name in ["c.parquet", "a.parquet", "b.parquet"]:
        write_part(root / name, offsets[name], offsets[name] + FILE_ROWS[name])
    (root / "README.txt").write_text("not parquet")
    return root


@pytest.fixture
def all_x_y():
    """The expected concatenation of a, b, c (rows 0..29)."""
    return x_values(0, 30), np.arange(30, dtype=np.int64)


@pytest.fixture
def array_100():
    rng = np.random.default_rng(0)
    return ArrayDataset({"x": rng.standard_normal((100, 3)), "y": np.arange(100)})


def rows_plan(*workers) -> ShardPlan:
    return ShardPlan.from_json({"workers": [{"rows": [list(r) for r in w]} for w in workers]})


def files_plan(*workers) -> ShardPlan:
    return ShardPlan.from_json({"workers": [{"files": list(w)} for w in workers]})


# --------------------------------------------------------------------------- ShardPlan.balanced


@pytest.mark.parametrize("n, k", [(1, 1), (10, 3), (10, 4), (100, 7), (1797, 8), (30, 30), (31, 30), (1000, 999)])
def test_balanced_is_contiguous_balanced_and_covers_all_rows(n, k):
    plan = ShardPlan.balanced(n, k)
    assert plan.num_workers == k
    assert [s.worker for s in plan.shards] == list(range(k))
    position = 0
    sizes = []
    for shard in plan.shards:
        assert shard.files == ()
        assert len(shard.rows) == 1, "balanced shards are one contiguous range each"
        (start, stop), = shard.rows
        assert isinstance(start, int) and isinstance(stop, int)
        assert start == position
        assert stop > start
        sizes.append(stop - start)
        position = stop
    assert position == n
    assert max(sizes) - min(sizes) <= 1
    covered = np.concatenate([np.arange(a, b) for s in plan.shards for a, b in s.rows])
    np.testing.assert_array_equal(covered, np.arange(n))
    assert plan.validate(ArrayDataset({"y": np.arange(n)})) is plan


def test_balanced_sizes_differ_by_at_most_one_exhaustive():
    for n in range(1, 80):
        for k in range(1, n + 1):
            bounds = [r for s in ShardPlan.balanced(n, k).shards for r in s.rows]
            sizes = [b - a for a, b in bounds]
            assert bounds[0][0] == 0 and bounds[-1][1] == n, (n, k)
            assert all(bounds[i][1] == bounds[i + 1][0] for i in range(k - 1)), (n, k)
            assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1, (n, k, sizes)
            assert sum(sizes) == n


@pytest.mark.parametrize("k", [0, -3])
def test_balanced_rejects_nonpositive_workers(k):
    with pytest.raises(ShardPlanError, match=rf"positive.*{k}"):
        ShardPlan.balanced(10, k)


def test_balanced_rejects_more_workers_than_examples():
    with pytest.raises(ShardPlanError) as info:
        ShardPlan.balanced(5, 6)
    assert re.search(r"\b6\b.*\b5\b", str(info.value)), str(info.value)
    assert issubclass(ShardPlanError, ValueError)
    assert isinstance(info.value, ValueError)


# --------------------------------------------------------------------------- ShardPlan.from_json


def test_from_json_file_rows_plan(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"workers": [{"rows": [[0, 40]]}, {"rows": [[40, 70], [90, 100]]}, {"rows": [[70, 90]]}]}))
    plan = ShardPlan.from_json(path)
    assert plan.num_workers == 3
    assert plan.shards[0] == Shard(0, rows=((0, 40),))
    assert plan.shards[1] == Shard(1, rows=((40, 70), (90, 100)))
    assert plan.shards[2] == Shard(2, rows=((70, 90),))
    # str paths work too, and the plan round-trips through to_json.
    assert ShardPlan.from_json(str(path)) == plan
    assert ShardPlan.from_json(plan.to_json()) == plan


def test_from_json_dict_files_plan():
    plan = ShardPlan.from_json({"workers": [{"files": ["a.parquet", "c.parquet"]}, {"files": ["b.parquet"]}]})
    assert plan.shards == (Shard(0, files=("a.parquet", "c.parquet")), Shard(1, files=("b.parquet",)))
    assert plan.to_json() == {"workers": [{"files": ["a.parquet", "c.parquet"]}, {"files": ["b.parquet"]}]}


def test_from_json_files_plan_from_file(tmp_path):
    path = tmp_path / "files.json"
    path.write_text(json.dumps({"workers": [{"files": ["x.parquet"]}, {"files": ["y.parquet", "z.parquet"]}]}))
    plan = ShardPlan.from_json(path)
    assert [s.files for s in plan.shards] == [("x.parquet",), ("y.parquet", "z.parquet")]
    assert all(s.rows == () for s in plan.shards)


def test_from_json_missing_file_names_path(tmp_path):
    path = tmp_path / "nope.json"
    with pytest.raises(ShardPlanError, match=re.escape(str(path))):
        ShardPlan.from_json(path)


def test_from_json_directory_is_unreadable(tmp_path):
    with pytest.raises(ShardPlanError, match=re.escape(str(tmp_path))):
        ShardPlan.from_json(tmp_path)


def test_from_json_invalid_json_names_path(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"workers": [{"rows": [[0, 10]]}')
    with pytest.raises(ShardPlanError) as info:
        ShardPlan.from_json(path)
    assert str(path) in str(info.value)
    assert "cannot read" in str(info.value)


def test_from_json_binary_file_names_path(tmp_path):
    path = tmp_path / "binary.json"
    path.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(ShardPlanError, match=re.escape(str(path))):
        ShardPlan.from_json(path)


@pytest.mark.parametrize("source", [{}, {"workers": []}, {"workers": {"rows": [[0, 1]]}}, {"worker": [{"rows": [[0, 1]]}]}])
def test_from_json_missing_workers(source):
    with pytest.raises(ShardPlanError, match='"workers"'):
        ShardPlan.from_json(source)


def test_from_json_missing_workers_in_file_names_path(tmp_path):
    path = tmp_path / "noworkers.json"
    path.write_text(json.dumps({"shards": []}))
    with pytest.raises(ShardPlanError) as info:
        ShardPlan.from_json(path)
    assert str(path) in str(info.value) and '"workers"' in str(info.value)


def test_from_json_json_list_is_rejected(tmp_path):
    path = tmp_path / "list.json"
    path.write_text(json.dumps([{"rows": [[0, 1]]}]))
    with pytest.raises(ShardPlanError, match='"workers"'):
        ShardPlan.from_json(path)


@pytest.mark.parametrize(
    "entry",
    [
        {"rows": [[0, 5]], "files": ["a.parquet"]},  # both
        {},  # neither
        {"range": [[0, 5]]},  # neither, with an unknown key
        {"rows": [[0, 5]], "extra": 1},  # an unknown key next to a good one
        ["rows", [0, 5]],  # not a mapping
    ],
)
def test_from_json_worker_needs_exactly_one_of_rows_or_files(entry):
    with pytest.raises(ShardPlanError, match=r"worker 1 must be .*rows.*files"):
        ShardPlan.from_json({"workers": [{"rows": [[0, 5]]}, entry]})


@pytest.mark.parametrize("bad", [[5, 3], [-1, 4], ["a", 3], [4, 4], [0, 1, 2], [0], [True, 3], [0.0, 3], 7])
def test_from_json_bad_range_names_worker_and_range(bad):
    with pytest.raises(ShardPlanError) as info:
        ShardPlan.from_json({"workers": [{"rows": [[0, 10]]}, {"rows": [[10, 20]]}, {"rows": [[20, 30], bad]}]})
    message = str(info.value)
    assert "worker 2" in message
    assert repr(bad) in message


def test_from_json_bad_range_from_file_names_path_worker_and_range(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"workers": [{"rows": [[5, 3]]}]}))
    with pytest.raises(ShardPlanError) as info:
        ShardPlan.from_json(path)
    message = str(info.value)
    assert str(path) in message and "worker 0" in message and "[5, 3]" in message


@pytest.mark.parametrize("rows", [5, None])
def test_from_json_rows_not_a_list(rows):
    with pytest.raises(ShardPlanError, match="worker 0"):
        ShardPlan.from_json({"workers": [{"rows": rows}]})


@pytest.mark.parametrize("files", [[], "a.parquet", [1, 2], None])
def test_from_json_bad_files_list(files):
    with pytest.raises(ShardPlanError, match=r"worker 1 files must be a non-empty list"):
        ShardPlan.from_json({"workers": [{"files": ["a.parquet"]}, {"files": files}]})


# --------------------------------------------------------------------------- validate: rows


def test_validate_good_rows_plan_returns_plan(array_100):
    plan = rows_plan([(0, 50)], [(50, 100)])
    assert plan.validate(array_100) is plan


def test_validate_worker_with_several_ranges(array_100):
    plan = rows_plan([(0, 10), (20, 80)], [(10, 20), (80, 100)])
    assert plan.validate(array_100) is plan
    # Ranges listed out of order within a worker are fine too.
    rows_plan([(20, 80), (0, 10)], [(80, 100), (10, 20)]).validate(array_100)


def test_validate_overlap_names_rows_and_both_workers(array_100):
    with pytest.raises(ShardPlanError, match=r"rows \[50, 60\) are assigned to both worker 0 and worker 1"):
        rows_plan([(0, 60)], [(50, 100)]).validate(array_100)


def test_validate_nested_overlap(array_100):
    with pytest.raises(ShardPlanError, match=r"rows \[10, 20\) are assigned to both worker 0 and worker 2"):
        rows_plan([(0, 60)], [(60, 100)], [(10, 20)]).validate(array_100)


def test_validate_gap_names_unassigned_rows(array_100):
    with pytest.raises(ShardPlanError, match=r"rows \[40, 50\) are assigned to no worker"):
        rows_plan([(0, 40)], [(50, 100)]).validate(array_100)


def test_validate_leading_gap(array_100):
    with pytest.raises(ShardPlanError, match=r"rows \[0, 5\) are assigned to no worker"):
        rows_plan([(5, 50)], [(50, 100)]).validate(array_100)


def test_validate_tail_gap(array_100):
    with pytest.raises(ShardPlanError, match=r"rows \[90, 100\) are assigned to no worker"):
        rows_plan([(0, 50)], [(50, 90)]).validate(array_100)


def test_validate_range_past_end_names_worker_and_rows(array_100):
    with pytest.raises(ShardPlanError) as info:
        rows_plan([(0, 50)], [(50, 120)]).validate(array_100)
    message = str(info.value)
    assert "worker 1" in message
    assert "rows [50, 120)" in message
    assert "100 rows" in message


def test_validate_range_entirely_past_end(array_100):
    with pytest.raises(ShardPlanError, match=r"worker 2: rows \[100, 110\)"):
        rows_plan([(0, 50)], [(50, 100)], [(100, 110)]).validate(array_100)


def test_worker_with_no_rows_is_refused(array_100):
    with pytest.raises(ShardPlanError, match=r"worker 1 rows must be a non-empty list"):
        ShardPlan.from_json({"workers": [{"rows": [[0, 100]]}, {"rows": []}]})
    plan = ShardPlan((Shard(0, rows=((0, 100),)), Shard(1, rows=())))
    with pytest.raises(ShardPlanError, match=r"worker 1 has no rows"):
        plan.validate(array_100)


def test_validate_mixing_rows_and_files(array_100, parquet_dir):
    plan = ShardPlan.from_json({"workers": [{"rows": [[0, 50]]}, {"files": ["a.parquet"]}]})
    with pytest.raises(ShardPlanError, match=r"rows.*files|files.*rows"):
        plan.validate(array_100)
    with pytest.raises(ShardPlanError, match=r"not both"):
        plan.validate(ParquetDataset(parquet_dir))


def test_validate_rows_plan_against_parquet(parquet_dir):
    ds = ParquetDataset(parquet_dir)
    rows_plan([(0, 12)], [(12, 30)]).validate(ds)
    with pytest.raises(ShardPlanError, match=r"rows \[25, 30\) are assigned to no worker"):
        rows_plan([(0, 12)], [(12, 25)]).validate(ds)


# --------------------------------------------------------------------------- validate: files


def test_validate_files_resolves_basenames(parquet_dir):
    ds = ParquetDataset(parquet_dir)
    plan = files_plan(["c.parquet", "a.parquet"], ["b.parquet"])
    resolved = plan.validate(ds)
    assert resolved is not plan
    assert resolved.shards[0].files == (str(parquet_dir / "c.parquet"), str(parquet_dir / "a.parquet"))
    assert resolved.shards[1].files == (str(parquet_dir / "b.parquet"),)
    assert [s.worker for s in resolved.shards] == [0, 1]
    for shard in resolved.shards:
        assert all(os.path.isabs(f) and os.path.exists(f) for f in shard.files)


def test_validate_files_accepts_full_paths(parquet_dir):
    ds = ParquetDataset(parquet_dir)
    full = [str(parquet_dir / n) for n in ["a.parquet", "b.parquet", "c.parquet"]]
    resolved = files_plan([full[0]], [full[1], "c.parquet"]).validate(ds)
    assert resolved.shards[1].files == (full[1], full[2])


def test_validate_file_named_twice_names_file_and_both_workers(parquet_dir):
    ds = ParquetDataset(parquet_dir)
    with pytest.raises(ShardPlanError) as info:
        files_plan(["a.parquet", "b.parquet"], ["c.parquet"], ["b.parquet"]).validate(ds)
    message = str(info.value)
    assert "b.parquet" in message
    assert "worker 0" in message and "worker 2" in message


def test_validate_file_named_twice_by_path_and_basename(parquet_dir):
    ds = ParquetDataset(parquet_dir)
    with pytest.raises(ShardPlanError, match=r"a\.parquet.*worker 0 and worker 1"):
        files_plan([str(parquet_dir / "a.parquet"), "b.parquet"], ["a.parquet", "c.parquet"]).validate(ds)


def test_validate_unknown_file_names_it(parquet_dir):
    ds = ParquetDataset(parquet_dir)
    with pytest.raises(ShardPlanError) as info:
        files_plan(["a.parquet", "b.parquet"], ["c.parquet", "d.parquet"]).validate(ds)
    message = str(info.value)
    assert "d.parquet" in message and "worker 1" in message


def test_validate_file_left_out_names_it(parquet_dir):
    ds = ParquetDataset(parquet_dir)
    with pytest.raises(ShardPlanError) as info:
        files_plan(["a.parquet"], ["c.parquet"]).validate(ds)
    message = str(info.value)
    assert "b.parquet" in message
    assert "no worker" in message


def test_validate_files_plan_against_array_dataset(array_100):
    with pytest.raises(ShardPlanError, match=r"ParquetDataset"):
        files_plan(["a.parquet"]).validate(array_100)


# --------------------------------------------------------------------------- ArrayDataset


def test_array_dataset_unequal_lengths_lists_each():
    with pytest.raises(ValueError) as info:
        ArrayDataset({"x": np.zeros((10, 3)), "y": np.zeros(9), "w": np.zeros(10)})
    message = str(info.value)
    assert "'x': 10" in message and "'y': 9" in message and "'w': 10" in message


def test_array_dataset_rejects_empty_and_scalars():
    with pytest.raises(ValueError):
        ArrayDataset({})
    with pytest.raises(ValueError, match=r"'s': None"):
        ArrayDataset({"x": np.zeros(3), "s": np.float64(1.0)})
    with pytest.raises(ValueError, match="no examples"):
        ArrayDataset({"x": np.zeros((0, 2))})


def test_array_dataset_read_concatenates_ranges_in_order(array_100):
    ds = array_100
    assert ds.num_examples == 100
    shard = Shard(1, rows=((80, 100), (10, 20), (0, 3)))
    batch = ds.read(shard)
    assert set(batch) == {"x", "y"}
    for k, v in ds.arrays.items():
        expected = np.concatenate([v[80:100], v[10:20], v[0:3]])
        np.testing.assert_array_equal(batch[k], expected)
    np.testing.assert_array_equal(batch["y"], [*range(80, 100), *range(10, 20), 0, 1, 2])
    assert batch["x"].shape == (33, 3)


def test_array_dataset_read_balanced_plan_reassembles(array_100):
    plan = ShardPlan.balanced(100, 3).validate(array_100)
    parts = [array_100.read(s) for s in plan.shards]
    np.testing.assert_array_equal(np.concatenate([p["x"] for p in parts]), array_100.arrays["x"])


def test_array_dataset_read_files_shard_rejected(array_100):
    with pytest.raises(ShardPlanError, match="rows, not files"):
        array_100.read(Shard(0, files=("a.parquet",)))


def test_array_dataset_describe(array_100):
    d = array_100.describe()
    assert d["num_examples"] == 100
    assert d["arrays"]["x"]["shape"] == [100, 3]


# --------------------------------------------------------------------------- ParquetDataset


def test_parquet_from_directory_sorted(parquet_dir):
    ds = ParquetDataset(parquet_dir)
    assert ds.files == [str(parquet_dir / n) for n in ["a.parquet", "b.parquet", "c.parquet"]]
    assert ds.file_rows == [10, 7, 13]
    assert ds.num_examples == 30
    assert list(ds.offsets) == [0, 10, 17, 30]
    assert ds.describe()["num_examples"] == 30


def test_parquet_from_single_file(parquet_dir):
    ds = ParquetDataset(parquet_dir / "b.parquet")
    assert ds.files == [str(parquet_dir / "b.parquet")]
    assert ds.num_examples == 7
    batch = ds.read(Shard(0, rows=((0, 7),)))
    np.testing.assert_array_equal(batch["y"], np.arange(10, 17))
    np.testing.assert_array_equal(batch["x"], x_values(10, 17))


def test_parquet_from_list_keeps_given_order(parquet_dir):
    ds = ParquetDataset([parquet_dir / "c.parquet", str(parquet_dir / "a.parquet")])
    assert ds.files == [str(parquet_dir / "c.parquet"), str(parquet_dir / "a.parquet")]
    assert ds.num_examples == 13 + 10
    batch = ds.read(Shard(0, rows=((0, 23),)))
    np.testing.assert_array_equal(batch["y"], np.r_[np.arange(17, 30), np.arange(0, 10)])


def test_parquet_read_rows_spanning_files(parquet_dir, all_x_y):
    ds = ParquetDataset(parquet_dir)
    all_x, all_y = all_x_y
    batch = ds.read(Shard(0, rows=((8, 19),)))  # 2 rows of a, all 7 of b, 2 of c
    assert batch["x"].dtype == np.float32 and batch["y"].dtype == np.int64
    assert batch["x"].shape == (11, 4)
    np.testing.assert_array_equal(batch["x"], all_x[8:19])
    np.testing.assert_array_equal(batch["y"], all_y[8:19])


@pytest.mark.parametrize(
    "rows",
    [((0, 30),), ((10, 17),), ((17, 30),), ((9, 11),), ((29, 30),), ((20, 25), (0, 3), (16, 18)), ((0, 10), (10, 17))],
)
def test_parquet_read_rows_matches_concatenation(parquet_dir, all_x_y, rows):
    ds = ParquetDataset(parquet_dir)
    all_x, all_y = all_x_y
    batch = ds.read(Shard(0, rows=rows))
    np.testing.assert_array_equal(batch["x"], np.concatenate([all_x[a:b] for a, b in rows]))
    np.testing.assert_array_equal(batch["y"], np.concatenate([all_y[a:b] for a, b in rows]))


def test_parquet_balanced_plan_reassembles(parquet_dir, all_x_y):
    ds = ParquetDataset(parquet_dir)
    plan = ShardPlan.balanced(ds.num_examples, 4).validate(ds)
    parts = [ds.read(s) for s in plan.shards]
    np.testing.assert_array_equal(np.concatenate([p["x"] for p in parts]), all_x_y[0])


def test_parquet_read_files_shard(parquet_dir, all_x_y):
    ds = ParquetDataset(parquet_dir)
    all_x, all_y = all_x_y
    plan = files_plan(["c.parquet", "a.parquet"], ["b.parquet"]).validate(ds)
    first = ds.read(plan.shards[0])
    np.testing.assert_array_equal(first["y"], np.r_[all_y[17:30], all_y[0:10]])
    np.testing.assert_array_equal(first["x"], np.concatenate([all_x[17:30], all_x[0:10]]))
    second = ds.read(plan.shards[1])
    np.testing.assert_array_equal(second["y"], all_y[10:17])


def test_parquet_shapes_reshape(parquet_dir, all_x_y):
    ds = ParquetDataset(parquet_dir, shapes={"x": (2, 2)})
    batch = ds.read(Shard(0, rows=((5, 12),)))
    assert batch["x"].shape == (7, 2, 2)
    np.testing.assert_array_equal(batch["x"], all_x_y[0][5:12].reshape(7, 2, 2))
    assert batch["y"].shape == (7,)


def test_parquet_columns_selects(parquet_dir, all_x_y):
    ds = ParquetDataset(parquet_dir, columns=["y"])
    batch = ds.read(Shard(0, rows=((3, 25),)))
    assert set(batch) == {"y"}
    np.testing.assert_array_equal(batch["y"], all_x_y[1][3:25])


def test_parquet_variable_list_type_of_equal_lengths(tmp_path, all_x_y):
    write_part(tmp_path / "v.parquet", 0, 10, fixed=False)
    ds = ParquetDataset(tmp_path / "v.parquet")
    batch = ds.read(Shard(0, rows=((0, 10),)))
    np.testing.assert_array_equal(batch["x"], all_x_y[0][:10])


def test_parquet_missing_path_names_it(tmp_path, parquet_dir):
    missing = tmp_path / "nowhere.parquet"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        ParquetDataset(missing)
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        ParquetDataset([parquet_dir / "a.parquet", missing])


def test_parquet_directory_without_parquet_files(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .parquet files"):
        ParquetDataset(tmp_path / "empty")


def test_parquet_empty_source_list():
    with pytest.raises(ValueError):
        ParquetDataset([])


def test_parquet_corrupt_file_names_it(parquet_dir):
    bad = parquet_dir / "bb_corrupt.parquet"
    bad.write_bytes(b"this is not a parquet file at all" * 10)
    with pytest.raises(ValueError, match=re.escape(str(bad))) as info:
        ParquetDataset(parquet_dir)
    assert info.value.__cause__ is not None, "pyarrow's error is chained for --debug"
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        ParquetDataset(bad)


@pytest.mark.parametrize("s3_first", [False, True], ids=["local-then-s3", "s3-then-local"])
def test_parquet_mixing_local_and_s3_reads_each_file_through_its_own_filesystem(s3_endpoint, tmp_path, s3_first):
    """Rows 0-9 in a local file, rows 10-16 in an object on a real S3 server (moto)."""
    pafs = pytest.importorskip("pyarrow.fs")
    local = tmp_path / "a.parquet"
    write_part(local, 0, 10)
    staged = tmp_path / "staged" / "b.parquet"
    staged.parent.mkdir()
    write_part(staged, 10, 17)
    s3 = pafs.S3FileSystem(endpoint_override=s3_endpoint, scheme="http", region="us-east-1")
    pafs.copy_files(str(staged), "runs/mixed/b.parquet", destination_filesystem=s3)
    remote = s3_uri(s3_endpoint, "runs/mixed/b.parquet")

    ds = ParquetDataset([remote, local] if s3_first else [local, remote])
    local_rows, remote_rows = np.arange(0, 10), np.arange(10, 17)
    expected_y = np.r_[remote_rows, local_rows] if s3_first else np.r_[local_rows, remote_rows]
    assert ds.files == (["runs/mixed/b.parquet", str(local)] if s3_first else [str(local), "runs/mixed/b.parquet"])
    assert ds.file_rows == ([7, 10] if s3_first else [10, 7])
    batch = ds.read(Shard(0, rows=((0, 17),)))
    np.testing.assert_array_equal(batch["y"], expected_y)
    np.testing.assert_array_equal(batch["x"], np.concatenate([x_values(y, y + 1) for y in expected_y]))
    by_file = ds.read(files_plan(["b.parquet", "a.parquet"]).validate(ds).shards[0])
    np.testing.assert_array_equal(by_file["y"], np.r_[remote_rows, local_rows])


def test_parquet_unequal_list_lengths_names_column_and_file(tmp_path):
    path = tmp_path / "ragged.parquet"
    pq.write_table(
        pa.table({"x": pa.array([[1.0, 2.0], [3.0], [4.0, 5.0]], type=pa.list_(pa.float32())), "y": [0, 1, 2]}),
        str(path),
    )
    ds = ParquetDataset(path)
    with pytest.raises(ValueError) as info:
        ds.read(Shard(0, rows=((0, 3),)))
    message = str(info.value)
    assert "'x'" in message and str(path) in message


def test_parquet_nulls_rejected(tmp_path):
    path = tmp_path / "gaps.parquet"
    pq.write_table(pa.table({"y": pa.array([1, None, 3], type=pa.int64())}), str(path))
    ds = ParquetDataset(path)
    with pytest.raises(ValueError, match=r"'y' of .*\.parquet has .*null") as info:
        ds.read(Shard(0, rows=((0, 3),)))
    assert str(path) in str(info.value)


def test_parquet_null_inside_list_rejected(tmp_path):
    path = tmp_path / "inner.parquet"
    pq.write_table(pa.table({"x": pa.array([[1.0, None], [3.0, 4.0]], type=pa.list_(pa.float32()))}), str(path))
    with pytest.raises(ValueError, match=r"'x' of .*\.parquet has .*null"):
        ParquetDataset(path).read(Shard(0, rows=((0, 2),)))


@pytest.mark.parametrize("values", [[[1.0, 2.0], None, [3.0, 4.0]], [None, None]])
def test_parquet_null_list_entry_reported_as_null(tmp_path, values):
    path = tmp_path / "listcol.parquet"
    pq.write_table(pa.table({"x": pa.array(values, type=pa.list_(pa.float32()))}), str(path))
    with pytest.raises(ValueError, match=r"'x' of .*\.parquet has .*null") as info:
        ParquetDataset(path).read(Shard(0, rows=((0, len(values)),)))
    assert str(path) in str(info.value)


def test_parquet_empty_file_inside_shard(tmp_path, all_x_y):
    root = tmp_path / "withempty"
    root.mkdir()
    write_part(root / "a.parquet", 0, 10)
    write_part(root / "b.parquet", 10, 10)  # zero rows
    write_part(root / "c.parquet", 10, 17)
    ds = ParquetDataset(root)
    assert ds.file_rows == [10, 0, 7]
    batch = ds.read(Shard(0, rows=((5, 15),)))
    np.testing.assert_array_equal(batch["x"], all_x_y[0][5:15])
    batch = ds.read(Shard(0, files=tuple(ds.files)))
    np.testing.assert_array_equal(batch["x"], all_x_y[0][:17])


def test_column_to_numpy_nested_lists():
    column = pa.chunked_array([pa.array([[[1, 2], [3, 4]], [[5, 6], [7, 8]]]), pa.array([[[9, 10], [11, 12]]])])
    out = column_to_numpy(column, "z", "mem")
    assert out.shape == (3, 2, 2)
    np.testing.assert_array_equal(out, np.arange(1, 13).reshape(3, 2, 2))


# --------------------------------------------------------------------------- BatchPlan


def test_batch_plan_sizes_and_iteration():
    rng = np.random.default_rng(1)
    arrays = {"x": rng.standard_normal((1797, 64)), "y": np.arange(1797)}
    plan = BatchPlan(arrays, 256)
    assert plan.sizes == [256] * 7 + [5]
    assert sum(plan.sizes) == 1797
    batches = list(plan)
    assert len(batches) == 8
    assert [len(b["x"]) for b in batches] == plan.sizes
    assert [len(b["y"]) for b in batches] == plan.sizes
    # Contiguous: each batch starts where the previous one stopped.
    assert [int(b["y"][0]) for b in batches] == [256 * i for i in range(8)]
    for k in arrays:
        np.testing.assert_array_equal(np.concatenate([b[k] for b in batches]), arrays[k])


def test_batch_plan_exact_multiple_and_small():
    assert BatchPlan({"y": np.arange(512)}, 256).sizes == [256, 256]
    assert BatchPlan({"y": np.arange(3)}, 256).sizes == [3]
    assert BatchPlan({"y": np.arange(5)}, 1).sizes == [1] * 5


@pytest.mark.parametrize("size", [0, -1])
def test_batch_plan_rejects_nonpositive_batch_size(size):
    with pytest.raises(ValueError, match=rf"batch_size.*{size}"):
        BatchPlan({"y": np.arange(10)}, size)


# --------------------------------------------------------------------------- Shard.describe


def test_shard_describe_rows():
    text = Shard(3, rows=((10, 20), (80, 100))).describe()
    assert text == "shard 3 (rows [10, 20), [80, 100))", "half-open, as plans write rows"


def test_shard_describe_files():
    text = Shard(2, files=("/data/p/a.parquet", "/data/p/b.parquet")).describe()
    assert "2" in text and "files" in text
    assert "a.parquet" in text and "b.parquet" in text
    many = Shard(0, files=tuple(f"/d/f{i}.parquet" for i in range(5))).describe()
    assert "f0.parquet" in many and "f2.parquet" in many and "f3.parquet" not in many
    assert "2 more" in many
