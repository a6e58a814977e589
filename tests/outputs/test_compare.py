"""``raylanczos compare``: several finished runs in one figure and one table.

Most runs here are written without Ray: Lanczos on dense matrices with known spectra,
rendered by :func:`~raylanczos.render.render_spectrum` into run directories as a run
writes them. One test compares real runs (the tiny MLP's Hessian and Gauss–Newton matrix).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import raylanczos as rl
from raylanczos import cli
from raylanczos.numerics import spectrum
from raylanczos.outputs import compare
from raylanczos.outputs.record import PartsRecord, RunInfo, SpectrumRecord
from raylanczos.outputs.render import block_labels, render_parts, render_spectrum
from raylanczos.outputs.store import OutputStore, npy_writer
from tests.conftest import WORKER_RESOURCES
from tests.matrices import matrix_with_spectrum

PNG = b"\x89PNG\r\n\x1a\n"


def write_run(directory: Path, eigenvalues: np.ndarray, *, operator: str = "hessian", order: int = 20, draws: int = 2):
    """A finished run of ``draws`` × ``order`` Lanczos steps on a dense matrix with ``eigenvalues``."""
    matrix = matrix_with_spectrum(eigenvalues, np.random.default_rng(eigenvalues.size))
    runs = [rl.lanczos(matrix, order=order, seed=1, draw=d) for d in range(draws)]
    tridiagonals = [(run.alpha, run.beta) for run in runs]
    summary = {
        "config": {"problem": "dense", "order": order, "num_params": eigenvalues.size, "operator": operator, "draws": draws},
        "steps_completed": [len(alpha) for alpha, _ in tridiagonals],
    }
    store = OutputStore(directory)
    store.ensure_writable()
    store.write("tridiag.npy", npy_writer(spectrum.stack_tridiagonals(tridiagonals, order)))
    return render_spectrum(tridiagonals, SpectrumRecord.from_json(summary), store)


def write_blocks_run(directory: Path) -> None:
    """A blocks run as the runner writes it: two blocks under ``blocks/``, and a top level
    with ``parts`` and the overlay but no density of its own."""
    store = OutputStore(directory)
    parts = {}
    for name, eigenvalues in (("0", np.linspace(0.0, 1.0, 30)), ("1", np.linspace(-0.5, 2.0, 25))):
        parts[name] = write_run(directory / "blocks" / name, eigenvalues)
    config = {"problem": "dense", "order": 20, "num_params": 55, "operator": "hessian", "draws": 2}
    paths = {name: f"blocks/{name}" for name in parts}
    record = PartsRecord(RunInfo.from_json({"config": config}), paths, block_labels(parts), "blocks", [])
    render_parts(parts, record, store)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    """Five runs whose spectra move right and widen: [k/2 − 1, k + 1] for k = 0 … 4."""
    root = tmp_path_factory.mktemp("runs")
    paths = []
    for k in range(5):
        path = root / f"step={100 * k}"
        write_run(path, np.linspace(k / 2 - 1, k + 1, 40 + 5 * k), operator="ggn" if k == 4 else "hessian")
        paths.append(path)
    return paths


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("count", [2, pytest.param(5, marks=pytest.mark.slow)])
def test_compare_writes_a_figure_and_a_table(runs, tmp_path, monkeypatch, count):
    drawn, plot_overlay = [], compare.plot_overlay

    def recording(curves, target, **kwargs):
        drawn.extend(curves)
        plot_overlay(curves, target, **kwargs)

    monkeypatch.setattr(compare, "plot_overlay", recording)
    figure = tmp_path / "figures" / "compare.png"
    text = compare.compare_runs(runs[:count], figure)

    assert figure.read_bytes().startswith(PNG)
    rows = read_csv(figure.with_suffix(".csv"))
    results = [rl.load_result(run) for run in runs[:count]]
    assert [row["run"] for row in rows] == [f"step={100 * k} ({'Gauss–Newton' if k == 4 else 'Hessian'})" for k in range(count)]
    for row, result in zip(rows, results):
        assert int(row["num_params"]) == result.summary["config"]["num_params"]
        for key in compare.COLUMNS:
            assert float(row[key]) == pytest.approx(result.summary[key], rel=1e-15)
    lines = text.splitlines()
    pairs = count * (count - 1) // 2
    assert lines[0].split() == ["run", "num_params", *compare.COLUMNS]
    assert len(lines) == count + pairs + 2
    assert lines[-1] == f"→ {figure}, {figure.with_suffix('.csv')} and {figure.with_suffix('.json')}"
    assert [line.split("  ")[0].strip() for line in lines[1:count + 1]] == [row["run"] for row in rows]
    assert lines[count + 1].startswith(f"{rows[0]['run']} vs {rows[1]['run']}: max gap between the CDF bands ")

    # One grid over all the runs' grids; each curve a density (integral 1) of its own run.
    assert [label for label, _, _ in drawn] == [row["run"] for row in rows]
    grid = drawn[0][1]
    assert all(np.array_equal(curve_grid, grid) for _, curve_grid, _ in drawn)
    assert grid[0] == min(r.grid[0] for r in results) and grid[-1] == max(r.grid[-1] for r in results)
    for (_, _, density), result in zip(drawn, results):
        assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-3)
        assert np.interp(result.summary["lambda_max"], grid, density) > 0.01 * density.max()
        beyond = grid > result.summary["lambda_max"] + 8 * np.sqrt(result.sigma2)
        assert np.all(density[beyond] <= 1e-12 * density.max())  # the first run's curve is flat far right


def test_compare_states_whether_the_bands_are_apart(runs, tmp_path, monkeypatch):
    """A run and itself overlap (gap 0: "no"); spectra on [−1, 1] and [1, 5] (2 draws, ε ≈
    0.3) have bands apart by 0.42 below λ = 1 ("yes"). The CDF panel shows every band, a
    run given twice included, and compare.json carries the gaps."""
    drawn, plot_overlay = {}, compare.plot_overlay

    def recording(curves, target, **kwargs):
        drawn.update(kwargs)
        plot_overlay(curves, target, **kwargs)

    monkeypatch.setattr(compare, "plot_overlay", recording)
    figure = tmp_path / "gaps.png"
    text = compare.compare_runs([runs[0], runs[0], runs[4]], figure, labels=["a", "b", "c"], grid_points=500)
    assert "a vs b: max gap between the CDF bands 0: differ beyond the certificate: no" in text
    gaps = json.loads(figure.with_suffix(".json").read_text())["band_gaps"]
    assert [gap["runs"] for gap in gaps] == [["a", "b"], ["a", "c"], ["b", "c"]]
    assert gaps[0]["max_gap"] == 0 and not gaps[0]["differ_beyond_certificate"]
    assert 0.3 < gaps[1]["max_gap"] == gaps[2]["max_gap"] < 1 and gaps[1]["differ_beyond_certificate"]
    assert gaps[1]["confidences"] == [0.95, 0.95]
    assert f"a vs c: max gap between the CDF bands {gaps[1]['max_gap']:.3g}: differ beyond the certificate: yes" in text
    assert [label for label, _ in drawn["bands"]] == ["a", "b", "c"] and drawn["bands_note"] == ""
    compare.compare_runs([runs[2], runs[4]], tmp_path / "two.png", grid_points=500)
    assert drawn["bands_note"].endswith("differ beyond the certificate: no"), "two runs: the panel names their gap"


def test_labels_name_the_curves(runs, tmp_path):
    figure = tmp_path / "labelled.png"
    text = compare.compare_runs(runs[:3], figure, labels=["start", "middle", "end"], grid_points=200)
    assert [row["run"] for row in read_csv(figure.with_suffix(".csv"))] == ["start", "middle", "end"]
    assert [line.split()[0] for line in text.splitlines()[1:4]] == ["start", "middle", "end"]
    with pytest.raises(ValueError, match="give one label per run: 2 runs, 3 labels"):
        compare.compare_runs(runs[:2], figure, labels=["a", "b", "c"])


@pytest.mark.slow
def test_runs_of_the_same_name_are_labelled_by_path(tmp_path):
    a = tmp_path / "a" / "run"
    b = tmp_path / "b" / "run"
    write_run(a, np.linspace(0, 1, 20))
    write_run(b, np.linspace(0, 2, 20))
    text = compare.compare_runs([a, b], tmp_path / "same.png")
    assert f"{a} (Hessian)" in text and f"{b} (Hessian)" in text


@pytest.mark.slow
def test_runs_without_a_density_are_refused_naming_them(runs, tmp_path):
    """A directory that is not a run, and a blocks run's top level (its blocks are runs)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    blocks = tmp_path / "blocks-run"
    write_blocks_run(blocks)
    figure = tmp_path / "refused.png"
    with pytest.raises(ValueError) as refused:
        compare.compare_runs([runs[0], empty, blocks], figure)
    message = str(refused.value)
    assert message.startswith(f"2 of 3 runs have no density to compare: {empty} (not a finished run: cannot read {empty}/summary.json")
    assert f"{blocks} (a blocks run's top level; compare its blocks: {blocks}/blocks/0, {blocks}/blocks/1)" in message
    assert str(runs[0]) not in message and not figure.exists()
    compare.compare_runs([blocks / "blocks" / "0", blocks / "blocks" / "1"], figure)  # its blocks compare
    assert [row["run"] for row in read_csv(figure.with_suffix(".csv"))] == ["0 (Hessian)", "1 (Hessian)"]


