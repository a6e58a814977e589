"""Lanczos tridiagonalisation with full re-orthogonalisation, in float64.

For a symmetric operator A of dimension n, m steps of Lanczos from a unit start vector
v₀ build an orthonormal Krylov basis V = [v₀ … v_{m−1}] (m × n here, one vector per row)
and a symmetric tridiagonal T (diagonal α, off-diagonal β) with the Lanczos relation

    A Vᵀ = Vᵀ T + β_{m−1} v_m e_{m−1}ᵀ.

Each step re-orthogonalises the new vector against the whole basis by classical
Gram–Schmidt as BLAS-2 passes ``w -= Vᵀ(V w)`` (no Python loop over basis vectors): one
pass, and a second only when the first removed more than 1 − 1/√2 of the norm (the DGKS
criterion; "twice is enough", Giraud, Langou & Rozložník 2005).

The state advances one matrix-vector product at a time, so a driver can compute the
product anywhere (a Ray worker group, a GPU), checkpoint between steps, and resume. The
next vector to multiply is known before the O(n·k) re-orthogonalisation (look-ahead, see
:class:`LanczosState`), so a driver can overlap that work with the next product.
This module depends on numpy and scipy only.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

Matvec = Callable[[np.ndarray], np.ndarray]

#: A draw ends early (an invariant subspace was found) when the new off-diagonal β_j falls
#: below this fraction of the spectral scale seen so far (the largest ‖A v_i‖, i ≤ j).
DEFAULT_BREAKDOWN_RTOL = 1e-10

#: Re-orthogonalise a second time when the first pass leaves less than this fraction of
#: the vector's norm (the criterion of Daniel, Gragg, Kaufman & Stewart 1976).
DGKS_ETA = 2**-0.5

#: Below this ρ (the norm left after re-orthogonalising the look-ahead vector u) the next
#: product is taken of v_{j+1} itself instead of being corrected from u's (see LanczosState).
LOOKAHEAD_MIN_RHO = 0.5

START_DISTRIBUTIONS = ("gaussian", "rademacher")


def start_vector(dim: int, *, seed: int, draw: int = 0, distribution: str = "gaussian") -> np.ndarray:
    """Unit random start vector for one SLQ draw, float64[dim].

    The generator is ``numpy.random.default_rng([seed, draw])``: independent across draws,
    reproducible bit for bit, and never the global RNG.

    Args:
      dim: n, the operator's dimension (> 0).
      seed: the run's seed (≥ 0).
      draw: the draw index d (≥ 0).
      distribution: ``"gaussian"`` (entries N(0, 1)) or ``"rademacher"`` (entries ±1),
        normalised to unit norm either way.
    """
    _check_positive_int("dim", dim)
    if distribution not in START_DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {START_DISTRIBUTIONS}, got {distribution!r}")
    if seed < 0 or draw < 0:
        raise ValueError(f"seed and draw must be >= 0, got seed={seed!r}, draw={draw!r}")
    rng = np.random.default_rng([seed, draw])
    if distribution == "gaussian":
        v = rng.standard_normal(dim)
    else:
        v = rng.integers(0, 2, size=dim).astype(np.float64) * 2.0 - 1.0
    return v / np.linalg.norm(v)


def allocate_basis(rows: int, dim: int, path: str | os.PathLike | None = None) -> np.ndarray:
    """Zeroed float64 (rows, dim) storage for a Lanczos basis.

    With ``path`` the basis lives on disk through ``numpy.memmap`` (for n·m·8 bytes beyond
    memory); the file is created or overwritten. Results are identical either way.
    """
    _check_positive_int("rows", rows)
    _check_positive_int("dim", dim)
    if path is None:
        return np.zeros((rows, dim), dtype=np.float64)
    return np.lib.format.open_memmap(Path(path), mode="w+", dtype=np.float64, shape=(rows, dim))


def open_basis(path: str | os.PathLike) -> np.ndarray:
    """Reopen an on-disk basis written by :func:`allocate_basis` for update (no copy).

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


