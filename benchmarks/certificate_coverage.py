"""Benchmark: how often the certificate and the standard errors cover the exact values.

For each dense matrix of ``tests/spectra.py`` (the digits MLP's Hessian, n = 2,410; a tiny
conv net's Hessian, n = 426; a random symmetric matrix with half its eigenvalues at 0,
n = 400), each start distribution and each order m, it runs ``--sets`` seed sets of
``--draws`` Lanczos draws (seed set s uses seed s, draws 0 … D − 1) and counts the sets in
which

- **band**: the exact spectral CDF F lies inside the certified band
  (:func:`raylanczos.numerics.certificate.certify`, default 95%) at every point where F or
  the band changes (all eigenvalues, all nodes, and a 2,001-point grid), i.e. everywhere;
- **negative interval**: the exact fraction of eigenvalues below the run's threshold
  −ε‖H‖ lies in ``negative_fraction_bounds``;
- **trace ± 1.96 SE** and **negative fraction ± 1.96 SE**: the estimate is within 1.96
  standard errors of the exact value, for the sample standard error
  (std over draws / √D) and for a model-based one: the trace's
  ``trace_std_error`` of :func:`raylanczos.numerics.spectrum.summarize` (from the first
  off-diagonals), and for the fraction √(2p̂(1−p̂)/((n+2)D)), the standard deviation of
  the exact per-draw fraction F_v for starts uniform on the sphere (sampling alone; n
  for n + 2 with Rademacher starts, a bound);

and prints the median of each trace standard error over the true one:
√(2(n‖H‖_F² − (tr H)²)/((n+2)D)) for Gaussian starts (uniform on the sphere),
√(2(‖H‖_F² − Σᵢ Hᵢᵢ²)/D) for Rademacher starts.

Lanczos runs on diag(λ) from the start vector's coordinates Qᵀv in the eigenbasis: the
same tridiagonal as on Q diag(λ) Qᵀ from v (Lanczos is invariant under an orthogonal
change of basis), at O(n) per product instead of O(n²). The tests check the per-draw
bounds on the dense matrices themselves.

Prints a header with the machine and date, one line per (matrix, distribution, m), and a
last line with all figures as JSON. Run from the repository root::

    PYTHONPATH=. python benchmarks/certificate_coverage.py --orders 10 30 90 --sets 200 --draws 10
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from raylanczos.benchmarking import describe_machine
from raylanczos.numerics.certificate import certify
from raylanczos.numerics.lanczos import lanczos, start_vector
from raylanczos.numerics.spectrum import slq_quadrature, summarize
from tests.spectra import SPECTRA

Z_95 = 1.959963984540054


def seed_set(eigenvalues: np.ndarray, eigenvectors: np.ndarray, order: int, seed: int, draws: int, distribution: str):
    """(nodes, weights, first alphas, first betas) of one seed set, Lanczos in the eigenbasis."""

    def product(x: np.ndarray) -> np.ndarray:
        return eigenvalues * x

    runs = []
    for draw in range(draws):
        v0 = start_vector(eigenvalues.size, seed=seed, draw=draw, distribution=distribution)
        runs.append(lanczos(product, eigenvalues.size, order=order, v0=eigenvectors.T @ v0))
    nodes, weights = slq_quadrature([(r.alpha, r.beta) for r in runs], order)
    first_betas = np.array([r.beta[0] if r.steps > 1 else 0.0 for r in runs])
    return nodes, weights, np.array([r.alpha[0] for r in runs]), first_betas


def coverage(name: str, matrix: np.ndarray, distribution: str, order: int, sets: int, draws: int) -> dict:
    """The counts of one (matrix, distribution, order) over ``sets`` seed sets."""
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)
    n = eigenvalues.size
    trace = float(eigenvalues.sum())
    if distribution == "gaussian":
        variance = 2.0 * (n * np.sum(eigenvalues**2) - trace**2) / (n + 2)
    else:
        variance = 2.0 * (np.sum(eigenvalues**2) - np.sum(np.diag(matrix) ** 2))
    true_trace_se = float(np.sqrt(variance / draws))
    width = eigenvalues[-1] - eigenvalues[0]
    grid = np.linspace(eigenvalues[0] - 0.05 * width, eigenvalues[-1] + 0.05 * width, 2001)
    counts = dict.fromkeys(["band", "negative_interval", "trace_sample", "trace_model", "negative_sample", "negative_model"], 0)
    ratios = {"trace_sample": [], "trace_model": []}
    ks, w1, epsilon = [], [], []
    start = time.perf_counter()
    for seed in range(sets):
        nodes, weights, alphas, betas = seed_set(eigenvalues, eigenvectors, order, seed, draws, distribution)
        points = np.unique(np.concatenate([grid, eigenvalues, nodes[np.isfinite(nodes)]]))
        certificate = certify(nodes, weights, n, distribution=distribution, grid=points)
        exact = np.searchsorted(eigenvalues, points, side="right") / n
        counts["band"] += bool(np.all((certificate.lower <= exact) & (exact <= certificate.upper)))
        fraction = float(np.mean(eigenvalues < certificate.negative_threshold))
        low, high = certificate.negative_fraction_bounds
        counts["negative_interval"] += low <= fraction <= high
        stats = summarize(nodes, weights, alphas, n, sigma2=1.0, first_betas=betas, distribution=distribution)
        sample_se = n * alphas.std(ddof=1) / np.sqrt(draws)
        miss = abs(stats.trace_estimate - trace)
        counts["trace_sample"] += miss <= Z_95 * sample_se
        counts["trace_model"] += miss <= Z_95 * stats.trace_std_error
        ratios["trace_sample"].append(sample_se / true_trace_se)
        ratios["trace_model"].append(stats.trace_std_error / true_trace_se)
        miss = abs(stats.negative_fraction - fraction)
        counts["negative_sample"] += miss <= Z_95 * stats.negative_fraction_std_error
        spread = 2.0 * stats.negative_fraction * (1.0 - stats.negative_fraction)  # ≤ this over n for Rademacher
        sampling_se = np.sqrt(spread / ((n + 2 if distribution == "gaussian" else n) * draws))
        counts["negative_model"] += miss <= Z_95 * sampling_se
        ks.append(certificate.ks_half_width)
        w1.append(certificate.w1_bound)
        epsilon.append(certificate.sampling_half_width)
    return {
        "matrix": name,
        "n": n,
        "distribution": distribution,
        "order": order,
        "sets": sets,
        "draws": draws,
        "coverage": {key: value / sets for key, value in counts.items()},
        "trace_se_over_true_median": {key: float(np.median(value)) for key, value in ratios.items()},
        "ks_half_width_median": float(np.median(ks)),
        "w1_bound_median": float(np.median(w1)),
        "sampling_half_width": float(epsilon[0]),
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--matrices", nargs="+", default=list(SPECTRA), choices=list(SPECTRA))
    parser.add_argument("--distributions", nargs="+", default=["gaussian"], choices=["gaussian", "rademacher"])
    parser.add_argument("--orders", type=int, nargs="+", default=[10, 30, 90])
    parser.add_argument("--sets", type=int, default=200)
    parser.add_argument("--draws", type=int, default=10)
    args = parser.parse_args()
    machine = describe_machine()
    print(f"machine: {machine}")
    print(
        f"{'matrix':13s} {'n':>5s} {'start':>10s} {'m':>3s} {'band':>5s} {'neg∈I':>5s} "
        f"{'tr±SEs':>6s} {'tr±SEm':>6s} {'SEs/SE':>6s} {'SEm/SE':>6s} {'nf±SEs':>6s} {'nf±SEm':>6s} "
        f"{'KS':>6s} {'W1':>7s} {'ε':>6s} {'s':>6s}"
    )
    results = []
    for name in args.matrices:
        matrix = SPECTRA[name]()
        for distribution in args.distributions:
            for order in args.orders:
                r = coverage(name, matrix, distribution, order, args.sets, args.draws)
                results.append(r)
                c, t = r["coverage"], r["trace_se_over_true_median"]
                print(
                    f"{name:13s} {r['n']:5d} {distribution:>10s} {order:3d} {c['band']:5.3f} {c['negative_interval']:5.3f} "
                    f"{c['trace_sample']:6.3f} {c['trace_model']:6.3f} {t['trace_sample']:6.2f} {t['trace_model']:6.2f} "
                    f"{c['negative_sample']:6.3f} {c['negative_model']:6.3f} {r['ks_half_width_median']:6.3f} "
                    f"{r['w1_bound_median']:7.4f} {r['sampling_half_width']:6.4f} {r['seconds']:6.1f}",
                    flush=True,
                )
    print(json.dumps({"benchmark": "certificate_coverage", "machine": machine, "results": results}))


if __name__ == "__main__":
    main()
