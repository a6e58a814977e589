"""The JAX backend's HVPs against the dense float64 Hessian of the digits MLP."""

from __future__ import annotations

import numpy as np
import pytest

import raylanczos as rl
from raylanczos.backends import make_backend
from raylanczos.examples import digits
from raylanczos.operators.local import LocalHessian
from tests import problems
from tests.hessians import tiny_hessian
from tests.matrices import UNEQUAL_SHARDS, relative_error


@pytest.fixture(scope="module")
def vector() -> np.ndarray:
    return np.random.default_rng(7).standard_normal(tiny_hessian().shape[0])


def test_float64_hvp_matches_dense_hessian(vector):
    """Whole data in batches of 256: 7 full batches and a ragged one of 5 examples."""
    hessian = LocalHessian(digits.tiny_problem(), compute_dtype="float64")
    assert hessian.workers[0].backend.batch_sizes[-1] == 5
    assert relative_error(hessian.matvec(vector), tiny_hessian() @ vector) < 1e-10


def test_float32_hvp_matches_dense_hessian(vector):
    hessian = LocalHessian(digits.tiny_problem())
    assert hessian.workers[0].backend.dtype == np.float32
    assert relative_error(hessian.matvec(vector), tiny_hessian() @ vector) < 1e-5


def test_unequal_shards_with_ragged_batches_are_exact(vector):
    """Shards of 700, 597 and 500 rows: every shard ends in a ragged batch."""
    hessian = LocalHessian(digits.tiny_problem(), plan=UNEQUAL_SHARDS, compute_dtype="float64")
    assert [w.backend.batch_sizes[-1] for w in hessian.workers] == [700 - 512, 597 - 512, 500 - 256]
    assert relative_error(hessian.matvec(vector), tiny_hessian() @ vector) < 1e-10


@pytest.mark.parametrize("rows", [[0, 256], [256, 300], [0, 1797]], ids=["one-full-batch", "ragged-only", "full-and-ragged"])
def test_shard_sum_on_the_device_matches_the_batches_summed_on_the_host(vector, rows):
    """Float64 accumulation on the device equals Σ_b |b|·H_b v of the per-batch products
    summed on the host, whatever mix of full and ragged batches the shard has."""
    problem = digits.tiny_problem()
    backend = make_backend(problem, {k: v[slice(*rows)] for k, v in problem.data.arrays.items()})
    assert backend.accumulates_on_device
    block = np.stack([vector, -vector[::-1]])
    total, count = backend.product_sum(block)
    host = sum((stop - first) * product for first, stop, product in backend.batch_products(block))
    assert count == rows[1] - rows[0] and total.dtype == np.float64 and total.shape == (2, vector.size)
    assert relative_error(total, host) < 1e-6


def test_loss_changed_by_64_bit_tracing_is_summed_on_the_host(vector):
    """A loss building default-dtype arrays would compute in float64 if traced with 64-bit
    types on; such a loss keeps its float32 per-batch programs and a host float64 sum."""
    problem = problems.default_dtype_loss()
    backend = make_backend(problem, problem.data.arrays)
    assert not backend.accumulates_on_device and "float64 arrays" in backend.accumulation_note
    assert relative_error(backend.product_sum(vector[None])[0][0] / problem.num_examples, tiny_hessian() @ vector) < 1e-5
    assert make_backend(digits.tiny_problem(), problem.data.arrays).accumulates_on_device


def test_equal_batch_weighting_would_be_wrong(vector):
    """The reference weights batches by size; averaging batch HVPs equally differs measurably."""
    backend = LocalHessian(digits.tiny_problem(), compute_dtype="float64").workers[0].backend
    equal_weights = np.mean([product[0] for _, _, product in backend.batch_products(vector[None])], axis=0)
    assert relative_error(equal_weights, tiny_hessian() @ vector) > 1e-4


def test_non_scalar_loss_is_refused():
    problem = problems.vector_loss()
    with pytest.raises(rl.ProblemError, match=r"must return a scalar.*shape \(256,\)"):
        make_backend(problem, problem.data.arrays)


def test_integer_params_are_refused():
    problem = digits.tiny_problem()
    bad = rl.Problem.from_jax({"w": np.arange(3)}, problem.loss_fn, problem.data, 16)
    with pytest.raises(rl.ProblemError, match="floating-point"):
        make_backend(bad, bad.data.arrays)


def test_unknown_compute_dtype_is_refused():
    problem = digits.tiny_problem()
    with pytest.raises(ValueError, match="'float16'"):
        make_backend(problem, problem.data.arrays, compute_dtype="float16")


def test_nan_data_names_worker_shard_and_rows(vector):
    problem = problems.nan_data()
    hessian = LocalHessian(problem, plan=rl.ShardPlan.balanced(problem.num_examples, 2))
    with pytest.raises(RuntimeError, match=r"worker 1, shard 1 \(rows \[898, 1797\)\).*dataset rows \[898, 1154\)"):
        hessian.matvec(vector)


@pytest.mark.parametrize("compute_dtype, tolerance", [("float64", 1e-10), (None, 1e-5)])
def test_a_block_of_vectors_is_each_vectors_product(compute_dtype, tolerance):
    """B = 3 tangents in one pass (vmap): each row is that vector's Hessian product."""
    problem = digits.tiny_problem()
    backend = make_backend(problem, problem.data.arrays, compute_dtype=compute_dtype)
    block = np.random.default_rng(8).standard_normal((3, backend.num_params))
    total, count = backend.product_sum(block)
    for row, vector in zip(total, block):
        assert relative_error(row / count, tiny_hessian() @ vector) < tolerance


def test_one_vector_block_is_the_plain_product(vector):
    """B = 1 runs the single-vector program: bit-identical to the row of a one-vector pass."""
    backend = make_backend(digits.tiny_problem(), digits.tiny_problem().data.arrays)
    host = sum((stop - first) * product for first, stop, product in backend.batch_products(vector[None]))
    assert np.array_equal(backend.product_sum(vector[None])[0], backend.product_sum(vector[None])[0])
    assert relative_error(backend.product_sum(vector[None])[0], host) < 1e-6


def test_a_block_of_the_wrong_shape_is_refused():
    backend = make_backend(digits.tiny_problem(), digits.tiny_problem().data.arrays)
    with pytest.raises(ValueError, match=r"shape \(B, 310\), got shape \(309,\)"):
        backend.product_sum(np.ones(309))
    with pytest.raises(ValueError, match=r"shape \(B, 310\), got shape \(2, 311\)"):
        backend.product_sum(np.ones((2, 311)))


def test_a_loss_that_reads_a_missing_batch_entry_names_the_key():
    problem = digits.tiny_problem()

    def loss_fn(params, batch):
        return digits.mean_cross_entropy(params, {"x": batch["inputs"], "y": batch["y"]})

    bad = rl.Problem.from_jax(problem.params, loss_fn, problem.data, problem.batch_size)
    with pytest.raises(rl.ProblemError, match=r"loss_fn failed on the first batch \('x' \(256, 64\) float32.*KeyError: 'inputs'"):
        make_backend(bad, bad.data.arrays)
