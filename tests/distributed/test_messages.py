"""Messages a new user meets first: a command line argparse cannot parse, and a framework
that an optional extra of raylanczos would install."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from raylanczos import cli
from raylanczos.backends import make_backend
from raylanczos.problem.definition import (
    Problem,
    ProblemError,
    build_problem,
    install_hint,
    load_factory,
)


@pytest.mark.parametrize(
    "argv, line",
    [
        (
            ["run", "--problem", "m:f", "--out", "x", "--start", "uniform"],
            "raylanczos run: error: argument --start: invalid choice: 'uniform' (choose from 'gaussian', "
            "'rademacher') (see raylanczos run --help)",
        ),
        (["run", "--problem", "m:f", "--out", "x", "--order"], "raylanczos run: error: argument --order: expected one argument (see raylanczos run --help)"),
        (["run", "--out", "x"], "raylanczos run: error: the following arguments are required: --problem (see raylanczos run --help)"),
        (["density"], "raylanczos density: error: the following arguments are required: --run/--out (see raylanczos density --help)"),
        ([], "raylanczos: error: the following arguments are required: command (see raylanczos --help)"),
    ],
    ids=["bad-choice", "missing-value", "missing-option", "density-without-run", "no-command"],
)
def test_a_command_line_argparse_refuses_is_one_line_pointing_to_help(argv, line, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == cli.EXIT_ERROR
    assert capsys.readouterr().err.splitlines() == [line]


def test_density_takes_the_run_as_run_or_out():
    parser = cli.build_parser()
    for flag in ("--run", "--out"):
        assert parser.parse_args(["density", flag, "runs/x", "--to", "runs/y"]).run == "runs/x"


def write_module(tmp_path, monkeypatch, name: str, source: str) -> None:
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))


@pytest.mark.parametrize(
    "missing, extra",
    [("keras", "tf"), ("tensorflow", "tf"), ("jax", "jax"), ("sklearn", "examples")],
)
def test_a_factory_module_whose_framework_is_missing_names_the_extra(tmp_path, monkeypatch, missing, extra):
    """The framework is made unimportable here as it is where it is not installed
    (``sys.modules[name] = None`` makes ``import name`` raise ModuleNotFoundError)."""
    monkeypatch.setitem(sys.modules, missing, None)
    module = f"factory_needs_{missing}"
    write_module(tmp_path, monkeypatch, module, f"import {missing}\n\ndef problem():\n    pass\n")
    with pytest.raises(ProblemError) as refused:
        load_factory(f"{module}:problem")
    message = str(refused.value)
    assert message.startswith(f"cannot import module {module!r} for problem factory '{module}:problem': ModuleNotFoundError")
    assert message.endswith(f"(pip install 'raylanczos[{extra}]'" + (" or 'raylanczos[tf-cuda]' on GPU machines)" if extra == "tf" else ")"))


def test_a_factory_that_imports_its_framework_when_called_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "keras", None)
    write_module(tmp_path, monkeypatch, "lazy_keras_factory", "def problem():\n    import keras\n")
    with pytest.raises(ProblemError, match=r"raised ModuleNotFoundError: .*keras.* \(pip install 'raylanczos\[tf\]'"):
        build_problem("lazy_keras_factory:problem")


def test_a_missing_module_of_the_user_gets_no_install_hint(tmp_path, monkeypatch):
    write_module(tmp_path, monkeypatch, "needs_a_helper", "import my_missing_helper_module\n\ndef problem():\n    pass\n")
    with pytest.raises(ProblemError) as refused:
        load_factory("needs_a_helper:problem")
    assert "No module named 'my_missing_helper_module'" in str(refused.value)
    assert "pip install" not in str(refused.value)
    assert install_hint(ValueError("keras")) == "" and install_hint(ModuleNotFoundError("x", name="flax")) == ""


def test_a_keras_problem_without_tensorflow_names_the_extra(monkeypatch):
    """Keras 3 can run on JAX alone; its model then reaches the Keras backend, which needs
    TensorFlow."""
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    monkeypatch.delitem(sys.modules, "raylanczos.backends.tf", raising=False)
    model = types.SimpleNamespace(trainable_variables=[np.zeros(3, np.float32)], name="on_jax")
    problem = Problem.from_keras(model, lambda model, batch: 0.0, {"x": np.zeros((4, 3), np.float32)}, batch_size=2)
    with pytest.raises(ProblemError) as refused:
        make_backend(problem, {"x": np.zeros((4, 3), np.float32)})
    assert str(refused.value) == (
        "the keras backend needs tensorflow, which is not installed "
        "(pip install 'raylanczos[tf]' or 'raylanczos[tf-cuda]' on GPU machines)"
    )


@pytest.mark.slow
def test_an_interrupted_run_ends_with_its_own_line_and_no_ray_line(ray_session, tmp_path):
    """Ctrl-C mid-pass (SIGINT to the driver's process group, as a terminal sends it): the
    workers end their calls before they are stopped, so Ray announces no retry of a killed
    call; the run's one line is all that follows the progress lines."""
    import os
    import signal
    import subprocess

    args = [
        "run", "--problem", "raylanczos.examples.digits:tiny_problem", "--order", "300", "--draws", "8",
        "--draws-per-pass", "1", "--workers", "2", "--cpus-per-worker", "0.5", "--address", ray_session.address,
        "--out", str(tmp_path / "run"), "--progress", "lines",
    ]  # fmt: skip
    driver = subprocess.Popen(
        [sys.executable, "-m", "raylanczos", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True,
    )  # fmt: skip
    lines = []
    for line in driver.stderr:
        lines.append(line)
        if " pass 20 |" in line:
            os.killpg(driver.pid, signal.SIGINT)
            break
    out, rest = driver.communicate(timeout=120)
    after = [line for line in rest.splitlines() if " pass " not in line and " draw " not in line]
    assert driver.returncode == 130, "".join(lines) + rest
    assert after == ["raylanczos: interrupted; finished draws and the checkpoint are kept (resume with --resume)"], rest
    assert out == "", out


def test_a_worker_that_rays_memory_monitor_killed_is_named_with_what_to_do():
    """Ray's own text ends in a link to its documentation; the line says what happened."""
    ray_exceptions = pytest.importorskip("ray.exceptions")
    from raylanczos.distributed.workers import lost_worker_line

    killed = ray_exceptions.OutOfMemoryError(
        "Task was killed due to the node running low on memory.\nMemory on the node (IP: 10.0.0.2) was 22.4GB / 23.5GB "
        "(0.953), which exceeds the memory usage threshold of 0.95.\nRefer to the documentation on how to address the "
        "out of memory issue: https://docs.ray.io/en/latest/ray-observability/user-guides/debug-apps/debug-memory.html."
    )
    assert lost_worker_line("worker 0 (shard 0 (rows [0, 898)))", killed, None) == (
        "worker 0 (shard 0 (rows [0, 898))) was lost: Ray's memory monitor killed it, as its node's memory passed the "
        "kill threshold (RAY_memory_usage_threshold, 0.95 of the node by default); fewer workers per node (--workers, "
        "--cpus-per-worker) or smaller batches need less; run again (--resume continues from the last checkpoint)"
    )
    assert lost_worker_line("worker 0", RuntimeError("XLA: out of memory"), None) is None  # the worker's own error
