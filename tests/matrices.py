"""Test matrices and operators with known spectra."""

from __future__ import annotations

import numpy as np


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
