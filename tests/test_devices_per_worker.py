"""``--devices-per-worker G`` from the command line to the workers: the option and its
refusals, a GPU worker's G GPUs and a CPU worker's G host devices, the record and the
run's identity, and a run on the session's Ray whose workers shard the model over two
host devices each and give G = 1's spectrum."""

from __future__ import annotations

import json

import pytest

from raylanczos import cli
from raylanczos.config import OptionError, ScalingConfig
from raylanczos.distributed.placement import device_environment, device_resources
from raylanczos.distributed.policy import default_layout
from raylanczos.outputs.record import ConfigRecord
from raylanczos.outputs.render import load_result
from tests.conftest import FAST, TINY, TINY_RUN


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = cli.main(list(args))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_devices_per_worker_must_be_a_positive_integer(value):
    with pytest.raises(OptionError, match=r"devices_per_worker must be a positive integer"):
        ScalingConfig(devices_per_worker=value)


def test_zero_devices_is_refused_in_one_line(capsys, tmp_path):
    code, err = run_cli(capsys, "run", "--problem", TINY, "--out", str(tmp_path / "run"), "--devices-per-worker", "0")
    assert code == 2 and err == "raylanczos: error: --devices-per-worker must be a positive integer, got 0\n"


def test_a_devices_count_that_is_not_a_number_is_refused_in_one_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as caught:
        cli.main(["run", "--problem", TINY, "--out", str(tmp_path / "run"), "--devices-per-worker", "x"])
    err = capsys.readouterr().err
    assert caught.value.code == 2
    assert err == "raylanczos run: error: argument --devices-per-worker: invalid int value: 'x' (see raylanczos run --help)\n"


@pytest.mark.slow
def test_a_keras_problem_on_several_devices_is_refused_before_any_worker_starts(capsys, tmp_path):
    """Refused by the plan, before the driver connects to Ray (TensorFlow's import makes it slow)."""
    out = tmp_path / "run"
    code, err = run_cli(
        capsys, "run", "--problem", "tests.keras_problems:keras_tiny_with_jax_weights", "--out", str(out),
        "--devices-per-worker", "2",
    )
    assert code == 2 and err.count("\n") == 1
    assert err == (
        "raylanczos: error: devices per worker is 2, but Keras workers hold the model on one device; "
        "use --devices-per-worker 1 (more workers share the data instead)\n"
    )
    assert not (out / "checkpoint").exists()


def test_a_gpu_worker_asks_for_g_gpus_and_a_cpu_worker_for_g_host_devices():
    assert device_resources({"num_cpus": 1, "num_gpus": 1}, 4) == {"num_cpus": 1, "num_gpus": 4}
    assert device_environment({"num_cpus": 1, "num_gpus": 4}, 4) is None
    assert device_resources({"num_cpus": 0.5}, 2) == {"num_cpus": 0.5}
    assert device_environment({"num_cpus": 0.5}, 2) == {"env_vars": {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}}
    assert device_environment({"num_cpus": 0.5}, 1) is None and device_resources({"num_gpus": 1}, 1) == {"num_gpus": 1}


def test_the_default_gpu_layout_gives_each_worker_g_gpus():
    layout = default_layout(16, 8, local=True, devices=4)
    assert (layout.num_workers, layout.resources) == (2, {"num_cpus": 1.0, "num_gpus": 4.0})
    assert default_layout(16, 2, local=True, devices=4).num_workers == 1, "the placement then names the shortfall"
    assert default_layout(2, 0, local=True, devices=2).resources == {"num_cpus": 1.0}


def test_the_identity_holds_g_only_when_it_changes_the_numbers():
    one, two = ConfigRecord("p", devices_per_worker=1), ConfigRecord("p", devices_per_worker=2)
    assert one.to_json()["devices_per_worker"] == 1 and "devices_per_worker" not in one.identity()
    assert two.identity()["devices_per_worker"] == 2
    assert one.identity() == ConfigRecord("p").identity(), "a checkpoint made before G existed still resumes"


@pytest.mark.slow
def test_a_run_on_two_host_devices_per_worker_matches_one_device(tiny_run, tmp_path, capsys):
    """The tiny MLP's session run (2 workers, G = 1) again with G = 2: each worker's process
    sees two host devices, its summary records G, and the spectrum agrees to 1e-5 (float32
    products summed in another order)."""
    out = tmp_path / "run"
    code, err = run_cli(
        capsys, "run", "--problem", TINY, "--out", str(out), *TINY_RUN, *FAST, "--no-pin-cpus", "--timeout", "120",
        "--devices-per-worker", "2",
    )
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["devices_per_worker"] == 2
    memory = [worker["device_memory"] for worker in summary["workers"]]
    assert [(m["devices"], m["platform"], m["limit_bytes"]) for m in memory] == [(2, "cpu", None)] * 2
    assert all(m["peak_bytes"] > 0 for m in memory)
    assert err.count("2 cpu devices, product ") == 2, "the start-up lines name each worker's devices and memory"
    two, one = load_result(out).record.statistics, load_result(tiny_run).record.statistics
    assert two.lambda_max == pytest.approx(one.lambda_max, rel=1e-5)
    assert two.trace_estimate == pytest.approx(one.trace_estimate, rel=1e-5)
