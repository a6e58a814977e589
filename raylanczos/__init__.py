"""raylanczos: Hessian eigenvalue densities of deep networks by stochastic Lanczos quadrature.

The numerics (:mod:`raylanczos.lanczos`, :mod:`raylanczos.spectrum`) work on any float64
matvec; :func:`hessian_spectrum` runs them over a Ray worker group that computes the
Hessian-vector products of a :class:`Problem` shard by shard. Importing this package
imports neither Ray nor any deep-learning framework.
"""

from raylanczos.lanczos import LanczosResult, LanczosState, allocate_basis, lanczos, start_vector
from raylanczos.spectrum import (
    SpectrumSummary,
    gauss_quadrature,
    slq_quadrature,
    smoothed_density,
    stack_tridiagonals,
    summarize,
)

__version__ = "0.1.0"

__all__ = [
    "LanczosResult",
    "LanczosState",
    "SpectrumSummary",
    "allocate_basis",
    "gauss_quadrature",
    "lanczos",
    "slq_quadrature",
    "smoothed_density",
    "stack_tridiagonals",
    "start_vector",
    "summarize",
]
