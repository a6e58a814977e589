"""raylanczos: Hessian eigenvalue densities of deep networks by stochastic Lanczos quadrature.

The numerics (:mod:`raylanczos.lanczos`, :mod:`raylanczos.spectrum`) work on any float64
matvec; :func:`hessian_spectrum` runs them over a Ray worker group that computes the
Hessian-vector products of a :class:`Problem` shard by shard. Importing this package
imports neither Ray nor any deep-learning framework.
"""

from raylanczos.data import ArrayDataset, ParquetDataset, Shard, ShardPlan, ShardPlanError
from raylanczos.lanczos import LanczosResult, LanczosState, allocate_basis, lanczos, start_vector
from raylanczos.layout import ParameterBlock, ParameterLayout, split_vector
from raylanczos.problem import Problem, ProblemError
from raylanczos.spectrum import (
    SpectrumSummary,
    gauss_quadrature,
    slq_quadrature,
    smoothed_density,
    stack_tridiagonals,
    summarize,
)
from raylanczos.store import DamagedFileError

__version__ = "0.1.0"


def __getattr__(name: str):
    """Lazy access to the Ray-backed entry points, so ``import raylanczos`` stays light."""
    if name in ("hessian_spectrum", "load_result", "rerender", "SpectrumResult"):
        from raylanczos import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'raylanczos' has no attribute {name!r}")


__all__ = [
    "ArrayDataset",
    "DamagedFileError",
    "ParquetDataset",
    "Problem",
    "ProblemError",
    "Shard",
    "ShardPlan",
    "ShardPlanError",
    "SpectrumResult",
    "LanczosResult",
    "LanczosState",
    "ParameterBlock",
    "ParameterLayout",
    "SpectrumSummary",
    "allocate_basis",
    "gauss_quadrature",
    "hessian_spectrum",
    "lanczos",
    "load_result",
    "rerender",
    "slq_quadrature",
    "smoothed_density",
    "split_vector",
    "stack_tridiagonals",
    "start_vector",
    "summarize",
]
