"""Where a worker sums its batches' HVPs: in float64 on the device, or on the host.

For one problem, in a fresh process per measurement (pinned to the first ``cores`` cores
of the machine, or unpinned), times a whole-shard HVP two ways:

- **device** (the project's ``JaxBackend.product_sum``): each batch's program adds its product
  to a float64 sum on the device; the host dispatches and copies the sum back once;
- **host**: the same per-batch HVPs, each copied back and added to a float64 sum by numpy
  on the host (``batch_products``), as workers did before.

It prints the median, fastest and slowest of ``--repeats`` timed calls after one warm-up,
and the largest relative difference between the two sums::

    python benchmarks/accumulation.py --problem raylanczos.examples.digits:wide_problem --cores 1 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time

import numpy as np

import raylanczos as rl
from raylanczos.benchmarking import describe_machine
from raylanczos.distributed.policy import pin_to_cores
from raylanczos.operators.local import LocalHessian


def measure(problem: str, cores: int | None, repeats: int) -> dict[str, object]:
    """Seconds per whole-shard HVP, summed on the device and on the host (runs in a child)."""
    if cores is not None:
        pin_to_cores(0, cores)
    backend = LocalHessian(problem).workers[0].backend
    vector = rl.start_vector(backend.num_params, seed=0)[None, :]

    def host_sum() -> np.ndarray:
        return sum((stop - first) * product for first, stop, product in backend.batch_products(vector))

    ways = {"device": lambda: backend.product_sum(vector)[0], "host": host_sum}
    report: dict[str, object] = {"cores": len(os.sched_getaffinity(0)), "on_device": backend.accumulates_on_device}
    results = {}
    for name, function in ways.items():
        results[name] = function()  # warm-up: compilation
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
        report[name] = (statistics.median(times), min(times), max(times))
    report["max_relative_difference"] = float(
        np.max(np.abs(results["device"] - results["host"])) / np.max(np.abs(results["host"]))
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problem", default="raylanczos.examples.digits:wide_problem")
    parser.add_argument("--cores", type=int, nargs="+", default=[1, os.cpu_count()])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    machine = describe_machine()
    print(f"{machine['date']} UTC, {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB")
    print(f"problem {args.problem}")
    print("cores | sum on | median s | min s | max s")
    for cores in args.cores:
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            report = pool.apply(measure, (args.problem, cores, args.repeats))
        for name in ("device", "host"):
            median, fastest, slowest = report[name]
            print(f"{report['cores']} | {name} | {median:.3f} | {fastest:.3f} | {slowest:.3f}")
        print(f"  device sum used: {report['on_device']}; max relative difference {report['max_relative_difference']:.1e}")


if __name__ == "__main__":
    main()
