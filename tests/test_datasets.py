"""Tests of the synthetic 2-photon recording generator (flowreg_dask.datasets)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from flowreg_dask.datasets import (
    SyntheticRecording,
    SyntheticSpec,
    save_synthetic_recording,
    spec_from_json,
    synthetic_pair,
    synthetic_recording,
)

BORDER = 10


def _register(frame: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward-warp one (H, W) frame with scipy: registered(p) = frame(p + w(p))."""
    H, W = frame.shape
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    coords = [yy + flow[..., 1], xx + flow[..., 0]]
    return ndi.map_coordinates(frame.astype(np.float64), coords, order=3, mode="reflect")


def _rel_rms(a: np.ndarray, ref: np.ndarray, border: int = BORDER) -> float:
    sl = (slice(border, -border), slice(border, -border))
    err = (a - ref)[sl]
    return float(np.sqrt(np.mean(err**2)) / (ref.max() - ref.min()))


# ------------------------------------------------------------------------------ shapes, dtypes


@pytest.mark.parametrize("dtype", ["uint16", "uint8", "int16", "float32"])
def test_shapes_and_dtypes(dtype):
    spec = SyntheticSpec(n_frames=5, height=48, width=64, n_channels=2, dtype=dtype, seed=1)
    movie, flow = spec.frames(0, 5)
    assert movie.shape == (5, 48, 64, 2) and movie.dtype == np.dtype(dtype)
    assert flow.shape == (5, 48, 64, 2) and flow.dtype == np.float32
    ref = spec.template()
    assert ref.shape == (48, 64, 2) and ref.dtype == np.float32
    assert np.all(np.isfinite(ref)) and np.all(np.isfinite(flow))
    assert spec.shape == (5, 48, 64, 2)


def test_synthetic_recording_matches_frames():
    rec = synthetic_recording(n_frames=6, height=40, width=48, n_channels=1, seed=4)
    assert isinstance(rec, SyntheticRecording)
    assert rec.movie.shape == (6, 40, 48, 1) and rec.movie.dtype == np.uint16
    assert rec.flow.shape == (6, 40, 48, 2)
    assert rec.reference.shape == (40, 48, 1)
    movie, flow = rec.spec.frames(0, 6)
    np.testing.assert_array_equal(rec.movie, movie)
    np.testing.assert_array_equal(rec.flow, flow)
    np.testing.assert_array_equal(rec.reference, rec.spec.template())


def test_empty_chunk():
    spec = SyntheticSpec(n_frames=4, height=32, width=32, n_channels=1)
    movie, flow = spec.frames(2, 2)
    assert movie.shape == (0, 32, 32, 1) and flow.shape == (0, 32, 32, 2)


def test_intensity_ranges_uint16():
    spec = SyntheticSpec(n_frames=30, height=96, width=96, n_channels=2, seed=2)
    movie, _ = spec.frames(0, 30)
    ref = spec.template()
    # a good part of the uint16 range: background of some hundreds, bright cells of thousands
    for c in range(2):
        assert 100 < np.median(ref[..., c]) < 4000
        assert ref[..., c].max() > 4 * np.median(ref[..., c])
    assert movie.max() > 8000
    assert movie.max() < 65535  # no saturation with the defaults


# ------------------------------------------------------------------------------ determinism


def test_determinism_and_seed():
    kw = dict(n_frames=4, height=40, width=40, n_channels=2)
    a = SyntheticSpec(seed=7, **kw).frames(0, 4)
    b = SyntheticSpec(seed=7, **kw).frames(0, 4)
    c = SyntheticSpec(seed=8, **kw).frames(0, 4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[1], c[1])
    np.testing.assert_array_equal(
        SyntheticSpec(seed=7, **kw).template(), SyntheticSpec(seed=7, **kw).template()
    )
    assert not np.array_equal(
        SyntheticSpec(seed=7, **kw).template(), SyntheticSpec(seed=8, **kw).template()
    )


