"""The spectral density plot, on a log y-axis as in Ghorbani et al. (2019)."""

from __future__ import annotations

import os
from typing import BinaryIO

import numpy as np


def plot_density(
    grid: np.ndarray,
    density: np.ndarray,
    target: str | os.PathLike | BinaryIO,
    *,
    title: str = "Hessian eigenvalue density",
    floor_ratio: float = 1e-10,
) -> None:
    """Write a PNG of ``density`` over ``grid`` (both float64[G]) to a path or binary file.

    Values below ``floor_ratio`` · max(density) are clipped so the log axis stays readable.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floor = float(np.max(density)) * floor_ratio
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.semilogy(grid, np.maximum(density, floor), color="tab:blue", linewidth=1.0)
    ax.set_ylim(bottom=floor)
    ax.set_xlabel("eigenvalue λ")
    ax.set_ylabel("density (log scale)")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    fig.savefig(target, format="png")
    plt.close(fig)
