"""The bundled examples' cache of trained weights."""

from __future__ import annotations

import numpy as np
import pytest

from raylanczos.examples import digits, digits_data

HIDDEN, STEPS, SEED = (8,), 20, 3


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYLANCZOS_CACHE", str(tmp_path / "cache"))
    digits.trained_params.cache_clear()
    yield tmp_path / "cache"
    digits.trained_params.cache_clear()


def assert_same_layers(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.keys() == b.keys()
        for name in a:
            assert a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name])


def test_trained_weights_are_saved_once_and_loaded_bit_identical(cache):
    trained = digits.train_params(HIDDEN, STEPS, SEED)
    first = digits.trained_params(HIDDEN, STEPS, SEED)
    (saved,) = cache.glob("digits-mlp-8-adam20-seed3-*.npz")
    digits.trained_params.cache_clear()
    stamp = saved.stat().st_mtime_ns
    loaded = digits.trained_params(HIDDEN, STEPS, SEED)
    assert saved.stat().st_mtime_ns == stamp  # loaded, not trained and saved again
    assert_same_layers(first, trained)
    assert_same_layers(loaded, trained)


def test_a_damaged_cache_file_is_replaced_by_training(cache):
    cache.mkdir()
    digits.trained_params(HIDDEN, STEPS, SEED)
    (saved,) = cache.glob("*.npz")
    saved.write_bytes(saved.read_bytes()[:100])  # truncated: a zip archive's start, no directory
    digits.trained_params.cache_clear()
    assert_same_layers(digits.trained_params(HIDDEN, STEPS, SEED), digits.train_params(HIDDEN, STEPS, SEED))
    assert_same_layers(digits_data.cached_layers(saved.stem, lambda: pytest.fail("trained again")), digits.train_params(HIDDEN, STEPS, SEED))


def test_an_unwritable_cache_only_means_training_each_time(cache):
    cache.write_text("a file where the cache directory should be")
    assert_same_layers(digits.trained_params(HIDDEN, STEPS, SEED), digits.train_params(HIDDEN, STEPS, SEED))
    assert cache.read_text() == "a file where the cache directory should be"


def test_a_failed_save_leaves_no_partial_file(cache, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(digits_data.np, "savez", disk_full)
    assert_same_layers(digits.trained_params(HIDDEN, STEPS, SEED), digits.train_params(HIDDEN, STEPS, SEED))
    assert list(cache.iterdir()) == []
