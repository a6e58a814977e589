"""Log-scale densities: masses and integrals on spectra with known eigenvalues, the figure,
rendering and re-rendering, and the command line's --log."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

import raylanczos as rl
from raylanczos import cli
from raylanczos.config import DensityConfig
from raylanczos.numerics import spectrum
from raylanczos.numerics.logdensity import log_density
from raylanczos.outputs.plot import plot_log_density
from raylanczos.outputs.record import SpectrumRecord
from raylanczos.outputs.render import load_result, render_spectrum, rerender
from raylanczos.outputs.store import OutputStore, npy_writer
from tests.conftest import FAST, TINY, TINY_RUN

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def synthetic_spectrum(seed: int = 0) -> np.ndarray:
    """2,000 eigenvalues from 1e-6 to 1e2: 1,200 positive (log-uniform), 300 negative
    (−1e-5 to −1, log-uniform) and 500 exact zeros."""
    rng = np.random.default_rng(seed)
    return np.concatenate([10 ** rng.uniform(-6, 2, 1200), -(10 ** rng.uniform(-5, 0, 300)), np.zeros(500)])


def exact_quadrature(eigenvalues: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The spectral measure itself as a one-draw quadrature: every eigenvalue, weight 1/n."""
    return eigenvalues[None, :], np.full((1, eigenvalues.size), 1.0 / eigenvalues.size)


