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

The state is plain data: the recurrence's scalars (:class:`LanczosScalars`: α, β, norms,
phase, counters) and, when this process holds them, the vectors (:class:`LanczosState`:
the basis, the pending vector and its correction). It is advanced one matrix-vector
product at a time by :func:`accept` and :func:`reorthogonalize`, with the thresholds in
one frozen :class:`LanczosOptions`. Both halves are written once, for B draws in lockstep,
against the vector interface of :mod:`raylanczos.numerics.vectors` (:func:`accept_block`,
:func:`reorthogonalize_block`): their vectors may be whole in this process or sliced over
keepers, and the step does not know which. So a driver can compute the product anywhere
(a Ray worker group, a GPU), checkpoint between steps (the state serialises from its
fields, :func:`state_arrays`), and resume. The next vector to multiply is known before
the O(n·k) re-orthogonalisation (look-ahead, see :func:`accept`), so a driver can overlap
that work with the next product. This module depends on numpy and scipy only.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from raylanczos.choices import START_DISTRIBUTIONS, check_choice, check_int
from raylanczos.numerics.basis import BasisSweeps, allocate_basis
from raylanczos.numerics.vectors import (
    Axpy,
    Combine,
    Copy,
    Divide,
    Dot,
    Load,
    LocalSpace,
    Move,
    Op,
    Project,
    Subtract,
    VectorKernel,
    VectorSpace,
    Zero,
    root,
)

Matvec = Callable[[np.ndarray], np.ndarray]


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
    v = start_entries(dim, seed=seed, draw=draw, distribution=distribution)
    return v / np.linalg.norm(v)


#: Entries drawn at a time while skipping to a slice's first entry (8 MB of float64).
SKIP_CHUNK = 1 << 20