def test_chunk_consistency():
    spec = SyntheticSpec(n_frames=20, height=48, width=40, n_channels=2, seed=5)
    m_all, f_all = spec.frames(0, 20)
    m_part, f_part = spec.frames(5, 20)
    np.testing.assert_array_equal(m_all[5:], m_part)
    np.testing.assert_array_equal(f_all[5:], f_part)
    m_one, f_one = spec.frames(12, 13)
    np.testing.assert_array_equal(m_all[12:13], m_one)
    np.testing.assert_array_equal(f_all[12:13], f_one)


def test_chunk_consistency_threaded_path():
    # frames of >= 128 x 128 px draw their noise in a helper thread
    spec = SyntheticSpec(n_frames=6, height=128, width=128, n_channels=1, seed=12)
    m_all, f_all = spec.frames(0, 6)
    m_part, f_part = spec.frames(2, 6)
    np.testing.assert_array_equal(m_all[2:], m_part)
    np.testing.assert_array_equal(f_all[2:], f_part)
    assert not np.array_equal(m_all[2], m_all[3])


def test_spec_is_hashable_and_dict_round_trip():
    spec = SyntheticSpec(
        n_frames=3, height=32, width=32, seed=2, gain=12.5, dtype=np.dtype("uint8")
    )
    assert spec.dtype == "uint8"
    assert hash(spec) == hash(SyntheticSpec(**spec.to_dict()))
    assert SyntheticSpec(**json.loads(json.dumps(spec.to_dict()))) == spec
    assert spec.detector[0] == 12.5


# ------------------------------------------------------------------------------ ground truth


@pytest.mark.parametrize("n_channels", [1, 2])
def test_ground_truth_flow_recovers_template(n_channels):
    spec = SyntheticSpec(
        n_frames=12,
        height=96,
        width=112,
        n_channels=n_channels,
        seed=3,
        noise=False,
        activity=False,
    )
    movie, flow = spec.frames(0, 12)
    ref = spec.template()
    for t in range(0, 12, 3):
        for c in range(n_channels):
            before = _rel_rms(movie[t, ..., c].astype(np.float64), ref[..., c])
            after = _rel_rms(_register(movie[t, ..., c], flow[t]), ref[..., c])
            assert after < 0.02, (t, c, after)
            assert after < 0.1 * before, (t, c, before, after)


def test_ground_truth_structural_channel_with_activity():
    # channel 0 is structural (no activity) even when the functional channel is active
    T = 60
    spec = SyntheticSpec(n_frames=T, height=96, width=96, n_channels=2, seed=11, noise=False)
    movie, flow = spec.frames(0, T)
    ref = spec.template()
    errs = [_rel_rms(_register(movie[t, ..., 0], flow[t]), ref[..., 0]) for t in range(0, T, 10)]
    assert max(errs) < 0.02
    # the functional channel shows calcium transients: positive dF/F on top of the template
    dff = np.stack([_register(movie[t, ..., 1], flow[t]) / ref[..., 1] - 1 for t in range(T)])
    inner = dff[:, BORDER:-BORDER, BORDER:-BORDER]
    assert inner.max() > 0.3
    assert np.median(np.abs(inner)) < 0.05


def test_flow_convention_translation_pair():
    dy, dx = 3.0, -2.0
    ref, mov, flow = synthetic_pair(height=80, width=96, kind="translation", shift=(dy, dx), seed=2)
    assert ref.shape == mov.shape == (80, 96, 1) and flow.shape == (80, 96, 2)
    assert ref.dtype == mov.dtype == np.float32
    np.testing.assert_array_equal(flow[..., 0], np.float32(dx))
    np.testing.assert_array_equal(flow[..., 1], np.float32(dy))
    # content moved by (+dy, +dx): moving(y, x) = reference(y - dy, x - dx)
    r, m = ref[..., 0], mov[..., 0]
    inner = r[BORDER:-BORDER, BORDER:-BORDER]
    y0, x0 = np.unravel_index(np.argmax(inner), inner.shape)
    y0, x0 = y0 + BORDER, x0 + BORDER
    np.testing.assert_allclose(m[y0 + 3, x0 - 2], r[y0, x0], rtol=1e-3)
    mi = m[BORDER:-BORDER, BORDER:-BORDER]
    ym, xm = np.unravel_index(np.argmax(mi), mi.shape)
    assert (ym + BORDER, xm + BORDER) == (y0 + 3, x0 - 2)
    b = BORDER
    np.testing.assert_allclose(
        m[b + 3 : -b, b : -b - 2], r[b : -b - 3, b + 2 : -b], rtol=1e-3, atol=1e-2
    )
    # and the flow registers it
    assert _rel_rms(_register(m, flow), r) < 1e-3


