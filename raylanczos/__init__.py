"""raylanczos: Hessian eigenvalue densities of deep networks by stochastic Lanczos quadrature.

The numerics (:mod:`raylanczos.lanczos`, :mod:`raylanczos.spectrum`) work on any float64
matvec; :func:`hessian_spectrum` runs them over a Ray worker group that computes the
Hessian-vector products of a :class:`Problem` shard by shard. Importing this package
imports neither Ray nor any deep-learning framework.
"""

from raylanczos.basis import allocate_basis
from raylanczos.config import DensityConfig, OptionError, OutputConfig, ScalingConfig, SpectrumConfig
from raylanczos.data import ArrayDataset, ParquetDataset, Shard, ShardPlan, ShardPlanError
from raylanczos.lanczos import LanczosOptions, LanczosResult, LanczosState, lanczos, start_vector
from raylanczos.layout import ParameterBlock, ParameterLayout, split_vector
from raylanczos.problem import Problem, ProblemError
from raylanczos.ritz import RitzPairs, ritz_pairs
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

#: Entry points imported on first use: the run needs Ray; rendering and loading do not.
_LAZY = {
    "hessian_spectrum": "raylanczos.runner",
    "load_result": "raylanczos.render",
    "rerender": "raylanczos.render",
    "SpectrumResult": "raylanczos.render",
    "compare_runs": "raylanczos.compare",
}


def __getattr__(name: str):
    """Lazy access to the entry points, so ``import raylanczos`` stays light."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'raylanczos' has no attribute {name!r}")


__all__ = [
    "ArrayDataset",
    "DamagedFileError",
    "DensityConfig",
    "LanczosOptions",
    "LanczosResult",
    "LanczosState",
    "OptionError",
    "OutputConfig",
    "ParameterBlock",
    "ParameterLayout",
    "ParquetDataset",
    "Problem",
    "ProblemError",
    "RitzPairs",
    "ScalingConfig",
    "Shard",
    "ShardPlan",
    "ShardPlanError",
    "SpectrumConfig",
    "SpectrumResult",
    "SpectrumSummary",
    "allocate_basis",
    "compare_runs",
    "gauss_quadrature",
    "hessian_spectrum",
    "lanczos",
    "load_result",
    "rerender",
    "ritz_pairs",
    "slq_quadrature",
    "smoothed_density",
    "split_vector",
    "stack_tridiagonals",
    "start_vector",
    "summarize",
]