def start_entries(
    dim: int, *, seed: int, draw: int = 0, distribution: str = "gaussian", first: int = 0, stop: int | None = None
) -> np.ndarray:
    """Entries [first, stop) of a draw's start vector before normalisation, float64[stop − first].

    The same numbers as the whole vector's (see :func:`start_vector`): the generator's
    stream is drawn and dropped, :data:`SKIP_CHUNK` entries at a time, up to ``first``, so
    a keeper holding one slice draws its own entries in O(first) time and O(chunk) memory.
    """
    check_int("dim", dim)
    check_distribution(distribution)
    if seed < 0 or draw < 0:
        raise ValueError(f"seed and draw must be >= 0, got seed={seed!r}, draw={draw!r}")
    stop = dim if stop is None else stop
    if not 0 <= first <= stop <= dim:
        raise ValueError(f"entries [{first}, {stop}) are not inside a start vector of {dim}")
    rng = np.random.default_rng([seed, draw])

    def entries(count: int) -> np.ndarray:
        if distribution == "gaussian":
            return rng.standard_normal(count)
        return rng.integers(0, 2, size=count).astype(np.float64) * 2.0 - 1.0

    for skipped in range(0, first, SKIP_CHUNK):
        entries(min(SKIP_CHUNK, first - skipped))
    return entries(stop - first)


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
class LanczosScalars:
    """The recurrence of one Lanczos run (one SLQ draw) but its vectors, as plain data:
    what a driver keeps when keepers hold the vectors (O(m) floats).

    Attributes:
      alpha: float64[m], diagonal of T; entries ≥ ``steps`` are unset (zero).
      beta: float64[m], ``beta[j]`` = ‖residual‖ after step j; ``beta[:steps-1]`` is the
        off-diagonal of T and ``beta[steps-1]`` the norm of the final residual.
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
    pending_norm: float = 1.0
    direction_norm: float = 0.0
    steps: int = 0
    scale: float = 0.0
    phase: Phase = Phase.MULTIPLY
    breakdown: bool = False
    second_passes: int = 0
    fresh_products: int = 0

    @property
    def order(self) -> int:
        return self.alpha.shape[0]

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    def tridiagonal(self) -> tuple[np.ndarray, np.ndarray]:
        """(α, β) of T after the steps completed: float64[k] and float64[k − 1] copies."""
        k = self.steps
        return self.alpha[:k].copy(), self.beta[: max(k - 1, 0)].copy()


@dataclass
class LanczosState(LanczosScalars):
    """The resumable state of one Lanczos run whose vectors this process holds whole.

    Attributes (besides :class:`LanczosScalars`'):
      basis: float64 (≥ m + 1, n) (in memory or a memmap); rows ``[:steps + 1]`` are the
        orthonormal Krylov basis v₀ … v_steps (row m is the final residual direction;
        zero after a breakdown). Not serialised with the rest (see :func:`state_arrays`).
      pending: float64[n], the unit vector to multiply next (in phase MULTIPLY) or the
        normalised three-term residual u awaiting re-orthogonalisation.
      correction: float64[n], V T̂ c, subtracted from the product of ``pending`` (zero
        when ``pending`` is a basis vector itself).
    """

    basis: np.ndarray = dataclasses.field(kw_only=True)
    pending: np.ndarray = dataclasses.field(kw_only=True)
    correction: np.ndarray = dataclasses.field(kw_only=True)

    @property
    def dim(self) -> int:
        return self.basis.shape[1]

    @property
    def vector(self) -> np.ndarray:
        """The unit vector to multiply next, float64[n] (a read-only view of :attr:`pending`)."""
        return read_only(self.pending)


def start_scalars(order: int) -> LanczosScalars:
    """The scalars of a run of ``order`` steps (already clamped to n) before its first product."""
    return LanczosScalars(alpha=np.zeros(order, dtype=np.float64), beta=np.zeros(order, dtype=np.float64))


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
    return with_vectors(start_scalars(order), basis=basis, pending=np.array(basis[0]), correction=np.zeros(dim, dtype=np.float64))


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
    kernel = VectorKernel({0: state})
    kernel.receive({0: product})
    accept_block([(0, state)], LocalSpace(kernel), options)


def reorthogonalize(
    state: LanczosState, sweeps: BasisSweeps | None = None, options: LanczosOptions = LanczosOptions()
) -> bool:
    """Second half of a step, O(n·k): β_j, v_{j+1} and the correction for the next product.

    ``sweeps`` runs the basis products (default: one thread). Returns True when
    ``state.vector`` was replaced by v_{j+1}, so that a product of the previous vector
    already started must be discarded and taken again.
    """
    return bool(reorthogonalize_block([(0, state)], LocalSpace(VectorKernel({0: state}, sweeps)), options))


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


#: Slots and their states, advanced together: ``[(slot, scalars), ...]``.
Entries = Sequence[tuple[int, LanczosScalars]]


def accept_block(entries: Entries, space: VectorSpace, options: LanczosOptions = LanczosOptions()) -> None:
    """:func:`accept` for every state of ``entries`` at once, its vectors in ``space``.

    Two rounds: (1) w = (A·pending − correction)/ρ, ‖w‖² (the scale), w −= β_{j−1} v_{j−1},
    α_j = v_j·w and the product's non-finite count; (2) w −= α_j v_j and ‖w‖². Then, unless
    the draw ends, u = w/‖w‖ becomes the slot's pending vector (no reduction: a space may
    send it with its next message).
    """
    for _, state in entries:
        if state.phase is not Phase.MULTIPLY:
            raise RuntimeError(
                f"accept() needs phase MULTIPLY, the state is in phase {state.phase.name} after {state.steps} steps"
            )
    first: list[Op] = []
    for slot, state in entries:
        j = state.steps
        first += [Load(slot), Axpy(slot, 1.0, "correction", "w"), Divide(slot, "w", state.pending_norm), Dot(slot, "w", "w")]
        if j > 0:
            first.append(Axpy(slot, float(state.beta[j - 1]), j - 1, "w"))
        first.append(Dot(slot, j, "w"))
    reduced = iter(space.run(first))
    sums = [(next(reduced), next(reduced), next(reduced)) for _ in entries]
    for (_, state), (bad, _, _) in zip(entries, sums):
        if bad:
            raise ValueError(f"matvec returned {int(bad)} non-finite entries at Lanczos step {state.steps}")
    for (_, state), (_, square, alpha) in zip(entries, sums):
        state.scale = max(state.scale, root(square))
        state.alpha[state.steps] = alpha
    reduced = iter(space.run([op for slot, state in entries for op in (
        Axpy(slot, float(state.alpha[state.steps]), state.steps, "w"), Dot(slot, "w", "w"),
    )]))
    last: list[Op] = []
    for slot, state in entries:
        j = state.steps
        state.steps = j + 1
        norm = root(next(reduced))
        if norm <= options.breakdown_rtol * state.scale:
            last += _end(slot, state, j)
            continue
        last += [Divide(slot, "w", norm), Move(slot, "w", "pending")]
        state.direction_norm = norm
        state.phase = Phase.REORTHOGONALIZE
    space.run(last)


def reorthogonalize_block(
    entries: Entries, space: VectorSpace, options: LanczosOptions = LanczosOptions()
) -> list[int]:
    """:func:`reorthogonalize` for every state of ``entries`` at once, its vectors in ``space``;
    returns the slots whose vector to multiply was replaced by v_{j+1} (a fresh product).

    Rounds: (1) w = pending, c = V w; (2) w −= Vᵀ c, ρ² = ‖w‖²; and for the slots where
    ρ < ``dgks_eta`` a second pass (3, 4) alike. Then, with no reduction, v_{j+1} = w/ρ
    into the basis and the correction V T̂ c for the look-ahead product (or a fresh one).
    """
    for _, state in entries:
        if state.phase is not Phase.REORTHOGONALIZE:
            raise RuntimeError(f"reorthogonalize() follows accept(); the state is in phase {state.phase.name}")
    coefficients = space.run([op for slot, state in entries for op in (Copy(slot, "pending", "w"), Project(slot, "w", state.steps))])
    rho = _subtract(entries, space, coefficients)
    second = [i for i, value in enumerate(rho) if value < options.dgks_eta]
    if second:
        again = [entries[i] for i in second]
        more = space.run([Project(slot, "w", state.steps) for slot, state in again])
        for i, value, extra in zip(second, _subtract(again, space, more), more):
            coefficients[i] = coefficients[i] + extra
            rho[i] = value
            entries[i][1].second_passes += 1
    restarted: list[int] = []
    last: list[Op] = []
    for (slot, state), norm, found in zip(entries, rho, coefficients):
        j = state.steps - 1
        beta = state.direction_norm * norm
        state.beta[j] = beta
        if beta <= options.breakdown_rtol * state.scale:
            last += _end(slot, state, j)
            continue
        last += [Divide(slot, "w", norm), Copy(slot, "w", j + 1)]
        if state.steps >= state.order:
            state.phase = Phase.DONE
            continue
        state.phase = Phase.MULTIPLY
        if norm < options.lookahead_min_rho:
            last += [Move(slot, "w", "pending"), Zero(slot, "correction")]
            state.pending_norm = 1.0
            state.fresh_products += 1
            restarted.append(slot)
            continue
        mixed = tridiagonal_times(state.alpha[: j + 1], state.beta[: j + 1], found)
        last.append(Combine(slot, mixed, "correction"))
        state.pending_norm = norm
    space.run(last)
    return restarted


def _subtract(entries: Entries, space: VectorSpace, coefficients: Sequence[np.ndarray]) -> list[float]:
    """w −= Vᵀ c for each slot's summed coefficients; the norms left, ρ."""
    ops = [op for (slot, _), c in zip(entries, coefficients) for op in (Subtract(slot, "w", c), Dot(slot, "w", "w"))]
    return [root(square) for square in space.run(ops)]


