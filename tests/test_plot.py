"""Figures render headless (Agg) and contain the expected artists and labels."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402
from matplotlib.quiver import Quiver  # noqa: E402

from flowreg_dask import plot  # noqa: E402

H, W = 40, 48


def _image(c: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((H, W, c)) * 1000 + 100


def _flow() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    return np.stack([np.sin(xx / 8.0) + 1.0, np.cos(yy / 6.0) - 0.5], axis=-1)


def _renders(fig: Figure) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def _images(fig: Figure) -> list:
    return [a for ax in fig.axes for a in ax.get_images()]


def _titles(fig: Figure) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


# ------------------------------------------------------------------------------ colour wheel
def test_flow_to_color_hue_is_direction_and_saturation_is_magnitude():
    vectors = np.array([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1], [0.5, 0], [2, 0], [np.nan, 0]])
    rgb = plot.flow_to_color(vectors[None], max_flow=1.0)[0].astype(int)
    assert rgb.dtype == np.int64 or rgb.dtype.kind == "i"
    np.testing.assert_array_equal(rgb[0], [255, 255, 255])  # no motion: white
    np.testing.assert_array_equal(rgb[1], [255, 0, 0])  # right: red
    r, g, b = rgb[2]
    assert r == 255 and g > 200 and b == 0  # down: yellow
    r, g, b = rgb[3]
    assert r == 0 and g > 150 and b == 255  # left: cyan-blue
    r, g, b = rgb[4]
    assert b == 255 and r < 128 and g == 0  # up: blue-violet
    np.testing.assert_array_equal(rgb[5], [255, 128, 128])  # half magnitude: half saturated
    np.testing.assert_array_equal(rgb[6], [191, 0, 0])  # beyond max_flow: darkened
    np.testing.assert_array_equal(rgb[7], [0, 0, 0])  # NaN: black


def test_flow_to_color_shape_dtype_and_default_scale():
    out = plot.flow_to_color(_flow())
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    # by default the largest vector is fully saturated: some channel reaches 0
    assert out.min() == 0
    # the hue changes continuously around the wheel (no jumps between neighbours)
    angles = np.linspace(-np.pi, np.pi, 721)
    ring = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    colors = plot.flow_to_color(ring, max_flow=1.0).astype(int)
    assert np.abs(np.diff(colors, axis=0)).max() <= 12
    with pytest.raises(ValueError, match="flow"):
        plot.flow_to_color(np.zeros((4, 4, 3)))


def test_color_wheel_is_a_disc():
    wheel = plot.color_wheel(31)
    assert wheel.shape == (31, 31, 4)
    assert wheel[0, 0, 3] == 0 and wheel[15, 15, 3] == 255
    np.testing.assert_array_equal(wheel[15, 15, :3], [255, 255, 255])  # centre: white


# ---------------------------------------------------------------------------------- figures
def test_mean_images_one_row_per_channel():
    fig = plot.mean_images(_image(2), _image(2, 1), crispness={"raw": 1.0, "corrected": 2.0})
    assert isinstance(fig, Figure)
    assert len(_images(fig)) == 4
    titles = _titles(fig)
    assert any(t.startswith("raw mean") and "crispness 1" in t for t in titles)
    assert any(t.startswith("corrected mean, channel 1") for t in titles)
    assert fig.get_suptitle() == "Mean images"
    _renders(fig)
    # raw missing: corrected only
    assert len(_images(plot.mean_images(None, _image(1)))) == 1
    with pytest.raises(ValueError, match="raw_mean"):
        plot.mean_images(_image(1)[:10], _image(1))


def test_displacement_traces_lines_and_labels():
    t = np.arange(30.0)
    stats = {"mean_translation": np.sin(t), "max_disp": np.cos(t) + 2, "mean_disp": t * 0.1}
    fig = plot.displacement_traces(stats)
    (ax,) = fig.axes
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["mean translation (rigid part)", "mean displacement", "max displacement"]
    assert ax.get_xlabel() == "frame" and ax.get_ylabel() == "displacement [px]"
    np.testing.assert_allclose(ax.get_lines()[2].get_ydata(), stats["max_disp"])
    _renders(fig)
    fig = plot.displacement_traces({"max_disp": t}, frame_rate=10.0)
    assert fig.axes[0].get_xlabel() == "time [s]"
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_xdata(), t / 10.0)
    with pytest.raises(ValueError, match="mean_translation"):
        plot.displacement_traces({"other": t})


def test_displacement_traces_accepts_a_dataset():
    xr = pytest.importorskip("xarray")
    ds = xr.Dataset({"mean_translation": ("t", np.ones(5)), "max_disp": ("t", np.ones(5) * 2)})
    assert len(plot.displacement_traces(ds).axes[0].get_lines()) == 2


def test_correlation_traces():
    fig = plot.correlation_traces(np.linspace(0.5, 0.8, 20), np.full(20, 0.95))
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert [line.get_label().split(" ")[0] for line in lines] == ["raw", "corrected"]
    assert "mean 0.95" in lines[1].get_label()
    assert ax.get_ylabel() == "correlation with reference"
    assert ax.get_legend() is not None
    _renders(fig)
    fig = plot.correlation_traces(None, np.ones(5), ylabel="residual motion [px]", title="R")
    assert len(fig.axes[0].get_lines()) == 1
    assert fig.axes[0].get_ylabel() == "residual motion [px]" and fig.axes[0].get_title() == "R"


def test_flow_field_colour_image_quiver_and_wheel():
    fig = plot.flow_field(_flow(), image=_image(2), step=8, title="frame 3")
    main, over = fig.axes
    (inset,) = main.child_axes
    quivers = [c for ax in fig.axes for c in ax.collections if isinstance(c, Quiver)]
    assert len(quivers) == 2
    assert quivers[0].N == (H // 8) * (W // 8)
    colour = main.get_images()[0].get_array()
    np.testing.assert_array_equal(np.asarray(colour), plot.flow_to_color(_flow()))
    assert "flow" in main.get_title() and "arrows" in over.get_title()
    assert len(inset.get_images()) == 1  # colour key
    assert fig.get_suptitle() == "frame 3"
    _renders(fig)
    fig = plot.flow_field(_flow())  # no image: one panel (+ key)
    assert sum(isinstance(c, Quiver) for ax in fig.axes for c in ax.collections) == 1
    with pytest.raises(ValueError, match="flow_frame"):
        plot.flow_field(np.zeros((4, 4)))


def test_frame_comparison_panels():
    ref = _image(1, 2)
    fig = plot.frame_comparison(_image(1), ref + 1.0, ref)
    images = [im for im in _images(fig) if isinstance(im, AxesImage)]
    assert len(images) == 6  # raw, corrected, reference, 2 differences, overlay
    titles = _titles(fig)
    for want in ("raw", "corrected", "reference", "raw - reference", "corrected - reference"):
        assert any(t.startswith(want) for t in titles), (want, titles)
    assert any("RMS 1" in t for t in titles)  # corrected - reference is exactly 1
    assert any(t.startswith("overlay") for t in titles)
    _renders(fig)
    fig = plot.frame_comparison(None, ref, ref, channel=0)
    assert any("not available" in t.get_text() for ax in fig.axes for t in ax.texts)
    with pytest.raises(ValueError, match="channel"):
        plot.frame_comparison(None, ref, ref, channel=3)


def test_no_pyplot_state_is_used():
    plot.correlation_traces(None, np.ones(3))
    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        assert plt.get_fignums() == []
