"""Several devices per worker through the backend (raylanczos.backends.jax_sharding's
ShardedJaxBackend) and the in-process operator: the transformer example on 4 devices gives
G = 1's spectrum, its parameters split four ways; float64 extremes on 1 and 2 devices equal
the dense Hessian's; a user's rule is followed; products summed on the host and the
preconditioned operator agree with one device's; a product too large for a device is
refused at the warm-up; and a process that sees too few devices is refused in one line.

The device checks run in one subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``
(JAX reads the flag when it starts; this test process has one host device). On the shared
2-core test machine they take one to three minutes (most of it XLA compiling the
transformer's products) and are marked slow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import raylanczos as rl
from raylanczos.operators.contract import WorkerError
from raylanczos.operators.local import LocalHessian
from tests.hessians import tiny_transformer_hessian

SCRIPT = """
import json

import jax
import numpy as np

import raylanczos as rl
from raylanczos.backends import jax_sharding
from raylanczos.examples import digits, transformer
from raylanczos.operators.local import LocalHessian
from raylanczos.operators.shard_worker import ShardWorker
from raylanczos.problem.data import ShardPlan
from tests import problems

report = {"devices": len(jax.devices())}


def extremes(result):
    ritz = np.linalg.eigvalsh(np.diag(result.alpha) + np.diag(result.beta, 1) + np.diag(result.beta, -1))
    return float(ritz[0]), float(ritz[-1])


# 1. The transformer at the default widths with one layer (226,399 parameters, untrained, 8
# windows of 16 characters in one batch), float32 products, on 1 and on 4 devices: a few
# Lanczos steps of one draw.
SHAPE = transformer.TransformerShape(d_model=128, heads=4, layers=1, context=16, mlp=512)


def small_data():
    return transformer.make_problem(SHAPE, train_steps=0, windows=8, batch_size=8)


for devices in (1, 4):
    hessian = LocalHessian(small_data, devices=devices)
    result = rl.lanczos(hessian, order=6, seed=0)
    report[f"wide_{devices}"] = {"lambda_max": extremes(result)[1], "trace": hessian.dim * float(result.alpha[0])}
backend = hessian.workers[0].backend
largest = max(backend.layout.blocks, key=lambda block: block.size)
leaf = jax.tree_util.tree_leaves(backend._params)[backend.layout.names.index(largest.name)]
report["largest"] = {
    "name": largest.name, "bytes": largest.size * 4,
    "per_device": sorted(int(shard.data.nbytes) for shard in leaf.addressable_shards),
    "devices": len({shard.device for shard in leaf.addressable_shards}),
}

# 2. The tiny transformer in float64: the extremes of Lanczos on 1 and on 2 devices (the
# dense Hessian's are the test's).
for devices in (1, 2):
    hessian = LocalHessian(transformer.tiny_problem, compute_dtype="float64", devices=devices)
    report[f"tiny_{devices}"] = extremes(rl.lanczos(hessian, order=60, seed=0))

# 3. A user's rule: replicate every leaf; each device then holds the whole model.
replicated = transformer.make_problem(transformer.TINY, train_steps=0, windows=16, batch_size=16)
replicated = rl.Problem.from_jax(
    replicated.params, replicated.loss_fn, replicated.data, 16, param_sharding=lambda name, shape, devices: None
)
worker = ShardWorker(replicated, ShardPlan.balanced(16, 1).shards[0], devices=2)
held = worker.backend.placement.bytes_per_device(worker.backend._params)
report["replicated"] = {"held": sorted(held.values()), "n": worker.backend.num_params}

# 4. On 2 devices: a loss whose products are summed on the host (it builds float64 arrays
# when traced with 64-bit types), and the preconditioned operator D^-1/2 H D^-1/2.
for name, factory, operator in [
    ("host_sums", problems.default_dtype_loss, "hessian"), ("preconditioned", digits.tiny_adam_problem, "preconditioned"),
]:
    products = {}
    for devices in (1, 2):
        hessian = LocalHessian(factory, operator=operator, devices=devices)
        products[devices] = hessian.matmat(np.random.default_rng(0).standard_normal((2, hessian.dim)))
    report[name] = {
        "on_device": hessian.workers[0].backend.accumulates_on_device,
        "difference": float(np.max(np.abs(products[2] - products[1])) / np.max(np.abs(products[1]))),
    }

