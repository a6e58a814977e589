"""Parameter layout: which slice of the flat parameter vector belongs to which tensor.

Every vector raylanczos hands back over the parameters (a Lanczos basis vector, a Ritz
vector, an HVP) is flat, float64[n]. Its layout is fixed by the backend:

- JAX: ``jax.flatten_util.ravel_pytree(params)`` order, i.e. the leaves of
  ``jax.tree_util.tree_flatten(params)``, each raveled in C order; a block is named by its
  pytree path (``jax.tree_util.keystr(path, simple=True, separator="/")``, e.g. ``"0/w"``).
- Keras: ``model.trainable_variables`` order, each raveled in C order; a block is named by
  the variable's path (e.g. ``"digits_mlp/hidden_0/kernel"``).

A layout is also stored in ``summary.json`` as a list of ``{"name", "shape", "offset",
"size"}``; :func:`split_vector` takes either form. This module imports numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence, Union

import numpy as np


@dataclass(frozen=True)
class ParameterBlock:
    """One parameter tensor: ``vector[offset:offset + size].reshape(shape)``."""

    name: str
    shape: tuple[int, ...]
    offset: int
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "offset": self.offset, "size": self.size}


@dataclass(frozen=True)
class ParameterLayout:
    """The blocks of the flat parameter vector, in order, contiguous from offset 0."""

    blocks: tuple[ParameterBlock, ...]

    def __post_init__(self) -> None:
        position, seen = 0, set()
        for block in self.blocks:
            if block.name in seen:
                raise ValueError(f"parameter layout names must be unique; {block.name!r} appears twice")
            seen.add(block.name)
            if block.offset != position:
                raise ValueError(f"parameter block {block.name!r} starts at offset {block.offset}, expected {position}")
            if block.size != int(np.prod(block.shape, dtype=np.int64)):
                raise ValueError(f"parameter block {block.name!r} has size {block.size} but shape {block.shape}")
            position += block.size

    @classmethod
    def from_shapes(cls, named_shapes: Iterable[tuple[str, Sequence[int]]]) -> "ParameterLayout":
        """Consecutive blocks from ``(name, shape)`` pairs, in the flat vector's order."""
        blocks, offset = [], 0
        for name, shape in named_shapes:
            shape = tuple(int(d) for d in shape)
            size = int(np.prod(shape, dtype=np.int64))
            blocks.append(ParameterBlock(str(name), shape, offset, size))
            offset += size
        return cls(tuple(blocks))

    @classmethod
    def from_json(cls, entries: Sequence[Mapping[str, Any]]) -> "ParameterLayout":
        """Read the ``[{"name", "shape", "offset", "size"}, ...]`` list of ``summary.json``."""
        try:
            blocks = tuple(
                ParameterBlock(str(e["name"]), tuple(int(d) for d in e["shape"]), int(e["offset"]), int(e["size"]))
                for e in entries
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f'a parameter layout is a list of {{"name", "shape", "offset", "size"}} entries; cannot read it: {err!r}'
            ) from err
        return cls(blocks)

    def to_json(self) -> list[dict[str, Any]]:
        return [block.to_json() for block in self.blocks]

    @property
    def num_params(self) -> int:
        return sum(block.size for block in self.blocks)

    @property
    def names(self) -> list[str]:
        return [block.name for block in self.blocks]

    def subset(self, names: Iterable[str]) -> "ParameterLayout":
        """The layout of the vector made of the named tensors only, in this layout's order,
        offsets from 0: a parameter block's own layout."""
        chosen = set(names)
        return ParameterLayout.from_shapes((block.name, block.shape) for block in self.blocks if block.name in chosen)

    def split(self, vector: Any) -> dict[str, np.ndarray]:
        """``{name: array of the block's shape}``; the arrays are views of ``vector``."""
        return split_vector(vector, self)


LayoutLike = Union[ParameterLayout, Sequence[Mapping[str, Any]]]


def as_layout(layout: LayoutLike) -> ParameterLayout:
    """A :class:`ParameterLayout` from itself or from its JSON list."""
    return layout if isinstance(layout, ParameterLayout) else ParameterLayout.from_json(layout)


def split_vector(vector: Any, layout: LayoutLike) -> dict[str, np.ndarray]:
    """Split a flat parameter vector (float[n]) into named arrays of the parameters' shapes.

    Args:
      vector: a flat vector over the parameters, e.g. a Ritz vector or a row of
        ``lanczos_vec_<d>.npy``.
      layout: a :class:`ParameterLayout`, or the ``"parameter_layout"`` list of
        ``summary.json``.

    Returns:
      ``{name: array}`` in layout order; each array is a view of ``vector`` (copy it before
      writing).
    """
    layout = as_layout(layout)
    array = np.asarray(vector)
    if array.ndim != 1 or array.size != layout.num_params:
        raise ValueError(
            f"expected a flat vector of {layout.num_params} parameters, got an array of shape {array.shape}"
        )
    return {b.name: array[b.offset : b.offset + b.size].reshape(b.shape) for b in layout.blocks}


def unique_names(names: Sequence[str]) -> list[str]:
    """``names`` with repeats suffixed ``#1``, ``#2``, ... (in order), so every block is addressable."""
    counts: dict[str, int] = {}
    taken = set(names)
    unique = []
    for name in names:
        if name not in counts:
            counts[name] = 0
            unique.append(name)
            continue
        while True:
            counts[name] += 1
            candidate = f"{name}#{counts[name]}"
            if candidate not in taken:
                break
        taken.add(candidate)
        unique.append(candidate)
    return unique
