"""Where a pass's time and bytes go on a simulated multi-node cluster, flat against node reduction.

Starts a ``ray.cluster_utils.Cluster`` on this machine for each node count: a head that
runs the driver and no worker (0 CPUs), and K worker nodes, each with a resource
``scale_node_<i>`` that the shard plan pins its workers to. On it, for each parameter count
n and workers per node w, runs the same draws with ``reduce="node"`` and ``reduce="flat"``
back to back, on a synthetic problem whose products cost little (:func:`synthetic_problem`),
so what the table shows beyond the products is the broadcast, the reductions and the
driver's work. Per configuration it prints the per-pass medians:

- MB out / MB in: bytes the driver sent (the block, once per node) and received (partials);
  ``in ok`` checks them against K·B·n·8 (node) and K·w·B·n·8 (flat) in every pass;
- hvp: the slowest worker's product; gather: the rest of the wait for the partials
  (scheduling, transfers, node sums); node sum: the slowest node's sum; driver sum: the
  driver's float64 sum and division; reorth: the driver's re-orthogonalisation; step: the
  whole pass (seconds);
- per byte (ns/B): the driver's sum per byte received, a node's sum per byte of the partials
  it adds (its own included; nodes of two workers or more), the re-orthogonalisation per
  byte of basis read (:func:`scale_model.basis_rows_read`).

Nodes share this machine's cores, memory and loopback network, so transfers here cost
memory copies and Ray's own overheads, not a network's bandwidth: bytes are exact, and
the per-byte costs of the driver's own work carry over; transfer times do not.

With ``--model`` it also measures ``ray.put`` of a partial and the driver's ``accept`` per
byte, pools the per-byte costs over the configurations and prints ``scale_model``'s
ResNet-50 projection with them::

    python benchmarks/scale.py --nodes 1 2 4 --workers-per-node 1 2 --params 1000000 4000000 --model
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone

import jax.numpy as jnp
import numpy as np
import ray
import scale_model
from ray.cluster_utils import Cluster

import raylanczos as rl
from raylanczos.numerics.lanczos import (
    accept,
    reorthogonalize,
    start_state,
    start_vector,
)
from raylanczos.operators.contract import TIMING_COLUMNS

#: CPUs each worker reserves, and the synthetic problem's examples.
CPUS_PER_WORKER, EXAMPLES = 0.25, 1024
MIB = 2**20


def synthetic_problem(num_params: int, num_examples: int = EXAMPLES, batch_size: int = 256) -> rl.Problem:
    """A float32 model of ``num_params`` parameters θ whose products cost O(n) per batch.

    ℓ(θ; x) = x·Σⱼ cⱼθⱼ²/2 with cⱼ = 1 + sin²(j) and x ~ U(0.5, 1.5) (fixed seed), so
    H = x̄·diag(c): eigenvalues spread over [x̄, 2x̄], no breakdown for m ≪ n.
    """
    x = np.random.default_rng(0).uniform(0.5, 1.5, size=num_examples).astype(np.float32)

    def loss(params, batch):
        theta = params["theta"]
        curvature = 1.0 + jnp.sin(jnp.arange(theta.shape[0], dtype=jnp.float32)) ** 2
        return 0.5 * jnp.mean(batch["x"]) * jnp.sum(curvature * theta**2)

    return rl.Problem.from_jax({"theta": np.zeros(num_params, np.float32)}, loss, {"x": x}, batch_size=batch_size)


def machine() -> str:
    """CPU model, cores, RAM, load and versions, with the date (UTC)."""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name:"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        model = platform.processor() or platform.machine()
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {model}, {len(os.sched_getaffinity(0))} cores, {ram:.1f} GiB RAM; "
        f"load average {load}; Python {platform.python_version()}, numpy {np.__version__}, ray {ray.__version__}"
    )


@contextmanager
def simulated_cluster(nodes: int, workers_per_node: int, head_store: int, node_store: int):
    """A head (the driver's node, no CPUs for workers) and ``nodes`` worker nodes, connected."""
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "num_gpus": 0, "include_dashboard": False, "object_store_memory": head_store},
    )
    for index in range(nodes):
        cluster.add_node(
            num_cpus=1, resources={f"scale_node_{index}": workers_per_node}, object_store_memory=node_store
        )
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def pinned_plan(num_examples: int, nodes: int, workers_per_node: int) -> rl.ShardPlan:
    """Balanced row shards; workers i·w … i·w + w − 1 on node i."""
    shards = rl.ShardPlan.balanced(num_examples, nodes * workers_per_node).shards
    return rl.ShardPlan(tuple(
        rl.Shard(s.worker, s.rows, resources=((f"scale_node_{s.worker // workers_per_node}", 1),)) for s in shards
    ))


