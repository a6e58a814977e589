"""Parameter blocks: choosing them, and each block's spectrum against the dense H_bb.

The tiny digits MLP's flat vector is ``0/b`` [0, 4), ``0/w`` [4, 260), ``1/b`` [260, 270),
``1/w`` [270, 310) (``ravel_pytree`` order): the index sets below are written from that
layout, not computed by the code under test.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import raylanczos as rl
from raylanczos import cli
from raylanczos.numerics import spectrum
from raylanczos.operators.local import LocalHessian
from raylanczos.outputs.render import PartsResult
from raylanczos.problem.blocks import directory_name, select_blocks, top_level_groups
from raylanczos.problem.layout import ParameterLayout
from tests.conftest import WORKER_RESOURCES
from tests.hessians import tiny_hessian
from tests.spectra import assert_band_holds

TINY = "raylanczos.examples.digits:tiny_problem"
JAX_LAYOUT = ParameterLayout.from_shapes([("0/b", (4,)), ("0/w", (64, 4)), ("1/b", (10,)), ("1/w", (4, 10))])
KERAS_NAMES = ["digits_mlp/hidden_0/kernel", "digits_mlp/hidden_0/bias", "digits_mlp/logits/kernel", "digits_mlp/logits/bias"]
KERAS_LAYOUT = ParameterLayout.from_shapes(zip(KERAS_NAMES, [(64, 4), (4,), (4, 10), (10,)]))
#: Block → its positions in the tiny MLP's flat vector.
INDICES = {
    "0": np.r_[0:260],
    "1": np.r_[260:310],
    "all_w": np.r_[4:260, 270:310],
    "1_b": np.r_[260:270],
}
RUN = dict(num_workers=2, worker_resources=WORKER_RESOURCES, compute_dtype="float64", progress="none")
BLOCK_FILES = ("tridiag.npy", "spectrum.npz", "summary.json", "density.png")


def nearest_gaps(nodes: np.ndarray, eigenvalues: np.ndarray) -> tuple[float, float]:
    """(max over nodes of the distance to the nearest eigenvalue, max over eigenvalues of the
    distance to the nearest node): both small when the nodes are the distinct eigenvalues."""
    nodes = nodes[np.isfinite(nodes)]
    distances = np.abs(nodes[:, None] - eigenvalues[None, :])
    return float(distances.min(axis=1).max()), float(distances.min(axis=0).max())


def sub_block(name: str) -> np.ndarray:
    indices = INDICES[name]
    return tiny_hessian()[np.ix_(indices, indices)]


# ------------------------------------------------------------------ choosing blocks


def test_patterns_choose_tensors_in_layout_order():
    (weights,) = select_blocks(JAX_LAYOUT, ("*/w",))
    assert (weights.name, weights.pattern, weights.parameters, weights.dim) == ("all_w", "*/w", ("0/w", "1/w"), 296)
    assert np.array_equal(weights.indices, INDICES["all_w"]) and weights.indices.dtype == np.int64
    first, second = select_blocks(JAX_LAYOUT, ("1/b", "0/*"))
    assert (first.name, first.parameters) == ("1_b", ("1/b",)) and np.array_equal(first.indices, INDICES["1_b"])
    assert (second.name, second.parameters) == ("0_all", ("0/b", "0/w")) and np.array_equal(second.indices, INDICES["0"])
    assert select_blocks(JAX_LAYOUT) == []


def test_colliding_block_names_are_numbered():
    names = [b.name for b in select_blocks(JAX_LAYOUT, ("1/b", "1/b", "1[/]b"))]
    assert names == ["1_b", "1_b-2", "1_b-3"]


def test_per_layer_groups_jax_and_keras_names():
    layers = select_blocks(JAX_LAYOUT, per_layer=True)
    assert [(b.name, b.parameters) for b in layers] == [("0", ("0/b", "0/w")), ("1", ("1/b", "1/w"))]
    assert [b.dim for b in layers] == [260, 50]
    keras_layers = select_blocks(KERAS_LAYOUT, per_layer=True)
    assert [(b.name, b.parameters) for b in keras_layers] == [("hidden_0", tuple(KERAS_NAMES[:2])), ("logits", tuple(KERAS_NAMES[2:]))]
    assert np.array_equal(keras_layers[1].indices, np.r_[260:310])
    assert top_level_groups(["params"]) == {"params": ["params"]}
    assert top_level_groups(["w", "b"]) == {"w": ["w"], "b": ["b"]}


def test_the_keras_example_layout_is_grouped_by_layer():
    from raylanczos.backends.tf import keras_layout
    from raylanczos.examples import digits_keras

    layout = keras_layout(digits_keras.make_model((4,)))
    assert layout.names == KERAS_NAMES
    assert [b.name for b in select_blocks(layout, per_layer=True)] == ["hidden_0", "logits"]


@pytest.mark.parametrize("pattern", ["conv*", "", "0/W"])
def test_a_pattern_that_matches_nothing_is_refused_naming_the_parameters(pattern):
    with pytest.raises(rl.ProblemError, match=re.escape(f"block pattern '{pattern}' matches no parameter; the parameters are 0/b, 0/w, 1/b, 1/w")):
        select_blocks(JAX_LAYOUT, ("1/*", pattern))


def test_a_long_layout_is_listed_in_part():
    layout = ParameterLayout.from_shapes((f"layer_{i}/w", (2,)) for i in range(100))
    with pytest.raises(rl.ProblemError, match=r"layer_0/w, .*, layer_29/w, \.\.\. \(100 in all\)$"):
        select_blocks(layout, ("conv*",))


def test_patterns_and_per_layer_together_are_refused():
    with pytest.raises(rl.ProblemError, match=r"by patterns or per layer, not both; got patterns \['1/\*'\]"):
        select_blocks(JAX_LAYOUT, ("1/*",), per_layer=True)
    with pytest.raises(rl.OptionError, match="per_layer and blocks choose the blocks two ways"):
        rl.SpectrumConfig(blocks=("1/*",), per_layer=True)


@pytest.mark.parametrize(
    "pattern, name",
    [("0/*", "0_all"), ("*conv1*", "allconv1all"), ("layer?/w", "layerany_w"), ("a b/c:d", "a_b_c_d"), ("..", "block"), ("/x/", "x")],
)
def test_directory_names_are_file_system_safe(pattern, name):
    assert directory_name(pattern) == name


# ------------------------------------------------------------------ end to end through Ray


@pytest.mark.slow
def test_per_layer_run_through_the_cli(ray_session, tmp_path, capsys):
    """``--per-layer`` at full order: blocks 0 (n=260) and 1 (n=50), each block's nodes the
    eigenvalues of the dense sub-block H_bb; files per block, the overlay, load and re-render."""
    out = tmp_path / "layers"
    argv = [
        "run", "--problem", TINY, "--per-layer", "--order", "310", "--draws", "1", "--float64", "--workers", "2",
        "--cpus-per-worker", "0.5", "--out", str(out), "--quiet",
    ]
    assert cli.main(argv) == 0
    closing = capsys.readouterr().out
    lines = closing.splitlines()
    assert lines[0].split()[:4] == ["part", "n", "lambda_max", "lambda_min"], "a table, one row per block"
    assert [line.split()[:2] for line in lines[1:3]] == [["0", "260"], ["1", "50"]] and lines[-1] == f"→ {out}"
    for name, dim in (("0", 260), ("1", 50)):
        assert all((out / "blocks" / name / file).is_file() for file in BLOCK_FILES)
        summary = json.loads((out / "blocks" / name / "summary.json").read_text())
        assert summary["part"] == name and summary["config"]["num_params"] == dim and summary["config"]["order"] == dim
    top = json.loads((out / "summary.json").read_text())
    assert top["parts"] == {"0": "blocks/0", "1": "blocks/1"}
    assert [(row["part"], row["dim"]) for row in top["part_statistics"]] == [("0", 260), ("1", 50)]
    assert top["config"]["blocks"] == [{"name": "0", "pattern": "0", "dim": 260}, {"name": "1", "pattern": "1", "dim": 50}]
    assert (out / "density.png").stat().st_size > 0 and not (out / "spectrum.npz").exists()

    loaded = rl.load_result(out)
    assert list(loaded.parts) == ["0", "1"] and isinstance(loaded, PartsResult)
    for name, part in loaded.parts.items():
        eigenvalues = np.linalg.eigvalsh(sub_block(name))
        scale = np.abs(eigenvalues).max()
        assert max(nearest_gaps(part.nodes[0], eigenvalues)) <= 1e-10 * scale
        assert part.summary["lambda_max"] == pytest.approx(eigenvalues[-1], rel=1e-10)
        assert_band_holds(part.record.certificate, eigenvalues)  # one band per block, of H_bb

    redrawn = rl.rerender(out, rl.DensityConfig(sigma2_relative=1e-3), to=tmp_path / "redrawn")
    assert list(redrawn.parts) == ["0", "1"]
    assert all((tmp_path / "redrawn" / "blocks" / name / file).is_file() for name in "01" for file in BLOCK_FILES)
    assert rl.load_result(tmp_path / "redrawn").parts["1"].summary["density"]["sigma2_relative"] == 1e-3
    assert (tmp_path / "redrawn" / "density.png").is_file()


def test_a_bad_block_pattern_is_one_error_line(tmp_path, capsys):
    argv = ["run", "--problem", TINY, "--blocks", "1/*", "conv*", "--out", str(tmp_path / "bad"), "--quiet"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err == "raylanczos: error: block pattern 'conv*' matches no parameter; the parameters are 0/b, 0/w, 1/b, 1/w\n"
    assert not (tmp_path / "bad" / "summary.json").exists()


@pytest.mark.slow
def test_pattern_block_at_full_order_matches_the_dense_sub_block(ray_session, tmp_path):
    """``*/w``: the two weight matrices, not contiguous in the flat vector (n=296). The
    block's summary carries the block's own layout, so its eigenvectors split by name."""
    result = rl.hessian_spectrum(
        TINY, order=296, draws=1, blocks=("*/w",), out=tmp_path / "weights", top_eigenvectors=2, **RUN
    )
    part = result.parts["all_w"]
    assert part.summary["block"] == {"pattern": "*/w", "parameters": ["0/w", "1/w"], "dim": 296}
    vectors = np.load(tmp_path / "weights" / "blocks" / "all_w" / "eigenvectors.npy", allow_pickle=False)
    written = json.loads((tmp_path / "weights" / "blocks" / "all_w" / "summary.json").read_text())
    named = rl.split_vector(vectors[0], written["parameter_layout"])
    assert {name: array.shape for name, array in named.items()} == {"0/w": (64, 4), "1/w": (4, 10)}
    eigenvalues = np.linalg.eigvalsh(sub_block("all_w"))
    scale = np.abs(eigenvalues).max()
    assert max(nearest_gaps(part.nodes[0], eigenvalues)) <= 1e-10 * scale
    assert all((tmp_path / "weights" / "blocks" / "all_w" / file).is_file() for file in BLOCK_FILES)


class RestrictedHessian:
    """H_bb in this process: the tiny MLP's float64 Hessian on the same two shards as the
    Ray run, restricted to ``indices`` (vectors zero outside them)."""

    def __init__(self, hessian: LocalHessian, indices: np.ndarray):
        self.hessian, self.indices, self.dim = hessian, indices, indices.size

    def matvec(self, vector: np.ndarray) -> np.ndarray:
        full = np.zeros(self.hessian.dim)
        full[self.indices] = vector
        return self.hessian.matvec(full)[self.indices]


@pytest.mark.slow
def test_blocks_of_different_sizes_share_passes(ray_session):
    """Three draws per pass over two blocks (n=10 and n=296, 2 draws each, order 20): the
    first 10 passes mix both draws of ``1/b`` (10 steps, its dimension) with the first of
    ``*/w``; then the second draw of ``*/w`` takes a slot of ``1/b``. Each draw's
    tridiagonal is that of the block's operator run alone (to rounding)."""
    result = rl.hessian_spectrum(TINY, order=20, draws=2, seed=7, blocks=("1/b", "*/w"), draws_per_pass=3, **RUN)
    assert result.summary["config"]["draws_per_pass"] == 3
    active = [int(row[1]) for row in result.summary["timings"]["rows"]]
    assert active == [3] * 10 + [2] * 10 + [1] * 10
    hessian = LocalHessian(TINY, plan=rl.ShardPlan.balanced(1797, 2), compute_dtype="float64")
    for name, order in (("all_w", 20), ("1_b", 10)):
        part = result.parts[name]
        assert part.tridiagonals.shape == (2, order, order)
        for draw in range(2):
            alone = rl.lanczos(RestrictedHessian(hessian, INDICES[name]), order=order, seed=7, draw=draw)
            alpha, beta = spectrum.split_tridiagonals(part.tridiagonals)[draw]
            scale = np.abs(alone.alpha).max()
            assert np.max(np.abs(alpha - alone.alpha)) <= 1e-12 * scale
            assert np.max(np.abs(beta - alone.beta)) <= 1e-12 * scale
            ritz = np.linalg.eigvalsh(np.diag(alone.alpha) + np.diag(alone.beta, 1) + np.diag(alone.beta, -1))
            assert np.max(np.abs(np.sort(part.nodes[draw]) - ritz)) <= 1e-12 * scale
