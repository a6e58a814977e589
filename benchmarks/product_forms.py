"""Seconds per block of B tangents' products in each JAX product form, in one process (no Ray).

For each problem, B of ``--blocks`` and form of ``--forms`` (default all of
:data:`raylanczos.choices.JAX_PRODUCT_FORMS`),
times the shard's whole-data pass (``ShardBackend.product_sum``: every batch, the float64
sums on the device) and reports the median seconds per block and per tangent (÷ B). The
forms are timed in turn within each repetition (interleaved), so that a load that comes and
goes on a shared machine falls on all of them alike. Each problem runs in a fresh process,
pinned to ``--cores`` cores::

    python benchmarks/product_forms.py --problem raylanczos.examples.digits:problem \\
        local_problems:wide raylanczos.examples.convnet:digits_problem --blocks 1 2 4 8
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from raylanczos.backends import make_backend
from raylanczos.benchmarking import describe_machine
from raylanczos.choices import JAX_PRODUCT_FORMS
from raylanczos.distributed.policy import pin_to_cores
from raylanczos.problem.data import ShardPlan
from raylanczos.problem.definition import build_problem


def measure(problem: str, blocks: list[int], repeats: int, cores: int | None, forms: list[str]) -> dict:
    """``{"dim", "rows": {B: {form: median seconds per block}}, "compile": {B: {form: seconds}}}``."""
    sys.path.insert(0, str(Path(__file__).parent))  # local_problems
    if cores is not None:
        pin_to_cores(0, cores)
    source = build_problem(problem, None)
    backend = make_backend(source, source.data.read(ShardPlan.balanced(source.num_examples, 1).shards[0]))
    rows, compiled = {}, {}
    for block in blocks:
        vectors = np.random.default_rng(0).standard_normal((block, backend.num_params))
        compiled[block] = {form: _seconds(backend, form, vectors) for form in forms}  # the first call compiles
        times: dict[str, list[float]] = {form: [] for form in forms}
        for _ in range(repeats):
            for form in forms:
                times[form].append(_seconds(backend, form, vectors))
        rows[block] = {form: statistics.median(seconds) for form, seconds in times.items()}
    return {"dim": backend.num_params, "batches": len(backend.batch_sizes), "rows": rows, "compile": compiled}


def _seconds(backend, form: str, vectors: np.ndarray) -> float:
    """Wall seconds of one pass of ``vectors`` (B, n) in ``form``."""
    backend.use_product_form(form)
    start = time.perf_counter()
    backend.product_sum(vectors)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problem", nargs="+", default=["raylanczos.examples.digits:problem"])
    parser.add_argument("--blocks", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cores", type=int, default=None, help="pin to this many cores (default: all)")
    parser.add_argument("--forms", nargs="+", choices=JAX_PRODUCT_FORMS, default=list(JAX_PRODUCT_FORMS))
    args = parser.parse_args()
    machine = describe_machine()
    print(f"{machine['date']} UTC, {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
          f"Python {machine['python']}, pinned to {args.cores or 'all'} cores, median of {args.repeats} interleaved passes")
    forms = " | ".join(f"{form} s/block | s/tangent" for form in args.forms)
    print(f"| problem | n | B | {forms} | fastest |")
    print("|---|---:|---:|" + "---:|---:|" * len(args.forms) + "---|")
    for problem in args.problem:
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            report = pool.apply(measure, (problem, args.blocks, args.repeats, args.cores, args.forms))
        for block, row in report["rows"].items():
            cells = " | ".join(f"{row[form]:.4g} | {row[form] / block:.4g}" for form in args.forms)
            print(f"| {problem.split(':')[-1]} | {report['dim']:,} | {block} | {cells} | {min(row, key=row.__getitem__)} |", flush=True)
        first = ", ".join(f"B={b}: " + " ".join(f"{f} {s:.2g}" for f, s in c.items()) for b, c in report["compile"].items())
        print(f"  {report['batches']} batch(es); first pass (compiles), s: {first}", flush=True)


if __name__ == "__main__":
    main()
