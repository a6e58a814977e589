"""The driver's basis sweeps on one thread or split over one thread per core, when pinned
workers take every core of the driver's machine.

Runs the same draw (one worker per core, pinned) alternately with the driver's sweeps on
one thread (``DriverThreads(blas=1, sweeps=1)``) and split by columns over one thread per
core (what ``raylanczos.policy.driver_threads`` chooses for vectors of 200,000 entries or more),
``--pairs`` times, and prints each
run's mean step, slowest worker's HVP and re-orthogonalisation (seconds)::

    python benchmarks/driver_sweeps.py --problem raylanczos.examples.digits:wide_problem --order 90 --pairs 3
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics

import ray

import raylanczos as rl
from raylanczos.distributed.policy import DriverThreads


def one_thread(pinned: bool, driver_cores, worker_cores, dim: int) -> DriverThreads:
    return DriverThreads(blas=1, sweeps=1)


def split(pinned: bool, driver_cores, worker_cores, dim: int) -> DriverThreads:
    """One sweep thread per core, whatever the vectors' length."""
    return DriverThreads(blas=1, sweeps=len(set(driver_cores)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problem", default="raylanczos.examples.digits:wide_problem")
    parser.add_argument("--order", type=int, default=90)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {cores} cores, {cores} workers, {args.problem}")
    print("sweeps | mean step s | slowest HVP s | re-orthogonalisation s")
    ray.init(num_cpus=cores)
    steps: dict[str, list[float]] = {"1 thread": [], "split": []}
    try:
        for _ in range(args.pairs):
            for name, policy in (("1 thread", one_thread), ("split", split)):
                result = rl.hessian_spectrum(
                    args.problem, order=args.order, draws=1, num_workers=cores, worker_resources={"num_cpus": 1}, seed=0,
                    thread_policy=policy, progress="none",
                )
                t = result.summary["timings"]
                steps[name].append(t["mean_step_s"])
                print(f"{name} | {t['mean_step_s']:.3f} | {t['mean_hvp_max_s']:.3f} | {t['mean_reorth_s']:.3f}", flush=True)
    finally:
        ray.shutdown()
    for name, values in steps.items():
        print(f"median mean step, {name}: {statistics.median(values):.3f} s")


if __name__ == "__main__":
    main()
