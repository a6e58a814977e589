"""Ritz pairs against dense eigenvectors, and their residuals from the Lanczos relation."""

from __future__ import annotations

import numpy as np
import pytest

from raylanczos.numerics.lanczos import lanczos
from raylanczos.numerics.ritz import RitzPairs, best_pairs, ritz_pairs
from tests.matrices import matrix_with_spectrum

OUTLIERS = np.array([-4.0, 3.5, 6.0, 9.0, 14.0])


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(106)
    lam = np.concatenate([rng.uniform(-1.0, 1.0, 495), OUTLIERS])
    return lam, matrix_with_spectrum(lam, rng)


def test_ritz_pairs_and_their_residuals(problem):
    """Top/bottom Ritz vectors are unit-norm; the converged outliers (14 and −4) have
    ‖A y − θ y‖ ≤ 1e-8·‖A‖ and |cos| with the dense eigenvector > 1 − 1e-8, and every
    pair's residual from the Lanczos relation equals ‖A y − θ y‖ to 1e-10·‖A‖."""
    lam, a = problem
    norm_a = np.max(np.abs(lam))
    m = 50
    result = lanczos(a, order=m, seed=8, return_basis=True)
    thetas = np.linalg.eigvalsh(np.diag(result.alpha) + np.diag(result.beta, 1) + np.diag(result.beta, -1))
    evals, evecs = np.linalg.eigh(a)
    for largest in (True, False):
        pairs = ritz_pairs(result.basis, result.alpha, result.beta, result.residual_norm, k=m, largest=largest)
        assert pairs.values.shape == (m,) and pairs.vectors.shape == (m, 500) and pairs.residuals.shape == (m,)
        assert np.all(np.diff(pairs.values) <= 0) if largest else np.all(np.diff(pairs.values) >= 0)
        np.testing.assert_allclose(np.linalg.norm(pairs.vectors, axis=1), 1.0, rtol=0, atol=1e-12)
        np.testing.assert_allclose(pairs.values, thetas[:: -1 if largest else 1], rtol=0, atol=1e-12 * norm_a)
        true = np.linalg.norm(pairs.vectors @ a - pairs.values[:, None] * pairs.vectors, axis=1)
        np.testing.assert_allclose(pairs.residuals, true, rtol=0, atol=1e-10 * norm_a)
        extreme = -1 if largest else 0
        assert pairs.values[0] == pytest.approx(evals[extreme], rel=1e-10)
        assert pairs.residuals[0] <= 1e-8 * norm_a
        assert abs(pairs.vectors[0] @ evecs[:, extreme]) > 1 - 1e-8
    top = ritz_pairs(result.basis, result.alpha, result.beta, result.residual_norm, k=2)
    every = ritz_pairs(result.basis, result.alpha, result.beta, result.residual_norm, k=m)
    assert np.array_equal(top.values, every.values[:2])
    np.testing.assert_allclose(top.vectors, every.vectors[:2], rtol=0, atol=1e-14)


def test_best_pairs_keeps_the_smaller_residual_rank_by_rank():
    first = RitzPairs(np.array([3.0, 2.0]), np.eye(2), np.array([1e-3, 1e-9]))
    second = RitzPairs(np.array([3.1, 1.9]), np.eye(2)[::-1], np.array([1e-6, 1e-4]))
    best = best_pairs(first, second)
    assert best.values.tolist() == [3.1, 2.0] and best.residuals.tolist() == [1e-6, 1e-9]
    assert best.vectors.tolist() == [[0.0, 1.0], [0.0, 1.0]]
    assert best_pairs(None, first) is first
