"""Parameter blocks: subsets of the flat parameter vector whose curvature has its own spectrum.

A block b is a set of the parameter layout's tensors, chosen by glob patterns over their
names (``"0/*"``, ``"*conv1*"``) or one per top-level layer or module. Its operator is the
restriction H_bb of the full operator: vectors are zero outside b and products are
restricted to b, so its dimension is |b| and its vectors follow b's part of the layout.
numpy only.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

import numpy as np

from raylanczos.problem.definition import ProblemError
from raylanczos.problem.layout import ParameterLayout


@dataclass(frozen=True)
class BlockSelection:
    """One block: its name (a directory name), how it was chosen, its tensors and positions.

    ``indices``: int64[|b|], the block's positions in the flat parameter vector, in
    layout order.
    """

    name: str
    pattern: str
    parameters: tuple[str, ...]
    indices: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.indices.size)


#: How many of the layout's names an error message lists.
LISTED_NAMES = 30


def select_blocks(layout: ParameterLayout, patterns: tuple[str, ...] = (), per_layer: bool = False) -> list[BlockSelection]:
    """The blocks that ``patterns`` (or ``per_layer``) choose from ``layout``; none for neither.

    Each pattern is an ``fnmatch`` glob over the whole parameter names (``*`` also matches
    ``/``), case-sensitive, and gives one block of the tensors it matches, in layout order,
    named :func:`directory_name` of the pattern. ``per_layer`` gives one block per
    :func:`top_level_groups` group, named by the group. Names that collide get ``-2``,
    ``-3``, .... A pattern that matches no parameter is refused, naming the layout's names.
    """
    if per_layer and patterns:
        raise ProblemError(f"choose blocks by patterns or per layer, not both; got patterns {list(patterns)} and per_layer")
    if per_layer:
        groups = top_level_groups(layout.names)
        chosen = [(directory_name(name), name, members) for name, members in groups.items()]
    else:
        chosen = []
        for pattern in patterns:
            members = [name for name in layout.names if fnmatch.fnmatchcase(name, pattern)]
            if not members:
                raise ProblemError(f"block pattern {pattern!r} matches no parameter; the parameters are {_listed(layout.names)}")
            chosen.append((directory_name(pattern), pattern, members))
    blocks, taken = [], set()
    by_name = {block.name: block for block in layout.blocks}
    for name, pattern, members in chosen:
        unique = name
        suffix = 1
        while unique in taken:
            suffix += 1
            unique = f"{name}-{suffix}"
        taken.add(unique)
        spans = [np.arange(by_name[m].offset, by_name[m].offset + by_name[m].size) for m in members]
        blocks.append(BlockSelection(unique, pattern, tuple(members), np.concatenate(spans).astype(np.int64)))
    return blocks


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:LISTED_NAMES])
    return shown if len(names) <= LISTED_NAMES else f"{shown}, ... ({len(names)} in all)"


def top_level_groups(names: list[str]) -> dict[str, list[str]]:
    """Parameter names grouped by their top-level layer or module: the first ``/``-separated
    part that differs between names (a Keras model's own name, shared by all, is skipped).

    ``["0/b", "0/w", "1/b"]`` → ``{"0": ["0/b", "0/w"], "1": ["1/b"]}``;
    ``["mlp/hidden_0/kernel", "mlp/hidden_0/bias", "mlp/logits/kernel"]`` →
    ``{"hidden_0": [...2 names], "logits": [...]}``. Groups keep the layout's order.
    """
    parts = [name.split("/") for name in names]
    depth = 0
    while all(len(p) > depth + 1 for p in parts) and len({p[depth] for p in parts}) == 1:
        depth += 1
    groups: dict[str, list[str]] = {}
    for name, p in zip(names, parts):
        groups.setdefault(p[depth], []).append(name)
    return groups


def directory_name(pattern: str) -> str:
    """A file-system-safe name for a block's output directory: ``"0/*"`` → ``"0_all"``."""
    text = pattern.replace("*", "all").replace("?", "any")
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.")
    return text or "block"