def test_translation_pair_subpixel_and_noise():
    ref, mov, flow = synthetic_pair(
        height=64,
        width=64,
        n_channels=2,
        kind="translation",
        shift=(0.5, 1.25),
        noise=True,
        dtype="uint16",
    )
    assert mov.dtype == np.uint16 and ref.dtype == np.uint16
    np.testing.assert_array_equal(flow[..., 0], np.float32(1.25))
    np.testing.assert_array_equal(flow[..., 1], np.float32(0.5))


def test_nonrigid_pair():
    ref, mov, flow = synthetic_pair(height=96, width=96, n_channels=1, kind="nonrigid", seed=4)
    r, m = ref[..., 0], mov[..., 0]
    assert flow.shape == (96, 96, 2)
    assert np.std(flow[..., 0]) > 0.05 or np.std(flow[..., 1]) > 0.05  # not rigid
    np.testing.assert_allclose(np.mean(flow[..., 1]), 1.5, atol=1.5)
    np.testing.assert_allclose(np.mean(flow[..., 0]), -2.5, atol=1.5)
    assert _rel_rms(_register(m, flow), r) < 0.02
    assert _rel_rms(m, r) > 0.05


def test_displacement_magnitude():
    spec = SyntheticSpec(n_frames=60, height=128, width=128, n_channels=1, seed=0)
    _, flow = spec.frames(0, 60)
    mag = np.hypot(flow[..., 0], flow[..., 1])
    assert 1.0 <= mag.mean() <= 4.0
    assert mag.max() <= spec.max_displacement + 1e-4
    # non-rigid: the field varies across the image
    assert np.mean(np.std(flow, axis=(1, 2))) > 0.1


def test_displacement_cap():
    spec = SyntheticSpec(
        n_frames=20,
        height=64,
        width=64,
        n_channels=1,
        seed=1,
        drift_px=6.0,
        jitter_px=3.0,
        max_displacement=4.0,
    )
    _, flow = spec.frames(0, 20)
    mag = np.hypot(flow[..., 0], flow[..., 1])
    assert mag.max() <= 4.0 + 1e-4
    assert mag.max() > 3.0


def test_no_motion():
    spec = SyntheticSpec(
        n_frames=3,
        height=48,
        width=48,
        n_channels=1,
        drift_px=0,
        jitter_px=0,
        nonrigid_px=0,
        noise=False,
        activity=False,
    )
    movie, flow = spec.frames(0, 3)
    assert np.all(flow == 0)
    np.testing.assert_allclose(
        movie[..., 0].astype(np.float64),
        np.broadcast_to(spec.template()[..., 0], (3, 48, 48)),
        atol=0.51,
    )


# ------------------------------------------------------------------------------ saturation


def test_no_integer_wraparound():
    kw = dict(n_frames=6, height=48, width=48, n_channels=2, seed=6, photons_per_unit=400.0)
    u8 = SyntheticSpec(dtype="uint8", **kw)
    f32 = SyntheticSpec(dtype="float32", gain=1.0, read_noise=1.5, baseline=4.0, **kw)
    a, _ = u8.frames(0, 6)
    b, _ = f32.frames(0, 6)
    assert a.max() == 255  # saturates ...
    sat = b >= 255.5
    assert sat.any()
    assert np.all(a[sat] == 255)  # ... instead of wrapping to small values
    np.testing.assert_array_equal(a, np.clip(np.rint(b), 0, 255).astype(np.uint8))
    assert u8.template().max() <= 255

    i16 = SyntheticSpec(dtype="int16", gain=400.0, **kw)
    c, _ = i16.frames(0, 6)
    assert c.max() == 32767 and c.min() >= 0


