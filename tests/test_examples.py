"""The bundled examples: the cache of trained weights, and the digits MLP at a training step."""

from __future__ import annotations

import re

import numpy as np
import pytest

import raylanczos as rl
from raylanczos.examples import digits, digits_data
from raylanczos.operators.local import LocalHessian
from raylanczos.problem.definition import build_problem

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
    (saved,) = cache.glob("digits-mlp-*.npz")
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


def test_at_step_takes_the_training_step_and_its_outliers_move():
    """``at_step`` is a factory with a default and a ``step`` keyword (a sweep's argument);
    λ_max (20 Lanczos steps, in process) falls from step 0 to 30 to 300 by over 1.5× each."""
    default = build_problem("raylanczos.examples.digits:at_step")
    assert default.params[0]["w"].shape == (64, 32)
    assert all(np.array_equal(a["w"], b["w"]) for a, b in zip(default.params, digits.problem().params))
    top = []
    for step in (0, 30, 300):
        run = rl.lanczos(LocalHessian(build_problem("raylanczos.examples.digits:at_step", {"step": step})), order=20, seed=0)
        top.append(np.linalg.eigvalsh(np.diag(run.alpha) + np.diag(run.beta, 1) + np.diag(run.beta, -1))[-1])
    assert top[0] > 1.5 * top[1] and top[1] > 1.5 * top[2] > 0


@pytest.mark.parametrize("step", [-1, 2.5, "30", True])
def test_at_step_refuses_a_step_that_is_not_a_count(step):
    with pytest.raises(rl.ProblemError, match=f"step must be a non-negative integer \\(Adam steps\\), got {re.escape(repr(step))}"):
        digits.at_step(step=step)


def test_the_digits_come_from_scikit_learn_once_then_from_the_cache(cache):
    """A process that finds the digits in the cache does not import scikit-learn (a second
    of every worker's start-up)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from raylanczos.examples.digits_data import load_digits\n"
        "x, y = load_digits()\n"
        "print(x.shape, y.shape, x.dtype, y.dtype, 'sklearn' in sys.modules)\n"
    )
    env = {"RAYLANCZOS_CACHE": str(cache), "PATH": "/usr/bin:/bin"}
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert first.stdout.strip() == "(1797, 64) (1797,) float32 int32 True", first.stderr
    assert second.stdout.strip() == "(1797, 64) (1797,) float32 int32 False", second.stderr
    x, y = digits_data.load_digits()
    with np.load(cache / "digits-data.npz") as saved:
        assert np.array_equal(saved["x"], x) and np.array_equal(saved["y"], y)
