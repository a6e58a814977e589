"""raylanczos: Hessian eigenvalue densities of deep networks by stochastic Lanczos quadrature.

The numerics (:mod:`raylanczos.numerics.lanczos`, :mod:`raylanczos.numerics.spectrum`) work on any float64
matvec; :func:`hessian_spectrum` runs them over a Ray worker group that computes the
Hessian-vector products of a :class:`Problem` shard by shard. Importing this package
imports neither Ray nor any deep-learning framework.
"""

from raylanczos.config import (
    DensityConfig,
    OptionError,
    OutputConfig,
    ScalingConfig,
    SpectrumConfig,
)
from raylanczos.numerics.basis import allocate_basis
from raylanczos.numerics.lanczos import (
    LanczosOptions,
    LanczosResult,
    LanczosState,
    lanczos,
    start_vector,
)
from raylanczos.numerics.ritz import RitzPairs, ritz_pairs
from raylanczos.numerics.spectrum import (
    SpectrumSummary,
    gauss_quadrature,
    slq_quadrature,
    smoothed_density,
    stack_tridiagonals,
    summarize,
)
from raylanczos.outputs.store import DamagedFileError
from raylanczos.problem.data import (
    ArrayDataset,
    ParquetDataset,
    Shard,
    ShardPlan,
    ShardPlanError,
)
from raylanczos.problem.definition import Problem, ProblemError
from raylanczos.problem.layout import ParameterBlock, ParameterLayout, split_vector

__version__ = "0.1.0"

#: Entry points imported on first use: the run needs Ray; rendering and loading do not.
_LAZY = {
    "hessian_spectrum": "raylanczos.run.runner",
    "load_result": "raylanczos.outputs.render",
    "rerender": "raylanczos.outputs.render",
    "SpectrumResult": "raylanczos.outputs.render",
    "compare_runs": "raylanczos.outputs.compare",
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