@pytest.mark.parametrize(
    "count, figure, grid_points, message",
    [
        (1, "f.png", 100, "compare takes 2 to 10 runs, got 1"),
        (11, "f.png", 100, "compare takes 2 to 10 runs, got 11"),
        (2, "f.pdf", 100, "must end in .png, got '.*f.pdf'"),
        (2, "f.png", 1, "grid_points must be an integer >= 2, got 1"),
    ],
)
def test_bad_arguments_are_refused(runs, tmp_path, count, figure, grid_points, message):
    with pytest.raises(ValueError, match=message):
        compare.compare_runs([runs[0]] * count, tmp_path / figure, grid_points=grid_points)


def test_compare_through_the_cli(runs, tmp_path, capsys):
    figure = tmp_path / "cli.png"
    assert cli.main(["compare", str(runs[0]), str(runs[1]), "--out", str(figure), "--labels", "early", "late"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith("early ") and out.splitlines()[2].startswith("late ")
    assert figure.is_file() and figure.with_suffix(".csv").is_file()
    assert cli.main(["compare", str(runs[0]), str(tmp_path / "missing"), "--out", str(figure)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"raylanczos: error: 1 of 2 runs have no density to compare: {tmp_path / 'missing'} (not a finished run")
    assert err.count("\n") == 1


@pytest.mark.slow
def test_hessian_and_gauss_newton_runs_of_the_tiny_mlp(ray_session, tmp_path):
    """Two real runs on one Ray session: the Hessian has negative eigenvalues, G none."""
    options = dict(order=40, draws=2, num_workers=2, worker_resources=WORKER_RESOURCES, progress="none")
    for operator in ("hessian", "ggn"):
        rl.hessian_spectrum("raylanczos.examples.digits:tiny_problem", operator=operator, out=tmp_path / operator, **options)
    figure = tmp_path / "operators.png"
    text = compare.compare_runs([tmp_path / "hessian", tmp_path / "ggn"], figure)
    hessian, ggn = read_csv(figure.with_suffix(".csv"))
    assert rl.load_result(tmp_path / "ggn").record.certificate.ks_half_width > 0, "a GGN run has its band"
    assert "hessian (Hessian) vs ggn (Gauss–Newton): max gap between the CDF bands" in text
    assert (hessian["run"], ggn["run"]) == ("hessian (Hessian)", "ggn (Gauss–Newton)")
    assert float(hessian["lambda_min"]) < 0 and float(ggn["lambda_min"]) > -1e-5 * float(ggn["lambda_max"])
    assert figure.read_bytes().startswith(PNG)
