"""Lanczos tridiagonalisation with full re-orthogonalisation, in float64.

For a symmetric operator A of dimension n, m steps of Lanczos from a unit start vector
v₀ build an orthonormal Krylov basis V = [v₀ … v_{m−1}] (m × n here, one vector per row)
and a symmetric tridiagonal T (diagonal α, off-diagonal β) with the Lanczos relation

    A Vᵀ = Vᵀ T + β_{m−1} v_m e_{m−1}ᵀ.

Each step re-orthogonalises the new vector against the whole basis by classical
Gram–Schmidt as BLAS-2 passes ``w -= Vᵀ(V w)`` (:class:`~raylanczos.basis.BasisSweeps`,
no Python loop over basis vectors): one pass, and a second only when the first removed
more than 1 − 1/√2 of the norm (the DGKS criterion; "twice is enough", Giraud, Langou &
Rozložník 2005).

The state (:class:`LanczosState`) is plain data, advanced one matrix-vector product at a
time by :func:`accept` and :func:`reorthogonalize`, with the thresholds in one frozen
:class:`LanczosOptions` and the sweep kernel passed in. So a driver can compute the
product anywhere (a Ray worker group, a GPU), checkpoint between steps (the state
serialises from its fields, :func:`state_arrays`), and resume. The next vector to
multiply is known before the O(n·k) re-orthogonalisation (look-ahead, see :func:`accept`),
so a driver can overlap that work with the next product. This module depends on numpy
and scipy only.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from raylanczos.choices import START_DISTRIBUTIONS, check_choice, check_int
from raylanczos.numerics.basis import BasisSweeps, allocate_basis

Matvec = Callable[[np.ndarray], np.ndarray]

#: The start-vector distributions :func:`start_vector` draws from.


@dataclass(frozen=True)
class LanczosOptions:
    """The thresholds of a Lanczos step (dimensionless).

    Attributes:
      breakdown_rtol: a draw ends early (an invariant subspace was found) when the new
        off-diagonal β_j falls below this fraction of the spectral scale seen so far
        (the largest ‖A v_i‖, i ≤ j).
      dgks_eta: re-orthogonalise a second time when the first pass leaves less than this
        fraction of the vector's norm (Daniel, Gragg, Kaufman & Stewart 1976). Above 1:
        always two passes (classical Gram–Schmidt twice).
      lookahead_min_rho: below this ρ (the norm left after re-orthogonalising the
        look-ahead vector u) the next product is taken of v_{j+1} itself instead of being
        corrected from u's. Above 1: every product is taken afresh.
    """

    breakdown_rtol: float = 1e-10
    dgks_eta: float = 2**-0.5
    lookahead_min_rho: float = 0.5

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"LanczosOptions.{field.name} must be a positive number, got {value!r}")


class Phase(enum.Enum):
    """Where a :class:`LanczosState` is in its step."""

    MULTIPLY = "multiply"  #: waiting for the product of :attr:`LanczosState.pending`
    REORTHOGONALIZE = "reorthogonalize"  #: :func:`accept` done, :func:`reorthogonalize` next
    DONE = "done"  #: all steps taken, or an invariant subspace found


def start_vector(dim: int, *, seed: int, draw: int = 0, distribution: str = "gaussian") -> np.ndarray:
    """Unit random start vector for one SLQ draw, float64[dim].

    The generator is ``numpy.random.default_rng([seed, draw])``: independent across draws,
    reproducible bit for bit, and never the global RNG.

    Args:
      dim: n, the operator's dimension (> 0).
      seed: the run's seed (≥ 0).
      draw: the draw index d (≥ 0).
      distribution: one of :data:`START_DISTRIBUTIONS`: ``"gaussian"`` (entries N(0, 1))
        or ``"rademacher"`` (entries ±1), normalised to unit norm either way.
    """
    check_int("dim", dim)
    check_distribution(distribution)
    if seed < 0 or draw < 0:
        raise ValueError(f"seed and draw must be >= 0, got seed={seed!r}, draw={draw!r}")
    rng = np.random.default_rng([seed, draw])
    if distribution == "gaussian":
        v = rng.standard_normal(dim)
    else:
        v = rng.integers(0, 2, size=dim).astype(np.float64) * 2.0 - 1.0
    return v / np.linalg.norm(v)


def check_distribution(distribution: str) -> str:
    check_choice("distribution", distribution, START_DISTRIBUTIONS)
    return distribution


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


@dataclass
class LanczosState:
    """The resumable state of one Lanczos run (one SLQ draw), as plain data.

    Attributes:
      alpha: float64[m], diagonal of T; entries ≥ ``steps`` are unset (zero).
      beta: float64[m], ``beta[j]`` = ‖residual‖ after step j; ``beta[:steps-1]`` is the
        off-diagonal of T and ``beta[steps-1]`` the norm of the final residual.
      basis: float64 (≥ m + 1, n) (in memory or a memmap); rows ``[:steps + 1]`` are the
        orthonormal Krylov basis v₀ … v_steps (row m is the final residual direction;
        zero after a breakdown). Not serialised with the rest (see :func:`state_arrays`).
      pending: float64[n], the unit vector to multiply next (in phase MULTIPLY) or the
        normalised three-term residual u awaiting re-orthogonalisation.
      correction: float64[n], V T̂ c, subtracted from the product of ``pending`` (zero
        when ``pending`` is a basis vector itself).
      pending_norm: ρ, the norm of u's component outside the basis before it (1 for v₀).
      direction_norm: ‖three-term residual‖ of the step awaiting re-orthogonalisation.
      steps: Lanczos steps completed (products accepted).
      scale: the largest ‖A v_j‖ seen, the spectral scale for the breakdown test.
      phase: the :class:`Phase` of the step.
      breakdown: True when the run ended early on an invariant subspace.
      second_passes: steps whose re-orthogonalisation needed the second pass.
      fresh_products: steps whose next vector was multiplied afresh (ρ too small).
    """

    alpha: np.ndarray
    beta: np.ndarray
    basis: np.ndarray
    pending: np.ndarray
    correction: np.ndarray
    pending_norm: float = 1.0
    direction_norm: float = 0.0
    steps: int = 0
    scale: float = 0.0
    phase: Phase = Phase.MULTIPLY
    breakdown: bool = False
    second_passes: int = 0
    fresh_products: int = 0

    @property
    def dim(self) -> int:
        return self.basis.shape[1]

    @property
    def order(self) -> int:
        return self.alpha.shape[0]

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    @property
    def vector(self) -> np.ndarray:
        """The unit vector to multiply next, float64[n] (a read-only view of :attr:`pending`)."""
        return read_only(self.pending)

    def tridiagonal(self) -> tuple[np.ndarray, np.ndarray]:
        """(α, β) of T after the steps completed: float64[k] and float64[k − 1] copies."""
        k = self.steps
        return self.alpha[:k].copy(), self.beta[: max(k - 1, 0)].copy()


def start_state(v0: np.ndarray, order: int, *, basis: np.ndarray | None = None) -> LanczosState:
    """Begin a run of ``order`` steps (clamped to n) from ``v0`` (normalised here).

    ``basis``, if given, is preallocated float64 storage of shape (≥ m + 1, n), e.g.
    from :func:`~raylanczos.basis.allocate_basis` with a path; otherwise the basis is
    kept in memory.
    """
    v0 = first_vector(v0)
    dim = v0.shape[0]
    order = min(check_int("order", order), dim)
    if basis is None:
        basis = allocate_basis(order + 1, dim)
    else:
        _check_basis(basis, order, dim)
    basis[0] = v0
    return LanczosState(
        alpha=np.zeros(order, dtype=np.float64),
        beta=np.zeros(order, dtype=np.float64),
        basis=basis,
        pending=np.array(basis[0]),
        correction=np.zeros(dim, dtype=np.float64),
    )


def first_vector(v0: np.ndarray) -> np.ndarray:
    """v₀ / ‖v₀‖, float64[n]: the first basis vector, and the first vector multiplied."""
    v0 = np.asarray(v0, dtype=np.float64)
    if v0.ndim != 1 or v0.size == 0:
        raise ValueError(f"v0 must be a non-empty 1-D vector, got shape {v0.shape}")
    norm = float(np.linalg.norm(v0))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError(f"v0 must have a finite, non-zero norm, got norm {norm!r}")
    return v0 / norm


def accept(state: LanczosState, product: np.ndarray, options: LanczosOptions = LanczosOptions()) -> None:
    """First half of a step, O(n): α_j, and the next vector to multiply in ``state.vector``.

    ``product`` = A · ``state.vector``, float64[n]; it is copied, never modified. Raises
    ``ValueError`` for a wrong shape or non-finite entries, ``RuntimeError`` out of phase.
    After this, unless the run ended, call :func:`reorthogonalize` (while the next
    product is computed).

    A step has two halves. This one folds the product into T (α_j) and forms the next
    direction u, the three-term residual normalised, which can be multiplied at once.
    :func:`reorthogonalize` then projects u against the whole basis, giving β_j and the
    exact basis vector v_{j+1} = (u − V c)/ρ. Because A V c = V T̂ c up to the Lanczos
    relation's rounding, the product of v_{j+1} follows from that of u without a second
    product:

        A v_{j+1} = (A u − V T̂ c) / ρ,

    and ``state.correction`` holds V T̂ c. So the driver can start the next product before
    it re-orthogonalises, and the O(n·k) projection overlaps the product instead of adding
    to it. The error this adds is ‖c‖·ε‖A‖, with ‖c‖ itself at the rounding level of the
    three-term recurrence; when ρ < ``options.lookahead_min_rho`` (u mostly inside the
    basis, close to an invariant subspace) the vector to multiply becomes v_{j+1} itself
    and its product is taken afresh.
    """
    if state.phase is not Phase.MULTIPLY:
        raise RuntimeError(f"accept() needs phase MULTIPLY, the state is in phase {state.phase.name} after {state.steps} steps")
    j = state.steps
    w = np.array(product, dtype=np.float64, copy=True)
    if w.shape != (state.dim,):
        raise ValueError(f"matvec returned shape {w.shape}, expected ({state.dim},)")
    if not np.all(np.isfinite(w)):
        bad = int(np.size(w) - np.count_nonzero(np.isfinite(w)))
        raise ValueError(f"matvec returned {bad} non-finite entries at Lanczos step {j}")
    w -= state.correction
    w /= state.pending_norm  # now A v_j
    state.scale = max(state.scale, float(np.linalg.norm(w)))
    if j > 0:
        w -= state.beta[j - 1] * state.basis[j - 1]
    v = state.basis[j]
    state.alpha[j] = float(v @ w)
    w -= state.alpha[j] * v
    state.steps = j + 1
    norm = float(np.linalg.norm(w))
    if norm <= options.breakdown_rtol * state.scale:
        _end(state, j)
        return
    w /= norm
    state.pending = w
    state.direction_norm = norm
    state.phase = Phase.REORTHOGONALIZE


def reorthogonalize(
    state: LanczosState, sweeps: BasisSweeps | None = None, options: LanczosOptions = LanczosOptions()
) -> bool:
    """Second half of a step, O(n·k): β_j, v_{j+1} and the correction for the next product.

    ``sweeps`` runs the basis products (default: one thread). Returns True when
    ``state.vector`` was replaced by v_{j+1}, so that a product of the previous vector
    already started must be discarded and taken again.
    """
    if state.phase is not Phase.REORTHOGONALIZE:
        raise RuntimeError(f"reorthogonalize() follows accept(); the state is in phase {state.phase.name}")
    sweeps = sweeps or BasisSweeps()
    j = state.steps - 1
    basis = state.basis[: j + 1]
    w = state.pending.copy()
    coefficients = sweeps.project_out(basis, w)
    rho = float(np.linalg.norm(w))
    if rho < options.dgks_eta:
        coefficients += sweeps.project_out(basis, w)
        rho = float(np.linalg.norm(w))
        state.second_passes += 1
    beta = state.direction_norm * rho
    state.beta[j] = beta
    if beta <= options.breakdown_rtol * state.scale:
        _end(state, j)
        return False
    w /= rho
    state.basis[j + 1] = w
    if state.steps >= state.order:
        state.phase = Phase.DONE
        return False
    state.phase = Phase.MULTIPLY
    if rho < options.lookahead_min_rho:
        state.pending, state.pending_norm = w.copy(), 1.0
        state.correction = np.zeros(state.dim, dtype=np.float64)
        state.fresh_products += 1
        return True
    mixed = tridiagonal_times(state.alpha[: j + 1], state.beta[: j + 1], coefficients)
    state.correction = sweeps.combine(state.basis[: j + 2], mixed)
    state.pending_norm = rho
    return False


def advance(
    state: LanczosState,
    product: np.ndarray,
    sweeps: BasisSweeps | None = None,
    options: LanczosOptions = LanczosOptions(),
) -> None:
    """Consume ``product`` = A · ``state.vector`` and complete one Lanczos step (both halves)."""
    accept(state, product, options)
    if state.phase is Phase.REORTHOGONALIZE:
        reorthogonalize(state, sweeps, options)


def _end(state: LanczosState, j: int) -> None:
    """The residual after step j vanished: an invariant subspace (or the last step)."""
    state.breakdown = state.steps < state.order
    state.beta[j] = 0.0
    state.basis[state.steps] = 0.0
    state.phase = Phase.DONE


#: Fields of :class:`LanczosState` that hold n-vectors (a checkpoint may keep them apart).
VECTOR_FIELDS = ("pending", "correction")


def state_arrays(state: LanczosState) -> dict[str, np.ndarray]:
    """Every field but the basis, as arrays ``numpy.savez`` can store safely (no pickles).

    The n-vector fields (:data:`VECTOR_FIELDS`) are read-only views, not copies (a step
    replaces these arrays, never writes into them), so a checkpoint of a large model does
    not copy 2·n·8 bytes per step before writing them. ``phase`` is stored as its name.
    """
    arrays: dict[str, np.ndarray] = {}
    for field in dataclasses.fields(state):
        value = getattr(state, field.name)
        if field.name == "basis":
            continue
        if field.name in VECTOR_FIELDS:
            arrays[field.name] = read_only(value)
        elif isinstance(value, Phase):
            arrays[field.name] = np.array(value.value)
        elif isinstance(value, np.ndarray):
            arrays[field.name] = value.copy()
        else:
            arrays[field.name] = np.array(value)
    return arrays


def state_from_arrays(arrays: dict[str, np.ndarray], basis: np.ndarray) -> LanczosState:
    """Rebuild a state from :func:`state_arrays` and its basis (validated; the basis is not copied)."""
    kinds = {field.name: field.type for field in dataclasses.fields(LanczosState)}
    missing = sorted(set(kinds) - {"basis"} - set(arrays))
    if missing:
        raise ValueError(f"a Lanczos state needs the fields {missing}")
    alpha = np.array(arrays["alpha"], dtype=np.float64)
    beta = np.array(arrays["beta"], dtype=np.float64)
    if alpha.ndim != 1 or beta.shape != alpha.shape:
        raise ValueError(f"state alpha/beta shapes differ: {alpha.shape} vs {beta.shape}")
    order = alpha.shape[0]
    dim = basis.shape[1] if basis.ndim == 2 else -1
    _check_basis(basis, order, dim)
    values: dict[str, Any] = {"alpha": alpha, "beta": beta, "basis": basis}
    for name in VECTOR_FIELDS:
        vector = np.array(arrays[name], dtype=np.float64)
        if vector.shape != (dim,):
            raise ValueError(f"state {name} vector has shape {vector.shape}, expected ({dim},)")
        values[name] = vector
    values["phase"] = Phase(str(arrays["phase"]))
    for name in ("pending_norm", "direction_norm", "scale"):
        values[name] = float(arrays[name])
    for name in ("steps", "second_passes", "fresh_products"):
        values[name] = int(arrays[name])
    values["breakdown"] = bool(arrays["breakdown"])
    if not 0 <= values["steps"] <= order:
        raise ValueError(f"state steps={values['steps']} outside [0, {order}]")
    return LanczosState(**values)


def _check_basis(basis: np.ndarray, order: int, dim: int) -> None:
    if basis.dtype != np.float64 or basis.ndim != 2 or basis.shape[1] != dim or basis.shape[0] < order + 1:
        raise ValueError(f"basis must be float64 of shape (>= {order + 1}, {dim}), got {basis.dtype} {basis.shape}")


def read_only(array: np.ndarray) -> np.ndarray:
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
    options: LanczosOptions = LanczosOptions(),
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
      options: the step's thresholds (:class:`LanczosOptions`).
    """
    check_int("order", order)
    if dim is not None:
        check_int("dim", dim)
    apply, dim = as_matvec(matvec, dim)
    if v0 is None:
        v0 = start_vector(dim, seed=seed, draw=draw, distribution=distribution)
    elif np.shape(v0) != (dim,):
        raise ValueError(f"v0 must have shape ({dim},), got {np.shape(v0)}")
    steps = min(order, dim)
    state = start_state(v0, order, basis=allocate_basis(steps + 1, dim, basis_path))
    sweeps = BasisSweeps()
    while not state.done:
        advance(state, apply(state.vector), sweeps, options)
    alpha, beta = state.tridiagonal()
    return LanczosResult(
        alpha=alpha,
        beta=beta,
        steps=state.steps,
        breakdown=state.breakdown,
        residual_norm=float(state.beta[state.steps - 1]),
        basis=state.basis[: state.steps] if return_basis else None,
    )
