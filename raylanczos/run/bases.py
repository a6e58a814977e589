"""The slots' Lanczos bases: in the checkpoint (memory-mapped), in RAM within the budget,
or memory-mapped to temporary files beyond it."""

from __future__ import annotations

import logging
import os
import tempfile

import numpy as np

from raylanczos.numerics.basis import allocate_basis
from raylanczos.outputs.progress import byte_size
from raylanczos.run.checkpoint import Checkpoint
from raylanczos.run.plan import RunPlan

logger = logging.getLogger("raylanczos")


def new_bases(plan: RunPlan, checkpoint: Checkpoint | None, basis_memory_gb: float) -> list[np.ndarray]:
    """B zeroed float64 (m + 1, n) bases, one per slot, for the largest part.

    With a checkpoint they are memory-mapped in its directory (so that a resume finds
    them); without one, held in RAM when B·(m+1)·n·8 bytes fit ``basis_memory_gb``, else
    memory-mapped to unlinked temporary files.
    """
    block_size, rows, dim, each = plan.block_size, plan.basis_rows, plan.basis_dim, plan.basis_bytes
    sizes = f"{block_size} × {byte_size(each)} = {byte_size(block_size * each)}"
    if checkpoint is not None:
        logger.info("bases: %s (B × n·(m+1)·8 bytes), memory-mapped in %s", sizes, checkpoint.directory)
        return checkpoint.new_bases(block_size, rows, dim)
    if block_size * each / 1e9 <= basis_memory_gb:
        logger.info("bases: %s (B × n·(m+1)·8 bytes) in memory", sizes)
        return [allocate_basis(rows, dim) for _ in range(block_size)]
    bases = []
    for _ in range(block_size):
        handle, path = tempfile.mkstemp(prefix="raylanczos-basis-", suffix=".npy")
        os.close(handle)
        bases.append(allocate_basis(rows, dim, path))
        os.unlink(path)  # the mapping keeps the file until the basis is released
    logger.info(
        "bases: %s > basis_memory_gb %g: memory-mapped to temporary files in %s",
        sizes, basis_memory_gb, tempfile.gettempdir(),
    )
    return bases
