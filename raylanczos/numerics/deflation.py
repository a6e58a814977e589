"""Outlier deflation: the spectrum of P H P on range(P), P = I − Q Qᵀ, and what it gives back.

A few outliers of a curvature spectrum carry most of its Frobenius norm and force SLQ to
spend its nodes on them. With the K largest-magnitude eigenpairs (λ_k, q_k) found first
(Q float64 (K, n), orthonormal rows), the remaining spectrum is that of P H P restricted to
range(P), of dimension n − K: Lanczos from start vectors P v, whose Krylov space stays in
range(P), with products P H P. Then

- the density is (1/n) Σ_k δ(λ_k) + ((n − K)/n) · (the deflated SLQ density):
  :func:`deflated_quadrature` appends the K eigenvalues to each draw's quadrature with
  weight 1/n and scales the deflated weights by (n − K)/n;
- the trace is tr H = Σ_k λ_k + tr(P H P) = Σ_k λ_k + (n − K) · E[uᵀ H u], u a unit random
  vector of range(P) (α₀ of a deflated draw): Hutch++'s idea with the top eigenspace as its
  sketch (:func:`deflated_trace`);
- the plain Hutchinson sample of the same start vector v (unit), vᵀ H v, is
  ‖P v‖² · α₀ + Σ_k λ_k (q_kᵀ v)², up to terms of the size of the pairs' residuals
  (H q_k = λ_k q_k + r_k): :func:`plain_trace_samples`, for a comparison on the same draws.

numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Deflation:
    """K eigenpairs taken out of an operator of dimension ``dim`` (a block's own, for a block).

    ``values`` float64[K] (largest magnitude first); ``vectors`` float64 (K, dim),
    orthonormal rows; ``residuals`` float64[K], ‖H q − λ q‖ from true products (eigenvalue
    units); ``steps``: the Lanczos steps that found them; ``products``: the block products
    that cost (rows of every pass, the residuals' pass included).
    """

    values: np.ndarray
    vectors: np.ndarray
    residuals: np.ndarray
    steps: int = 0
    products: int = 0

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def project(self, x: np.ndarray) -> np.ndarray:
        """P x = x − Qᵀ (Q x) for a vector float64[dim] or rows float64 (B, dim)."""
        return x - (x @ self.vectors.T) @ self.vectors

    def start_weights(self, start: np.ndarray) -> np.ndarray:
        """(q_kᵀ v)² of a unit start vector v float64[dim]: float64[K]."""
        return (self.vectors @ start) ** 2


def deflated_quadrature(
    nodes: np.ndarray, weights: np.ndarray, values: np.ndarray, dim: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each draw's quadrature of the whole spectrum, float64 (D, m + K): the deflated draws'
    nodes with weights × (n − K)/n, then the K eigenvalues with weight 1/n each."""
    nodes = np.atleast_2d(np.asarray(nodes, dtype=np.float64))
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    values = np.asarray(values, dtype=np.float64)
    draws, count = nodes.shape[0], values.size
    if not 0 <= count < dim:
        raise ValueError(f"deflating {count} eigenvalues of an operator of dimension {dim} leaves nothing to estimate")
    spikes = np.broadcast_to(values, (draws, count))
    return (
        np.concatenate([nodes, spikes], axis=1),
        np.concatenate([weights * (dim - count) / dim, np.full((draws, count), 1.0 / dim)], axis=1),
    )


def deflated_trace(first_alphas: np.ndarray, values: np.ndarray, dim: int) -> tuple[float, float]:
    """(Σ_k λ_k + (n − K) · mean_d α₀_d, (n − K) · std_d(α₀_d, ddof=1)/√D): the deflated trace
    estimate and its standard error (NaN for one draw), eigenvalue units."""
    first_alphas = np.asarray(first_alphas, dtype=np.float64)
    rest = dim - np.asarray(values).size
    spread = first_alphas.std(ddof=1) / np.sqrt(first_alphas.size) if first_alphas.size > 1 else np.nan
    return float(np.sum(values) + rest * first_alphas.mean()), float(rest * spread)


def plain_trace_samples(first_alphas: np.ndarray, start_weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """vᵀ H v per draw, float64[D], from the deflated draw of the same unit start vector v:
    ‖P v‖² · α₀ + Σ_k λ_k (q_kᵀ v)², with ``start_weights`` (q_kᵀ v)² float64 (D, K). Exact
    up to the pairs' residuals (|error| ≤ ‖r‖·(2‖Pv‖‖Qᵀv‖ + ‖Qᵀv‖²) for residuals r)."""
    start_weights = np.atleast_2d(np.asarray(start_weights, dtype=np.float64))
    return (1.0 - start_weights.sum(axis=1)) * np.asarray(first_alphas, dtype=np.float64) + start_weights @ values
