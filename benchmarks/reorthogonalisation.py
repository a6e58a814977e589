"""Benchmark: one full re-orthogonalisation step of w against a k-vector basis.

Times, for each n in ``--dims``, one re-orthogonalisation of a vector w of length n
against an orthonormal basis V of k float64 rows (C-contiguous, shape (k, n)):

``blas2_cgs2``
    the project's method: ``raylanczos.basis.project_out(V, w)`` called twice
    (classical Gram–Schmidt twice, in place; each pass BLAS-2 products over 64 fixed
    spans of columns, :class:`raylanczos.basis.BasisSweeps`).
``loop_mgs1``
    the per-vector Python loop of the original TF spectral-density code,
    ``for v in V: w -= (v @ w) * v`` (modified Gram–Schmidt, one pass).
``loop_mgs2``
    the same loop done twice (same number of passes over V as ``blas2_cgs2``).
``numpy_cgs2``
    numpy's plain ``w -= V.T @ (V @ w)``, applied twice (same passes as ``blas2_cgs2``);
    each pass allocates a temporary of length n (``V.T @ c``) before the subtraction.

The basis is built in place, without copies: Gaussian rows, then orthonormalised by
Cholesky QR applied twice (Gram matrix ``V Vᵀ`` by one BLAS-3 pass, then the triangular
solve ``Vᵀ ← Vᵀ L⁻ᵀ`` in place with ``dtrsm``). Peak memory is about k·n·8 bytes plus a
few vectors of length n (7.2 GB at n = 10⁷, k = 90).

Each timed call starts from a fresh copy of the same w₀ (the copy is not timed); one
warm-up call per method precedes ``--repeats`` timed rounds, each round calling every
method once in turn (so background load falls evenly on all methods), and the median
over rounds is reported.
The last line printed is one JSON object with all figures.

Usage::

    python benchmarks/reorthogonalisation.py --dims 1000000 10000000 --k 90 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone

import numpy as np
from scipy.linalg import blas

from raylanczos.numerics.basis import project_out

# ----------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine()


def _short_path(path: str) -> str:
    """Last two components, e.g. ``numpy.libs/libscipy_openblas64_-….so`` (shows the owner)."""
    return os.path.join(os.path.basename(os.path.dirname(path)), os.path.basename(path))


def blas_info() -> list[dict]:
    """BLAS libraries in use: threadpoolctl if installed, else numpy.show_config dicts."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = None
    if threadpool_info is not None:
        keys = ("internal_api", "version", "num_threads", "threading_layer", "architecture")
        return [
            {**{k: d.get(k) for k in keys}, "file": _short_path(d.get("filepath") or "")}
            for d in threadpool_info()
            if d.get("user_api") == "blas"
        ]
    try:
        config = np.show_config(mode="dicts")
        blas_cfg = config.get("Build Dependencies", {}).get("blas", {})
        return [{k: blas_cfg.get(k) for k in ("name", "version", "openblas configuration")}]
    except TypeError:  # numpy too old for mode="dicts"
        return [{"name": "unknown"}]


