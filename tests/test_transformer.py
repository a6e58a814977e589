"""The transformer example: its text, its size, its blocks, its cache, and its float64
Hessian's extremes against the dense Hessian."""

from __future__ import annotations

import re

import jax
import numpy as np
import pytest

import raylanczos as rl
from raylanczos.backends.jax import pytree_layout
from raylanczos.examples import transformer
from raylanczos.operators.local import LocalHessian
from raylanczos.problem.blocks import select_blocks
from raylanczos.problem.definition import build_problem
from tests.hessians import tiny_transformer_hessian

SHAPE, STEPS, SEED = transformer.TINY, 5, 3


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYLANCZOS_CACHE", str(tmp_path / "cache"))
    transformer.trained_params.cache_clear()
    yield tmp_path / "cache"
    transformer.trained_params.cache_clear()


def expected_count(shape: transformer.TransformerShape, vocabulary: int) -> int:
    d = shape.d_model
    attention = 4 * (d * d + d)
    mlp = d * shape.mlp + shape.mlp + shape.mlp * d + d
    return vocabulary * d + shape.context * d + shape.layers * (attention + mlp) + d * vocabulary + vocabulary


def test_the_text_is_pythons_documentation_topics_character_by_character():
    from pydoc_data.topics import topics

    text = transformer.text()
    assert text.startswith(topics[min(topics)]) and text.endswith(topics[max(topics)]) and len(text) > 100_000
    vocabulary = transformer.vocabulary()
    assert list(vocabulary) == sorted(set(text))
    tokens = transformer.encoded_text()
    assert tokens.dtype == np.int32 and "".join(vocabulary[i] for i in tokens[:5000]) == text[:5000]


def test_the_hessians_windows_are_evenly_spaced_and_their_targets_the_next_characters():
    tokens = transformer.encoded_text()
    windows = transformer.evaluation_windows(tokens, 128, 64)
    assert windows["x"].shape == windows["y"].shape == (128, 64)
    assert np.array_equal(windows["x"][:, 1:], windows["y"][:, :-1])
    assert np.array_equal(windows["x"][0], tokens[:64]) and np.array_equal(windows["y"][-1], tokens[-64:])


def test_the_default_model_has_about_a_million_parameters():
    problem = transformer.at_step(step=0)
    n = sum(leaf.size for leaf in jax.tree_util.tree_leaves(problem.params))
    assert n == expected_count(transformer.DEFAULT, len(transformer.vocabulary()))
    assert 800_000 < n < 1_100_000
    assert problem.num_examples == 128 and problem.batch_size == 32
    initial = transformer.init_params(transformer.DEFAULT, len(transformer.vocabulary()), 0)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(problem.params), jax.tree_util.tree_leaves(initial)))


def test_per_layer_gives_the_embedding_each_layers_attention_parts_and_mlp_and_the_head():
    problem = transformer.at_step(step=0)
    layout = pytree_layout(problem.params)
    blocks = select_blocks(layout, per_layer=True)
    parts = [f"layer{i}_{part}" for i in range(4) for part in ("attn_k", "attn_o", "attn_q", "attn_v", "mlp")]
    assert [b.name for b in blocks] == ["embed", "head", *parts]
    d, dims = 128, {b.name: b.dim for b in blocks}
    assert all(dims[f"layer{i}_attn_{p}"] == d * d + d for i in range(4) for p in "qkvo")
    assert all(dims[f"layer{i}_mlp"] == 2 * d * 512 + 512 + d for i in range(4))
    assert sum(dims.values()) == layout.num_params
    assert np.array_equal(np.sort(np.concatenate([b.indices for b in blocks])), np.arange(layout.num_params))


def test_the_model_is_causal():
    """Changing the last character of a window changes no earlier position's logits."""
    params = transformer.init_params(SHAPE, len(transformer.vocabulary()), 0)
    x = transformer.evaluation_windows(transformer.encoded_text(), 4, SHAPE.context)["x"]
    changed = x.copy()
    changed[:, -1] = (changed[:, -1] + 1) % len(transformer.vocabulary())
    before = np.asarray(transformer.forward(params, x, SHAPE.heads))
    after = np.asarray(transformer.forward(params, changed, SHAPE.heads))
    assert np.array_equal(before[:, :-1], after[:, :-1])
    assert not np.allclose(before[:, -1], after[:, -1])


@pytest.mark.slow
def test_training_lowers_the_loss_of_the_hessians_windows():
    def loss(step):
        problem = transformer.make_problem(SHAPE, train_steps=step, windows=32, batch_size=16)
        return float(problem.loss_fn(problem.params, problem.data.arrays))

    assert loss(200) < loss(0) - 0.5


def test_trained_weights_are_saved_once_and_loaded_bit_identical(cache):
    trained = transformer.train_params(SHAPE, STEPS, SEED)
    first = transformer.trained_params(SHAPE, STEPS, SEED)
    (saved,) = cache.glob(f"transformer-{SHAPE.name}-adam{STEPS}-seed{SEED}-text*-jax*.npz")
    transformer.trained_params.cache_clear()
    stamp = saved.stat().st_mtime_ns
    loaded = transformer.trained_params(SHAPE, STEPS, SEED)
    assert saved.stat().st_mtime_ns == stamp  # loaded, not trained and saved again
    for got in (first, loaded):
        assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(trained)
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(trained)):
            assert a.dtype == b.dtype == np.float32 and np.array_equal(a, b)
    initial = transformer.init_params(SHAPE, len(transformer.vocabulary()), SEED)
    assert not np.array_equal(loaded["head"]["w"], initial["head"]["w"])


def test_at_step_is_a_sweep_factory_whose_default_is_the_problem():
    default = build_problem("raylanczos.examples.transformer:at_step", {"step": 0})
    assert default.params["layer0_mlp"]["w_in"].shape == (128, 512)


@pytest.mark.parametrize("step", [-1, 2.5, "30", True])
def test_at_step_refuses_a_step_that_is_not_a_count(step):
    with pytest.raises(rl.ProblemError, match=f"step must be a non-negative integer \\(Adam steps\\), got {re.escape(repr(step))}"):
        transformer.at_step(step=step)


@pytest.mark.slow
def test_float64_extremes_of_the_tiny_transformer_match_the_dense_hessian():
    """60 Lanczos steps of float64 products reach the dense Hessian's λ_max and λ_min to
    1e-8·‖H‖ (2,383 parameters; λ ≈ 33.5 and −8.6 with Python 3.11's text)."""
    problem = transformer.tiny_problem()
    n = sum(leaf.size for leaf in jax.tree_util.tree_leaves(problem.params))
    assert 1000 < n < 5000 and n == expected_count(SHAPE, len(transformer.vocabulary()))
    dense = tiny_transformer_hessian()
    exact = np.linalg.eigvalsh(dense)
    norm = np.max(np.abs(exact))
    operator = LocalHessian(problem, compute_dtype="float64")
    vector = np.random.default_rng(1).standard_normal(n)
    assert np.max(np.abs(operator.matvec(vector) - dense @ vector)) < 1e-12 * norm * np.linalg.norm(vector)
    run = rl.lanczos(operator, order=60, seed=0)
    ritz = np.linalg.eigvalsh(np.diag(run.alpha) + np.diag(run.beta, 1) + np.diag(run.beta, -1))
    assert abs(ritz[-1] - exact[-1]) < 1e-8 * norm
    assert abs(ritz[0] - exact[0]) < 1e-8 * norm
    assert exact[0] < -1e-3 * norm  # a trained transformer's Hessian is indefinite
