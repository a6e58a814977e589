"""Tests for :mod:`raylanczos.outputs.plot`: valid PNGs, and the caller's Matplotlib state left alone."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from raylanczos.outputs.plot import (
    extent,
    overlay_figure,
    plot_density,
    plot_overlay,
    wants_panels,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPO_ROOT = Path(__file__).resolve().parents[2]


def two_peaks(grid: np.ndarray, where: float) -> np.ndarray:
    """A density with a bulk at 0, an outlier at ``where`` and exact zeros (clipped to the floor)."""
    density = np.exp(-(grid**2) / 0.05) + 1e-3 * np.exp(-((grid - where) ** 2) / 0.1)
    density[:5] = 0.0
    return density


def curves() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Three runs on grids of different lengths and ranges."""
    grids = [np.linspace(-1.0, 5.0 + i, 300 + 50 * i) for i in range(3)]
    return [(f"run {i}", grid, two_peaks(grid, 3.0 + i)) for i, grid in enumerate(grids)]


def decoded_png(data: bytes) -> np.ndarray:
    """The RGBA pixels (float in [0, 1], shape (H, W, 4)) of PNG bytes."""
    from matplotlib.image import imread

    assert data.startswith(PNG_SIGNATURE)
    return imread(io.BytesIO(data), format="png")


def has_colour(pixels: np.ndarray, rgb: tuple[float, float, float]) -> bool:
    return bool(np.any(np.all(np.abs(pixels[..., :3] - np.asarray(rgb)) < 0.02, axis=-1)))


def test_plot_density_writes_a_png_to_a_path_and_to_a_file_object(tmp_path):
    from matplotlib import colormaps

    grid = np.linspace(-1.0, 6.0, 400)
    plot_density(grid, two_peaks(grid, 4.0), tmp_path / "density.png", title="t")
    buffer = io.BytesIO()
    plot_density(grid, two_peaks(grid, 4.0), buffer, title="t")

    from_path = (tmp_path / "density.png").read_bytes()
    assert from_path == buffer.getvalue()
    pixels = decoded_png(from_path)
    assert pixels.shape == (480, 840, 4), "7 x 4 inches at 120 dpi"
    assert has_colour(pixels, colormaps["tab10"].colors[0]), "the curve is drawn"


def test_plot_overlay_writes_a_png_with_each_curve_in_its_own_colour(tmp_path):
    from matplotlib import colormaps

    plot_overlay(curves(), tmp_path / "overlay.png", title="three runs")
    buffer = io.BytesIO()
    plot_overlay(curves(), buffer, title="three runs", xlabel="eigenvalue of block fc1")

    pixels = decoded_png((tmp_path / "overlay.png").read_bytes())
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    tab10 = colormaps["tab10"].colors
    assert all(has_colour(pixels, tab10[i]) for i in range(3))
    assert not has_colour(pixels, tab10[3]), "no fourth curve"
    decoded_png(buffer.getvalue())


def test_curves_of_similar_scales_share_one_axis_and_a_legend():
    figure = overlay_figure(curves(), title="three runs")
    assert len(figure.axes) == 1
    ax = figure.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["run 0", "run 1", "run 2"]
    assert {line.get_linestyle() for line in ax.get_lines()} == {"-"}, "solid lines: the spiky curves stay readable"
    assert ax.get_legend() is not None


def test_curves_whose_scales_differ_tenfold_get_a_panel_each_on_one_density_scale():
    """Per-layer blocks of very different curvature: on one axis the narrow block would
    fill a few percent of it; in its own panel it spans the panel's eigenvalue range."""
    wide = np.linspace(-0.01, 0.47, 400)
    narrow = np.linspace(-0.002, 0.028, 400)
    blocks = [("block 0", wide, two_peaks(wide / 0.1, 3.0)), ("block 1", narrow, 10 * two_peaks(narrow / 0.01, 2.0)),
              ("block 2", wide, two_peaks(wide / 0.1, 4.0)), ("block 3", narrow, two_peaks(narrow / 0.01, 1.0))]  # fmt: skip
    assert wants_panels(blocks) and not wants_panels(blocks[:1]) and not wants_panels([blocks[0], blocks[2]])
    # On one shared grid (as compare draws them) the narrow curve's extent still tells.
    on_wide = [("wide", wide, blocks[0][2]), ("narrow", wide, np.exp(-((wide - 0.01) ** 2) / 1e-6))]
    assert wants_panels(on_wide) and extent(wide, on_wide[1][2])[1] < 0.02
    figure = overlay_figure(blocks, title="blocks")
    shown = [ax for ax in figure.axes if ax.get_visible()]
    assert len(shown) == 4 and len(figure.axes) == 6, "two rows of three, the last two cells hidden"
    for ax, (label, grid, density) in zip(shown, blocks):
        assert ax.get_title() == label
        low, high = extent(grid, density)
        assert grid[0] <= low < high <= grid[-1]
        assert ax.get_xlim() == pytest.approx((low - 0.03 * (high - low), high + 0.03 * (high - low)))
    tops = {ax.get_ylim() for ax in shown}
    assert len(tops) == 1, "one density scale for all panels"
    (bottom, top), = tops
    assert top >= max(float(d.max()) for _, _, d in blocks) and bottom > 0
    buffer = io.BytesIO()
    plot_overlay(blocks, buffer, title="blocks")
    decoded_png(buffer.getvalue())


def test_plot_overlay_refuses_no_curves():
    with pytest.raises(ValueError, match="at least one .* curve, got an empty sequence"):
        plot_overlay([], io.BytesIO(), title="nothing")


def test_plot_overlay_refuses_a_grid_and_density_of_different_lengths():
    grid = np.linspace(0, 1, 10)
    with pytest.raises(ValueError, match=r"curve 1 \('short'\).*shapes \(10,\) and \(9,\)"):
        plot_overlay([("ok", grid, grid + 1), ("short", grid, grid[:9] + 1)], io.BytesIO(), title="t")


#: Runs in a fresh interpreter: the caller's backend (and whether pyplot is loaded) as JSON.
CALLER = """
import io, json, sys
import matplotlib
matplotlib.use({backend!r})
if {with_pyplot}:
    import matplotlib.pyplot as plt
    plt.figure()
import numpy as np
from raylanczos.outputs.plot import extent, overlay_figure, plot_density, plot_overlay, wants_panels
grid = np.linspace(-1.0, 1.0, 50)
density = np.exp(-grid**2)
plot_density(grid, density, io.BytesIO())
plot_overlay([("a", grid, density), ("b", grid, 2 * density)], io.BytesIO(), title="t")
figures = sys.modules["matplotlib.pyplot"].get_fignums() if "matplotlib.pyplot" in sys.modules else None
print(json.dumps({{"backend": matplotlib.get_backend(), "pyplot": "matplotlib.pyplot" in sys.modules, "figures": figures}}))
"""


@pytest.mark.parametrize(
    "backend, with_pyplot, expected",
    [
        ("svg", False, {"backend": "svg", "pyplot": False, "figures": None}),
        ("pdf", True, {"backend": "pdf", "pyplot": True, "figures": [1]}),
    ],
    ids=["svg-without-pyplot", "pdf-with-an-open-pyplot-figure"],
)
def test_plotting_leaves_the_callers_backend_and_pyplot_alone(backend, with_pyplot, expected):
    code = CALLER.format(backend=backend, with_pyplot=with_pyplot)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == expected
