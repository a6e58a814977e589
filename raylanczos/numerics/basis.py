"""Storage for a Lanczos basis, and the O(n·k) sweeps of a step over it.

A basis V is float64 (rows, n), one vector per row, kept in memory or memory-mapped to
an ``.npy`` file (``numpy.memmap``) when n·m·8 bytes exceed what the driver should hold.
:class:`BasisSweeps` computes the products with V that re-orthogonalisation needs, over
fixed spans of columns, so the numbers do not depend on how many threads run them.
This module depends on numpy only.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np

from raylanczos.choices import check_int

#: The basis products are computed span by span over this many contiguous spans of
#: columns, whatever the number of threads, so their bits do not depend on it.
SWEEP_SPANS = 64


def allocate_basis(rows: int, dim: int, path: str | os.PathLike | None = None) -> np.ndarray:
    """Zeroed float64 (rows, dim) storage for a Lanczos basis.

    With ``path`` the basis lives on disk through ``numpy.memmap`` (for n·m·8 bytes beyond
    memory); the file is created or overwritten. Results are identical either way.
    """
    check_int("rows", rows)
    check_int("dim", dim)
    if path is None:
        return np.zeros((rows, dim), dtype=np.float64)
    return np.lib.format.open_memmap(Path(path), mode="w+", dtype=np.float64, shape=(rows, dim))


def open_basis(path: str | os.PathLike) -> np.ndarray:
    """Reopen an on-disk array written by :func:`allocate_basis` for update (no copy).

    Raises ``ValueError`` for a file shorter than its header promises (numpy would
    silently zero-extend it).
    """
    path = Path(path)
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(handle)
        expected = handle.tell() + int(np.prod(shape)) * np.dtype(dtype).itemsize
    size = path.stat().st_size
    if size < expected:
        raise ValueError(f"{path} is truncated: {size} bytes, its header needs {expected}")
    return np.lib.format.open_memmap(path, mode="r+")


class BasisSweeps:
    """The O(n·k) products of a step with the basis V (k, n): projecting a vector out of it
    and combining its rows, over :data:`SWEEP_SPANS` fixed spans of columns.

    Each span's product is one BLAS-2 call (numpy ``matmul`` on a strided view, no copy);
    the spans' partial V w are added in span order. With ``threads`` = 1 the spans run on
    the calling thread (and BLAS may thread each call itself); with ``threads`` = t > 1 on
    t threads of their own, each call single-threaded (numpy releases the GIL). The
    arithmetic is the same either way, so the results are bit-identical for any t (a run
    resumed on another layout, or moved to other nodes, gives the same numbers). Threads
    are meant for a driver whose every core also runs a worker: the sweep then takes an
    equal share of each core rather than delaying the one worker whose core it would run
    on; waiting threads block, they do not spin. Use it as a context manager, or call
    :meth:`close`, to end the threads.
    """

    def __init__(self, threads: int = 1):
        self.threads = check_int("threads", threads)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="basis-sweep") if threads > 1 else None

    def project_out(self, basis: np.ndarray, w: np.ndarray) -> np.ndarray:
        """One classical Gram–Schmidt pass, in place: ``w -= Vᵀ (V w)``; returns ``V w``,
        float64[k] (``basis`` V float64 (k, n), rows possibly strided; ``w`` float64[n])."""
        coefficients = self.dots(basis, w)
        self.subtract(basis, w, coefficients)
        return coefficients

    def dots(self, basis: np.ndarray, w: np.ndarray) -> np.ndarray:
        """``V w``, float64[k]: the spans' partial products added in span order."""
        basis = np.asarray(basis)
        partials = self._map(lambda span: basis[:, span] @ w[span], column_spans(w.shape[0]))
        coefficients = partials[0].copy()
        for partial in partials[1:]:
            coefficients += partial
        return coefficients

    def subtract(self, basis: np.ndarray, w: np.ndarray, coefficients: np.ndarray) -> None:
        """``w -= Vᵀ c`` in place, span by span (``coefficients`` c float64[k])."""
        basis = np.asarray(basis)

        def subtract_span(span: slice) -> None:
            w[span] -= basis[:, span].T @ coefficients

        self._map(subtract_span, column_spans(w.shape[0]))

    def combine(self, basis: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
        """``Vᵀ x``, float64[n], for V = ``basis`` (k, n) and x = ``coefficients`` float64[k]."""
        basis = np.asarray(basis)
        out = np.empty(basis.shape[1], dtype=np.float64)

        def combine_span(span: slice) -> None:
            np.matmul(basis[:, span].T, coefficients, out=out[span])

        self._map(combine_span, column_spans(basis.shape[1]))
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()

    def __enter__(self) -> "BasisSweeps":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _map(self, function: Callable[[slice], Any], spans: tuple[slice, ...]) -> list[Any]:
        if self._pool is None:
            return [function(span) for span in spans]
        return list(self._pool.map(function, spans))


@functools.lru_cache(maxsize=64)
def column_spans(dim: int) -> tuple[slice, ...]:
    """:data:`SWEEP_SPANS` contiguous spans covering ``range(dim)`` (some empty if dim is smaller)."""
    bounds = [dim * i // SWEEP_SPANS for i in range(SWEEP_SPANS + 1)]
    return tuple(slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]))


def project_out(basis: np.ndarray, w: np.ndarray) -> np.ndarray:
    """One classical Gram–Schmidt pass, in place: ``w -= Vᵀ (V w)``; returns ``V w``.

    ``basis`` is V, float64 (k, n) (rows are basis vectors); ``w`` float64[n] is updated
    in place. BLAS-2 products over fixed spans of columns on this thread
    (:meth:`BasisSweeps.project_out`): no Python loop over the basis vectors.
    """
    return BasisSweeps().project_out(basis, w)
