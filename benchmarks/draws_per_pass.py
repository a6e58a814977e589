"""Time per product against the number of draws per pass, B, in one process (no Ray).

For each problem and each B of ``--blocks``, times the whole-data product of a block of B
vectors (``LocalHessian.matmat``: one pass over the batches, the B tangents vectorised:
``jax.vmap`` or ``tf.vectorized_map``) and reports the median seconds per pass, per product
(÷ B) and the speed-up per product over B = 1. With ``--loop`` it also times the other way
of computing B products, B passes of the single-vector program, for comparison.
Each problem runs in a fresh process, pinned to ``--cores`` cores::

    python benchmarks/draws_per_pass.py --problem raylanczos.examples.convnet:digits_problem --blocks 1 2 4 8 --loop
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource

import numpy as np

import raylanczos as rl
from raylanczos.benchmarking import describe_machine, median_seconds
from raylanczos.distributed.policy import pin_to_cores
from raylanczos.operators.local import LocalHessian


def measure(problem: str, blocks: list[int], repeats: int, cores: int | None, loop: bool) -> dict:
    """Median seconds per pass for each B (and per B single-vector passes with ``loop``)."""
    if cores is not None:
        pin_to_cores(0, cores)
    hessian = LocalHessian(problem)
    rows = {}
    for block in blocks:
        vectors = np.stack([rl.start_vector(hessian.dim, seed=0, draw=d) for d in range(block)])
        row = {"pass_s": median_seconds(lambda: hessian.matmat(vectors), repeats)}
        if loop and block > 1:
            row["loop_s"] = median_seconds(lambda: [hessian.matmat(v[None]) for v in vectors], repeats)
        rows[block] = row
    return {"dim": hessian.dim, "rows": rows, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problem", nargs="+", default=["raylanczos.examples.digits:problem"])
    parser.add_argument("--blocks", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cores", type=int, default=None, help="pin to this many cores (default: all)")
    parser.add_argument("--loop", action="store_true", help="also time B single-vector passes")
    args = parser.parse_args()
    machine = describe_machine()
    print(f"{machine['date']} UTC, {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
          f"pinned to {args.cores or 'all'} cores")
    print("| problem | n | B | s per pass | s per product | × B=1 per product | B single passes, s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for problem in args.problem:
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            report = pool.apply(measure, (problem, args.blocks, args.repeats, args.cores, args.loop))
        base = report["rows"][min(report["rows"])]["pass_s"] / min(report["rows"])
        for block, row in report["rows"].items():
            per = row["pass_s"] / block
            loop = f"{row['loop_s']:.4g}" if "loop_s" in row else ""
            print(f"| {problem.split(':')[-1]} | {report['dim']:,} | {block} | {row['pass_s']:.4g} | {per:.4g} | "
                  f"{base / per:.2f} | {loop} |", flush=True)
        print(f"  peak RSS {report['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
