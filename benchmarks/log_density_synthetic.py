"""The log-scale density on a synthetic spectrum with known eigenvalues, from 1e-6 to 1e2.

2,000 eigenvalues: 1,200 positive (log-uniform in [1e-6, 1e2]), 300 negative (log-uniform
in [−1, −1e-5]) and 500 exact zeros. SLQ (D draws × m steps of float64 Lanczos on the
diagonal operator) against the exact log density of the eigenvalues themselves; prints
each side's mass and integral, and the L1 distance to the exact density over the decades
|λ| ≥ 10^k for a few k, with the machine and date, and draws the figure::

    python benchmarks/log_density_synthetic.py --draws 10 --order 90 --figure docs/log-density.png
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import raylanczos as rl
from raylanczos.benchmarking import describe_machine
from raylanczos.numerics import spectrum
from raylanczos.numerics.logdensity import LogDensity, log_density
from raylanczos.outputs.plot import plot_log_density


def synthetic_spectrum(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([10 ** rng.uniform(-6, 2, 1200), -(10 ** rng.uniform(-5, 0, 300)), np.zeros(500)])


def relative_l1(got: LogDensity, want: LogDensity, lowest: float) -> float:
    """∫ |φ₊ − φ₊*| + |φ₋ − φ₋*| du over u ≥ ``lowest``, relative to the exact mass there."""
    kept = want.grid >= lowest
    step = want.grid[1] - want.grid[0]
    error = np.sum(np.abs(got.positive - want.positive)[kept] + np.abs(got.negative - want.negative)[kept]) * step
    return float(error / (np.sum((want.positive + want.negative)[kept]) * step))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--order", type=int, nargs="+", default=[90])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", default=None, help="PNG of the first order's density against the exact one")
    args = parser.parse_args()

    eigenvalues = synthetic_spectrum(args.seed)
    exact = log_density(eigenvalues[None], np.full((1, eigenvalues.size), 1.0 / eigenvalues.size))
    rows = []
    for order in args.order:
        runs = [rl.lanczos(lambda v: eigenvalues * v, eigenvalues.size, order, seed=args.seed, draw=d) for d in range(args.draws)]
        nodes, weights = spectrum.slq_quadrature([(run.alpha, run.beta) for run in runs], order)
        log = log_density(nodes, weights, grid_range=(exact.grid[0], exact.grid[-1]), grid_points=exact.grid.size)
        rows.append({
            "order": order,
            "masses (+, -, 0)": [round(log.positive_mass, 4), round(log.negative_mass, 4), round(log.zero_mass, 4)],
            "integrals (+, -)": [round(value, 6) for value in log.side_integrals()],
            "smallest |Ritz value|": float(np.nanmin(np.abs(nodes))),
            "relative L1 over |λ| >= 10^k": {k: round(relative_l1(log, exact, k), 3) for k in (1, 0, -1, -2, -6)},
        })
        if args.figure and order == args.order[0]:
            title = (
                f"Log-scale density of a synthetic spectrum (n = {eigenvalues.size}, 1e-6 to 1e2, 25% zeros)\n"
                f"SLQ: {args.draws} draws × {order} steps, kernel s = 0.1 decade; dashed: the exact eigenvalues"
            )
            plot_log_density(log, args.figure, reference=exact, title=title)
    exact_masses = [exact.positive_mass, exact.negative_mass, exact.zero_mass]
    print(json.dumps({"machine": describe_machine(), "draws": args.draws, "exact masses (+, -, 0)": exact_masses,
                      "exact integrals (+, -)": exact.side_integrals(), "slq": rows}, indent=1))


if __name__ == "__main__":
    main()
