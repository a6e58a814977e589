"""A diagonal preconditioner D, as the flat vector the preconditioned operator scales by.

The preconditioned Hessian is D^{-1/2} H D^{-1/2} for a positive diagonal D given by the
problem (Adam's √v̂ + ε, say): its spectrum is the curvature an optimiser that divides its
steps by D sees. A product is D^{-1/2} (H (D^{-1/2} v)), so all a backend needs is the
float64[n] vector d^{-1/2}, in the flat parameter layout, which :func:`inverse_sqrt_scaling`
makes from D's arrays after checking that every entry is positive and finite.

numpy only: a backend flattens a framework's structure (a JAX pytree, a list of Keras
weights) into arrays first.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from raylanczos.problem.definition import ProblemError
from raylanczos.problem.layout import ParameterLayout


def flat_preconditioner(arrays: Sequence[np.ndarray] | np.ndarray, layout: ParameterLayout) -> np.ndarray:
    """D as float64[n] in the layout's order, from one flat array of n entries or one array
    per parameter tensor (same order and shapes as the layout's blocks).

    A ``ProblemError`` names what does not fit: the count of arrays, or the first array whose
    shape differs from its tensor's.
    """
    blocks = layout.blocks
    if isinstance(arrays, np.ndarray):
        if arrays.shape == (layout.num_params,) or (len(blocks) == 1 and arrays.shape == blocks[0].shape):
            return np.asarray(arrays, dtype=np.float64).ravel()
        raise ProblemError(
            f"the preconditioner is one array of shape {arrays.shape}; give one flat array of {layout.num_params} "
            f"entries or one array per parameter tensor ({', '.join(block.name for block in blocks)})"
        )
    arrays = list(arrays)
    if len(arrays) != len(blocks):
        raise ProblemError(
            f"the preconditioner has {len(arrays)} arrays, the parameters {len(blocks)} tensors "
            f"({', '.join(block.name for block in blocks)}); give one array per tensor, or one flat array "
            f"of {layout.num_params} entries"
        )
    for index, (array, block) in enumerate(zip(arrays, blocks)):
        if tuple(np.shape(array)) != tuple(block.shape):
            raise ProblemError(
                f"preconditioner array {index} has shape {tuple(np.shape(array))}, "
                f"parameter {block.name!r} has shape {tuple(block.shape)}"
            )
    return np.concatenate([np.asarray(array, dtype=np.float64).ravel() for array in arrays])


def inverse_sqrt_scaling(diagonal: np.ndarray, layout: ParameterLayout) -> np.ndarray:
    """d^{-1/2}, float64[n], of a positive finite diagonal D (float64[n], flat layout).

    A ``ProblemError`` names the first entry that is not positive and finite: its flat
    index, the parameter tensor it belongs to and its position there, and its value.
    """
    diagonal = np.asarray(diagonal, dtype=np.float64)
    bad = np.flatnonzero(~(np.isfinite(diagonal) & (diagonal > 0)))
    if bad.size:
        index = int(bad[0])
        raise ProblemError(
            f"the preconditioner D must be positive and finite: entry {index} ({describe_entry(layout, index)}) "
            f"is {float(diagonal[index])!r}, and {bad.size} of {diagonal.size} entries are not"
        )
    return 1.0 / np.sqrt(diagonal)


def describe_entry(layout: ParameterLayout, index: int) -> str:
    """``0/w[12, 3]``: the tensor of flat entry ``index`` and the entry's position in it."""
    for block in layout.blocks:
        if block.offset <= index < block.offset + block.size:
            position = np.unravel_index(index - block.offset, block.shape) if block.shape else ()
            return f"{block.name}[{', '.join(str(int(i)) for i in position)}]"
    raise IndexError(f"entry {index} is outside the {layout.num_params} parameters")