def as_matvec(operator: Any, dim: int | None = None) -> tuple[Matvec, int]:
    """Normalise a dense symmetric matrix, an object with ``matvec``/``dim``, or a callable.

    Returns ``(matvec, dim)``. ``dim`` is required for a bare callable.
    """
    if isinstance(operator, np.ndarray):
        if operator.ndim != 2 or operator.shape[0] != operator.shape[1]:
            raise ValueError(f"a matrix operator must be square, got shape {operator.shape}")
        if dim is not None and dim != operator.shape[0]:
            raise ValueError(f"dim={dim!r} does not match the matrix of shape {operator.shape}")
        matrix = np.asarray(operator, dtype=np.float64)
        return (lambda v: matrix @ v), matrix.shape[0]
    if hasattr(operator, "matvec") and hasattr(operator, "dim"):
        if dim is not None and dim != operator.dim:
            raise ValueError(f"dim={dim!r} does not match the operator's dim={operator.dim!r}")
        return operator.matvec, int(operator.dim)
    if callable(operator):
        if dim is None:
            raise ValueError("dim is required when the operator is a plain callable")
        return operator, dim
    raise TypeError(f"expected a square ndarray, an object with matvec and dim, or a callable; got {type(operator).__name__}")


#: The basis products are computed span by span over this many contiguous spans of
#: columns, whatever the number of threads, so their bits do not depend on it.
SWEEP_SPANS = 64


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
    on; waiting threads block, they do not spin. :meth:`close` ends the threads.
    """

    def __init__(self, threads: int = 1):
        _check_positive_int("threads", threads)
        self.threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="basis-sweep") if threads > 1 else None

    def project_out(self, basis: np.ndarray, w: np.ndarray) -> np.ndarray:
        """One classical Gram–Schmidt pass, in place: ``w -= Vᵀ (V w)``; returns ``V w``,
        float64[k] (``basis`` V float64 (k, n) C-contiguous, ``w`` float64[n])."""
        spans = _column_spans(w.shape[0])
        partials = self._map(lambda span: basis[:, span] @ w[span], spans)
        coefficients = partials[0].copy()
        for partial in partials[1:]:
            coefficients += partial

        def subtract(span: slice) -> None:
            w[span] -= basis[:, span].T @ coefficients

        self._map(subtract, spans)
        return coefficients

    def combine(self, basis: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
        """``Vᵀ x``, float64[n], for V = ``basis`` (k, n) and x = ``coefficients`` float64[k]."""
        out = np.empty(basis.shape[1], dtype=np.float64)

        def combine_span(span: slice) -> None:
            np.matmul(basis[:, span].T, coefficients, out=out[span])

        self._map(combine_span, _column_spans(basis.shape[1]))
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()

    def __enter__(self) -> "BasisSweeps":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _map(self, function: Callable[[slice], Any], spans: list[slice]) -> list[Any]:
        if self._pool is None:
            return [function(span) for span in spans]
        return list(self._pool.map(function, spans))


def _column_spans(dim: int) -> list[slice]:
    """:data:`SWEEP_SPANS` contiguous spans covering ``range(dim)`` (some empty if dim is smaller)."""
    bounds = [dim * i // SWEEP_SPANS for i in range(SWEEP_SPANS + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


@dataclass
class LanczosState:
    """The resumable state of one Lanczos run (one SLQ draw), stepped one product at a time.

    A step has two halves. :meth:`accept` folds the product A·:attr:`vector` into T (α_j)
    and forms the next direction u, the three-term residual normalised, which can be
    multiplied at once. :meth:`reorthogonalize` then projects u against the whole basis
    (classical Gram–Schmidt, a second pass only when the first leaves less than
    :data:`DGKS_ETA` of its norm), giving β_j and the exact basis vector
    v_{j+1} = (u − V c)/ρ. Because A V c = V T̂ c up to the Lanczos relation's rounding,
    the product of v_{j+1} follows from that of u without a second HVP:

        A v_{j+1} = (A u − V T̂ c) / ρ,

    and :attr:`correction` holds V T̂ c. So the driver can start the next HVP before it
    re-orthogonalises, and the O(n·k) projection overlaps the HVP instead of adding to it.
    The error this adds is ‖c‖·ε‖A‖, with ‖c‖ itself at the rounding level of the
    three-term recurrence; when ρ < :data:`LOOKAHEAD_MIN_RHO` (u mostly inside the basis,
    close to an invariant subspace) :attr:`vector` becomes v_{j+1} itself and its product
    is taken afresh. :meth:`advance` does both halves.

    Attributes:
      alpha: float64[m], diagonal of T; entries ≥ ``steps`` are unset (zero).
      beta: float64[m], ``beta[j]`` = ‖residual‖ after step j; ``beta[:steps-1]`` is the
        off-diagonal of T and ``beta[steps-1]`` the norm of the final residual.
      basis: float64[m + 1, n] (in memory or a memmap); rows ``[:steps + 1]`` are the
        orthonormal Krylov basis v₀ … v_steps (row m is the final residual direction;
        zero after a breakdown).
      pending: float64[n], the unit vector u to multiply next.
      correction: float64[n], V T̂ c, subtracted from the product of ``pending`` (zero
        when ``pending`` is a basis vector itself).
      pending_norm: ρ, the norm of u's component outside the basis before it (1 for v₀).
      steps: Lanczos steps completed (products accepted).
      scale: the largest ‖A v_j‖ seen, the spectral scale for the breakdown test.
      breakdown: True when the run ended early on an invariant subspace.
      breakdown_rtol: β_j < breakdown_rtol · scale is a breakdown.
      second_passes: steps whose re-orthogonalisation needed the second pass.
      fresh_products: steps whose next vector was multiplied afresh (ρ too small).
      sweeps: how the basis products run (:class:`BasisSweeps`; not part of the state).
    """

    alpha: np.ndarray
    beta: np.ndarray
    basis: np.ndarray
    pending: np.ndarray
    correction: np.ndarray
    pending_norm: float = 1.0
    steps: int = 0
    scale: float = 0.0
    breakdown: bool = False
    breakdown_rtol: float = DEFAULT_BREAKDOWN_RTOL
    second_passes: int = 0
    fresh_products: int = 0
    _direction_norm: float | None = None  # ‖three-term residual‖ between accept and reorthogonalize
    sweeps: BasisSweeps = field(default_factory=BasisSweeps, repr=False, compare=False)

    @classmethod
    def start(
        cls,
        v0: np.ndarray,
        order: int,
        *,
        basis: np.ndarray | None = None,
        breakdown_rtol: float = DEFAULT_BREAKDOWN_RTOL,
    ) -> "LanczosState":
        """Begin a run of ``order`` steps (clamped to n) from ``v0`` (normalised here).

        ``basis``, if given, is preallocated float64 storage of shape (≥ m + 1, n), e.g.
        from :func:`allocate_basis` with a path; otherwise the basis is kept in memory.
        """
        v0 = np.asarray(v0)
        if v0.ndim != 1 or v0.size == 0:
            raise ValueError(f"v0 must be a non-empty 1-D vector, got shape {v0.shape}")
        dim = v0.shape[0]
        _check_positive_int("order", order)
        order = min(order, dim)
        norm = float(np.linalg.norm(v0))
        if not np.isfinite(norm) or norm == 0.0:
            raise ValueError(f"v0 must have a finite, non-zero norm, got norm {norm!r}")
        if basis is None:
            basis = allocate_basis(order + 1, dim)
        elif basis.dtype != np.float64 or basis.ndim != 2 or basis.shape[1] != dim or basis.shape[0] < order + 1:
            raise ValueError(
                f"basis must be float64 of shape (>= {order + 1}, {dim}), got {basis.dtype} {basis.shape}"
            )
        basis[0] = v0 / norm
        return cls(
            alpha=np.zeros(order, dtype=np.float64),
            beta=np.zeros(order, dtype=np.float64),
            basis=basis,
            pending=np.array(basis[0]),
            correction=np.zeros(dim, dtype=np.float64),
            breakdown_rtol=breakdown_rtol,
        )

    @property
    def dim(self) -> int:
        return self.basis.shape[1]

    @property
    def order(self) -> int:
        return self.alpha.shape[0]

    @property
    def done(self) -> bool:
        return self.breakdown or (self.steps >= self.order and self._direction_norm is None)

    @property
    def awaiting_reorthogonalization(self) -> bool:
        """True between :meth:`accept` and :meth:`reorthogonalize`."""
        return self._direction_norm is not None

    @property
    def vector(self) -> np.ndarray:
        """The unit vector to multiply next, float64[n] (a read-only view of :attr:`pending`)."""
        return _read_only(self.pending)

    def advance(self, product: np.ndarray) -> None:
        """Consume ``product`` = A · :attr:`vector` and complete one Lanczos step.

        ``product`` is float64[n]; it is copied, never modified. Raises ``ValueError`` for
        a wrong shape or non-finite entries, and ``RuntimeError`` when the run is done.
        """
        self.accept(product)
        if self.awaiting_reorthogonalization:
            self.reorthogonalize()

    def accept(self, product: np.ndarray) -> None:
        """First half of a step, O(n): α_j, and the next vector to multiply in :attr:`vector`.

        ``product`` = A · :attr:`vector`, float64[n], copied. After this, unless the run
        broke down, call :meth:`reorthogonalize` (while the next product is computed).
        """
        if self.done:
            raise RuntimeError(f"the Lanczos run is complete after {self.steps} steps")
        if self.awaiting_reorthogonalization:
            raise RuntimeError(f"step {self.steps - 1} still awaits reorthogonalize()")
        j = self.steps
        w = np.array(product, dtype=np.float64, copy=True)
        if w.shape != (self.dim,):
            raise ValueError(f"matvec returned shape {w.shape}, expected ({self.dim},)")
        if not np.all(np.isfinite(w)):
            bad = int(np.size(w) - np.count_nonzero(np.isfinite(w)))
            raise ValueError(f"matvec returned {bad} non-finite entries at Lanczos step {j}")
        w -= self.correction
        w /= self.pending_norm  # now A v_j
        self.scale = max(self.scale, float(np.linalg.norm(w)))
        if j > 0:
            w -= self.beta[j - 1] * self.basis[j - 1]
        v = self.basis[j]
        self.alpha[j] = float(v @ w)
        w -= self.alpha[j] * v
        self.steps = j + 1
        norm = float(np.linalg.norm(w))
        if norm <= self.breakdown_rtol * self.scale:
            self._end(j)
            return
        w /= norm
        self.pending = w
        self._direction_norm = norm

    def reorthogonalize(self) -> bool:
        """Second half of a step, O(n·k): β_j, v_{j+1} and the correction for the next product.

        Returns True when :attr:`vector` was replaced by v_{j+1}, so that a product of the
        previous :attr:`vector` already started must be discarded and taken again.
        """
        if not self.awaiting_reorthogonalization:
            raise RuntimeError("reorthogonalize() follows accept()")
        j = self.steps - 1
        basis = self.basis[: j + 1]
        w = self.pending.copy()
        coefficients = self.sweeps.project_out(basis, w)
        rho = float(np.linalg.norm(w))
        if rho < DGKS_ETA:
            coefficients += self.sweeps.project_out(basis, w)
            rho = float(np.linalg.norm(w))
            self.second_passes += 1
        beta = self._direction_norm * rho
        self._direction_norm = None
        self.beta[j] = beta
        if beta <= self.breakdown_rtol * self.scale:
            self._end(j)
            return False
        w /= rho
        self.basis[j + 1] = w
        if self.steps >= self.order:
            return False
        if rho < LOOKAHEAD_MIN_RHO:
            self.pending, self.pending_norm = w.copy(), 1.0
            self.correction = np.zeros(self.dim, dtype=np.float64)
            self.fresh_products += 1
            return True
        mixed = tridiagonal_times(self.alpha[: j + 1], self.beta[: j + 1], coefficients)
        self.correction = self.sweeps.combine(self.basis[: j + 2], mixed)
        self.pending_norm = rho
        return False

    def _end(self, j: int) -> None:
        """The residual after step j vanished: an invariant subspace (or the last step)."""
        self.breakdown = self.steps < self.order
        self.beta[j] = 0.0
        self.basis[self.steps] = 0.0
        self._direction_norm = None

    def tridiagonal(self) -> tuple[np.ndarray, np.ndarray]:
        """(α, β) of T after the steps completed: float64[k] and float64[k − 1] copies."""
        k = self.steps
        return self.alpha[:k].copy(), self.beta[: max(k - 1, 0)].copy()

    def snapshot(self) -> dict[str, np.ndarray]:
        """Everything but the basis, as arrays that ``numpy.savez`` can store safely.

        Includes the n-vectors :attr:`pending` and :attr:`correction`, so a resumed run
        multiplies exactly the vector the interrupted one would have. They are read-only
        views, not copies (a step replaces these arrays, never writes into them), so a
        checkpoint of a large model does not copy 2·n·8 bytes per step before writing them.
        """
        if self.awaiting_reorthogonalization:
            raise RuntimeError("snapshot() between accept() and reorthogonalize()")
        return {
            "alpha": self.alpha.copy(),
            "beta": self.beta.copy(),
            "pending": _read_only(self.pending),
            "correction": _read_only(self.correction),
            "pending_norm": np.float64(self.pending_norm),
            "steps": np.int64(self.steps),
            "scale": np.float64(self.scale),
            "breakdown": np.bool_(self.breakdown),
            "breakdown_rtol": np.float64(self.breakdown_rtol),
            "second_passes": np.int64(self.second_passes),
            "fresh_products": np.int64(self.fresh_products),
            "dim": np.int64(self.dim),
        }

    @classmethod
    def restore(cls, snapshot: dict[str, np.ndarray], basis: np.ndarray) -> "LanczosState":
        """Rebuild a state from :meth:`snapshot` and its basis (validated, no copy)."""
        alpha = np.asarray(snapshot["alpha"], dtype=np.float64)
        beta = np.asarray(snapshot["beta"], dtype=np.float64)
        steps = int(snapshot["steps"])
        dim = int(snapshot["dim"])
        order = alpha.shape[0]
        if beta.shape != alpha.shape or alpha.ndim != 1:
            raise ValueError(f"snapshot alpha/beta shapes differ: {alpha.shape} vs {beta.shape}")
        if not 0 <= steps <= order:
            raise ValueError(f"snapshot steps={steps} outside [0, {order}]")
        if basis.dtype != np.float64 or basis.shape[1:] != (dim,) or basis.shape[0] < order + 1:
            raise ValueError(
                f"basis must be float64 of shape (>= {order + 1}, {dim}), got {basis.dtype} {basis.shape}"
            )
        vectors = {name: np.array(snapshot[name], dtype=np.float64) for name in ("pending", "correction")}
        for name, vector in vectors.items():
            if vector.shape != (dim,):
                raise ValueError(f"snapshot {name} vector has shape {vector.shape}, expected ({dim},)")
        return cls(
            alpha=alpha.copy(),
            beta=beta.copy(),
            basis=basis,
            pending=vectors["pending"],
            correction=vectors["correction"],
            pending_norm=float(snapshot["pending_norm"]),
            steps=steps,
            scale=float(snapshot["scale"]),
            breakdown=bool(snapshot["breakdown"]),
            breakdown_rtol=float(snapshot["breakdown_rtol"]),
            second_passes=int(snapshot["second_passes"]),
            fresh_products=int(snapshot["fresh_products"]),
        )


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


def relation_residual(operator: Any, state: LanczosState) -> float:
    """‖A Vᵀ − Vᵀ T − β_{k−1} v_k e_{k−1}ᵀ‖₂ of a run's k = ``steps`` vectors (a diagnostic).

    ``operator`` is anything :func:`as_matvec` takes; it is applied to every basis vector
    again, so this costs k more products.
    """
    apply, _ = as_matvec(operator, state.dim)
    k = state.steps
    alpha, beta = state.tridiagonal()
    t = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
    v = np.asarray(state.basis[:k])
    residual = np.stack([apply(row) for row in v], axis=1) - v.T @ t
    residual[:, -1] -= state.beta[k - 1] * np.asarray(state.basis[k])
    return float(np.linalg.norm(residual, 2))


def tridiagonal_times(alpha: np.ndarray, beta: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """T̂ c for the (j + 2) × (j + 1) tridiagonal T̂ of steps 0…j, float64[j + 2].

    ``alpha`` and ``beta`` are float64[j + 1] (``beta[j]`` couples v_j to v_{j+1}),
    ``coefficients`` c is float64[j + 1]. Since A v_i = β_{i−1} v_{i−1} + α_i v_i + β_i v_{i+1},
    A V c = V_{j+1} (T̂ c) up to the Lanczos relation's rounding.
    """
    j = coefficients.shape[0] - 1
    mixed = np.zeros(j + 2, dtype=np.float64)
    mixed[: j + 1] += alpha * coefficients
    mixed[1:] += beta * coefficients
    mixed[:j] += beta[:j] * coefficients[1:]
    return mixed


def reorthogonalize(basis: np.ndarray, w: np.ndarray) -> np.ndarray:
    """One classical Gram–Schmidt pass, in place: ``w -= Vᵀ (V w)``; returns ``V w``.

    ``basis`` is V, float64 (k, n) C-contiguous (rows are basis vectors); ``w`` float64[n]
    is updated in place. BLAS-2 products over fixed spans of columns, on this thread
    (:meth:`BasisSweeps.project_out`): no Python loop over the basis vectors.
    """
    return BasisSweeps().project_out(basis, w)


@dataclass(frozen=True)
class LanczosResult:
    """One run's tridiagonal: ``alpha`` float64[k], ``beta`` float64[k − 1], k = steps.

    ``basis`` is float64 (k, n) when requested (rows are the Lanczos vectors), else None.
    ``residual_norm`` is β_{k−1}, the norm of the final residual (0 at breakdown).
    """

    alpha: np.ndarray
    beta: np.ndarray
    steps: int
    breakdown: bool
    residual_norm: float
    basis: np.ndarray | None = None


def lanczos(
    matvec: Any,
    dim: int | None = None,
    order: int = 90,
    *,
    seed: int = 0,
    draw: int = 0,
    v0: np.ndarray | None = None,
    distribution: str = "gaussian",
    basis_path: str | os.PathLike | None = None,
    return_basis: bool = False,
    breakdown_rtol: float = DEFAULT_BREAKDOWN_RTOL,
) -> LanczosResult:
    """Run ``order`` Lanczos steps (clamped to ``dim``) on a symmetric operator.

    Args:
      matvec: float64[n] → float64[n], or a square matrix, or an object with
        ``matvec`` and ``dim``.
      dim: n (> 0); taken from the operator when it has one.
      order: m (> 0), the number of steps; clamped to n.
      seed, draw: seed the start vector (see :func:`start_vector`) unless ``v0`` is given.
      v0: an explicit start vector (normalised here; must have non-zero norm).
      distribution: ``"gaussian"`` or ``"rademacher"`` start vector.
      basis_path: keep the basis on disk at this path (``numpy.memmap``) instead of memory.
      return_basis: return the basis as float64 (k, n) (a memmap view with basis_path).
      breakdown_rtol: see :data:`DEFAULT_BREAKDOWN_RTOL`.
    """
    _check_positive_int("order", order)
    if dim is not None:
        _check_positive_int("dim", dim)
    apply, dim = as_matvec(matvec, dim)
    if v0 is None:
        v0 = start_vector(dim, seed=seed, draw=draw, distribution=distribution)
    elif np.shape(v0) != (dim,):
        raise ValueError(f"v0 must have shape ({dim},), got {np.shape(v0)}")
    steps = min(order, dim)
    basis = allocate_basis(steps + 1, dim, basis_path)
    state = LanczosState.start(v0, order, basis=basis, breakdown_rtol=breakdown_rtol)
    while not state.done:
        state.advance(apply(state.vector))
    alpha, beta = state.tridiagonal()
    return LanczosResult(
        alpha=alpha,
        beta=beta,
        steps=state.steps,
        breakdown=state.breakdown,
        residual_norm=float(state.beta[state.steps - 1]),
        basis=state.basis[: state.steps] if return_basis else None,
    )


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