def _end(slot: int, state: LanczosScalars, j: int) -> list[Op]:
    """The residual after step j vanished: an invariant subspace (or the last step). Returns
    the operation that zeroes the slot's next basis row."""
    state.breakdown = state.steps < state.order
    state.beta[j] = 0.0
    state.phase = Phase.DONE
    return [Zero(slot, state.steps)]


#: Fields of :class:`LanczosState` that hold n-vectors (a checkpoint may keep them apart).
VECTOR_FIELDS = ("pending", "correction")


def state_arrays(state: LanczosScalars) -> dict[str, np.ndarray]:
    """Every field but the basis, as arrays ``numpy.savez`` can store safely (no pickles).

    The n-vector fields of a :class:`LanczosState` (:data:`VECTOR_FIELDS`) are read-only
    views, not copies (a step replaces these arrays, never writes into them), so a
    checkpoint of a large model does not copy 2·n·8 bytes per step before writing them.
    ``phase`` is stored as its name.
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


def scalars_from_arrays(arrays: dict[str, np.ndarray]) -> LanczosScalars:
    """Rebuild a run's scalars from :func:`state_arrays` (validated)."""
    missing = sorted({field.name for field in dataclasses.fields(LanczosScalars)} - set(arrays))
    if missing:
        raise ValueError(f"a Lanczos state needs the fields {missing}")
    alpha = np.array(arrays["alpha"], dtype=np.float64)
    beta = np.array(arrays["beta"], dtype=np.float64)
    if alpha.ndim != 1 or beta.shape != alpha.shape:
        raise ValueError(f"state alpha/beta shapes differ: {alpha.shape} vs {beta.shape}")
    values: dict[str, Any] = {"alpha": alpha, "beta": beta, "phase": Phase(str(arrays["phase"]))}
    for name in ("pending_norm", "direction_norm", "scale"):
        values[name] = float(arrays[name])
    for name in ("steps", "second_passes", "fresh_products"):
        values[name] = int(arrays[name])
    values["breakdown"] = bool(arrays["breakdown"])
    if not 0 <= values["steps"] <= alpha.shape[0]:
        raise ValueError(f"state steps={values['steps']} outside [0, {alpha.shape[0]}]")
    return LanczosScalars(**values)


def state_from_arrays(arrays: dict[str, np.ndarray], basis: np.ndarray) -> LanczosState:
    """Rebuild a state from :func:`state_arrays` and its basis (validated; the basis is not copied)."""
    missing = sorted({field.name for field in dataclasses.fields(LanczosState)} - {"basis"} - set(arrays))
    if missing:
        raise ValueError(f"a Lanczos state needs the fields {missing}")
    scalars = scalars_from_arrays(arrays)
    dim = basis.shape[1] if basis.ndim == 2 else -1
    _check_basis(basis, scalars.order, dim)
    vectors = {}
    for name in VECTOR_FIELDS:
        vector = np.array(arrays[name], dtype=np.float64)
        if vector.shape != (dim,):
            raise ValueError(f"state {name} vector has shape {vector.shape}, expected ({dim},)")
        vectors[name] = vector
    return with_vectors(scalars, basis=basis, **vectors)


def with_vectors(scalars: LanczosScalars, *, basis: np.ndarray, pending: np.ndarray, correction: np.ndarray) -> LanczosState:
    """A :class:`LanczosState` of these scalars and vectors (neither copied)."""
    fields = {field.name: getattr(scalars, field.name) for field in dataclasses.fields(LanczosScalars)}
    return LanczosState(**fields, basis=basis, pending=pending, correction=correction)


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
