"""Test matrices and operators with known spectra, and what tests compare products with."""

from __future__ import annotations

import numpy as np

from raylanczos.problem.data import ShardPlan


def orthogonal_matrix(n: int, rng: np.random.Generator) -> np.ndarray:
    """Haar-distributed orthogonal (n, n) matrix (QR of a Gaussian, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def matrix_with_spectrum(eigenvalues: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dense symmetric Q diag(λ) Qᵀ (exactly symmetrised) with the given eigenvalues."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    q = orthogonal_matrix(lam.size, rng)
    a = (q * lam) @ q.T
    return (a + a.T) / 2.0


def diagonal_operator(eigenvalues: np.ndarray):
    """The operator diag(λ) as a plain callable ``v ↦ λ ⊙ v`` and its dimension."""
    lam = np.asarray(eigenvalues, dtype=np.float64).copy()
    return (lambda v: lam * v), lam.size

#: The digits data over three workers in unequal, non-contiguous shards.
UNEQUAL_SHARDS = ShardPlan.from_json(
    {"workers": [{"rows": [[0, 700]]}, {"rows": [[700, 1000], [1500, 1797]]}, {"rows": [[1000, 1500]]}]}
)


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """‖got − want‖ / ‖want‖."""
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))
