"""λ_max's error with float32 products, against the dense float64 Hessian, and where it comes from.

For a JAX problem small enough for a dense Hessian (default: the 2,410-parameter digits
MLP), runs m Lanczos steps (:func:`raylanczos.lanczos`, start vectors from ``seed``, draw
0) over the in-process operator (:class:`~raylanczos.operators.local.LocalHessian`) in the
model's dtype (float32) and in float64, and prints |λ_max(T) − λ_max(H)| for each seed;
then the same for the exact H multiplying each vector rounded to float32 (what rounding
the tangents alone costs), and for that product rounded to float32 too (a float32
product as exact as float32 can hold it).

It then splits the error at the exact top eigenvector u (H u = λ u): u·(C u) − λ for

- ``float64 products``: the backend in float64;
- ``float32 products, float64 sums``: the backend as it runs (each batch's product in
  float32, Σ_b |b|·C_b u in float64);
- ``float32 products, float32 sums``: the same per-batch products summed in float32;
- ``exact H, u rounded to float32``: the tangent's rounding alone::

    python benchmarks/float32_lambda_max.py --problem raylanczos.examples.digits:problem --order 90 --seeds 0 1 2 3
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from scipy.linalg import eigh_tridiagonal

import raylanczos as rl
from raylanczos.benchmarking import describe_machine
from raylanczos.operators.local import LocalHessian
from raylanczos.problem.definition import build_problem


def dense_hessian(problem: rl.Problem, chunk: int = 512) -> np.ndarray:
    """∇²L(θ) in float64 over the whole dataset (n × n), symmetrised, ``chunk`` columns at a time."""
    with jax.enable_x64(True):
        params = jax.tree_util.tree_map(lambda p: jnp.asarray(p, jnp.float64), problem.params)
        flat, unravel = ravel_pytree(params)
        arrays = problem.data.read(rl.ShardPlan.balanced(problem.num_examples, 1).shards[0])
        batch = {k: (v.astype(np.float64) if np.issubdtype(v.dtype, np.floating) else v) for k, v in arrays.items()}
        gradient = jax.grad(lambda q: problem.loss_fn(unravel(q), batch))
        columns = jax.jit(jax.vmap(lambda e: jax.jvp(gradient, (flat,), (e,))[1]))
        identity = np.eye(flat.size)
        hessian = np.concatenate([np.asarray(columns(identity[i : i + chunk])) for i in range(0, flat.size, chunk)])
    return (hessian + hessian.T) / 2


def lambda_max(operator, order: int, seed: int, dim: int | None = None) -> float:
    """The largest Ritz value of ``order`` Lanczos steps from start vector (``seed``, draw 0)."""
    result = rl.lanczos(operator, dim, order, seed=seed)
    return float(eigh_tridiagonal(result.alpha, result.beta, eigvals_only=True)[-1])


def float32_sums(hessian: LocalHessian, vector: np.ndarray) -> np.ndarray:
    """Σ_b |b|·C_b v with the backend's float32 per-batch products added in float32, then / N."""
    total = np.zeros(vector.size, dtype=np.float32)
    for first, stop, products in hessian.workers[0].backend.batch_products(vector[None]):
        total += np.float32(stop - first) * products[0].astype(np.float32)
    return total.astype(np.float64) / hessian.num_examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problem", default="raylanczos.examples.digits:problem")
    parser.add_argument("--order", type=int, default=90)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    args = parser.parse_args()
    print(json.dumps(describe_machine()))

    problem = build_problem(args.problem)
    hessian = dense_hessian(problem)
    eigenvalues, eigenvectors = np.linalg.eigh(hessian)
    exact, top = float(eigenvalues[-1]), eigenvectors[:, -1]
    print(f"{args.problem}: n = {hessian.shape[0]}, λ_max = {exact:.17g}, order {args.order}, seeds {args.seeds}")

    operators = {
        "float32 products": LocalHessian(problem),
        "float64 products": LocalHessian(problem, compute_dtype="float64"),
    }
    matvecs = {
        **operators,
        "exact H, vectors rounded to float32": lambda v: hessian @ _float32(v),
        "exact H, vectors and products rounded": lambda v: _float32(hessian @ _float32(v)),
    }
    for name, matvec in matvecs.items():
        errors = [abs(lambda_max(matvec, args.order, seed, hessian.shape[0]) - exact) for seed in args.seeds]
        print(f"|λ_max error| {name:40s} " + " ".join(f"{e:.2e}" for e in errors))

    split = {
        "float64 products": operators["float64 products"].matvec(top),
        "float32 products, float64 sums": operators["float32 products"].matvec(top),
        "float32 products, float32 sums": float32_sums(operators["float32 products"], top),
        "exact H, u rounded to float32": hessian @ _float32(top),
    }
    for name, product in split.items():
        print(f"u·(C u) − λ  {name:40s} {top @ product - exact:+.2e}")


def _float32(vector: np.ndarray) -> np.ndarray:
    """``vector`` rounded to float32, as float64."""
    return vector.astype(np.float32).astype(np.float64)


if __name__ == "__main__":
    main()
