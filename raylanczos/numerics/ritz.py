"""Ritz pairs of a Lanczos run: eigenvector estimates and their residual norms, float64.

For a run with basis V (k, n) and tridiagonal T = U Θ Uᵀ, the Ritz vector of θⱼ is
yⱼ = Vᵀ uⱼ, and the Lanczos relation A Vᵀ = Vᵀ T + β_{k−1} v_k e_{k−1}ᵀ gives its
residual without another product:

    ‖A yⱼ − θⱼ yⱼ‖ = |β_{k−1}| · |e_{k−1}ᵀ uⱼ|,

exact up to the relation's rounding (full re-orthogonalisation keeps it at ~1e-15·‖A‖).
numpy/scipy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import eigh_tridiagonal


@dataclass(frozen=True)
class RitzPairs:
    """The k most extreme Ritz pairs of one draw, most extreme first.

    ``values`` float64[k]; ``vectors`` float64 (k, n), unit-norm rows in the parameter
    layout; ``residuals`` float64[k], ‖A y − θ y‖ in eigenvalue units.
    """

    values: np.ndarray
    vectors: np.ndarray
    residuals: np.ndarray


def ritz_pairs(
    basis: np.ndarray, alpha: np.ndarray, beta: np.ndarray, residual_norm: float, k: int = 1, *, largest: bool = True
) -> RitzPairs:
    """The k largest (or smallest) Ritz pairs of a run of ``len(alpha)`` steps.

    Args:
      basis: the run's Lanczos basis, float64 (≥ len(alpha), n), one vector per row; or a
        basis held in slices, with ``combine(C)`` = C V[:k] assembled slice by slice (see
        :class:`~raylanczos.run.stores.KeptBasis`).
      alpha, beta: T's diagonal float64[k_T] and off-diagonal float64[k_T − 1].
      residual_norm: β_{k_T−1}, the norm of the run's final residual (0 at breakdown).
      k: how many pairs (clamped to the run's steps).
      largest: the largest eigenvalues (True) or the smallest.
    """
    size = len(alpha)
    k = min(k, size)
    values, vectors = _eigen(alpha, beta)
    order = np.argsort(values)[::-1][:k] if largest else np.argsort(values)[:k]
    ritz = combine_rows(basis, vectors[:, order].T)
    residuals = abs(residual_norm) * np.abs(vectors[-1, order])
    return RitzPairs(values[order], ritz, residuals)


def combine_rows(basis, coefficients: np.ndarray) -> np.ndarray:
    """C V[:k], float64 (c, n), for C = ``coefficients`` float64 (c, k): of a basis array, or
    by a sliced basis's own ``combine``."""
    if isinstance(basis, np.ndarray):
        return coefficients @ np.asarray(basis[: coefficients.shape[1]])
    return basis.combine(coefficients)


def best_pairs(current: RitzPairs | None, candidate: RitzPairs) -> RitzPairs:
    """Rank by rank, the pair of the two with the larger Ritz value: the k-th largest Ritz
    value never exceeds the k-th largest eigenvalue (Cauchy interlacing), so the larger is
    the closer; equal values keep the smaller residual, then ``current``."""
    if current is None:
        return candidate
    k = min(len(current.values), len(candidate.values))
    larger = candidate.values[:k] > current.values[:k]
    tie = (candidate.values[:k] == current.values[:k]) & (candidate.residuals[:k] < current.residuals[:k])
    take = larger | tie
    return RitzPairs(
        np.where(take, candidate.values[:k], current.values[:k]),
        np.where(take[:, None], candidate.vectors[:k], current.vectors[:k]),
        np.where(take, candidate.residuals[:k], current.residuals[:k]),
    )


def largest_magnitude_pairs(basis: np.ndarray, alpha: np.ndarray, beta: np.ndarray, residual_norm: float, k: int) -> RitzPairs:
    """The k Ritz pairs of largest |θ| (largest first), as :func:`ritz_pairs` gives the
    largest or smallest: the outliers at both ends of a spectrum, for deflation."""
    size = len(alpha)
    k = min(k, size)
    values, vectors = _eigen(alpha, beta)
    order = np.argsort(-np.abs(values), kind="stable")[:k]
    ritz = vectors[:, order].T @ np.asarray(basis[:size])
    return RitzPairs(values[order], ritz, abs(residual_norm) * np.abs(vectors[-1, order]))


def _eigen(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """T's eigenvalues float64[k] and eigenvectors float64 (k, k), k = len(alpha)."""
    if len(alpha) == 1:
        return np.asarray(alpha, dtype=np.float64), np.ones((1, 1))
    return eigh_tridiagonal(alpha, beta)