def machine_info() -> dict:
    return {
        "cpu": cpu_model(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas_info(),
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "loadavg_1_5_15": list(os.getloadavg()),
    }


# ----------------------------------------------------------------------------- basis


def orthonormal_basis(k: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """C-contiguous float64 (k, n) with orthonormal rows, built in place (CholQR2)."""
    basis = np.empty((k, n), dtype=np.float64)
    rng.standard_normal(out=basis)  # fills in place, no temporary
    vt = basis.T  # (n, k) Fortran-contiguous view, so dtrsm can overwrite it in place
    for _ in range(2):
        gram = basis @ basis.T  # (k, k), one BLAS-3 pass
        lower = np.linalg.cholesky(gram)
        # Vᵀ ← Vᵀ L⁻ᵀ  (side=right, lower, transposed): rows of V become orthonormal.
        out = blas.dtrsm(1.0, lower, vt, side=1, lower=1, trans_a=1, overwrite_b=1)
        if not np.shares_memory(out, basis):
            raise RuntimeError("dtrsm did not work in place")
    return basis


# ----------------------------------------------------------------------------- methods


def blas2_cgs2(basis: np.ndarray, w: np.ndarray) -> None:
    project_out(basis, w)
    project_out(basis, w)


def loop_mgs1(basis: np.ndarray, w: np.ndarray) -> None:
    for v in basis:
        w -= (v @ w) * v


def loop_mgs2(basis: np.ndarray, w: np.ndarray) -> None:
    loop_mgs1(basis, w)
    loop_mgs1(basis, w)


def numpy_cgs2(basis: np.ndarray, w: np.ndarray) -> None:
    w -= basis.T @ (basis @ w)
    w -= basis.T @ (basis @ w)


METHODS = {
    "blas2_cgs2": ("project_out() x2 (BLAS-2 spans, CGS2)", blas2_cgs2),
    "loop_mgs1": ("per-vector loop, 1 pass (MGS)", loop_mgs1),
    "loop_mgs2": ("per-vector loop, 2 passes (MGS2)", loop_mgs2),
    "numpy_cgs2": ("numpy w -= V.T @ (V @ w), 2 passes", numpy_cgs2),
}


def time_methods(basis: np.ndarray, w0: np.ndarray, repeats: int) -> tuple[dict, dict]:
    """Median seconds per method; the methods are interleaved (round-robin) across repeats.

    Interleaving spreads any background load on the machine evenly over the methods, so
    the ratios stay comparable when the absolute times drift. Returns (timings, final w).
    """
    work = np.empty_like(w0)
    for _, fn in METHODS.values():  # one warm-up call each
        np.copyto(work, w0)
        fn(basis, work)
    times: dict[str, list[float]] = {name: [] for name in METHODS}
    finals: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for name, (_, fn) in METHODS.items():
            np.copyto(work, w0)
            t0 = time.perf_counter()
            fn(basis, work)
            times[name].append(time.perf_counter() - t0)
            finals[name] = work.copy()
    results = {name: {"median_s": statistics.median(ts), "times_s": ts} for name, ts in times.items()}
    return results, finals


def run_dim(n: int, k: int, repeats: int, seed: int) -> dict:
    load_before = os.getloadavg()[0]
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    basis = orthonormal_basis(k, n, rng)
    build_s = time.perf_counter() - t0
    gram_err = float(np.max(np.abs(basis @ basis.T - np.eye(k))))

    # w₀: a random vector with a sizeable component in span(V), like a Lanczos A v_j.
    w0 = rng.standard_normal(n)
    w0 /= np.linalg.norm(w0)
    w0 += basis.T @ rng.standard_normal(k)
    results, finals = time_methods(basis, w0, repeats)

    ref = finals["blas2_cgs2"]
    ref_norm = float(np.linalg.norm(ref))
    for name, final in finals.items():
        results[name]["max_abs_diff_vs_blas2"] = float(np.max(np.abs(final - ref)))
        # residual component along the basis, relative to ‖w‖: ‖V w‖ / ‖w‖
        results[name]["orth_residual"] = float(np.linalg.norm(basis @ final) / np.linalg.norm(final))
    base = results["blas2_cgs2"]["median_s"]
    for name in results:
        results[name]["ratio_vs_blas2"] = results[name]["median_s"] / base
    del basis, finals
    return {
        "n": n,
        "k": k,
        "repeats": repeats,
        "basis": "Gaussian rows, orthonormalised in place by Cholesky QR twice",
        "basis_build_s": build_s,
        "basis_max_abs_gram_err": gram_err,
        "w_norm_after": ref_norm,
        "loadavg_1min_before_after": [load_before, os.getloadavg()[0]],
        "methods": results,
    }


def print_table(res: dict) -> None:
    print(
        f"\nn = {res['n']:,}  k = {res['k']}  repeats = {res['repeats']}  "
        f"(basis built in {res['basis_build_s']:.1f} s, max|VVᵀ - I| = {res['basis_max_abs_gram_err']:.1e})"
    )
    header = f"{'method':<42} {'median s':>10} {'x BLAS-2':>9} {'max|Δw|':>10} {'‖Vw‖/‖w‖':>10}"
    print(header)
    print("-" * len(header))
    load = res["loadavg_1min_before_after"]
    for name, (label, _) in METHODS.items():
        m = res["methods"][name]
        print(
            f"{label:<42} {m['median_s']:>10.4f} {m['ratio_vs_blas2']:>9.2f} "
            f"{m['max_abs_diff_vs_blas2']:>10.1e} {m['orth_residual']:>10.1e}"
        )
    print(f"1-min load average before/after this n: {load[0]:.2f} / {load[1]:.2f} (on {os.cpu_count()} cores)")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[10**6, 10**7])
    parser.add_argument("--k", type=int, default=90)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    info = machine_info()
    print(f"date (UTC): {info['date_utc']}")
    print(f"CPU: {info['cpu']}  (platform.processor: {info['processor'] or 'n/a'})")
    print(f"cores (os.cpu_count): {info['cpu_count']}, load average 1/5/15 min: "
          + " / ".join(f"{x:.2f}" for x in info["loadavg_1_5_15"]))
    print(f"python {info['python']}, numpy {info['numpy']}")
    for b in info["blas"]:
        print("BLAS: " + ", ".join(f"{k}={v}" for k, v in b.items()))
    sys.stdout.flush()

    runs = []
    for n in args.dims:
        res = run_dim(n, args.k, args.repeats, args.seed)
        print_table(res)
        runs.append(res)
    print(json.dumps({"benchmark": "reorthogonalisation", "machine": info, "runs": runs}))


if __name__ == "__main__":
    main()
