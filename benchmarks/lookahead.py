"""Exactness of the look-ahead Lanczos step against classical full re-orthogonalisation.

For dense symmetric test matrices with known spectra (n = 2000), runs m steps of
:mod:`raylanczos.numerics.lanczos` three ways from the same start vector:

- **look-ahead** (the project's step): the next product is taken of the unorthogonalised
  direction u and corrected by V T̂ c; one Gram–Schmidt pass, a second only by DGKS;
- **fresh products**: every v_{j+1} multiplied afresh (``LanczosOptions.lookahead_min_rho`` > 1);
- **CGS2, fresh**: fresh products and two passes at every step (also ``dgks_eta`` > 1),
  i.e. classical full re-orthogonalisation.

It prints, per matrix and m, the largest difference of the Ritz values from the CGS2 run
(relative to ‖A‖), the Lanczos relation residual ‖AVᵀ − VᵀT − β v eᵀ‖₂/‖A‖, the
orthogonality loss max|VVᵀ − I|, and the second passes the look-ahead run needed::

    python benchmarks/lookahead.py --n 2000 --orders 90 300
"""

from __future__ import annotations

import argparse

import numpy as np

from raylanczos.numerics.lanczos import (
    LanczosOptions,
    LanczosState,
    advance,
    relation_residual,
    start_state,
    start_vector,
)
from raylanczos.numerics.spectrum import gauss_quadrature, orthogonality_loss

DEFAULTS = LanczosOptions()


def spectra(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    zeros = int(0.4 * n)
    return {
        "bulk + 10 outliers": np.concatenate([rng.normal(0.0, 0.1, n - 10), rng.uniform(5.0, 50.0, 10)]),
        "Hessian-like (range 1e7)": np.concatenate(
            [rng.normal(0.0, 1e-4, n - zeros - 20), np.zeros(zeros), rng.uniform(10.0, 1000.0, 20)]
        ),
        "4 tight clusters": np.repeat([1.0, 2.0, 3.0, 4.0], n // 4) + rng.normal(0.0, 1e-9, n),
    }


def run(a: np.ndarray, v0: np.ndarray, order: int, *, min_rho: float, eta: float) -> LanczosState:
    options = LanczosOptions(lookahead_min_rho=min_rho, dgks_eta=eta)
    state = start_state(v0, order)
    while not state.done:
        advance(state, a @ state.vector, options=options)
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--orders", type=int, nargs="+", default=[90, 300])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"{'spectrum':26s} {'m':>4s} {'mode':>14s} {'ΔRitz/‖A‖':>10s} {'residual/‖A‖':>12s} {'orthogonality':>13s} {'2nd passes':>10s}")
    for name, lam in spectra(args.n, rng).items():
        q, _ = np.linalg.qr(rng.standard_normal((args.n, args.n)))
        a = (q * lam) @ q.T
        norm_a = np.max(np.abs(lam))
        v0 = start_vector(args.n, seed=1)
        for order in args.orders:
            modes = {
                "CGS2, fresh": run(a, v0, order, min_rho=2.0, eta=2.0),
                "fresh": run(a, v0, order, min_rho=2.0, eta=DEFAULTS.dgks_eta),
                "look-ahead": run(a, v0, order, min_rho=DEFAULTS.lookahead_min_rho, eta=DEFAULTS.dgks_eta),
            }
            reference = gauss_quadrature(*modes["CGS2, fresh"].tridiagonal())[0]
            for mode, state in modes.items():
                nodes = gauss_quadrature(*state.tridiagonal())[0]
                print(
                    f"{name:26s} {order:4d} {mode:>14s} {np.max(np.abs(nodes - reference)) / norm_a:10.1e} "
                    f"{relation_residual(a, state) / norm_a:12.1e} {orthogonality_loss(state.basis[: state.steps + 1]):13.1e} "
                    f"{state.second_passes:10d}"
                )


if __name__ == "__main__":
    main()