def slq(eigenvalues: np.ndarray, order: int, draws: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss quadrature of ``draws`` Lanczos runs of ``order`` steps on diag(eigenvalues)."""
    runs = [rl.lanczos(lambda v: eigenvalues * v, eigenvalues.size, order, seed=3, draw=d) for d in range(draws)]
    return spectrum.slq_quadrature([(run.alpha, run.beta) for run in runs], order)


def test_exact_spectrum_masses_and_side_integrals():
    """On the known eigenvalues: the mass above τ, below −τ and at zero are the fractions of
    positive, negative and zero eigenvalues, and each side's density integrates to its mass."""
    log = log_density(*exact_quadrature(synthetic_spectrum()))
    assert (log.positive_mass, log.negative_mass, log.zero_mass) == pytest.approx((0.6, 0.15, 0.25), abs=1e-12)
    assert log.side_integrals() == pytest.approx((0.6, 0.15), abs=1e-6)
    assert log.zero_threshold == pytest.approx(1e-10 * np.abs(synthetic_spectrum()).max())
    assert log.grid[0] == pytest.approx(np.log10(np.abs(synthetic_spectrum()[synthetic_spectrum() != 0]).min()) - 0.5)


def test_slq_density_integrates_to_its_own_masses_on_each_side():
    """SLQ (10 draws × 90 steps) on the synthetic spectrum: the three masses add up to 1 and
    each side's integral is that side's mass; in the top two decades (|λ| ≥ 1e-2·‖H‖, where
    90 nodes resolve the spectrum) the density matches the exact one to 10% in L1."""
    eigenvalues = synthetic_spectrum()
    nodes, weights = slq(eigenvalues, 90, 10)
    exact = log_density(*exact_quadrature(eigenvalues))
    log = log_density(nodes, weights, grid_range=(exact.grid[0], exact.grid[-1]), grid_points=exact.grid.size)
    assert log.positive_mass + log.negative_mass + log.zero_mass == pytest.approx(1.0, abs=1e-12)
    assert log.side_integrals() == pytest.approx((log.positive_mass, log.negative_mass), abs=1e-6)
    top = exact.grid >= 0.0
    step = exact.grid[1] - exact.grid[0]
    mass = np.sum(exact.positive[top]) * step
    assert np.sum(np.abs(log.positive[top] - exact.positive[top])) * step <= 0.1 * mass


def test_clusters_lanczos_resolves_are_placed_in_their_decades():
    """Six distinct eigenvalues (1e-6, 1e-3, 1, 1e2, −1e-2 and 0): Lanczos finds them
    exactly in six steps, so each draw's nodes are the eigenvalues; every cluster's peak
    sits in its decade, the zeros are the bulk at zero, and the masses are the cluster
    fractions to within sampling error."""
    eigenvalues = np.repeat([1e-6, 1e-3, 1.0, 1e2, -1e-2, 0.0], [600, 400, 300, 20, 380, 300])
    nodes, weights = slq(eigenvalues, 30, 40)
    log = log_density(nodes, weights)
    for centre in (-6.0, -3.0, 0.0, 2.0):
        near = np.abs(log.grid - centre) <= 0.5
        assert abs(log.grid[near][np.argmax(log.positive[near])] - centre) <= 0.01
    assert abs(log.grid[np.argmax(log.negative)] - (-2.0)) <= 0.01
    fractions = np.array([1320 / 2000, 380 / 2000, 300 / 2000])
    got = np.array([log.positive_mass, log.negative_mass, log.zero_mass])
    assert np.all(np.abs(got - fractions) <= 0.03)


def test_bad_settings_are_refused():
    nodes, weights = exact_quadrature(np.array([1.0, -2.0]))
    with pytest.raises(ValueError, match="sigma2 must be a finite variance > 0"):
        log_density(nodes, weights, sigma2=0.0)
    with pytest.raises(ValueError, match="zero_threshold_relative must be finite and >= 0"):
        log_density(nodes, weights, zero_threshold_relative=-1.0)
    with pytest.raises(ValueError, match="grid_range must be increasing"):
        log_density(nodes, weights, grid_range=(1.0, 0.0))


def test_the_figure_is_a_png_with_an_exact_reference():
    exact = log_density(*exact_quadrature(synthetic_spectrum()))
    nodes, weights = slq(synthetic_spectrum(), 40, 2)
    handle = io.BytesIO()
    plot_log_density(log_density(nodes, weights), handle, reference=exact, title="synthetic")
    from matplotlib.image import imread

    assert handle.getvalue().startswith(PNG_SIGNATURE)
    assert imread(io.BytesIO(handle.getvalue()), format="png").shape[1] > 800


def written_run(directory, eigenvalues: np.ndarray, order: int = 30, draws: int = 3):
    runs = [rl.lanczos(lambda v: eigenvalues * v, eigenvalues.size, order, seed=1, draw=d) for d in range(draws)]
    tridiagonals = [(run.alpha, run.beta) for run in runs]
    summary = {
        "config": {"problem": "synthetic", "order": order, "num_params": eigenvalues.size, "draws": draws},
        "steps_completed": [len(alpha) for alpha, _ in tridiagonals],
    }
    store = OutputStore(directory)
    store.ensure_writable()
    store.write("tridiag.npy", npy_writer(spectrum.stack_tridiagonals(tridiagonals, order)))
    return tridiagonals, SpectrumRecord.from_json(summary), store


def test_render_load_and_rerender_without_recomputing(tmp_path):
    """A rendered log density is in spectrum.npz and summary.json and loads back; a re-render
    without it drops it, one with other settings redraws it from tridiag.npy alone."""
    eigenvalues = synthetic_spectrum()
    tridiagonals, record, store = written_run(tmp_path / "run", eigenvalues)
    result = render_spectrum(tridiagonals, record, store, DensityConfig(log_scale=True))
    loaded = load_result(tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["log_density"]["sigma2"] == 1e-2
    assert summary["log_density"]["positive_mass"] == pytest.approx(result.log_density.positive_mass)
    assert np.array_equal(loaded.log_density.positive, result.log_density.positive)
    assert loaded.log_density.side_integrals() == pytest.approx(
        (loaded.log_density.positive_mass, loaded.log_density.negative_mass), abs=1e-6
    )
    tridiag = (tmp_path / "run" / "tridiag.npy").read_bytes()
    plain = rerender(tmp_path / "run", DensityConfig())
    assert plain.log_density is None and "log_density" not in json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "log_grid" not in np.load(tmp_path / "run" / "spectrum.npz").files
    wider = rerender(tmp_path / "run", DensityConfig(log_scale=True, log_sigma2=0.04, log_zero_threshold=1e-3), to=tmp_path / "wide")
    assert wider.record.log_density.sigma2 == 0.04 and wider.log_density.zero_threshold_relative == 1e-3
    assert (tmp_path / "run" / "tridiag.npy").read_bytes() == tridiag


def test_log_options_are_checked():
    with pytest.raises(rl.OptionError, match="log_sigma2 must be a number > 0"):
        DensityConfig(log_sigma2=0.0)
    with pytest.raises(rl.OptionError, match="log_zero_threshold must be a number >= 0"):
        DensityConfig(log_zero_threshold=-1.0)


@pytest.mark.slow
def test_cli_run_and_density_with_log(ray_session, tmp_path):
    """``run --log`` through the command line, then ``density --log`` with another kernel
    into another directory: each writes the log density, and the second recomputes nothing."""
    out = tmp_path / "run"
    assert cli.main(["run", "--problem", TINY, "--out", str(out), *TINY_RUN, *FAST, "--log", "--progress", "none"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    masses = summary["log_density"]
    assert masses["positive_mass"] + masses["negative_mass"] + masses["zero_mass"] == pytest.approx(1.0)
    assert {"log_grid", "log_positive", "log_negative"} <= set(np.load(out / "spectrum.npz").files)
    assert (out / "density.png").read_bytes().startswith(PNG_SIGNATURE)
    argv = ["density", "--out", str(out), "--to", str(tmp_path / "wide"), "--log", "--log-sigma2", "0.04"]
    assert cli.main(argv) == 0
    assert json.loads((tmp_path / "wide" / "summary.json").read_text())["log_density"]["sigma2"] == 0.04
    assert np.array_equal(np.load(tmp_path / "wide" / "tridiag.npy"), np.load(out / "tridiag.npy"))
