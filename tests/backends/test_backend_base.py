"""The batch loop every backend shares (raylanczos.backends.base), on a framework-free backend
whose batch operator is a dense matrix: weighting by batch size, both sums, the search for
a non-finite batch."""

from __future__ import annotations

import numpy as np
import pytest

from raylanczos.backends.base import ShardBackend, cast_floating


class OuterProducts(ShardBackend):
    """C_b = (1/|b|) Σ_{i∈b} xᵢ xᵢᵀ, the Hessian of the mean of ½ (xᵢ·θ)² over batch b."""

    def __init__(self, x: np.ndarray, batch_size: int, *, on_device: bool):
        self.num_params = x.shape[1]
        self.accumulates_on_device = on_device
        self._batches = [batch["x"] for batch in self._split_batches({"x": x}, batch_size, None)]

    def _tangents(self, block):
        return block

    def _batch_product(self, tangents, batch):
        return (tangents @ batch.T @ batch) / batch.shape[0]

    def _add_batch(self, total, size, tangents, batch):
        return total + size * self._batch_product(tangents, batch)

    def _zero_sums(self, shape):
        return np.zeros(shape)

    def _to_host(self, products):
        return np.asarray(products, dtype=np.float64)


@pytest.fixture
def x() -> np.ndarray:
    return np.random.default_rng(3).standard_normal((23, 6))


@pytest.mark.parametrize("on_device", [True, False], ids=["device-sum", "host-sum"])
def test_ragged_batches_are_weighted_by_their_size(x, on_device):
    """Batches of 5, 5, 5, 5, 3: Σ_b |b| C_b V equals Σᵢ xᵢ xᵢᵀ V, the whole shard's sum."""
    backend = OuterProducts(x, 5, on_device=on_device)
    block = np.random.default_rng(4).standard_normal((3, 6))
    total, count = backend.product_sum(block)
    assert backend.batch_sizes == [5, 5, 5, 5, 3] and count == 23
    np.testing.assert_allclose(total, block @ x.T @ x, rtol=1e-13, atol=1e-13)
    equal_weights = np.mean([p for _, _, p in backend.batch_products(block)], axis=0) * count
    assert not np.allclose(equal_weights, total, rtol=1e-3)


def test_both_sums_add_the_same_products_in_the_same_order(x):
    block = np.random.default_rng(5).standard_normal((2, 6))
    on_device = OuterProducts(x, 4, on_device=True).product_sum(block)[0]
    on_host = OuterProducts(x, 4, on_device=False).product_sum(block)[0]
    assert np.array_equal(on_device, on_host)


def test_batch_products_name_their_rows_and_a_non_finite_batch_is_found(x):
    x = x.copy()
    x[17, 2] = np.nan
    backend = OuterProducts(x, 5, on_device=True)
    rows = [(first, stop) for first, stop, _ in backend.batch_products(np.ones((1, 6)))]
    assert rows == [(0, 5), (5, 10), (10, 15), (15, 20), (20, 23)]
    assert backend.first_non_finite_batch(np.ones((1, 6))) == (15, 20, 6)
    assert OuterProducts(x[:15], 5, on_device=True).first_non_finite_batch(np.ones((1, 6))) is None


def test_a_block_of_the_wrong_shape_is_refused(x):
    with pytest.raises(ValueError, match=r"shape \(B, 6\), got shape \(0, 6\)"):
        OuterProducts(x, 5, on_device=False).product_sum(np.ones((0, 6)))


def test_cast_floating_casts_only_floating_arrays():
    arrays = {"x": np.ones((2, 3), np.float32), "y": np.arange(2)}
    cast = cast_floating(arrays, np.dtype(np.float64))
    assert cast["x"].dtype == np.float64 and cast["y"].dtype == arrays["y"].dtype
    assert cast_floating(arrays, None)["x"] is arrays["x"]
