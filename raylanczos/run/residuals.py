"""True residual norms of Ritz pairs, from one extra pass of products. No Ray."""

from __future__ import annotations

from typing import Any

import numpy as np

from raylanczos.operators.contract import BlockOperator
from raylanczos.run.plan import RunPlan


def residual_norms(operator: BlockOperator, plan: RunPlan, part_name: str, pairs: Any) -> np.ndarray:
    """‖C y − θ y‖ of each kept Ritz pair of a part (float64[K]), from one extra pass of true
    products: the K vectors share the pass, B at a time (zero rows pad the last block)."""
    part = plan.part(part_name)
    count, size = len(pairs.values), operator.block_size
    residuals = np.empty(count)
    for first in range(0, count, size):
        rows = pairs.vectors[first:first + size]
        block = np.zeros((size, operator.dim))
        if part.indices is None:
            block[: len(rows)] = rows
        else:
            block[: len(rows), part.indices] = rows
        products, _ = operator.collect(operator.submit(block))
        products = products[: len(rows)] if part.indices is None else products[: len(rows), part.indices]
        residuals[first:first + len(rows)] = np.linalg.norm(products - pairs.values[first:first + size, None] * rows, axis=1)
    return residuals