# ------------------------------------------------------------------------------ files


@pytest.mark.parametrize(
    ("suffix", "n_channels"), [(".tif", 1), (".tif", 2), (".h5", 2), (".npy", 2)]
)
def test_save_round_trip(tmp_path, suffix, n_channels):
    spec = SyntheticSpec(n_frames=10, height=40, width=48, n_channels=n_channels, seed=9)
    path = save_synthetic_recording(tmp_path / f"rec{suffix}", spec=spec, chunk_frames=4)
    assert path == tmp_path / f"rec{suffix}"
    movie, flow = spec.frames(0, 10)
    if suffix == ".tif":
        data = tifffile.imread(path)
        assert data.shape == ((10, 40, 48) if n_channels == 1 else (10, 40, 48, n_channels))
        np.testing.assert_array_equal(data.reshape(movie.shape), movie)
        np.testing.assert_array_equal(np.load(tmp_path / "rec.flow.npy"), flow)
    elif suffix == ".h5":
        with h5py.File(path, "r") as h5:
            np.testing.assert_array_equal(h5["mov"][...], movie)
            np.testing.assert_array_equal(h5["flow"][...], flow)
    else:
        np.testing.assert_array_equal(np.load(path), movie)
        np.testing.assert_array_equal(np.load(tmp_path / "rec.flow.npy"), flow)
    sidecar = tmp_path / f"rec{suffix}.truth.json"
    assert sidecar.exists()
    assert spec_from_json(sidecar) == spec
    assert spec_from_json(path) == spec
    again = spec_from_json(path)
    m2, f2 = again.frames(3, 7)
    np.testing.assert_array_equal(m2, movie[3:7])
    np.testing.assert_array_equal(f2, flow[3:7])


def test_save_without_flow(tmp_path):
    spec = SyntheticSpec(n_frames=3, height=32, width=32, n_channels=1, dtype="float32")
    save_synthetic_recording(tmp_path / "a.h5", spec=spec, save_flow=False)
    with h5py.File(tmp_path / "a.h5", "r") as h5:
        assert "flow" not in h5 and h5["mov"].dtype == np.float32
    save_synthetic_recording(tmp_path / "b.npy", spec=spec, save_flow=False)
    assert not (tmp_path / "b.flow.npy").exists()


def test_save_bad_suffix(tmp_path):
    with pytest.raises(ValueError, match="suffix"):
        save_synthetic_recording(
            tmp_path / "rec.avi", spec=SyntheticSpec(n_frames=2, height=16, width=16)
        )


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"height": -5}, "height"),
        ({"width": 0}, "width"),
        ({"n_frames": 0}, "n_frames"),
        ({"n_channels": 0}, "n_channels"),
        ({"height": 32.5}, "height"),
        ({"seed": -1}, "seed"),
        ({"n_cells": -3}, "n_cells"),
        ({"drift_px": -1.0}, "drift_px"),
        ({"jitter_px": float("nan")}, "jitter_px"),
        ({"max_displacement": 0.0}, "max_displacement"),
        ({"dtype": "int64"}, "dtype"),
        ({"dtype": "banana"}, "dtype"),
        ({"noise": "yes"}, "noise"),
        ({"gain": 0.0}, "gain"),
        ({"frame_rate": -30.0}, "frame_rate"),
    ],
)
def test_bad_parameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SyntheticSpec(**kwargs)


def test_bad_frame_range_and_pair_options():
    spec = SyntheticSpec(n_frames=5, height=32, width=32)
    with pytest.raises(ValueError, match="stop"):
        spec.frames(3, 2)
    with pytest.raises(ValueError, match="stop"):
        spec.frames(0, 6)
    with pytest.raises(ValueError, match="start"):
        spec.frames(-1, 2)
    with pytest.raises(ValueError, match="kind"):
        synthetic_pair(kind="affine")
    with pytest.raises(ValueError, match="shift"):
        synthetic_pair(kind="translation", shift=(1.0,))
    with pytest.raises(TypeError):
        SyntheticSpec(5)  # keyword-only
