"""One worker's product sharded over G devices: per-device memory and time, per G.

For each device count G, in a fresh process whose XLA makes G host devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=G``, read when JAX starts; on a GPU
machine the process sees its GPUs instead), it shards the problem's parameters over the
first G devices by the default FSDP-like rule (:mod:`raylanczos.backends.jax_sharding`),
compiles the Hessian product of one batch for a block of B tangents with those
shardings (the batch replicated, or with ``--shard-batch`` split by examples), and prints:

- the parameters held per device (bytes, largest over the devices);
- XLA's memory analysis of the compiled product, per device: arguments, temporaries and
  the peak (``DeviceMemory.peak``);
- the median seconds of the product alone, and of the worker's whole cycle: the float64
  block sent to the devices shard by shard, the product, and the float64 host buffer
  assembled shard by shard;
- the largest difference of the product from G = 1's, relative to its largest entry
  (float32 products; XLA sums in another order when it splits the work).

    python benchmarks/devices.py --devices 1 2 4
    python benchmarks/devices.py --problem raylanczos.examples.transformer:problem --block 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from raylanczos.benchmarking import describe_machine


def measure(problem_spec: str, devices: int, block: int, repeats: int, reference: str, shard_batch: bool) -> dict[str, object]:
    """Runs in a child with G forced host devices; returns the figures (see the module docstring)."""
    import jax
    import jax.numpy as jnp

    from raylanczos.backends.jax_sharding import compiled_memory, plan_placement, worker_devices
    from raylanczos.benchmarking import median_seconds
    from raylanczos.problem.data import ShardPlan
    from raylanczos.problem.definition import build_problem

    problem = build_problem(problem_spec)
    params = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), problem.params)
    rows = ShardPlan.balanced(problem.num_examples, 1).shards[0]
    batch = {k: v[: problem.batch_size] for k, v in problem.data.read(rows).items()}

    def product(p, tangent, batch):
        return jax.jvp(lambda q: jax.grad(problem.loss_fn)(q, batch), (p,), (tangent,))[1]

    placement = plan_placement(params, worker_devices(devices))
    sharded = placement.put_params(params, jnp.float32)
    vectors = np.random.default_rng(0).standard_normal((block, placement.layout.num_params))
    tangents = placement.put_block(vectors, jnp.float32)
    compiled = placement.jit_block_product(jax.vmap(product, in_axes=(None, 0, None)), shard_batch=shard_batch).lower(sharded, tangents, batch).compile()
    memory = compiled_memory(compiled)
    out = np.empty_like(vectors)

    def cycle() -> None:
        placement.gather_block(compiled(sharded, placement.put_block(vectors, jnp.float32), batch), out)

    product_seconds = median_seconds(lambda: jax.block_until_ready(compiled(sharded, tangents, batch)), repeats)
    cycle_seconds = median_seconds(cycle, repeats)
    if devices == 1:
        np.save(reference, out)
    difference = float(np.max(np.abs(out - np.load(reference))) / np.max(np.abs(out)))
    return {
        "devices": len(placement.devices),
        "platform": placement.devices[0].platform,
        "n": placement.layout.num_params,
        "batch": problem.batch_size,
        "params_per_device": max(placement.bytes_per_device(sharded).values()),
        "arguments": memory.arguments,
        "temporaries": memory.temporaries,
        "peak": memory.peak,
        "product_s": product_seconds,
        "cycle_s": cycle_seconds,
        "difference": difference,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problem", default="raylanczos.examples.transformer:problem")
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--block", type=int, default=1, help="tangents per product, B (default 1)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shard-batch", action="store_true", help="split the batch's examples over the devices too")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--reference", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.problem, args.child, args.block, args.repeats, args.reference, args.shard_batch)))
        return
    if 1 not in args.devices or args.devices[0] != 1:
        parser.error("--devices must start with 1 (the reference product)")
    machine = describe_machine()
    print(f"{machine['date']} UTC, {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB")
    layout = "split over the devices" if args.shard_batch else "replicated"
    print(f"problem {args.problem}, one batch ({layout}), B = {args.block}, median of {args.repeats}")
    print("G | platform | params/device MB | arguments MB | temporaries MB | peak MB | product s | cycle s | diff vs G=1")
    with tempfile.TemporaryDirectory() as scratch:
        reference = os.path.join(scratch, "reference.npy")
        for devices in args.devices:
            env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
            command = [
                sys.executable, __file__, "--problem", args.problem, "--block", str(args.block),
                "--repeats", str(args.repeats), "--child", str(devices), "--reference", reference,
                *(["--shard-batch"] if args.shard_batch else []),
            ]
            result = subprocess.run(command, capture_output=True, text=True, env=env)
            if result.returncode:
                sys.exit(f"G = {devices} failed:\n{result.stderr[-3000:]}")
            r = json.loads(result.stdout.strip().splitlines()[-1])
            print(
                f"{r['devices']} | {r['platform']} | {r['params_per_device'] / 1e6:.2f} | {r['arguments'] / 1e6:.2f} | "
                f"{r['temporaries'] / 1e6:.2f} | {r['peak'] / 1e6:.2f} | {r['product_s']:.3f} | {r['cycle_s']:.3f} | "
                f"{r['difference']:.1e}"
            )
    print(f"n = {r['n']}, batch {r['batch']} examples")


if __name__ == "__main__":
    main()
