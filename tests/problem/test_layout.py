"""Parameter layout: named blocks of the flat vector, for both backends, and split_vector."""

from __future__ import annotations

import json

import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import raylanczos as rl
from raylanczos.examples import digits
from raylanczos.operators.shard_worker import ShardWorker
from raylanczos.problem.layout import ParameterLayout, unique_names

WHOLE = rl.Shard(0, ((0, 1797),))


def test_jax_layout_follows_ravel_pytree():
    problem = digits.tiny_problem()
    worker = ShardWorker(problem, WHOLE)
    layout = worker.backend.layout
    assert layout.names == ["0/b", "0/w", "1/b", "1/w"]  # dict keys sorted, as JAX flattens them
    assert layout.num_params == worker.backend.num_params == 310
    flat, _ = ravel_pytree(problem.params)
    parts = rl.split_vector(np.asarray(flat), layout)
    for i, layer in enumerate(problem.params):
        for key in ("w", "b"):
            assert np.array_equal(parts[f"{i}/{key}"], layer[key])


def test_layout_is_json_ready_and_reads_back():
    entries = ShardWorker(digits.tiny_problem(), WHOLE).parameter_layout()
    assert json.loads(json.dumps(entries)) == entries
    assert entries[1] == {"name": "0/w", "shape": [64, 4], "offset": 4, "size": 256}
    vector = np.arange(310.0)
    parts = rl.split_vector(vector, entries)  # the summary.json form
    assert parts["0/w"].shape == (64, 4) and parts["0/w"][0, 0] == 4.0 and parts["1/w"][-1, -1] == 309.0
    assert ParameterLayout.from_json(entries).to_json() == entries


def test_split_vector_refuses_a_vector_of_the_wrong_length():
    layout = ParameterLayout.from_shapes([("a", (2, 3)), ("b", (4,))])
    with pytest.raises(ValueError, match=r"flat vector of 10 parameters, got an array of shape \(9,\)"):
        rl.split_vector(np.zeros(9), layout)
    with pytest.raises(ValueError, match=r"shape \(2, 5\)"):
        rl.split_vector(np.zeros((2, 5)), layout)


def test_layouts_must_be_contiguous_and_uniquely_named():
    with pytest.raises(ValueError, match="'b' starts at offset 7, expected 6"):
        ParameterLayout.from_json([{"name": "a", "shape": [6], "offset": 0, "size": 6},
                                   {"name": "b", "shape": [1], "offset": 7, "size": 1}])
    with pytest.raises(ValueError, match="'a' appears twice"):
        ParameterLayout.from_shapes([("a", (1,)), ("a", (1,))])
    with pytest.raises(ValueError, match="cannot read it"):
        ParameterLayout.from_json([{"name": "a"}])
    assert unique_names(["k", "k", "k#1", "j"]) == ["k", "k#2", "k#1", "j"]


def test_keras_layout_follows_trainable_variables():
    pytest.importorskip("tensorflow")
    from raylanczos.examples import digits_keras

    problem = digits_keras.tiny_problem()
    worker = ShardWorker(problem, WHOLE)
    model = problem.params
    assert [b["name"] for b in worker.parameter_layout()] == [
        "digits_mlp/hidden_0/kernel", "digits_mlp/hidden_0/bias", "digits_mlp/logits/kernel", "digits_mlp/logits/bias"
    ]
    flat = np.concatenate([v.numpy().ravel() for v in model.trainable_variables])
    parts = rl.split_vector(flat, worker.backend.layout)
    assert all(np.array_equal(parts[v.path], v.numpy()) for v in model.trainable_variables)