def measure(nodes: int, workers: int, num_params: int, reduce: str, args: argparse.Namespace) -> dict:
    """One run of B draws of m steps (m passes); per-pass medians (seconds), byte checks and
    per-byte costs (seconds per byte)."""
    b, m = args.draws_per_pass, args.order
    result = rl.hessian_spectrum(
        functools.partial(synthetic_problem, num_params), order=m, draws=b, draws_per_pass=b,
        num_workers=nodes * workers, shards=pinned_plan(EXAMPLES, nodes, workers),
        worker_resources={"num_cpus": CPUS_PER_WORKER}, pin_cpus=False, reduce=reduce, timeout=600, progress="none",
    )
    rows = np.array(result.summary["timings"]["rows"])
    if len(rows) != m:
        raise RuntimeError(f"expected {m} passes, the run took {len(rows)} (a draw broke down or took fresh products)")
    col = {name: rows[:, TIMING_COLUMNS.index(name)] for name in TIMING_COLUMNS}
    partial, block = b * num_params * 8, b * num_params * 4  # float64 partials, float32 block
    senders = nodes if reduce == "node" else nodes * workers
    basis = b * np.array([scale_model.basis_rows_read(p, m) for p in range(1, m + 1)]) * num_params * 8
    med = {name: float(statistics.median(values)) for name, values in col.items()}
    return {
        "nodes": nodes, "workers_per_node": workers, "num_params": num_params, "reduce": reduce,
        "bytes_out": med["bytes_sent"], "bytes_in": med["bytes_received"],
        "bytes_ok": bool(np.all(col["bytes_received"] == senders * partial) and np.all(col["bytes_sent"] == nodes * block)),
        "seconds": {name: med[name] for name in ("broadcast", "hvp_max", "gather", "node_reduce", "reduce", "reorth", "total")},
        "per_byte": {
            "reduce": float(col["reduce"].sum() / col["bytes_received"].sum()),
            "node_reduce": (
                float(col["node_reduce"].sum() / (m * workers * partial)) if reduce == "node" and workers > 1 else None
            ),
            "broadcast": float(col["broadcast"].sum() / (m * block)),
            "reorth": float(col["reorth"].sum() / basis.sum()),
        },
        "second_passes": int(sum(result.summary["second_reorthogonalisation_passes"])),
    }


def accept_s_per_byte(num_params: int, repeats: int = 5) -> float:
    """Seconds of ``raylanczos.lanczos.accept`` (its second step) per byte of one float64 vector (n·8)."""
    product = np.random.default_rng(1).standard_normal(num_params)  # not along the start vector
    times = []
    for _ in range(repeats):
        state = start_state(start_vector(num_params, seed=0), 4)
        accept(state, product)
        reorthogonalize(state)
        started = time.perf_counter()
        accept(state, product)
        times.append(time.perf_counter() - started)
    return statistics.median(times) / (num_params * 8)


def combine(runs: list[dict]) -> list[dict]:
    """One record per configuration: the median over its repeats of every figure."""
    configurations: dict[tuple, list[dict]] = {}
    for run in runs:
        configurations.setdefault((run["nodes"], run["num_params"], run["workers_per_node"], run["reduce"]), []).append(run)
    combined = []
    for repeats in configurations.values():
        first = repeats[0]
        combined.append({
            **first,
            "repeats": len(repeats),
            "bytes_ok": all(r["bytes_ok"] for r in repeats),
            "seconds": {k: statistics.median(r["seconds"][k] for r in repeats) for k in first["seconds"]},
            "per_byte": {
                k: None if first["per_byte"][k] is None else statistics.median(r["per_byte"][k] for r in repeats)
                for k in first["per_byte"]
            },
            "second_passes": sum(r["second_passes"] for r in repeats),
        })
    return combined


