"""Acceptance tests for the float64 Lanczos core (:mod:`raylanczos.numerics.lanczos`).

Every test matrix has a spectrum known by construction: either a dense Q diag(λ) Qᵀ with
a Haar-random orthogonal Q, or the diagonal operator ``v ↦ λ ⊙ v``. Tolerances are
relative to ‖A‖ = max |λ| unless a docstring says otherwise.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from raylanczos.numerics.basis import BasisSweeps, allocate_basis, open_basis
from raylanczos.numerics.lanczos import (
    LanczosOptions,
    LanczosState,
    Phase,
    accept,
    advance,
    lanczos,
    relation_residual,
    reorthogonalize,
    start_state,
    start_vector,
    state_arrays,
    state_from_arrays,
)
from raylanczos.numerics.spectrum import gauss_quadrature, orthogonality_loss
from tests.matrices import diagonal_operator, matrix_with_spectrum

# --------------------------------------------------------------------------- helpers


def operator_of_kind(kind: str, eigenvalues: np.ndarray, rng: np.random.Generator):
    """(operator, dim, reference matrix) for ``kind`` "dense" or "diagonal"."""
    if kind == "dense":
        a = matrix_with_spectrum(eigenvalues, rng)
        return a, a.shape[0], a
    matvec, dim = diagonal_operator(eigenvalues)
    return matvec, dim, np.diag(np.asarray(eigenvalues, dtype=np.float64))


BULK_OUTLIERS = np.array([-4.0, 3.5, 6.0, 9.0, 14.0])
REPEATED_VALUES = np.linspace(-2.5, 3.5, 12) + 0.1  # 12 distinct, none at 0


def known_spectrum(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Eigenvalues of one of the named test spectra, float64[n]."""
    if name == "indefinite":
        return rng.uniform(-3.0, 5.0, n)
    if name == "clusters":
        centres = np.array([-2.0, -0.5, 0.3, 1.0, 2.5])
        offsets = 1e-3 * np.linspace(-1.0, 1.0, -(-n // centres.size))
        return (centres[:, None] + offsets[None, :]).ravel()[:n]
    if name == "bulk_outliers":
        return np.concatenate([rng.uniform(-1.0, 1.0, n - BULK_OUTLIERS.size), BULK_OUTLIERS])
    if name == "repeated":
        return np.resize(REPEATED_VALUES, n)
    raise KeyError(name)


def distinct_values(values: np.ndarray, tol: float) -> np.ndarray:
    """Sorted values with runs closer than ``tol`` merged into their mean (np.unique with a tolerance)."""
    values = np.sort(np.asarray(values, dtype=np.float64))
    groups = np.split(values, np.flatnonzero(np.diff(values) > tol) + 1)
    return np.array([g.mean() for g in groups])


def run_state(
    apply,
    v0: np.ndarray,
    order: int,
    basis: np.ndarray | None = None,
    sweeps: BasisSweeps | None = None,
    options: LanczosOptions = LanczosOptions(),
) -> LanczosState:
    """A full run through the step-wise API: ``start`` then ``advance``."""
    state = start_state(v0, order, basis=basis)
    while not state.done:
        advance(state, apply(state.vector), sweeps, options)
    return state


def unit_interval_spectrum(n: int, rng: np.random.Generator) -> np.ndarray:
    """n eigenvalues in [-1, 1] with both endpoints present, so ‖A‖ = 1."""
    return np.concatenate([[-1.0, 1.0], rng.uniform(-1.0, 1.0, n - 2)])


def krylov_moments(apply, v0: np.ndarray, count: int) -> np.ndarray:
    """v₀ᵀ Aᵏ v₀ for k = 0 … count−1 by repeated products."""
    moments, u = [], v0.copy()
    for _ in range(count):
        moments.append(float(v0 @ u))
        u = apply(u)
    return np.array(moments)


def fresh_basis(where: str, rows: int, dim: int, tmp_path):
    """Zeroed basis storage in memory, or on disk at ``tmp_path/basis.npy`` (memmap)."""
    return allocate_basis(rows, dim, tmp_path / "basis.npy" if where == "disk" else None)


def value_pattern(name: str, value) -> str:
    """Regex: the message mentions ``name`` and then the received value as a whole token."""
    return rf"{re.escape(name)}.*(?<![\w.-]){re.escape(repr(value))}(?![\w.])"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def big_problem():
    """n = 2000 bulk (uniform on [-1, 1]) plus 5 well-separated outliers, dense and diagonal."""
    rng = np.random.default_rng(2000)
    lam = known_spectrum("bulk_outliers", 2000, rng)
    return lam, matrix_with_spectrum(lam, rng)


# --------------------------------------------------------------------------- exact spectra


SPECTRA = ["indefinite", "clusters", "bulk_outliers", "repeated"]


@pytest.mark.parametrize("n", [60, 400])
@pytest.mark.parametrize("kind", ["dense", "diagonal"])
@pytest.mark.parametrize("name", SPECTRA)
def test_full_order_ritz_values_match_eigvalsh(name, kind, n):
    """With order = n the Ritz values are the spectrum, to 1e-10·‖A‖.

    With repeated eigenvalues a single start vector only sees the distinct ones and the
    run ends at breakdown after that many steps, so those are compared against the
    distinct eigenvalues of ``eigvalsh`` (merged within 1e-8·‖A‖).
    """
    rng = np.random.default_rng([n, SPECTRA.index(name), kind == "dense"])
    lam = known_spectrum(name, n, rng)
    operator, dim, matrix = operator_of_kind(kind, lam, rng)
    result = lanczos(operator, dim if kind == "diagonal" else None, order=n, seed=7)
    nodes, weights = gauss_quadrature(result.alpha, result.beta)
    reference = np.linalg.eigvalsh(matrix)
    norm = np.max(np.abs(reference))
    if name == "repeated":
        reference = distinct_values(reference, 1e-8 * norm)
        assert reference.size == REPEATED_VALUES.size
        assert result.breakdown and result.steps == reference.size
    else:
        assert not result.breakdown and result.steps == n
    assert nodes.shape == reference.shape
    np.testing.assert_allclose(nodes, reference, rtol=0, atol=1e-10 * norm)
    np.testing.assert_allclose(weights.sum(), 1.0, rtol=0, atol=1e-12)


@pytest.mark.slow
def test_full_order_n2000_matches_eigvalsh(big_problem):
    """The one order = n = 2000 run: all 2000 Ritz values equal eigvalsh to 1e-10·‖A‖.

    It uses the diagonal operator of the bulk-plus-outliers spectrum: the O(n³) cost is in
    the re-orthogonalisation either way, and 2000 dense products would add ~64 GB of memory
    traffic (minutes on a busy 2-core machine). Dense operators are covered at order = n
    up to n = 400 above and at n = 2000 with m = 90 below.
    """
    lam, _ = big_problem
    apply, dim = diagonal_operator(lam)
    result = lanczos(apply, dim, order=dim, seed=11)
    assert not result.breakdown and result.steps == dim
    nodes, _ = gauss_quadrature(result.alpha, result.beta)
    reference = np.linalg.eigvalsh(np.diag(lam))
    np.testing.assert_allclose(nodes, reference, rtol=0, atol=1e-10 * np.max(np.abs(reference)))


@pytest.mark.parametrize("kind", ["dense", "diagonal"])
def test_outliers_converge_at_order_90(big_problem, kind):
    """n = 2000, m = 90 ≪ n: the outliers (gap ≥ 2.5 to the bulk [-1, 1]) converge to 1e-8 relative."""
    lam, a = big_problem
    operator, dim = (a, None) if kind == "dense" else diagonal_operator(lam)
    result = lanczos(operator, dim, order=90, seed=3)
    assert result.steps == 90 and not result.breakdown
    nodes, _ = gauss_quadrature(result.alpha, result.beta)
    top = np.sort(BULK_OUTLIERS[BULK_OUTLIERS > 1.0])[::-1]
    bottom = np.sort(BULK_OUTLIERS[BULK_OUTLIERS < -1.0])
    np.testing.assert_allclose(nodes[::-1][: top.size], top, rtol=1e-8)
    np.testing.assert_allclose(nodes[: bottom.size], bottom, rtol=1e-8)
    # The next Ritz value inward is inside the bulk, not a spurious copy of an outlier.
    assert nodes[::-1][top.size] <= 1.0 + 1e-8 and nodes[bottom.size] >= -1.0 - 1e-8


def test_lanczos_relation_and_orthogonality(big_problem):
    """n = 2000, m = 90: ‖A Vᵀ − Vᵀ T − β_{m−1} v_m e_{m−1}ᵀ‖₂ ≤ 1e-10·‖A‖ (spectral norm).

    Full re-orthogonalisation keeps ‖V Vᵀ − I‖_max (over v₀ … v_m) ≤ 1e-12.
    """
    lam, a = big_problem
    m = 90
    state = run_state(lambda v: a @ v, start_vector(a.shape[0], seed=5), m)
    assert state.steps == m and not state.breakdown
    alpha, beta = state.tridiagonal()
    t = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
    v = np.asarray(state.basis[:m])
    v_next = np.asarray(state.basis[m])
    e_last = np.zeros(m)
    e_last[-1] = 1.0
    residual = a @ v.T - v.T @ t - state.beta[m - 1] * np.outer(v_next, e_last)
    norm_a = np.max(np.abs(lam))
    assert np.linalg.norm(residual, 2) <= 1e-10 * norm_a
    assert relation_residual(a, state) == pytest.approx(np.linalg.norm(residual, 2), rel=1e-6, abs=1e-15 * norm_a)
    assert state.beta[m - 1] > 0.0 and np.isclose(np.linalg.norm(v_next), 1.0, rtol=0, atol=1e-14)
    assert orthogonality_loss(state.basis[: m + 1]) <= 1e-12


def hessian_like_problem(n: int = 1500, seed: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """A spectrum like a trained network's Hessian: 20 outliers in [10, 1000], a bulk of
    |λ| ~ 1e-4 of both signs, and 40% exact zeros (a dynamic range of 1e7)."""
    rng = np.random.default_rng(seed)
    zeros = int(0.4 * n)
    bulk = rng.normal(0.0, 1e-4, n - zeros - 20)
    lam = np.concatenate([bulk, np.zeros(zeros), rng.uniform(10.0, 1000.0, 20)])
    return lam, matrix_with_spectrum(lam, rng)


def run_pipelined(apply, v0: np.ndarray, order: int, options: LanczosOptions = LanczosOptions()) -> tuple[LanczosState, int]:
    """Drive the state as the distributed runner does: the next product is taken right
    after ``accept`` and before ``reorthogonalize``; returns (state, products taken)."""
    state = start_state(v0, order)
    product, products = apply(state.vector), 1
    while not state.done:
        accept(state, product, options)
        if state.phase is not Phase.REORTHOGONALIZE:
            break
        ahead = apply(state.vector) if state.steps < state.order else None
        products += ahead is not None
        if reorthogonalize(state, None, options):
            ahead = apply(state.vector)
            products += 1
        product = ahead
    return state, products


def test_lookahead_is_as_exact_as_fresh_products():
    """The corrected look-ahead product gives the same T as multiplying each v_{j+1} afresh
    (classical full re-orthogonalisation), on a spectrum with a dynamic range of 1e7:
    Ritz values to 1e-13·‖A‖, relation residual ≤ 1e-14·‖A‖, orthogonality ≤ 1e-14."""
    lam, a = hessian_like_problem()
    norm_a = np.max(np.abs(lam))
    v0 = start_vector(a.shape[0], seed=3)
    ahead = run_state(lambda v: a @ v, v0, 120)
    every_fresh = LanczosOptions(lookahead_min_rho=2.0)  # every step multiplies v_{j+1}
    fresh = run_state(lambda v: a @ v, v0, 120, options=every_fresh)
    assert fresh.fresh_products == 119 and ahead.fresh_products == 0
    pipelined, products = run_pipelined(lambda v: a @ v, v0, 120, every_fresh)
    assert products == 1 + 2 * 119  # the look-ahead product is discarded and v_{j+1} multiplied
    assert np.array_equal(pipelined.alpha, fresh.alpha) and np.array_equal(pipelined.beta, fresh.beta)
    for state in (ahead, fresh):
        assert state.steps == 120 and not state.breakdown
        assert relation_residual(a, state) <= 1e-14 * norm_a
        assert orthogonality_loss(state.basis[:121]) <= 1e-14
    nodes_ahead, _ = gauss_quadrature(*ahead.tridiagonal())
    nodes_fresh, _ = gauss_quadrature(*fresh.tridiagonal())
    np.testing.assert_allclose(nodes_ahead, nodes_fresh, rtol=0, atol=1e-13 * norm_a)
    np.testing.assert_allclose(nodes_ahead[-20:], np.sort(lam)[-20:], rtol=1e-10)


@pytest.mark.parametrize("threads", [2, pytest.param(3, marks=pytest.mark.slow), pytest.param(7, marks=pytest.mark.slow)])
@pytest.mark.parametrize("cgs2", [False, True], ids=["dgks", "cgs2"])
def test_sweeps_on_threads_are_bit_identical_to_one_thread(threads, cgs2):
    """The basis products spread over threads give the same bits as on one thread (n = 1501:
    spans of unequal length), with one Gram–Schmidt pass or two at every step."""
    lam, a = hessian_like_problem(n=1501, seed=42)
    norm_a = np.max(np.abs(lam))
    v0 = start_vector(a.shape[0], seed=5)
    options = LanczosOptions(dgks_eta=2.0) if cgs2 else LanczosOptions()
    one = run_state(lambda v: a @ v, v0, 90, options=options)
    with BasisSweeps(threads) as sweeps:
        spread = run_state(lambda v: a @ v, v0, 90, sweeps=sweeps, options=options)
    assert spread.second_passes == one.second_passes == (90 if cgs2 else 0)
    assert np.array_equal(spread.alpha, one.alpha) and np.array_equal(spread.beta, one.beta)
    assert np.array_equal(spread.basis, one.basis)
    assert orthogonality_loss(spread.basis[:91]) <= 1e-14 and relation_residual(a, spread) <= 1e-14 * norm_a


def test_sweeps_need_a_positive_thread_count():
    with pytest.raises(ValueError, match="threads must be a positive integer, got 0"):
        BasisSweeps(0)


def test_second_pass_only_when_the_first_loses_norm():
    """No second pass on a well-separated run; forcing it at every step (classical CGS2)
    changes the Ritz values by no more than 1e-13·‖A‖."""
    lam, a = hessian_like_problem(seed=41)
    norm_a = np.max(np.abs(lam))
    v0 = start_vector(a.shape[0], seed=4)
    once = run_state(lambda v: a @ v, v0, 90)
    twice = run_state(lambda v: a @ v, v0, 90, options=LanczosOptions(dgks_eta=2.0))
    assert once.second_passes == 0 and twice.second_passes == 90
    assert orthogonality_loss(twice.basis[:91]) <= 1e-14
    np.testing.assert_allclose(
        gauss_quadrature(*once.tridiagonal())[0], gauss_quadrature(*twice.tridiagonal())[0], rtol=0, atol=1e-13 * norm_a
    )


def test_product_taken_before_reorthogonalisation_is_bit_identical():
    """The runner's order (next product before re-orthogonalising) gives exactly the
    tridiagonal of ``advance``, and one product per step."""
    rng = np.random.default_rng(42)
    a = matrix_with_spectrum(known_spectrum("bulk_outliers", 400, rng), rng)
    v0 = start_vector(400, seed=8)
    sequential = run_state(lambda v: a @ v, v0, 60)
    pipelined, products = run_pipelined(lambda v: a @ v, v0, 60)
    assert products == 60
    assert np.array_equal(pipelined.alpha, sequential.alpha) and np.array_equal(pipelined.beta, sequential.beta)


def test_lookahead_survives_a_tiny_off_diagonal():
    """v₀ ∝ e₀ + 1e-9·(e₁ + e₂) on diag(λ): β₀ = 2.2e-9·‖A‖, so the look-ahead correction
    is divided by a tiny norm; the Ritz values are still exact and the draw ends on the
    3-dimensional invariant subspace."""
    lam = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    apply, dim = diagonal_operator(lam)
    v0 = np.array([1.0, 1e-9, 1e-9, 0.0, 0.0])
    state, _ = run_pipelined(apply, v0, 5)
    nodes, _ = gauss_quadrature(*state.tridiagonal())
    assert state.steps == 3 and state.breakdown
    np.testing.assert_allclose(nodes, [1.0, 2.0, 3.0], rtol=0, atol=1e-8)


def test_step_halves_are_ordered():
    rng = np.random.default_rng(43)
    a = matrix_with_spectrum(known_spectrum("indefinite", 30, rng), rng)
    state = start_state(start_vector(30, seed=0), 5)
    assert state.phase is Phase.MULTIPLY
    with pytest.raises(RuntimeError, match="follows accept"):
        reorthogonalize(state)
    accept(state, a @ state.vector)
    assert state.phase is Phase.REORTHOGONALIZE
    with pytest.raises(RuntimeError, match="phase REORTHOGONALIZE after 1 steps"):
        accept(state, a @ state.vector)
    reorthogonalize(state)
    assert state.steps == 1 and state.phase is Phase.MULTIPLY


def test_options_must_be_positive():
    with pytest.raises(ValueError, match="dgks_eta must be a positive number, got 0"):
        LanczosOptions(dgks_eta=0)


# --------------------------------------------------------------------------- Gauss quadrature


def test_gauss_quadrature_is_exact_to_degree_2m_minus_1():
    """v₀ᵀAᵏv₀ = Σⱼ wⱼθⱼᵏ for k = 0 … 2m−1 (n = 500, m = 20, spectrum in [-1, 1]).

    Tolerance: |lhs − rhs| ≤ 1e-12·(k+1)·‖A‖ᵏ. Both sides are bounded by ‖A‖ᵏ = 1
    (Σw = 1, |θ| ≤ ‖A‖), and every matrix power / Lanczos step adds O(√n·ε) relative
    error, so the error grows at most linearly in k; observed errors are ~1e-15.
    """
    rng = np.random.default_rng(20)
    lam = unit_interval_spectrum(500, rng)
    a = matrix_with_spectrum(lam, rng)
    m = 20
    v0 = start_vector(a.shape[0], seed=1)
    result = lanczos(a, order=m, v0=v0)
    assert result.steps == m
    nodes, weights = gauss_quadrature(result.alpha, result.beta)
    k = np.arange(2 * m)
    lhs = krylov_moments(lambda u: a @ u, v0, 2 * m)
    rhs = np.array([np.sum(weights * nodes**p) for p in k])
    norm_a = np.max(np.abs(lam))
    assert np.all(np.abs(lhs - rhs) <= 1e-12 * (k + 1) * norm_a**k)


def test_gauss_quadrature_defect_at_degree_2m():
    """Degree 2m is the first inexact moment: v₀ᵀA²ᵐv₀ − Σwθ²ᵐ = (β₀ ⋯ β_{m−1})².

    (From Aᵐv₀ = Vᵀ Tᵐ e₀ + β₀⋯β_{m−1} v_m.) With m = 6 and spectrum in [-1, 1] the defect
    is ~1e-4, far above rounding, so it is checked to 1e-8 relative.
    """
    rng = np.random.default_rng(21)
    lam = unit_interval_spectrum(500, rng)
    apply, dim = diagonal_operator(lam)
    m = 6
    v0 = start_vector(dim, seed=2)
    result = lanczos(apply, dim, order=m, v0=v0)
    nodes, weights = gauss_quadrature(result.alpha, result.beta)
    lhs = krylov_moments(apply, v0, 2 * m + 1)[2 * m]
    defect = lhs - np.sum(weights * nodes ** (2 * m))
    expected = np.prod(result.beta) ** 2 * result.residual_norm**2
    assert expected > 1e-6
    np.testing.assert_allclose(defect, expected, rtol=1e-8)


# --------------------------------------------------------------------------- breakdown


@pytest.mark.parametrize("kind", ["dense", "diagonal"])
def test_breakdown_after_k_distinct_eigenvalues(kind):
    """7 distinct eigenvalues with multiplicities (n = 300), order 40: stop after 7 steps.

    The nodes equal the 7 eigenvalues to 1e-10 relative; for the diagonal operator the
    weights equal ‖P_i v₀‖², the start vector's mass on each eigenspace (1e-12).
    """
    rng = np.random.default_rng(7)
    values = np.linspace(-3.0, 4.0, 7) + 0.25
    counts = rng.multinomial(300 - 7, np.full(7, 1 / 7)) + 1
    lam = np.repeat(values, counts)
    rng.shuffle(lam)
    operator, dim, _ = operator_of_kind(kind, lam, rng)
    v0 = start_vector(lam.size, seed=4)
    result = lanczos(operator, dim if kind == "diagonal" else None, order=40, v0=v0)
    assert result.steps == values.size
    assert result.breakdown is True
    assert result.alpha.shape == (7,) and result.beta.shape == (6,)
    assert np.all(np.isfinite(result.alpha)) and np.all(np.isfinite(result.beta))
    assert np.all(result.beta > 0.0)
    assert result.residual_norm == 0.0
    nodes, weights = gauss_quadrature(result.alpha, result.beta)
    np.testing.assert_allclose(nodes, values, rtol=1e-10)
    if kind == "diagonal":
        mass = np.array([np.sum(v0[lam == value] ** 2) for value in values])
        np.testing.assert_allclose(weights, mass, rtol=0, atol=1e-12)


def test_breakdown_state_is_clean_and_final():
    """At breakdown the state is done, its next row is zero, and advance refuses to go on."""
    lam = np.repeat([-1.0, 2.0, 5.0], [10, 20, 30])
    apply, dim = diagonal_operator(lam)
    state = run_state(apply, start_vector(dim, seed=0), 10)
    assert state.done and state.breakdown and state.steps == 3
    assert state.beta[2] == 0.0 and np.all(np.isfinite(state.beta))
    assert not np.any(state.basis[3])
    assert np.all(state.alpha[3:] == 0.0)
    with pytest.raises(RuntimeError, match="phase DONE after 3 steps"):
        advance(state, apply(np.ones(dim)))


# --------------------------------------------------------------------------- resume


@pytest.mark.parametrize("stop_after", [0, 1, 23, 23.5])
@pytest.mark.parametrize("where", ["memory", "disk"])
def test_resume_is_bit_identical(where, stop_after, tmp_path):
    """Snapshot after step j (npz, loaded with allow_pickle=False) + basis, resume: identical T.
    ``23.5``: saved between the halves of step 24 (the phase is part of the state)."""
    rng = np.random.default_rng(31)
    a = matrix_with_spectrum(known_spectrum("indefinite", 300, rng), rng)
    m = 40
    reference = lanczos(a, order=m, seed=9, draw=2, return_basis=True)

    v0 = start_vector(a.shape[0], seed=9, draw=2)
    state = start_state(v0, m, basis=fresh_basis(where, m + 1, a.shape[0], tmp_path))
    for _ in range(int(stop_after)):
        advance(state, a @ state.vector)
    if stop_after % 1:
        accept(state, a @ state.vector)
    np.savez(tmp_path / "state.npz", **state_arrays(state))
    if where == "memory":
        np.save(tmp_path / "basis_copy.npy", state.basis)
    else:
        state.basis.flush()
    del state

    with np.load(tmp_path / "state.npz", allow_pickle=False) as stored:
        snapshot = {key: stored[key] for key in stored.files}
    if where == "memory":
        basis = np.load(tmp_path / "basis_copy.npy", allow_pickle=False)
    else:
        basis = open_basis(tmp_path / "basis.npy")
    resumed = state_from_arrays(snapshot, basis)
    assert resumed.steps == round(stop_after + 0.25)
    if resumed.phase is Phase.REORTHOGONALIZE:
        reorthogonalize(resumed)
    while not resumed.done:
        advance(resumed, a @ resumed.vector)

    alpha, beta = resumed.tridiagonal()
    assert resumed.steps == reference.steps == m
    assert np.array_equal(alpha, reference.alpha)
    assert np.array_equal(beta, reference.beta)
    assert resumed.beta[m - 1] == reference.residual_norm
    assert np.array_equal(resumed.basis[:m], reference.basis)


def test_disk_basis_matches_memory_basis(tmp_path):
    """``lanczos(..., basis_path=...)`` (memmap) and the in-memory basis give identical results."""
    rng = np.random.default_rng(32)
    a = matrix_with_spectrum(known_spectrum("bulk_outliers", 400, rng), rng)
    in_memory = lanczos(a, order=60, seed=1, return_basis=True)
    path = tmp_path / "run" / "basis.npy"
    path.parent.mkdir()
    on_disk = lanczos(a, order=60, seed=1, basis_path=path, return_basis=True)
    assert path.exists()
    assert np.array_equal(in_memory.alpha, on_disk.alpha)
    assert np.array_equal(in_memory.beta, on_disk.beta)
    assert in_memory.residual_norm == on_disk.residual_norm
    assert np.array_equal(in_memory.basis, np.asarray(on_disk.basis))
    assert np.array_equal(open_basis(path)[:60], in_memory.basis)


# --------------------------------------------------------------------------- seeds, start vectors


def test_same_seed_is_bit_identical_and_draws_differ():
    rng = np.random.default_rng(40)
    a = matrix_with_spectrum(known_spectrum("indefinite", 200, rng), rng)
    first = lanczos(a, order=30, seed=12, draw=3)
    again = lanczos(a, order=30, seed=12, draw=3)
    assert np.array_equal(first.alpha, again.alpha) and np.array_equal(first.beta, again.beta)
    other = lanczos(a, order=30, seed=12, draw=4)
    assert not np.allclose(first.alpha, other.alpha)

    starts = np.array([start_vector(200, seed=12, draw=d) for d in range(5)])
    gram = np.abs(starts @ starts.T - np.eye(5))
    assert np.max(gram) < 0.5  # independent unit vectors in R^200: |cos| ~ 0.07
    assert not np.array_equal(start_vector(200, seed=12), start_vector(200, seed=13))
    # lanczos starts from start_vector(dim, seed, draw) (re-normalised, hence 1 ulp).
    run = lanczos(a, order=3, seed=12, draw=3, return_basis=True)
    np.testing.assert_allclose(run.basis[0], start_vector(200, seed=12, draw=3), rtol=1e-15, atol=0)


def test_start_vector_distributions_and_global_rng():
    n = 301
    for d in range(3):
        v = start_vector(n, seed=5, draw=d, distribution="rademacher")
        np.testing.assert_allclose(np.abs(v), 1.0 / np.sqrt(n), rtol=1e-15, atol=0)
        assert np.any(v > 0) and np.any(v < 0)
        g = start_vector(n, seed=5, draw=d)
        np.testing.assert_allclose(np.linalg.norm(g), 1.0, rtol=1e-15)
        assert len(np.unique(np.abs(g))) > n // 2
    a = np.diag(np.arange(1.0, n + 1))
    run = lanczos(a, order=2, seed=5, draw=1, distribution="rademacher", return_basis=True)
    np.testing.assert_allclose(
        run.basis[0], start_vector(n, seed=5, draw=1, distribution="rademacher"), rtol=1e-15, atol=0
    )

    np.random.seed(1234)
    expected = np.random.random(3)
    np.random.seed(1234)
    start_vector(n, seed=0)
    lanczos(a, order=4, seed=0)
    assert np.array_equal(np.random.random(3), expected)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("order", [0, -3])
def test_non_positive_order_is_rejected(order):
    a = np.eye(4)
    with pytest.raises(ValueError, match=value_pattern("order", order)):
        lanczos(a, order=order)
    with pytest.raises(ValueError, match=value_pattern("order", order)):
        start_state(np.ones(4), order)


@pytest.mark.parametrize("dim", [0, -2])
def test_non_positive_dim_is_rejected(dim):
    with pytest.raises(ValueError, match=value_pattern("dim", dim)):
        lanczos(lambda v: v, dim, order=3)
    with pytest.raises(ValueError, match=value_pattern("dim", dim)):
        start_vector(dim, seed=0)
    with pytest.raises(ValueError, match=value_pattern("dim", dim)):
        allocate_basis(3, dim)


@pytest.mark.parametrize("shape_of", [lambda n: (n - 1,), lambda n: (n, 1), lambda n: (2 * n,)])
def test_matvec_of_wrong_shape_is_rejected(shape_of):
    n = 10
    shape = shape_of(n)
    with pytest.raises(ValueError, match=re.escape(str(shape))):
        lanczos(lambda v: np.ones(shape), n, order=4)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_matvec_is_rejected(bad):
    n = 12
    calls = []

    def matvec(v):
        calls.append(1)
        out = np.arange(1.0, n + 1) * v
        if len(calls) == 3:
            out[5] = bad
        return out

    with pytest.raises(ValueError, match="non-finite"):
        lanczos(matvec, n, order=6)
    assert len(calls) == 3


def test_zero_norm_start_vector_is_rejected():
    a = np.eye(5)
    with pytest.raises(ValueError, match=r"norm.*\b0\.0\b"):
        lanczos(a, order=3, v0=np.zeros(5))
    with pytest.raises(ValueError, match=r"norm.*\b0\.0\b"):
        start_state(np.zeros(5), 3)
    with pytest.raises(ValueError, match="nan"):
        start_state(np.array([1.0, np.nan, 0.0]), 2)
    with pytest.raises(ValueError, match=re.escape("(6,)")):
        lanczos(a, order=3, v0=np.ones(6))


def test_bad_start_vector_options_are_rejected():
    with pytest.raises(ValueError, match="'uniform'"):
        start_vector(5, seed=0, distribution="uniform")
    with pytest.raises(ValueError, match="seed=-1"):
        start_vector(5, seed=-1)
    with pytest.raises(ValueError, match="draw=-2"):
        start_vector(5, seed=0, draw=-2)


# --------------------------------------------------------------------------- clamping, state API


def test_order_larger_than_dim_is_clamped():
    rng = np.random.default_rng(50)
    lam = known_spectrum("indefinite", 30, rng)
    a = matrix_with_spectrum(lam, rng)
    result = lanczos(a, order=100, seed=0)
    assert result.steps == 30 and not result.breakdown
    assert result.alpha.shape == (30,) and result.beta.shape == (29,)
    nodes, _ = gauss_quadrature(result.alpha, result.beta)
    np.testing.assert_allclose(nodes, np.linalg.eigvalsh(a), rtol=0, atol=1e-10 * np.max(np.abs(lam)))
    state = start_state(np.ones(30), 100)
    assert state.order == 30 and state.basis.shape == (31, 30)


def test_advance_copies_the_product_and_vector_is_read_only():
    rng = np.random.default_rng(51)
    a = matrix_with_spectrum(known_spectrum("indefinite", 20, rng), rng)
    state = start_state(start_vector(20, seed=0), 5)
    product = a @ state.vector
    kept = product.copy()
    advance(state, product)
    assert np.array_equal(product, kept)
    with pytest.raises(ValueError):
        state.vector[0] = 1.0
    assert state.steps == 1 and state.alpha[0] == pytest.approx(kept @ state.basis[0], rel=1e-14)
