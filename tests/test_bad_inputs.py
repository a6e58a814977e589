"""A catalogue of bad inputs to the ``raylanczos`` command (see docs/reliability.md).

Each case must end in one line, ``raylanczos: error: <message>``, naming the culprit
(file, shard, worker or value), exit status 2, no traceback, and leave every earlier
output byte-for-byte as it was: a finished run made once for the module, and, for cases
aimed at an existing run, a copy of it that the bad command targets.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from raylanczos import cli
from raylanczos.distributed.workers import SETTLE_S
from tests import bad_problems
from tests.conftest import FAST, TINY, TINY_RUN

#: The session's finished run's configuration; resuming with exactly these reaches the checkpoint.
RUN_CONFIG = TINY_RUN


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (recursive), by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def finished_run(tiny_run) -> Path:
    return tiny_run


@dataclass
class Ctx:
    """What a case's argv builder may use: the finished run, a scratch dir, a copy of the run."""

    run: Path
    tmp: Path
    copied: bool = False

    @property
    def fresh(self) -> str:
        """An output directory that does not exist yet."""
        return str(self.tmp / "out")

    @property
    def copy(self) -> Path:
        """A copy of the finished run (made on first use)."""
        target = self.tmp / "copy"
        if not self.copied:
            shutil.copytree(self.run, target)
            self.copied = True
        return target

    def write(self, name: str, content: str | bytes) -> str:
        path = self.tmp / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return str(path)


def run_argv(problem: str, out: str, *extra: str) -> list[str]:
    return ["run", "--problem", problem, "--out", out, *FAST, *extra]  # extra last: its --timeout wins


def plan(*workers: list[list[int]]) -> str:
    return json.dumps({"workers": [{"rows": rows} for rows in workers]})


def _unrendered(ctx: Ctx) -> Path:
    """The copy as a run killed before its render: a finished run's --resume reads no checkpoint."""
    (ctx.copy / "summary.json").unlink()
    return ctx.copy


