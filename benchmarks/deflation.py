"""Outlier deflation against dense Hessians: the deflated eigenvalues, the density's L1
distance to the exact smoothed density, and the traces' errors, against undeflated SLQ and
plain Hutchinson on the same budget of products.

For each problem (default: the 2,410-parameter digits MLP and the 426-parameter digits conv
net, dense float64 Hessians; ``uniform:N``, a diagonal matrix of N eigenvalues uniform in
[0, 1], is a spectrum with no outliers) and each seed set s = 0 … S − 1, in this process (the products
are the dense matrix's, so the estimators' statistics are measured, not the workers'):

- **deflated**: the outlier search (K eigenpairs of largest magnitude to ``--deflate-tol``,
  one draw at a time, B = 1, so that its products are as few as the search allows), then
  D draws × m steps of P H P; the combined quadrature's density and the deflated trace;
- **undeflated, same products**: D' = D + ⌈(search products)/m⌉ draws × m steps of plain SLQ;
- **plain Hutchinson, same products**: vᵀHv over D + (search products) unit Gaussian vectors,
  against the deflated trace's D + (search products).

The densities use the exact spectrum's σ² (``--sigma2-relative`` · (λ_max − λ_min)²) on a
grid over the exact spectrum with 5σ margins. Prints one JSON object with the machine and
the date::

    python benchmarks/deflation.py --seeds 20 --draws 10 --order 90 --deflate 10
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from raylanczos.benchmarking import describe_machine
from raylanczos.config import SpectrumConfig
from raylanczos.numerics import spectrum
from raylanczos.numerics.basis import BasisSweeps, allocate_basis
from raylanczos.numerics.deflation import deflated_quadrature, deflated_trace
from raylanczos.numerics.lanczos import start_vector
from raylanczos.operators.contract import InProcessOperator
from raylanczos.problem.definition import build_problem
from raylanczos.run.deflation import DeflationError, deflated_plan, find_outliers
from raylanczos.run.loop import SpectrumLoop
from raylanczos.run.plan import operator_plan

PROBLEMS = ("raylanczos.examples.digits:problem", "raylanczos.examples.convnet:tiny_digits_problem")


class Dense:
    def __init__(self, matrix: np.ndarray):
        self.matrix, self.dim = matrix, matrix.shape[0]

    def matmat(self, vectors: np.ndarray) -> np.ndarray:
        return vectors @ self.matrix


def dense_hessian(source: str) -> np.ndarray:
    """The problem's Hessian in float64 over the whole dataset (forward-over-reverse columns), symmetrised."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    from raylanczos.problem.data import ShardPlan

    problem = build_problem(source)
    with jax.enable_x64(True):
        flat, unravel = ravel_pytree(jax.tree_util.tree_map(lambda p: jnp.asarray(p, jnp.float64), problem.params))
        arrays = problem.data.read(ShardPlan.balanced(problem.num_examples, 1).shards[0])
        batch = {k: (v.astype(np.float64) if np.issubdtype(v.dtype, np.floating) else v) for k, v in arrays.items()}
        gradient = jax.grad(lambda q: problem.loss_fn(unravel(q), batch))
        columns = jax.jit(jax.vmap(lambda e: jax.jvp(gradient, (flat,), (e,))[1]))
        identity = np.eye(flat.size)
        hessian = np.concatenate([np.asarray(columns(identity[i:i + 128])) for i in range(0, flat.size, 128)])
    return (hessian + hessian.T) / 2


def slq(operator: InProcessOperator, plan, order: int, seed: int, sweeps: BasisSweeps) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(nodes, weights, α₀ per draw) of the plan's draws."""
    bases = [allocate_basis(order + 1, operator.dim) for _ in range(plan.block_size)]
    state = SpectrumLoop(operator, list(plan.tasks), order, bases, seed=seed, distribution="gaussian", sweeps=sweeps).run()
    tridiagonals = [state.finished[task.index].tridiagonal() for task in plan.tasks]
    nodes, weights = spectrum.slq_quadrature(tridiagonals, order)
    return nodes, weights, np.array([alpha[0] for alpha, _ in tridiagonals])


