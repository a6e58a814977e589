"""Per-step overhead of raylanczos against the HVP floor and the original approaches.

Measures, for one problem and order m:

- ``hvp_floor_s``: the backend's whole-data product of a block of B vectors in a fresh
  process without Ray (median of ``--repeats``), for each B of ``--draws-per-pass``, on as
  many cores as one worker reserves (``--cpus-per-worker``) when the workers are pinned
  (CPU-only workers), else unpinned (GPU workers); measured before and after the runs and
  the faster kept, since shared machines drift; with pinned workers also
  ``hvp_floor_all_cores_s``, on every core of the machine;
- for each worker count and each B: B draws of m steps through Ray (one block), their
  per-pass split (broadcast, slowest worker's product, gather, node and driver reduce,
  re-orthogonalisation, checkpoint), ``mean_step_s`` (one pass), ``draw_step_s`` =
  mean_step_s / B (the time per draw-step), ``draw_total_s`` (start-up and compilation
  included) and ``overhead_ratio`` = mean_step_s / (the B-vector floor);
- peak driver RSS against the n·(m+1)·8-byte basis floor;
- ``speedup_vs_numpy_loop`` (per draw-step) and ``speedup_vs_jax_original`` (per draw),
  for the first worker count at the top level and for every worker count under ``workers``;
- two baselines on the same problem and steps, each in a fresh process on every core
  before Ray starts, its draw total including building the problem as our run's does:
  "numpy-loop", the original TensorFlow code's algorithm re-implemented in numpy (host
  float64 Lanczos, a per-vector re-orthogonalisation loop, one HVP call per step);
  "jax-original", float32 Lanczos with the whole loop compiled by ``jax.jit`` (a
  ``lax.fori_loop`` over steps, the basis and the HVP on the device, as the original JAX
  code but compiling in seconds).

Run it as a script or a Ray job (it prints one JSON object on its last line, and writes it
to ``--out``/benchmark.json)::

    python jobs/benchmark.py --problem raylanczos.examples.digits:wide_problem --order 90 --workers 1 2 --draws-per-pass 1 4

A long benchmark splits in two: ``--workers`` with no counts runs only the ``--baselines``
named; a later run takes them with ``--baseline-results <out>/benchmark.json``::

    python jobs/benchmark.py --workers --baselines numpy-loop --out a
    python jobs/benchmark.py --workers 1 --baselines jax-original --baseline-results a/benchmark.json --out b
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import ray

import raylanczos as rl
from raylanczos.benchmarking import describe_machine, jax_original_lanczos, median_seconds
from raylanczos.config import DEFAULT_DRAWS_PER_PASS
from raylanczos.distributed.policy import pin_to_cores
from raylanczos.operators.local import LocalHessian
from raylanczos.outputs.progress import configure_logging
from raylanczos.problem.definition import build_problem


def _floor_in_child(problem: str, cores: int | None, repeats: int, seed: int, blocks: list[int]) -> dict[str, float]:
    """Median whole-data seconds of a product of B vectors, per B of ``blocks``, in this
    (fresh) process pinned to ``cores`` cores."""
    if cores is not None:
        pin_to_cores(0, cores)
    hessian = LocalHessian(problem)
    floors = {}
    for block in blocks:
        vectors = np.stack([rl.start_vector(hessian.dim, seed=seed, draw=d) for d in range(block)])
        floors[str(block)] = median_seconds(lambda: hessian.matmat(vectors), repeats)
    return floors


def in_child(function, *args):
    """``function(*args)`` in a fresh process: its own imports, thread pools and caches."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def numpy_loop(problem_path: str, order: int, seed: int) -> dict[str, float]:
    """The original TF code's algorithm in numpy: host float64 Lanczos, a per-vector
    re-orthogonalisation loop, one HVP per step."""
    start = time.perf_counter()
    hessian = LocalHessian(problem_path)
    n = hessian.dim
    basis = np.zeros((order, n))
    v = rl.start_vector(n, seed=seed)
    beta, v_old = 0.0, np.zeros(n)
    step_times = []
    for i in range(order):
        step_start = time.perf_counter()
        basis[i] = v
        w = hessian.matvec(v) - beta * v_old
        alpha = w @ v
        w -= alpha * v
        for j in range(i + 1):
            w -= (basis[j] @ w) * basis[j]
        beta = float(np.linalg.norm(w))
        v_old, v = v, w / beta
        step_times.append(time.perf_counter() - step_start)
    return {"numpy_loop_draw_total_s": time.perf_counter() - start, "numpy_loop_step_s": float(np.mean(step_times))}