def _truncate_basis(ctx: Ctx) -> list[str]:
    basis = _unrendered(ctx) / "checkpoint" / "basis_0.npy"
    basis.write_bytes(basis.read_bytes()[: basis.stat().st_size // 2])
    return run_argv(TINY, str(ctx.copy), *RUN_CONFIG, "--resume")


def _garbage_state(ctx: Ctx) -> list[str]:
    (_unrendered(ctx) / "checkpoint" / "state.npz").write_bytes(b"garbage" * 100)
    return run_argv(TINY, str(ctx.copy), *RUN_CONFIG, "--resume")


def _not_writable(ctx: Ctx) -> list[str]:
    blocker = ctx.write("blocker", "a regular file, not a directory")
    return run_argv(TINY, f"{blocker}/run")


@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[Ctx], list[str]]
    expect: tuple[str | tuple[str, ...], ...]  # all of these on the error line; a tuple: any one of it
    in_workers: bool = False  # False: the driver refuses it before any worker starts
    within_s: float | None = None  # the command ends within this many seconds (None: not checked)


def bad(problem: str) -> str:
    return f"tests.bad_problems:{problem}"


CASES = [
    # --- numbers and options (refused before any worker starts) ---
    Case("order-0", lambda c: run_argv(TINY, c.fresh, "--order", "0"), ("--order must be a positive integer, got 0",)),
    Case("draws-0", lambda c: run_argv(TINY, c.fresh, "--draws", "0"), ("--draws must be a positive integer, got 0",)),
    Case("workers-0", lambda c: run_argv(TINY, c.fresh, "--workers", "0"), ("--workers must be a positive integer, got 0",)),
    Case("draws-per-pass-0", lambda c: run_argv(TINY, c.fresh, "--draws-per-pass", "0"), ("--draws-per-pass must be a positive integer, got 0",)),
    Case("workers-2000", lambda c: run_argv(TINY, c.fresh, "--workers", "2000"), ("2000 workers for only 1797 examples",)),
    Case(
        "workers-unplaceable",
        lambda c: run_argv(TINY, c.fresh, "--workers", "5", "--cpus-per-worker", "1"),
        ("5 workers need 5 CPU in all", "the cluster has 2 CPU"),
    ),
    Case(
        "checkpoint-every-negative",
        lambda c: run_argv(TINY, c.fresh, "--checkpoint-every", "-1"),
        ("--checkpoint-every must be a number >= 0, got -1.0",),
    ),
    Case("resume-and-overwrite", lambda c: run_argv(TINY, c.fresh, "--resume", "--overwrite"), ("resume and overwrite contradict",)),
    Case(
        "blocks-no-match",
        lambda c: run_argv(TINY, c.fresh, "--blocks", "conv*"),
        ("block pattern 'conv*' matches no parameter", "0/b, 0/w, 1/b, 1/w"),
    ),
    Case(
        "ggn-without-outputs",
        lambda c: run_argv(bad("hessian_only"), c.fresh, "--operator", "ggn"),
        ("Gauss-Newton operator (ggn) needs", "predict=..., output_loss=..."),
    ),
    # --- shard plans, aimed at an existing run with --overwrite: refused before it is touched ---
    Case(
        "plan-malformed-json",
        lambda c: run_argv(TINY, str(c.copy), "--overwrite", "--shards", c.write("plan.json", '{"workers": [{"rows": [[0, 1797]]}')),
        ("cannot read shard plan", "plan.json"),
    ),
    Case(
        "plan-overlap",
        lambda c: run_argv(TINY, str(c.copy), "--overwrite", "--shards", c.write("plan.json", plan([[0, 1000]], [[900, 1797]]))),
        ("rows [900, 1000) are assigned to both worker 0 and worker 1",),
    ),
    Case(
        "plan-gap",
        lambda c: run_argv(TINY, str(c.copy), "--overwrite", "--shards", c.write("plan.json", plan([[0, 800]], [[900, 1797]]))),
        ("rows [800, 900) are assigned to no worker",),
    ),
    Case(
        "plan-worker-count",
        lambda c: run_argv(
            TINY, str(c.copy), "--overwrite", "--workers", "3", "--shards", c.write("plan.json", plan([[0, 900]], [[900, 1797]]))
        ),
        ("--workers 3 does not match the shard plan's 2 workers",),
    ),
    # --- problem factories and losses (run and checked in the driver first) ---
    Case(
        "factory-missing-module",
        lambda c: run_argv("no_such_raylanczos_module:problem", c.fresh),
        ("cannot import module 'no_such_raylanczos_module'", "no_such_raylanczos_module:problem", "looked on sys.path and in"),
    ),
    Case("factory-returns-dict", lambda c: run_argv(bad("returns_dict"), c.fresh), ("returned dict, expected raylanczos.Problem", "returns_dict")),
    Case(
        "factory-missing-checkpoint",
        lambda c: run_argv(bad("missing_checkpoint"), c.fresh),
        ("raised FileNotFoundError", bad_problems.MISSING_CHECKPOINT, "missing_checkpoint"),
    ),
    Case("unknown-backend", lambda c: run_argv(bad("unknown_backend"), c.fresh), ("unknown backend 'torch'",)),
    Case("unequal-lengths", lambda c: run_argv(bad("unequal_lengths"), c.fresh), ("equal lengths", "'x': 10, 'y': 9")),
    Case(
        "parquet-missing",
        lambda c: run_argv(bad("missing_parquet"), c.fresh),
        ("Parquet source not found", str(bad_problems.MISSING_PARQUET)),
    ),
    Case("parquet-corrupt", lambda c: run_argv(bad("corrupt_parquet"), c.fresh), ("cannot read Parquet file", "corrupt.parquet")),
    Case("vector-loss", lambda c: run_argv(bad("vector_loss"), c.fresh), ("must return a scalar", "shape (64,)")),
    Case(
        "loss-missing-key",
        lambda c: run_argv(bad("missing_batch_entry"), c.fresh),
        ("loss_fn failed on the first batch ('x' (64, 64) float32, 'y' (64,) int32)", "KeyError: 'inputs'"),
    ),
    Case("nan-weights", lambda c: run_argv(bad("nan_weights"), c.fresh), ("non-finite (NaN or inf) values", "params[1]['w']")),
    Case(
        "keras-output-shape",
        lambda c: run_argv("tests.keras_problems:five_class_head", c.fresh),
        ("y (64, 10)", "'five_classes' has output shape (None, 5)", "give its last layer 10 units"),
    ),
    # --- output directories and checkpoints ---
    Case("out-not-writable", _not_writable, ("not writable", "blocker/run")),
    Case("existing-run", lambda c: run_argv(TINY, str(c.copy), "--order", "5", "--draws", "1"), ("already holds a run", "copy")),
    Case("resume-nothing", lambda c: run_argv(TINY, c.fresh, "--resume"), ("nothing to resume", "out/checkpoint")),
    Case(
        "resume-other-seed",
        lambda c: run_argv(TINY, str(c.copy), *RUN_CONFIG, "--seed", "5", "--resume"),
        ("different configuration", "seed"),
    ),
    Case(
        "resume-other-draws-per-pass",
        lambda c: run_argv(TINY, str(c.copy), *RUN_CONFIG, "--draws-per-pass", "1", "--resume"),
        ("different configuration", "draws_per_pass: checkpoint 2, now 1"),
    ),
    Case(
        "resume-garbage-state",
        _garbage_state,
        ("cannot read checkpoint", "state.npz", "copy/checkpoint"),
    ),
    Case(
        "resume-truncated-basis",
        _truncate_basis,
        ("cannot read checkpoint", "basis_0.npy is truncated", "copy/checkpoint"),
    ),
    # --- failures inside the workers ---
    Case(
        "nan-data",
        lambda c: run_argv(bad("nan_data"), c.fresh, "--workers", "2"),
        # row NAN_ROW=1000 lies in worker 1's first batch of 256 rows
        ("non-finite product on worker 1", "shard 1 (rows [898, 1797))", "dataset rows [898, 1154)"),
        in_workers=True,
    ),
    Case(
        "hanging-worker",
        lambda c: run_argv("tests.problems:hangs_in_workers", c.fresh, "--timeout", "5"),
        ("worker 0", "did not answer within 5 s"),
        in_workers=True,
        within_s=5 + SETTLE_S,  # the hung worker is not waited for to settle
    ),
    # --- the density command ---
    Case("density-no-run", lambda c: ["density", "--out", str(c.tmp)], ("cannot read", "summary.json")),
    Case("density-negative-sigma2", lambda c: ["density", "--out", str(c.copy), "--sigma2", "-1"], ("--sigma2 must be a number > 0, got -1.0",)),
    Case("density-half-grid", lambda c: ["density", "--out", str(c.copy), "--grid-min", "0"], ("give both --grid-min and --grid-max",)),
]


def _params(cases: list[Case]) -> list:
    """The cases as parameters; those that start workers are slow."""
    return [pytest.param(case, id=case.id, marks=[pytest.mark.slow] if case.in_workers else []) for case in cases]


def assert_one_line_error(err: str, expect: tuple[str | tuple[str, ...], ...]) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    assert lines[-1].startswith("raylanczos: error: "), err
    assert sum(line.startswith("raylanczos: error:") for line in lines) == 1, err
    for text in expect:
        options = text if isinstance(text, tuple) else (text,)
        assert any(option in lines[-1] for option in options), f"{text!r} not in {lines[-1]!r}"
    assert "Traceback" not in err, err


@pytest.mark.parametrize("case", _params(CASES))
def test_bad_input(case: Case, finished_run, tmp_path, capsys):
    ctx = Ctx(finished_run, tmp_path)
    argv = case.argv(ctx)
    before = snapshot(finished_run)
    before_copy = snapshot(ctx.copy) if ctx.copied else None
    capsys.readouterr()
    started = time.monotonic()
    code = cli.main(argv)
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 2, err
    assert_one_line_error(err, case.expect)
    assert case.within_s is None or elapsed < case.within_s, f"ended after {elapsed:.1f} s"
    if not case.in_workers:
        assert not re.search(r"^\S+ worker \d+: shard", err, re.MULTILINE), "refused only after workers started"
    assert snapshot(finished_run) == before, "the finished run changed"
    if before_copy is not None:
        assert snapshot(ctx.copy) == before_copy, "the targeted copy of the run changed"


def test_invalid_start_choice_is_refused_by_argparse(finished_run, tmp_path, capsys):
    """Case 37: argparse refuses the value itself, in one line pointing to --help, exit 2."""
    before = snapshot(finished_run)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(run_argv(TINY, str(tmp_path / "out"), "--start", "uniform"))
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.splitlines() == [
        "raylanczos run: error: argument --start: invalid choice: 'uniform' (choose from 'gaussian', 'rademacher') "
        "(see raylanczos run --help)"
    ]
    assert snapshot(finished_run) == before


@pytest.mark.slow
def test_order_above_n_is_clamped_with_a_warning(finished_run, tmp_path, capsys):
    """Case 27: not an error; m = min(order, n) and a warning says so."""
    before = snapshot(finished_run)
    out = tmp_path / "out"
    code = cli.main(run_argv(TINY, str(out), "--order", "5000", "--draws", "1", "--workers", "1"))
    err = capsys.readouterr().err
    assert code == 0, err
    assert any("exceeds the number of parameters" in line and "5000" in line and "310" in line for line in err.splitlines()), err
    assert "raylanczos: error" not in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["order"] == 310 and summary["config"]["num_params"] == 310
    assert snapshot(finished_run) == before


def test_debug_shows_the_traceback(finished_run, tmp_path, capsys):
    """Case 31: ``--debug`` before the subcommand re-raises instead of printing one line."""
    before = snapshot(finished_run)
    with pytest.raises(ValueError, match="order must be a positive integer, got 0"):
        cli.main(["--debug", *run_argv(TINY, str(tmp_path / "out"), "--order", "0")])
    assert "raylanczos: error" not in capsys.readouterr().err
    assert snapshot(finished_run) == before


@pytest.mark.slow
def test_a_run_that_failed_at_its_first_pass_does_not_block_the_next(finished_run, tmp_path, capsys):
    """NaN data fails in the workers at the first pass: the directory holds no run to
    resume, so the corrected command runs there without --overwrite."""
    out = str(tmp_path / "out")
    assert cli.main(run_argv(bad("nan_data"), out, "--workers", "2")) == 2
    capsys.readouterr()
    assert cli.main(run_argv(TINY, out, "--order", "4", "--draws", "1", "--workers", "2")) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["steps_completed"] == [4]
