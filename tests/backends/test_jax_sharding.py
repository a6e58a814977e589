"""Several devices per worker (raylanczos.backends.jax_sharding): the default FSDP-like rule,
users' rules, parameters really split over devices, sharded products equal to unsharded
ones, the host buffer assembled shard by shard, and XLA's memory figures.

The device checks run in one subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``
(JAX reads the flag when it starts, so this test process, which may have started JAX
already, cannot get four host devices itself). They take about half a minute and are
marked slow; the rules and the refusals run in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import raylanczos as rl
from raylanczos.backends.jax_sharding import (
    AXIS,
    DeviceMemory,
    DeviceMemoryError,
    check_fits,
    check_spec,
    fsdp_rule,
    plan_placement,
    worker_devices,
)

DEVICES = 4

SCRIPT = """
import json
import jax
import jax.numpy as jnp
import numpy as np

from raylanczos.backends.jax_sharding import compiled_memory, plan_placement, worker_devices
from raylanczos.examples import transformer

jax.config.update("jax_enable_x64", True)
report = {"devices": len(jax.devices())}

# 1. The default transformer's initial parameters, float32, over 4 devices.
params = transformer.init_params(transformer.DEFAULT, len(transformer.vocabulary()), 0)
placement = plan_placement(params, worker_devices(4))
sharded = placement.put_params(params, np.float32)
largest = max(placement.layout.blocks, key=lambda b: b.size)
leaf = sharded[largest.name.split("/")[0]][largest.name.split("/")[1]]
report["largest"] = {
    "name": largest.name, "shape": list(largest.shape), "bytes": int(leaf.nbytes),
    "spec": list(placement.specs[placement.layout.names.index(largest.name)]),
    "per_device": sorted(int(s.data.nbytes) for s in leaf.addressable_shards),
    "devices": sorted(str(s.device) for s in leaf.addressable_shards),
}
held = placement.bytes_per_device(sharded)
report["held"] = sorted(held.values())
report["total_bytes"] = int(sum(np.asarray(x).nbytes for x in jax.tree_util.tree_leaves(params)))

# 2. The tiny transformer's Hessian products in float64: sharded over 4 devices and on one.
problem = transformer.tiny_problem()
arrays = problem.data.arrays
batch = {k: v[: problem.batch_size] for k, v in arrays.items()}
params64 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), problem.params)

def product(p, tangent, batch):
    return jax.jvp(lambda q: jax.grad(problem.loss_fn)(q, batch), (p,), (tangent,))[1]

block_product = jax.vmap(product, in_axes=(None, 0, None))
tiny = plan_placement(params64, worker_devices(4))
vectors = np.random.default_rng(0).standard_normal((3, tiny.layout.num_params))
compiled = tiny.jit_block_product(block_product).lower(
    tiny.put_params(params64, np.float64), tiny.put_block(vectors, np.float64), batch).compile()
products = compiled(tiny.put_params(params64, np.float64), tiny.put_block(vectors, np.float64), batch)
buffer = np.full(vectors.shape, np.nan)
gathered = tiny.gather_block(products, buffer)
device_result = np.concatenate(
    [np.asarray(x).reshape(3, -1) for x in jax.tree_util.tree_leaves(products)], axis=1)

single = plan_placement(params64, worker_devices(1))
reference_compiled = single.jit_block_product(block_product).lower(
    single.put_params(params64, np.float64), single.put_block(vectors, np.float64), batch).compile()
reference = single.gather_block(reference_compiled(
    single.put_params(params64, np.float64), single.put_block(vectors, np.float64), batch))
roundtrip = tiny.gather_block(tiny.put_block(vectors, np.float64))
by_examples = tiny.gather_block(tiny.jit_block_product(block_product, shard_batch=True)(
    tiny.put_params(params64, np.float64), tiny.put_block(vectors, np.float64), batch))

report["tiny"] = {
    "n": tiny.layout.num_params,
    "sharded_leaves": sum(1 for s in tiny.specs if len(s) and any(e is not None for e in s)),
    "same_buffer": gathered is buffer,
    "gather_vs_device": float(np.max(np.abs(gathered - device_result))),
    "sharded_vs_single": float(np.max(np.abs(gathered - reference)) / np.max(np.abs(reference))),
    "roundtrip_exact": bool(np.array_equal(roundtrip, vectors)),
    "batch_split_vs_single": float(np.max(np.abs(by_examples - reference)) / np.max(np.abs(reference))),
    "output_devices": len({s.device for x in jax.tree_util.tree_leaves(products) for s in x.addressable_shards}),
    "memory_4": compiled_memory(compiled).__dict__,
    "memory_1": compiled_memory(reference_compiled).__dict__,
}
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def forced_devices():
    """What the script measures on 4 forced host devices (one subprocess for the module)."""
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={DEVICES}", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT)], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_the_worker_sees_four_forced_host_devices(forced_devices):
    assert forced_devices["devices"] == DEVICES