def put_s_per_byte(num_params: int, draws_per_pass: int, repeats: int = 5) -> float:
    """Seconds per byte of ``ray.put`` of a float64 (B, n) array (what a worker's partial costs to return)."""
    array = np.ones((draws_per_pass, num_params))
    ray.put(array)  # the first put into a fresh store also maps its pages (dropped at once)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        ref = ray.put(array)
        times.append(time.perf_counter() - started)
        del ref
    return statistics.median(times) / array.nbytes


def pooled_costs(records: list[dict], probes: dict[str, float], source: str) -> scale_model.DriverCosts:
    """Per-byte costs for the model: each the mean over the configurations that measure it."""

    def mean(name: str) -> float:
        return statistics.mean(r["per_byte"][name] for r in records if r["per_byte"][name] is not None)

    return scale_model.DriverCosts(
        reduce=mean("reduce"), node_reduce=mean("node_reduce"), broadcast=mean("broadcast"), reorth=mean("reorth"),
        source=source, **probes,
    )


def print_table(records: list[dict]) -> None:
    print(
        "| nodes | workers/node | n | reduce | MB out | MB in | in ok | hvp s | gather s | node sum s | driver sum s "
        "| reorth s | step s | driver sum ns/B | node sum ns/B | reorth ns/B |"
    )
    print("|---:|---:|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in records:
        t, c = r["seconds"], r["per_byte"]
        node_cost = "" if c["node_reduce"] is None else f"{c['node_reduce'] * 1e9:.3f}"
        print(
            f"| {r['nodes']} | {r['workers_per_node']} | {r['num_params']:,} | {r['reduce']} | {r['bytes_out'] / 1e6:.1f} "
            f"| {r['bytes_in'] / 1e6:.1f} | {'yes' if r['bytes_ok'] else 'NO'} | {t['hvp_max']:.3f} | {t['gather']:.3f} "
            f"| {t['node_reduce']:.3f} | {t['reduce']:.3f} | {t['reorth']:.3f} | {t['total']:.3f} "
            f"| {c['reduce'] * 1e9:.3f} | {node_cost} "
            f"| {c['reorth'] * 1e9:.3f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 4], help="worker nodes K (default 1 2 4)")
    parser.add_argument("--workers-per-node", type=int, nargs="+", default=[1, 2], help="w (default 1 2)")
    parser.add_argument("--params", type=int, nargs="+", default=[1_000_000, 4_000_000], help="n (default 1M 4M)")
    parser.add_argument("--order", type=int, default=10, help="m: Lanczos steps, one pass each (default 10)")
    parser.add_argument("--draws-per-pass", type=int, default=2, help="B (default 2)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each configuration; medians are shown (default 2)")
    parser.add_argument("--model", action="store_true", help="also print the ResNet-50 projection with these costs")
    args = parser.parse_args()
    started = machine()
    print(started, flush=True)
    b, most = args.draws_per_pass, max(args.params)
    # The head's store takes the block and every partial of a flat pass; a node's, the block and its partials.
    head_store = max(args.nodes) * max(args.workers_per_node) * b * most * 8 * 2 + 256 * MIB
    node_store = (max(args.workers_per_node) + 1) * b * most * 8 * 2 + 256 * MIB
    runs, probes = [], {}
    for nodes in args.nodes:
        with simulated_cluster(nodes, max(args.workers_per_node), head_store, node_store):
            if args.model and not probes:
                probes = {"put": put_s_per_byte(most, b), "accept": accept_s_per_byte(most)}
            for _ in range(args.repeats):
                for num_params in args.params:
                    for workers in args.workers_per_node:
                        for reduce in ("node", "flat"):
                            runs.append(measure(nodes, workers, num_params, reduce, args))
                            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    records = combine(runs)
    print(
        f"finished {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, load average "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}; B = {b}, m = {args.order}, {CPUS_PER_WORKER} CPU per worker, "
        f"{EXAMPLES} examples; medians over passes, then over {args.repeats} repeats\n"
    )
    print_table(records)
    if not all(r["bytes_ok"] for r in records):
        raise SystemExit("driver bytes differ from K·B·n·8 (node) / K·w·B·n·8 (flat): see the 'in ok' column")
    if args.model:
        costs = pooled_costs(records, probes, f"measured in this run, {started[:20]}")
        rows = [(scale_model.label(g), scale_model.resnet50_inputs(g)) for g in (1, 8, 64)]
        print()
        print(scale_model.report(rows, costs))
        print(json.dumps({"costs": dataclasses.asdict(costs)}))


if __name__ == "__main__":
    main()