def jax_original(problem_path: str, order: int, seed: int) -> dict[str, float]:
    """Float32 Lanczos with the whole loop (HVPs and re-orthogonalisation) in one jit
    (:func:`raylanczos.benchmarking.jax_original_lanczos`)."""
    start = time.perf_counter()
    lanczos, n = jax_original_lanczos(build_problem(problem_path), order)
    v0 = rl.start_vector(n, seed=seed)
    lanczos(v0)[0].block_until_ready()
    total_s = time.perf_counter() - start
    run_start = time.perf_counter()
    lanczos(v0)[0].block_until_ready()
    return {"jax_original_draw_total_s": total_s, "jax_original_step_s": (time.perf_counter() - run_start) / order}


BASELINES = {"numpy-loop": numpy_loop, "jax-original": jax_original}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problem", default="raylanczos.examples.digits:wide_problem")
    parser.add_argument("--order", type=int, default=90)
    parser.add_argument(
        "--workers", type=int, nargs="*", default=[1, 2],
        help="worker counts to run (none: only the baselines, e.g. to split a long benchmark in two)",
    )
    parser.add_argument(
        "--draws-per-pass", type=int, nargs="+", default=sorted({1, DEFAULT_DRAWS_PER_PASS}),
        help=f"values of B to run (default 1 and the default B, {DEFAULT_DRAWS_PER_PASS}); each runs B draws in one block",
    )
    parser.add_argument("--cpus-per-worker", type=float, default=1.0)
    parser.add_argument("--gpus-per-worker", type=float, default=0.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--baselines", nargs="*", choices=sorted(BASELINES), default=sorted(BASELINES),
        help="baselines to run (default both; none with an empty list or --skip-baselines)",
    )
    parser.add_argument("--skip-baselines", action="store_true", help="the same as --baselines with no names")
    parser.add_argument(
        "--baseline-results", default=None, metavar="BENCHMARK_JSON",
        help="take the baselines not run here from this earlier benchmark.json (same problem, order and seed)",
    )
    parser.add_argument(
        "--pin-cpus", action=argparse.BooleanOptionalAction, default=None,
        help="pin workers to their cores (default: as raylanczos run, on for CPU-only workers)",
    )
    parser.add_argument("--address", default=None, help="Ray address (default: a running Ray, else a local one)")
    parser.add_argument("--out", default=None, help="directory for benchmark.json (default: a temporary directory)")
    args = parser.parse_args()
    if args.skip_baselines:
        args.baselines = []
    return args


def earlier_baselines(path: str, args: argparse.Namespace) -> dict[str, float]:
    """The ``numpy_loop_*``/``jax_original_*`` figures of an earlier benchmark.json of the
    same problem, order and seed; a mismatch or a missing file ends the job naming it."""
    try:
        earlier = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise SystemExit(f"--baseline-results {path}: cannot read it as a benchmark.json ({err})") from None
    for key in ("problem", "order", "seed"):
        if earlier.get(key) != getattr(args, key):
            raise SystemExit(f"--baseline-results {path} has {key} {earlier.get(key)!r}, this run {getattr(args, key)!r}")
    return {key: value for key, value in earlier.items() if key.startswith(("numpy_loop_", "jax_original_"))}


def run_workers(args: argparse.Namespace, out: Path) -> tuple[dict[str, dict[str, dict[str, float]]], int]:
    """One block of B draws per worker count and B through Ray: figures by count, then B; and n."""
    ray.init(address=args.address, ignore_reinit_error=True)  # once: on a cluster Ray is up before a run starts
    resources = {"num_cpus": args.cpus_per_worker, **({"num_gpus": args.gpus_per_worker} if args.gpus_per_worker else {})}
    per_workers: dict[str, dict[str, dict[str, float]]] = {}
    num_params = 0
    for workers in args.workers:
        per_workers[str(workers)] = {}
        for block in args.draws_per_pass:
            start = time.perf_counter()
            result = rl.hessian_spectrum(
                args.problem, order=args.order, draws=block, draws_per_pass=block, num_workers=workers,
                worker_resources=resources, out=out / f"run-{workers}-B{block}", overwrite=True, seed=args.seed,
                pin_cpus=args.pin_cpus, progress="lines",
            )
            num_params = result.summary["config"]["num_params"]
            timings = result.summary["timings"]
            per_workers[str(workers)][str(block)] = {
                "draw_total_s": (time.perf_counter() - start) / block,
                "draw_step_s": timings["mean_step_s"] / block,
                **{key: value for key, value in timings.items() if key.startswith("mean_")},
            }
    return per_workers, num_params