@pytest.mark.slow
def test_each_device_holds_a_quarter_of_the_largest_leaf(forced_devices):
    largest = forced_devices["largest"]
    assert largest["name"] == "layer0_mlp/w_in" and largest["shape"] == [128, 512]
    assert largest["spec"] == [None, AXIS]
    assert largest["per_device"] == [largest["bytes"] // DEVICES] * DEVICES
    assert len(set(largest["devices"])) == DEVICES


@pytest.mark.slow
def test_the_whole_model_is_spread_about_evenly(forced_devices):
    """Every leaf but the head's bias (103 entries, prime) splits: each device holds just over n/4."""
    quarter = forced_devices["total_bytes"] / DEVICES
    assert all(quarter <= held < 1.01 * quarter for held in forced_devices["held"])


@pytest.mark.slow
def test_a_sharded_float64_product_equals_the_one_device_product(forced_devices):
    tiny = forced_devices["tiny"]
    assert 1000 < tiny["n"] < 5000 and tiny["sharded_leaves"] >= 10
    assert tiny["output_devices"] == DEVICES
    assert tiny["sharded_vs_single"] < 1e-12
    assert tiny["batch_split_vs_single"] < 1e-12  # the 16 windows split 4 ways, FSDP's way


@pytest.mark.slow
def test_the_host_buffer_is_assembled_in_place_and_equals_the_device_result(forced_devices):
    tiny = forced_devices["tiny"]
    assert tiny["same_buffer"]
    assert tiny["gather_vs_device"] == 0.0
    assert tiny["roundtrip_exact"]


@pytest.mark.slow
def test_memory_analysis_counts_a_quarter_of_the_arguments_per_device(forced_devices):
    """Parameters and tangents are split four ways; the batch (16 windows of 8 int32 pairs,
    1 kB) is replicated. XLA's figures are per device."""
    four, one = forced_devices["tiny"]["memory_4"], forced_devices["tiny"]["memory_1"]
    assert one["arguments"] > 8 * 4 * forced_devices["tiny"]["n"]  # params + 3 tangents, float64
    assert four["arguments"] < 0.35 * one["arguments"]
    assert four["outputs"] < 0.35 * one["outputs"]
    assert DeviceMemory(**four).peak >= four["arguments"] + four["outputs"]


@pytest.mark.parametrize(
    ("shape", "spec"),
    [
        ((128, 512), P(None, AXIS)),  # the largest axis that splits
        ((512, 128), P(AXIS, None)),
        ((128, 128), P(AXIS, None)),  # a tie: the first axis
        ((103, 128), P(None, AXIS)),  # 103 does not split
        ((6, 10), P()),  # no axis splits: replicated
        ((), P()),
        ((8,), P(AXIS)),
    ],
)
def test_the_default_rule_shards_the_largest_divisible_axis(shape, spec):
    assert fsdp_rule("leaf", shape, 4) == spec


def test_the_default_rule_replicates_on_one_device():
    assert fsdp_rule("leaf", (128, 512), 1) == P()


def test_a_user_rule_chooses_each_leaf_spec():
    params = {"embed": {"token": np.zeros((10, 4), np.float32)}, "head": {"w": np.zeros((4, 10), np.float32)}}

    def rule(name, shape, devices):
        return P(AXIS) if name == "embed/token" else None

    placement = plan_placement(params, worker_devices(1), rule)
    assert placement.layout.names == ["embed/token", "head/w"] and placement.specs == (P(AXIS), P())


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("devices", r"param_sharding gave 'devices' for 'w' \(shape \(12, 6\)\); expected a jax.sharding.PartitionSpec"),
        (P(None, None, AXIS), r"only 2 axes \(shape \(12, 6\)\)"),
        (P("model"), r"the worker's mesh has one axis, 'devices', not 'model'"),
        (P(None, AXIS), r"axis 1 of length 6 does not split over 4 devices"),
        (P(AXIS, AXIS), r"may shard one axis only"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_leaf(spec, message):
    with pytest.raises(rl.ProblemError, match=message):
        check_spec("w", (12, 6), spec, 4)


def test_a_rule_that_raises_is_reported_with_the_leaf():
    def rule(name, shape, devices):
        raise KeyError(name)

    with pytest.raises(rl.ProblemError, match=r"param_sharding failed for 'w' \(shape \(3,\)\): KeyError") as caught:
        plan_placement({"w": np.zeros(3, np.float32)}, worker_devices(1), rule)
    assert isinstance(caught.value.__cause__, KeyError)


def test_more_devices_than_the_worker_sees_are_refused():
    with pytest.raises(rl.ProblemError, match=r"devices per worker is 3 but this worker sees 1 device\(s\) \(cpu\)"):
        worker_devices(3, jax.devices("cpu")[:1])


def test_a_block_of_the_wrong_shape_or_dtype_is_refused():
    placement = plan_placement({"w": np.zeros(3, np.float32)}, worker_devices(1))
    with pytest.raises(ValueError, match=r"vectors must be a float64 numpy array of shape \(B, 3\), got float32 \(2, 3\)"):
        placement.put_block(np.zeros((2, 3), np.float32), np.float32)


def test_a_product_too_large_for_the_device_is_refused_suggesting_more_devices():
    memory = DeviceMemory(arguments=3 * 2**30, outputs=2**30, aliased=0, temporaries=2 * 2**30, code=0, xla_peak=0)
    assert memory.peak == 6 * 2**30
    check_fits(memory, 8 * 2**30, 2)
    check_fits(memory, None, 2)
    with pytest.raises(
        DeviceMemoryError, match=r"worker 3's product needs 6.00 GiB per device with 2 device\(s\) per worker, but a "
        r"device holds 4.00 GiB; use --devices-per-worker 4 or more"
    ):
        check_fits(memory, 4 * 2**30, 2, worker="worker 3")
