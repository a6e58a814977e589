"""Where a pass's time and bytes go on a simulated multi-node cluster: the driver's state
against the sharded one, and the flat against the node reduction.

Starts a ``ray.cluster_utils.Cluster`` on this machine for each node count: a head that
runs the driver and no worker (0 CPUs), and K worker nodes, each with a resource
``scale_node_<i>`` that the shard plan pins its workers to, and explicit CPUs, memory and
object store. On it, for each parameter count n, workers per node w, state and reduction,
runs the same draws back to back, on a synthetic problem whose products cost little
(:func:`synthetic_problem`), so what the table shows beyond the products is the moving and
adding of vectors and the step's work. Per configuration it prints the per-pass medians:

- kB out / kB in: bytes the driver sent and received; ``ok`` checks them in every pass:
  with the driver's state the block once per node out, K·B·n·8 (node) or K·w·B·n·8 (flat)
  in; with the sharded state at most :data:`SHARDED_BYTES` each way, whatever n;
- seconds (``timings.rows``): hvp, the slowest worker's product; all-gather, the slowest
  worker's fetching and concatenating the keepers' slices (sharded); gather, the rest of
  the wait for the products beyond the product; node sum, the slowest node's; driver sum,
  the driver's float64 sum of the partials (driver state); scatter, the keepers' fetching
  and adding their pieces of the node sums (sharded: the reduce-scatter); accept, the
  step's first half; reorth, its second (on the keepers, sharded); driver sums, the
  driver's adding of the keepers' partial dot products (sharded); step, the whole pass;
- per byte (ns/B): the driver's sum per byte received, a node's sum per byte of the
  partials it adds, the re-orthogonalisation per byte of basis read (on the driver, or per
  keeper of its slice), and (sharded) the reduce-scatter per byte a keeper adds.

Nodes share this machine's cores, memory and loopback network, so transfers here cost
memory copies and Ray's own overheads, not a network's bandwidth: bytes are exact, and
the per-byte costs of numpy's own work carry over; transfer times do not.

With ``--model`` it also measures, alone, ``ray.put`` of a partial, a float64 sum, the
driver's ``accept`` per byte and a keeper's round trip, pools the per-byte costs over the
configurations and prints ``scale_model``'s projections with them::

    PYTHONPATH=. python benchmarks/scale.py --model   # K = 1 2 4, w = 2, n = 1M 4M, driver and sharded, node reduction
    PYTHONPATH=. python benchmarks/scale.py --states driver --reductions node flat --workers-per-node 1 2   # flat/node
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import statistics
import sys
import time
from contextlib import contextmanager
from datetime import UTC, datetime

import jax.numpy as jnp
import numpy as np
import ray
import scale_model
from ray.cluster_utils import Cluster

import raylanczos as rl
from raylanczos.benchmarking import describe_machine
from raylanczos.numerics.lanczos import (
    accept,
    reorthogonalize,
    start_state,
    start_vector,
)
from raylanczos.numerics.vectors import sum_in_order
from raylanczos.operators.contract import TIMING_COLUMNS

#: CPUs each worker reserves, and the synthetic problem's examples.
CPUS_PER_WORKER, EXAMPLES = 0.25, 1024
#: Memory each simulated node offers Ray's tasks and actors (bytes): a keeper's slices fit.
NODE_MEMORY = 4 * 2**30
#: The most bytes a sharded pass may move through the driver each way (any n).
SHARDED_BYTES = 64 * 1024
MIB = 2**20
SECONDS = (
    "broadcast", "hvp_max", "allgather", "gather", "node_reduce", "reduce", "scatter", "accept", "reorth", "driver_sums",
    "total",
)


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
    """This machine (:func:`raylanczos.benchmarking.describe_machine`), its load and the versions."""
    info = describe_machine()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{info['date']}; {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB RAM; load average {load}; "
        f"Python {info['python']}, numpy {np.__version__}, ray {ray.__version__}"
    )


@contextmanager
def simulated_cluster(nodes: int, workers_per_node: int, head_store: int, node_store: int):
    """A head (the driver's node, no CPUs for workers) and ``nodes`` worker nodes, connected;
    shut down on leaving."""
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0, "num_gpus": 0, "include_dashboard": False, "object_store_memory": head_store,
            "memory": NODE_MEMORY,
        },
    )
    try:
        for index in range(nodes):
            cluster.add_node(
                num_cpus=1, num_gpus=0, memory=NODE_MEMORY, object_store_memory=node_store,
                resources={f"scale_node_{index}": workers_per_node},
            )
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
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


@dataclasses.dataclass(frozen=True)
class Setup:
    """One configuration: K nodes, w workers per node, n parameters, the state and the reduction."""

    nodes: int
    workers_per_node: int
    num_params: int
    state: str
    reduce: str


def bytes_ok(setup: Setup, col: dict[str, np.ndarray], draws_per_pass: int) -> bool:
    """Whether every pass moved through the driver what the design says (see the module docstring)."""
    if setup.state == "sharded":
        return bool(col["bytes_sent"].max() <= SHARDED_BYTES and col["bytes_received"].max() <= SHARDED_BYTES)
    partial, block = draws_per_pass * setup.num_params * 8, draws_per_pass * setup.num_params * 4
    senders = setup.nodes if setup.reduce == "node" else setup.nodes * setup.workers_per_node
    return bool(np.all(col["bytes_received"] == senders * partial) and np.all(col["bytes_sent"] == setup.nodes * block))


def per_byte(setup: Setup, col: dict[str, np.ndarray], draws_per_pass: int, order: int) -> dict[str, float | None]:
    """Seconds per byte (None where a configuration does not measure it): the driver's sum per
    byte received; a node's sum per byte of the partials it adds (its own included); the
    re-orthogonalisation per byte of basis one sweeper reads (the driver, or one keeper of
    its slice); the reduce-scatter per byte a keeper adds (its pieces of every node sum)."""
    b, n, k = draws_per_pass, setup.num_params, setup.nodes
    partial = b * n * 8
    sweepers = k if setup.state == "sharded" else 1
    basis = b * np.array([scale_model.basis_rows_read(p, order) for p in range(1, order + 1)]) * n * 8 / sweepers
    grouped = setup.reduce == "node" and setup.workers_per_node > 1
    driver = setup.state == "driver"
    return {
        "reduce": float(col["reduce"].sum() / col["bytes_received"].sum()) if driver else None,
        "node_reduce": float(col["node_reduce"].sum() / (order * setup.workers_per_node * partial)) if grouped else None,
        "broadcast": float(col["broadcast"].sum() / (order * b * n * 4)) if driver else None,
        "reorth": float(col["reorth"].sum() / basis.sum()),
        "scatter": None if driver else float(col["scatter"].sum() / (order * partial)),
    }


def measure(setup: Setup, args: argparse.Namespace) -> dict:
    """One run of B draws of m steps (m passes); per-pass medians (seconds), the byte check
    and per-byte costs (seconds per byte)."""
    b, m = args.draws_per_pass, args.order
    result = rl.hessian_spectrum(
        functools.partial(synthetic_problem, setup.num_params), order=m, draws=b, draws_per_pass=b,
        num_workers=setup.nodes * setup.workers_per_node, shards=pinned_plan(EXAMPLES, setup.nodes, setup.workers_per_node),
        worker_resources={"num_cpus": CPUS_PER_WORKER}, pin_cpus=False, reduce=setup.reduce, state=setup.state,
        timeout=600, progress="none",
    )
    rows = np.array(result.summary["timings"]["rows"])
    if len(rows) != m:
        raise RuntimeError(f"expected {m} passes, the run took {len(rows)} (a draw broke down or took fresh products)")
    col = {name: rows[:, TIMING_COLUMNS.index(name)] for name in TIMING_COLUMNS}
    return {
        **dataclasses.asdict(setup),
        "bytes_out": float(np.median(col["bytes_sent"])), "bytes_in": float(np.median(col["bytes_received"])),
        "bytes_ok": bytes_ok(setup, col, b),
        "seconds": {name: float(np.median(col[name])) for name in SECONDS},
        "per_byte": per_byte(setup, col, b, m),
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


def sum_s_per_byte(num_params: int, draws_per_pass: int, pieces: int = 4, repeats: int = 5) -> float:
    """Seconds per byte added of :func:`raylanczos.numerics.vectors.sum_in_order` over
    ``pieces`` float64 (B, n/pieces) arrays (a keeper's reduce-scatter sum, all bytes counted)."""
    arrays = [np.full((draws_per_pass, num_params // pieces), float(i)) for i in range(pieces)]
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        sum_in_order(arrays)
        times.append(time.perf_counter() - started)
    return statistics.median(times) / sum(a.nbytes for a in arrays)


@ray.remote(num_cpus=0)
class Echo:
    """A keeper's stand-in: answers a call with nothing, to time a driver's round trip."""

    def ping(self) -> None:
        return None


def round_trip_s(repeats: int = 50) -> float:
    """Median seconds of one call to an actor on another node and its answer (empty)."""
    echo = Echo.options(resources={"scale_node_0": 0.001}).remote()
    ray.get(echo.ping.remote())
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        ray.get(echo.ping.remote())
        times.append(time.perf_counter() - started)
    ray.kill(echo)
    return statistics.median(times)


def probes(num_params: int, draws_per_pass: int) -> dict[str, float]:
    """The per-byte costs measured alone (seconds per byte; the round trip in seconds)."""
    return {
        "put": put_s_per_byte(num_params, draws_per_pass), "accept": accept_s_per_byte(num_params),
        "sum": sum_s_per_byte(num_params, draws_per_pass), "round_trip": round_trip_s(),
    }


def combine(runs: list[dict]) -> list[dict]:
    """One record per configuration: the median over its repeats of every figure."""
    configurations: dict[tuple, list[dict]] = {}
    for run in runs:
        key = (run["nodes"], run["num_params"], run["workers_per_node"], run["state"], run["reduce"])
        configurations.setdefault(key, []).append(run)
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


def mean_of(records: list[dict], name: str) -> float:
    """The mean over the records that measure ``name`` of its cost per byte."""
    values = [r["per_byte"][name] for r in records if r["per_byte"][name] is not None]
    if not values:
        raise SystemExit(f"no configuration measured {name!r}: add a state or nodes with two workers")
    return statistics.mean(values)


def pooled_costs(
    records: list[dict], measured: dict[str, float], source: str
) -> tuple[scale_model.DriverCosts, scale_model.ShardedCosts]:
    """The model's per-byte costs: each the mean over the configurations that measure it, or
    the probes measured alone; (driver state's, sharded state's)."""
    driver = [r for r in records if r["state"] == "driver"]
    sharded = [r for r in records if r["state"] == "sharded"]
    return (
        scale_model.DriverCosts(
            reduce=mean_of(driver, "reduce"), node_reduce=mean_of(records, "node_reduce"),
            broadcast=mean_of(driver, "broadcast"), reorth=mean_of(driver, "reorth"), put=measured["put"],
            accept=measured["accept"], source=source,
        ),
        scale_model.ShardedCosts(
            sum=measured["sum"], put=measured["put"], accept=measured["accept"], sweep=mean_of(sharded, "reorth"),
            round_trip=measured["round_trip"], source=source,
        ),
    )


def cell(value: float | None, scale: float = 1e9) -> str:
    return "" if value is None else f"{value * scale:.3f}"


def print_table(records: list[dict]) -> None:
    print(
        "| nodes | w | n | state | reduce | kB out | kB in | ok | hvp s | all-gather s | gather s | node sum s "
        "| driver sum s | scatter s | accept s | reorth s | driver sums s | step s "
        "| driver sum ns/B | node sum ns/B | reorth ns/B | scatter ns/B |"
    )
    print("|---:|---:|---:|---|---|---:|---:|---|" + "---:|" * 14)
    for r in records:
        t, c = r["seconds"], r["per_byte"]
        print(
            f"| {r['nodes']} | {r['workers_per_node']} | {r['num_params']:,} | {r['state']} | {r['reduce']} "
            f"| {r['bytes_out'] / 1e3:,.1f} | {r['bytes_in'] / 1e3:,.1f} | {'yes' if r['bytes_ok'] else 'NO'} "
            f"| {t['hvp_max']:.3f} | {t['allgather']:.3f} | {t['gather']:.3f} | {t['node_reduce']:.3f} | {t['reduce']:.3f} "
            f"| {t['scatter']:.3f} | {t['accept']:.3f} | {t['reorth']:.3f} | {t['driver_sums']:.4f} | {t['total']:.3f} "
            f"| {cell(c['reduce'])} | {cell(c['node_reduce'])} | {cell(c['reorth'])} | {cell(c['scatter'])} |"
        )


def stores(args: argparse.Namespace) -> tuple[int, int]:
    """Object-store bytes for the head (the block and every partial of a flat pass) and for a
    node (the block, its partials, its sum's pieces and the keepers' slices)."""
    b, most, workers = args.draws_per_pass, max(args.params), max(args.workers_per_node)
    head = max(args.nodes) * workers * b * most * 8 * 2 + 256 * MIB
    node = (workers + 2) * b * most * 8 * 2 + 256 * MIB
    return head, node


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 4], help="worker nodes K (default 1 2 4)")
    parser.add_argument("--workers-per-node", type=int, nargs="+", default=[2], help="w (default 2)")
    parser.add_argument("--params", type=int, nargs="+", default=[1_000_000, 4_000_000], help="n (default 1M 4M)")
    parser.add_argument("--states", nargs="+", default=["driver", "sharded"], choices=["driver", "sharded"],
                        help="where the Lanczos vectors live (default both)")
    parser.add_argument("--reductions", nargs="+", default=["node"], choices=["node", "flat"], help="(default node)")
    parser.add_argument("--order", type=int, default=10, help="m: Lanczos steps, one pass each (default 10)")
    parser.add_argument("--draws-per-pass", type=int, default=2, help="B (default 2)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each configuration; medians are shown (default 2)")
    parser.add_argument("--model", action="store_true", help="also print the projections with these costs")
    args = parser.parse_args()
    if args.model and set(args.states) != {"driver", "sharded"}:
        parser.error("--model pools the costs of both states: give --states driver sharded")
    started = machine()
    print(started, flush=True)
    head_store, node_store = stores(args)
    runs, measured = [], {}
    for nodes in args.nodes:
        with simulated_cluster(nodes, max(args.workers_per_node), head_store, node_store):
            if args.model and not measured:
                measured = probes(max(args.params), args.draws_per_pass)
            for _ in range(args.repeats):
                for num_params in args.params:
                    for workers in args.workers_per_node:
                        for state in args.states:
                            for reduce in args.reductions:
                                runs.append(measure(Setup(nodes, workers, num_params, state, reduce), args))
                                print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    records = combine(runs)
    print(
        f"finished {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}; B = {args.draws_per_pass}, m = {args.order}, "
        f"{CPUS_PER_WORKER} CPU per worker, {EXAMPLES} examples; medians over passes, then over {args.repeats} repeats\n"
    )
    print_table(records)
    if not all(r["bytes_ok"] for r in records):
        raise SystemExit("driver bytes differ from the design's: see the 'ok' column")
    if args.model:
        driver_costs, sharded_costs = pooled_costs(records, measured, f"measured in this run, {started[:16]} UTC")
        print(f"\nprobes measured alone: {json.dumps(measured)}\n")
        print(scale_model.report_all(driver_costs, sharded_costs))
        print(json.dumps({"costs": dataclasses.asdict(driver_costs), "sharded_costs": dataclasses.asdict(sharded_costs)}))


if __name__ == "__main__":
    main()