def add_ratios(report: dict, pinned: bool) -> None:
    """overhead_ratio(_all_cores) per B, and the speedups against whichever baselines are known."""
    first = next(iter(report["workers"].values()))
    for block, figures in first.items():
        figures["overhead_ratio"] = figures["mean_step_s"] / report["hvp_floor_s"][block]
        if pinned:
            figures["overhead_ratio_all_cores"] = figures["mean_step_s"] / report["hvp_floor_all_cores_s"][block]
    blocks = list(first)
    report.update(
        draw_step_s={block: first[block]["draw_step_s"] for block in blocks},
        overhead_ratio={block: first[block]["overhead_ratio"] for block in blocks},
    )
    if len(blocks) > 1:
        report["draw_step_speedup_vs_B1"] = {block: first["1"]["draw_step_s"] / first[block]["draw_step_s"] for block in blocks} if "1" in first else {}
    for per_block in report["workers"].values():
        for figures in per_block.values():
            if "numpy_loop_step_s" in report:
                figures["speedup_vs_numpy_loop"] = report["numpy_loop_step_s"] / figures["draw_step_s"]
            if "jax_original_draw_total_s" in report:
                figures["speedup_vs_jax_original"] = report["jax_original_draw_total_s"] / figures["draw_total_s"]


def main() -> None:
    args = parse_args()
    configure_logging()  # start-up and per-step progress lines, as in a raylanczos run
    out = Path(args.out or tempfile.mkdtemp(prefix="raylanczos-benchmark-"))
    pinned = args.pin_cpus if args.pin_cpus is not None else not args.gpus_per_worker
    floor_cores = max(math.ceil(args.cpus_per_worker), 1) if pinned else None
    report: dict = {
        "problem": args.problem,
        "order": args.order,
        "seed": args.seed,
        "cpus_per_worker": args.cpus_per_worker,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": describe_machine(),
    }
    if args.baseline_results:
        report.update(earlier_baselines(args.baseline_results, args))
    blocks = args.draws_per_pass
    if args.workers:  # floors first, before Ray's own processes start and compete for the cores
        report["hvp_floor_before_s"] = in_child(_floor_in_child, args.problem, floor_cores, args.repeats, args.seed, blocks)
        if pinned:
            report["hvp_floor_all_cores_s"] = in_child(_floor_in_child, args.problem, None, args.repeats, args.seed, blocks)
    for name in args.baselines:  # each in a fresh process on every core, building the problem as our run does
        report.update(in_child(BASELINES[name], args.problem, args.order, args.seed))
    if args.workers:
        report["workers"], num_params = run_workers(args, out)
        report["hvp_floor_after_s"] = in_child(_floor_in_child, args.problem, floor_cores, args.repeats, args.seed, blocks)
        report["hvp_floor_s"] = {b: min(report["hvp_floor_before_s"][b], report["hvp_floor_after_s"][b]) for b in map(str, blocks)}
        report.update(
            num_params=num_params,
            peak_driver_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            basis_floor_bytes=num_params * (args.order + 1) * 8,
        )
        add_ratios(report, pinned)
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    for key, value in report.items():
        if key == "workers":
            continue
        if isinstance(value, dict) and key != "machine":
            value = ", ".join(f"B={b} {v:.4g}" for b, v in value.items())
        print(f"{key:>28}: {value:.4g}" if isinstance(value, float) else f"{key:>28}: {value}")
    for workers, per_block in report.get("workers", {}).items():
        for block, figures in per_block.items():
            shown = ", ".join(f"{k} {v:.4g}" for k, v in figures.items() if k in FIGURES)
            print(f"{workers} worker(s), B={block}: {shown}")
    print(json.dumps(report))


#: The per-run figures printed one line per worker count and B (all are in the JSON).
FIGURES = ("mean_step_s", "draw_step_s", "overhead_ratio", "mean_reorth_s", "speedup_vs_numpy_loop", "speedup_vs_jax_original")


if __name__ == "__main__":
    main()
