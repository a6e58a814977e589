"""The three dense matrices of the certificate's checks (tests and the coverage benchmark).

- ``digits_mlp``: the digits MLP's Hessian (hidden 32, trained; n = 2,410), about a fifth
  of its eigenvalues within 1e-6·‖H‖ of 0;
- ``tiny_convnet``: the Hessian of a tiny conv net on the digits as 8×8×1 images (3×3 SAME
  convolutions with GELU, channels 1→4→8, global mean pool, dense 8→10; untrained He-normal
  weights; the first 256 examples; n = 426), an indefinite spectrum;
- ``bulk_at_zero``: Q diag(λ) Qᵀ (n = 400) with a bulk of 200 eigenvalues at exactly 0,
  60 in [−1, −0.05], 139 in [0.05, 3] and one outlier at 10.

Each is float64, symmetrised (the Hessians' asymmetry is rounding), and cached.
"""

from __future__ import annotations

import functools

import numpy as np

#: The bulk-at-0 matrix's dimension and the weight of its bulk (the fraction of eigenvalues at 0).
BULK_DIM = 400
BULK_WEIGHT = 0.5
#: The tiny conv net's channels and how many digits it sees.
TINY_CONVNET_LAYERS = (4, 8)
TINY_CONVNET_EXAMPLES = 256


@functools.cache
def digits_mlp() -> np.ndarray:
    from tests.hessians import digits_hessian

    return _symmetric(digits_hessian())


@functools.cache
def tiny_convnet() -> np.ndarray:
    import raylanczos as rl
    from raylanczos.examples import convnet
    from raylanczos.examples.digits_data import load_digits
    from tests.hessians import dense_hessian

    x, y = load_digits()
    count = TINY_CONVNET_EXAMPLES
    data = rl.ArrayDataset({"x": x[:count].reshape(-1, 8, 8, 1), "y": y[:count]})
    loss = functools.partial(convnet.mean_cross_entropy, layers=TINY_CONVNET_LAYERS)
    params = convnet.init_params(1, TINY_CONVNET_LAYERS, 10, seed=0)
    return _symmetric(dense_hessian(rl.Problem.from_jax(params, loss, data, batch_size=128), chunk=64))


@functools.cache
def bulk_at_zero() -> np.ndarray:
    from tests.matrices import matrix_with_spectrum

    rng = np.random.default_rng(2024)
    zeros = int(BULK_WEIGHT * BULK_DIM)
    negative, positive = 60, BULK_DIM - zeros - 61
    lam = np.concatenate([np.zeros(zeros), rng.uniform(-1.0, -0.05, negative), rng.uniform(0.05, 3.0, positive), [10.0]])
    return matrix_with_spectrum(lam, rng)


SPECTRA = {"digits_mlp": digits_mlp, "tiny_convnet": tiny_convnet, "bulk_at_zero": bulk_at_zero}


def _symmetric(matrix: np.ndarray) -> np.ndarray:
    return (matrix + matrix.T) / 2.0


def assert_band_holds(certificate, eigenvalues: np.ndarray, slack: float = 1e-9) -> None:
    """A run's certified band (a :class:`~raylanczos.outputs.record.CertificateRecord`) holds
    the exact spectral CDF of ``eigenvalues`` at every point of its grid; ``slack``
    (probability units) covers the float32-or-float64 products' rounding of the nodes."""
    grid = np.asarray(certificate.grid)
    exact = np.searchsorted(np.sort(eigenvalues), grid, side="right") / eigenvalues.size
    assert np.all(np.asarray(certificate.lower) <= exact + slack) and np.all(exact <= np.asarray(certificate.upper) + slack)
    assert 0 < certificate.ks_half_width <= 0.5 and certificate.w1_bound > 0