def measure(hessian: np.ndarray, args: argparse.Namespace) -> dict:
    eigenvalues = np.linalg.eigvalsh(hessian)
    n, norm = eigenvalues.size, float(np.abs(eigenvalues).max())
    top = eigenvalues[np.argsort(-np.abs(eigenvalues), kind="stable")][: args.deflate]
    trace = float(eigenvalues.sum())
    operator, order, draws = Dense(hessian), min(args.order, n), args.draws
    rows = {"deflated": [], "undeflated": [], "eigenvalue_error": [], "search_products": [],
            "trace_deflated": [], "trace_deflated_se": [], "trace_plain": [], "trace_plain_se": []}
    kernels = {}
    for relative in args.sigma2_relative:
        sigma2 = relative * (eigenvalues[-1] - eigenvalues[0]) ** 2
        pad = 5 * np.sqrt(sigma2)
        grid = np.linspace(eigenvalues[0] - pad, eigenvalues[-1] + pad, args.grid_points)
        kernels[relative] = (sigma2, grid, spectrum.exact_smoothed_density(eigenvalues, grid, sigma2))

    def l1(nodes, weights) -> dict:
        return {r: float(np.trapezoid(np.abs(spectrum.smoothed_density(nodes, weights, g, s) - e), g)) for r, (s, g, e) in kernels.items()}

    with BasisSweeps() as sweeps:
        for seed in range(args.seeds):
            config = SpectrumConfig(order=order, draws=draws, seed=seed, deflate=args.deflate, deflate_tol=args.deflate_tol)
            plan = operator_plan(n, draws=draws, block_size=1, order=order)
            try:
                deflation = find_outliers(InProcessOperator(operator, 1), plan, config, sweeps)[""]
            except DeflationError as err:
                return {"n": n, "refused": str(err)}
            search = deflation.products
            nodes, weights, alphas = slq(InProcessOperator(operator, 1), deflated_plan(plan, {"": deflation}), order, seed, sweeps)
            combined = deflated_quadrature(nodes, weights, deflation.values, n)
            rows["deflated"].append(l1(*combined))
            rows["eigenvalue_error"].append(float(np.max(np.abs(deflation.values - top)) / norm))
            rows["search_products"].append(search)
            estimate, error = deflated_trace(alphas, deflation.values, n)
            rows["trace_deflated"].append(estimate)
            rows["trace_deflated_se"].append(error)
            more = draws + -(-search // order)
            undeflated = operator_plan(n, draws=more, block_size=4, order=order)
            plain_nodes, plain_weights, _ = slq(InProcessOperator(operator, 4), undeflated, order, seed, sweeps)
            rows["undeflated"].append(l1(plain_nodes, plain_weights))
            vectors = np.array([start_vector(n, seed=seed, draw=10_000 + d) for d in range(draws + search)])
            samples = n * np.einsum("di,ij,dj->d", vectors, hessian, vectors)
            rows["trace_plain"].append(float(samples.mean()))
            rows["trace_plain_se"].append(float(samples.std(ddof=1) / np.sqrt(samples.size)))

    def summary(values) -> dict:
        values = np.asarray(values, dtype=np.float64)
        return {"mean": float(values.mean()), "max": float(values.max())}

    return {
        "n": n, "norm": norm, "trace": trace, "top": top.tolist(),
        "deflated eigenvalues, max |error| / ||H||": summary(rows["eigenvalue_error"]),
        "search products": summary(rows["search_products"]),
        "undeflated draws on the same products": draws + -(-int(max(rows["search_products"])) // order),
        "L1 to the exact density (mean over seed sets), by sigma2_relative": {
            str(r): {
                "deflated": float(np.mean([row[r] for row in rows["deflated"]])),
                "undeflated": float(np.mean([row[r] for row in rows["undeflated"]])),
                "deflated better in": int(sum(d[r] < u[r] for d, u in zip(rows["deflated"], rows["undeflated"]))),
            }
            for r in kernels
        },
        "trace, deflated: RMS error, mean SE": [_rms(rows["trace_deflated"], trace), float(np.mean(rows["trace_deflated_se"]))],
        "trace, plain Hutchinson on the same products: RMS error, mean SE": [
            _rms(rows["trace_plain"], trace), float(np.mean(rows["trace_plain_se"]))
        ],
    }


def _rms(estimates, truth: float) -> float:
    return float(np.sqrt(np.mean((np.asarray(estimates) - truth) ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS))
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--order", type=int, default=90)
    parser.add_argument("--deflate", type=int, default=10)
    parser.add_argument("--deflate-tol", type=float, default=1e-10)
    parser.add_argument("--sigma2-relative", type=float, nargs="+", default=[1e-5, 1e-3])
    parser.add_argument("--grid-points", type=int, default=20_000)
    args = parser.parse_args()
    results = {"machine": describe_machine(), "settings": vars(args), "problems": {}}
    for source in args.problems:
        started = time.perf_counter()
        if source.startswith("uniform:"):
            hessian = np.diag(np.random.default_rng(0).uniform(0.0, 1.0, int(source.split(":")[1])))
        else:
            hessian = dense_hessian(source)
        results["problems"][source] = measure(hessian, args)
        results["problems"][source]["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