# 5. A product that does not fit a device is refused at the warm-up, naming the figures.
jax_sharding.device_memory_limit = lambda device: 2**16
worker = ShardWorker(transformer.tiny_problem, ShardPlan.balanced(32, 1).shards[0], devices=2)
report["too_large"] = worker.warm_up(2).error
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def four_devices():
    """What the script measures on 4 forced host devices (one subprocess for the module)."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT)], capture_output=True, text=True, env=env, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    eigenvalues = np.linalg.eigvalsh(tiny_transformer_hessian())
    return dict(report, dense=[float(eigenvalues[0]), float(eigenvalues[-1])], n_tiny=int(eigenvalues.size))


@pytest.mark.slow
def test_the_transformer_on_four_devices_has_the_spectrum_of_one(four_devices):
    """Float32 products: XLA sums the sharded contractions in another order, so the Lanczos
    coefficients differ in the last bits, and λ_max and the trace agree to 1e-5."""
    assert four_devices["devices"] == 4
    one, four = four_devices["wide_1"], four_devices["wide_4"]
    assert four["lambda_max"] == pytest.approx(one["lambda_max"], rel=1e-5)
    assert four["trace"] == pytest.approx(one["trace"], rel=1e-5)


@pytest.mark.slow
def test_each_device_holds_a_quarter_of_the_largest_leaf(four_devices):
    largest = four_devices["largest"]
    assert largest["name"] == "layer0_mlp/w_in" and largest["devices"] == 4
    assert largest["per_device"] == [largest["bytes"] // 4] * 4


@pytest.mark.slow
@pytest.mark.parametrize("devices", [1, 2])
def test_float64_extremes_on_devices_equal_the_dense_hessians(four_devices, devices):
    low, high = four_devices["dense"]
    norm = max(abs(low), abs(high))
    found_low, found_high = four_devices[f"tiny_{devices}"]
    assert 1000 < four_devices["n_tiny"] < 5000
    assert abs(found_low - low) <= 1e-8 * norm and abs(found_high - high) <= 1e-8 * norm


@pytest.mark.slow
def test_a_users_rule_replicates_the_model_on_every_device(four_devices):
    replicated = four_devices["replicated"]
    assert replicated["held"] == [4 * replicated["n"]] * 2


@pytest.mark.slow
@pytest.mark.parametrize("case", ["host_sums", "preconditioned"])
def test_host_sums_and_the_preconditioned_operator_on_two_devices_agree_with_one(four_devices, case):
    assert four_devices[case]["on_device"] is (case == "preconditioned")
    assert four_devices[case]["difference"] < 1e-6


@pytest.mark.slow
def test_a_product_too_large_for_a_device_is_refused_at_the_warm_up(four_devices):
    assert four_devices["too_large"].startswith("worker 0 (shard 0 (rows [0, 32))) failed: DeviceMemoryError: ")
    assert "per device with 2 device(s) per worker, but a device holds" in four_devices["too_large"]
    assert four_devices["too_large"].endswith("use --devices-per-worker 4 or more")


def small_problem() -> rl.Problem:
    """A least-squares fit of 4 weights to 8 examples."""
    rng = np.random.default_rng(0)
    data = {"x": rng.standard_normal((8, 4)).astype(np.float32), "y": rng.standard_normal(8).astype(np.float32)}
    return rl.Problem.from_jax({"w": np.ones(4, np.float32)}, lambda p, b: ((b["x"] @ p["w"] - b["y"]) ** 2).mean(), data, 4)


def test_a_worker_that_sees_fewer_devices_is_refused_in_one_line():
    with pytest.raises(WorkerError) as caught:
        LocalHessian(small_problem, devices=2)
    assert str(caught.value) == (
        "worker 0 (shard 0 (rows [0, 8))) failed: ProblemError: devices per worker is 2 but this worker sees "
        "1 device(s) (cpu); give the worker that many GPUs, or on a CPU set XLA_FLAGS=--xla_force_host_platform_device_count"
    )


def test_one_device_is_the_plain_backend():
    worker = LocalHessian(small_problem).workers[0]
    assert type(worker.backend).__name__ == "JaxBackend" and worker.describe()["devices"] == 1
    assert worker.warm_up(1).error == "" and "device_memory" not in worker.describe()


def test_param_sharding_must_be_callable():
    with pytest.raises(rl.ProblemError, match="param_sharding must be callable, got int"):
        rl.Problem.from_jax({"w": np.zeros(3, np.float32)}, lambda p, b: 0.0, {"x": np.zeros(4)}, 2, param_sharding=3)
