"""Quality metrics: hand-computed values on tiny arrays, one pass over the data, and a real
registration scoring better than its raw recording on every metric."""

from __future__ import annotations

import collections
import math

import dask.array as da
import numpy as np
import pytest

from flowreg_dask import metrics as M
from flowreg_dask.datasets import synthetic_pair, synthetic_recording
from flowreg_dask.errors import InvalidInputError
from flowreg_dask.options import OFOptions, RegistrationConfig
from flowreg_dask.pipeline.api import compensate_recording
from flowreg_dask.pipeline.blocks import frame_statistics
from flowreg_dask.store.reader import open_result


def _ramp(h: int = 12, w: int = 14) -> np.ndarray:
    """A textured (h, w) image with a non-constant interior."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.sin(xx / 2.0) * 30 + np.cos(yy / 3.0) * 20 + 0.5 * xx * yy + 100


# ------------------------------------------------------------------------------ correlation
def test_correlation_hand_values():
    ref = _ramp()
    const = np.full_like(ref, 7.0)
    frames = np.stack([ref, -ref, 2.0 * ref + 5.0, const])
    r = M.correlation_with_reference(frames, ref, border=0)
    np.testing.assert_allclose(r[:3], [1.0, -1.0, 1.0], atol=1e-12)
    assert math.isnan(r[3])


def test_correlation_matches_pearson_and_crops_the_border():
    rng = np.random.default_rng(0)
    ref = rng.random((10, 12))
    frame = rng.random((10, 12))
    b = 2
    expected = np.corrcoef(frame[b:-b, b:-b].ravel(), ref[b:-b, b:-b].ravel())[0, 1]
    np.testing.assert_allclose(M.correlation_with_reference(frame[None], ref, border=b), expected)
    # garbage in the border does not count
    framed = ref.copy()
    framed[:b] = rng.random((b, 12)) * 100
    framed[:, -b:] = -50
    np.testing.assert_allclose(M.correlation_with_reference(framed[None], ref, border=b), [1.0])
    assert M.correlation_with_reference(framed[None], ref, border=0)[0] < 0.9


def test_correlation_channels_are_averaged():
    ref = np.stack([_ramp(), np.cos(_ramp() / 7.0)], axis=-1)
    frames = np.stack([ref * [1.0, -1.0]])  # channel 0 matches, channel 1 is inverted
    per = M.correlation_with_reference(frames, ref, border=1, per_channel=True)
    np.testing.assert_allclose(per, [[1.0, -1.0]], atol=1e-12)
    np.testing.assert_allclose(
        M.correlation_with_reference(frames, ref, border=1), [0.0], atol=1e-12
    )


def test_correlation_is_lazy_for_dask_input():
    ref = _ramp()
    frames = np.stack([ref, -ref, ref + 1])
    lazy = M.correlation_with_reference(da.from_array(frames, chunks=(2, -1, -1)), ref, border=1)
    assert isinstance(lazy, da.Array)
    np.testing.assert_allclose(lazy.compute(), [1.0, -1.0, 1.0], atol=1e-12)


# -------------------------------------------------------------------------------- crispness
def test_crispness_hand_values():
    ramp_x = np.tile(np.arange(4.0), (3, 1))  # d/dx = 1 at all 12 pixels
    assert M.crispness(ramp_x) == pytest.approx(math.sqrt(12))
    ramp_xy = 2.0 * np.arange(5.0)[:, None] + np.arange(6.0)[None, :]  # |grad|^2 = 4 + 1
    assert M.crispness(ramp_xy) == pytest.approx(math.sqrt(5 * 30))
    assert M.crispness(ramp_xy, border=1) == pytest.approx(math.sqrt(5 * 12))
    assert M.crispness(np.full((5, 5), 3.0)) == 0.0
    two = np.stack([ramp_x, ramp_x], axis=-1)  # channels add up
    assert M.crispness(two) == pytest.approx(math.sqrt(24))


def test_crispness_prefers_the_sharp_image():
    img = np.zeros((32, 32))
    img[12:20, 12:20] = 1.0
    from scipy.ndimage import gaussian_filter

    assert M.crispness(img) > M.crispness(gaussian_filter(img, 2.0))


# ----------------------------------------------------------------------- performance factors
def test_lowpass_keeps_constants_and_offsets():
    ref = _ramp(40, 40)
    lp_ref = M.lowpass(ref[None])[0, ..., 0]
    lp_off = M.lowpass((ref + 5.0)[None])[0, ..., 0]
    np.testing.assert_allclose(lp_off - lp_ref, 5.0, atol=1e-9)
    np.testing.assert_allclose(M.lowpass(np.full((2, 9, 9), 4.0)), 4.0)
    np.testing.assert_allclose(M.lowpass(ref[None], sigma=(0, 0, 0))[0, ..., 0], ref)


def test_lowpass_kernel_is_matlab_sized():
    """imgaussfilt3 conventions: radius ceil(2 sigma), replicate padding."""
    from scipy.ndimage import gaussian_filter

    img = np.random.default_rng(1).random((30, 30))
    got = M.lowpass(img[None], sigma=(3, 3, 0))[0, ..., 0]
    want = gaussian_filter(img, 3.0, mode="nearest", radius=6)
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_lowpass_temporal_is_chunk_independent():
    movie = np.random.default_rng(2).random((20, 8, 8, 1))
    whole = M.lowpass(movie, sigma=(1, 1, 1.5))
    chunked = M.lowpass(da.from_array(movie, chunks=(3, -1, -1, -1)), sigma=(1, 1, 1.5)).compute()
    np.testing.assert_allclose(chunked, whole, atol=1e-12)


def test_mse_of_offsets_is_offset_squared():
    ref = _ramp(60, 60)
    offsets = np.array([0.0, 1.0, 2.0, 3.0])
    frames = ref[None] + offsets[:, None, None]
    np.testing.assert_allclose(M.mse(frames, ref), offsets**2, atol=1e-9)
    # reference frames are left out (NaN) and excluded from the factor
    np.testing.assert_allclose(
        M.mse(frames, ref, reference_frames=[0])[1:], offsets[1:] ** 2, atol=1e-9
    )
    assert math.isnan(M.mse(frames, ref, reference_frames=[0])[0])
    # reference=None: the mean of the low-passed reference frames of the movie itself
    np.testing.assert_allclose(
        M.mse(frames, None, reference_frames=[1])[[0, 2, 3]], [1.0, 1.0, 4.0], atol=1e-9
    )


def test_mse_factor_hand_value():
    ref = _ramp(60, 60)
    raw = ref[None] + np.array([2.0, 2.0, 4.0])[:, None, None]
    cor = ref[None] + np.array([1.0, 1.0, 1.0])[:, None, None]
    # MSE raw = (4 + 4 + 16) / 3 = 8, corrected = 1
    assert M.mse_factor(raw, cor, ref) == pytest.approx(8.0)
    # frame 2 left out: (4 + 4) / 2 = 4
    assert M.mse_factor(raw, cor, ref, reference_frames=[2]) == pytest.approx(4.0)


def test_std_factor_hand_value():
    ref = _ramp(60, 60)
    raw = ref[None] + np.array([0.0, 2.0, 4.0])[:, None, None]  # temporal std 2 everywhere
    cor = ref[None] + np.array([0.0, 1.0, 2.0])[:, None, None]  # std 1
    assert M.temporal_std(raw) == pytest.approx(2.0)
    assert M.std_factor(raw, cor) == pytest.approx(2.0)
    assert M.std_factor(raw, cor, ref) == pytest.approx(2.0)  # reference accepted, unused


def test_factors_crop_the_border():
    ref = _ramp(60, 60)
    cor = np.stack([ref, ref]) + 1.0  # MSE 1 everywhere
    raw = cor.copy()
    raw[1, :4] += 1000.0  # damage inside a 4 px border only (the low-pass reaches 6 px further)
    assert M.mse_factor(raw, cor, ref, border=12) == pytest.approx(1.0)
    assert M.mse_factor(raw, cor, ref, border=0) > 100.0


# ------------------------------------------------------------------------------ flow metrics
def test_displacement_stats_hand_values():
    w = np.zeros((3, 6, 8, 2))
    w[0, ..., 0], w[0, ..., 1] = 3.0, 4.0  # constant (3, 4)
    w[1, ..., 0] = np.arange(8.0)[None, :]  # u = x: divergence 1
    w[2, :, :4, 0], w[2, :, 4:, 0] = 1.0, -1.0  # opposite halves: no net translation
    s = M.displacement_stats(w)
    np.testing.assert_allclose(s["mean_disp"], [5.0, 3.5, 1.0])
    np.testing.assert_allclose(s["max_disp"], [5.0, 7.0, 1.0])
    np.testing.assert_allclose(s["mean_div"][:2], [0.0, 1.0])
    np.testing.assert_allclose(s["mean_translation"], [5.0, 3.5, 0.0], atol=1e-12)


def test_displacement_stats_match_the_pipeline_statistics():
    w = np.random.default_rng(3).normal(size=(4, 16, 20, 2)).astype(np.float32)
    ours = M.displacement_stats(w)
    theirs = frame_statistics(w)
    for name in M.STAT_NAMES:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-6, atol=1e-7)


def test_endpoint_error_hand_values():
    flow = np.zeros((2, 8, 8, 2))
    truth = np.zeros_like(flow)
    truth[..., 0], truth[..., 1] = 3.0, 4.0
    assert M.endpoint_error(flow, truth, border=2) == pytest.approx(5.0)
    truth2 = np.zeros_like(flow)
    truth2[1, :2] = 10.0  # errors only in the border rows of frame 1
    assert M.endpoint_error(flow, truth2, border=2) == 0.0
    np.testing.assert_allclose(M.endpoint_error(flow, truth2, border=0, per_frame=True)[0], 0.0)
    assert M.endpoint_error(flow, truth2, border=0, per_frame=True)[1] > 0
    # one (y, x, 2) frame
    assert M.endpoint_error(flow[0], truth[0], border=0) == pytest.approx(5.0)


def test_residual_motion_measures_a_known_translation():
    ref, moving, _ = synthetic_pair(height=64, width=64, kind="translation", shift=(1.5, -2.0))
    res = M.residual_motion(np.stack([ref, moving]), ref, border=10)
    assert res[0] < 0.05  # identical to the reference
    assert res[1] == pytest.approx(2.5, abs=0.3)  # |(1.5, -2.0)| = 2.5 px


# --------------------------------------------------------------------------- input handling
def test_errors_say_what_is_wrong():
    ref = _ramp()
    with pytest.raises(InvalidInputError, match="border"):
        M.correlation_with_reference(ref[None], ref, border=6)
    with pytest.raises(InvalidInputError, match="reference"):
        M.correlation_with_reference(ref[None], ref[:5], border=0)
    with pytest.raises(ValueError, match="differs"):
        M.mse_factor(np.stack([ref]), np.stack([ref, ref]), ref, border=0)
    with pytest.raises(ValueError, match=r"\(t, y, x, c\)"):
        M.correlation_with_reference(ref, ref)
    with pytest.raises(ValueError, match="reference_frames"):
        M.mse(np.stack([ref]), ref, border=0, reference_frames=[0])


def test_from_result_reorders_store_axes(store):
    path, _ = store
    res = M.from_result(open_result(path))
    assert res["corrected"].dims == ("t", "y", "x", "c")
    assert res["flow"].dims == ("t", "y", "x", "component")
    assert res["reference"].dims == ("y", "x", "c")
    assert isinstance(res["corrected"].data, da.Array)  # still lazy
    same = M.from_result(path)
    assert same["corrected"].shape == res["corrected"].shape


# ---------------------------------------------------------------------- compute_metrics
def test_compute_metrics_reads_each_chunk_once_and_matches_the_functions():
    rec = synthetic_recording(n_frames=24, height=48, width=48, n_channels=2, seed=5)
    ref = rec.reference
    calls: collections.Counter = collections.Counter()

    def load(block, tag, block_info=None):
        calls[(tag, block_info[0]["chunk-location"][0])] += 1
        return block

    def counted(x, tag):
        return da.from_array(x, chunks=(6, -1, -1, -1)).map_blocks(load, tag=tag, dtype=x.dtype)

    corrected = np.clip(ref[None] + rec.movie * 0.1, 0, 65535).astype(np.uint16)
    truth = rec.flow * 0.9
    m = M.compute_metrics(
        counted(rec.movie, "raw"),
        counted(corrected, "corrected"),
        ref,
        flow=counted(rec.flow, "flow"),
        truth=truth,
        border=6,
        factor_border=12,
        reference_frames=[0, 1],
        progress=False,
    )
    assert set(calls.values()) == {1}, calls  # one pass: every input chunk loaded once
    assert len(calls) == 12
    # the one-pass values agree with the single-metric functions
    np.testing.assert_allclose(
        m["correlation_raw"], M.correlation_with_reference(rec.movie, ref, border=6)
    )
    assert float(m["crispness_corrected"]) == pytest.approx(
        M.crispness(corrected.astype(float).mean(0), border=6)
    )
    kw = dict(border=12, reference_frames=[0, 1])
    assert float(m["mse_factor"]) == pytest.approx(M.mse_factor(rec.movie, corrected, ref, **kw))
    assert float(m["std_factor"]) == pytest.approx(M.std_factor(rec.movie, corrected, **kw))
    np.testing.assert_allclose(m["residual_raw"], M.residual_motion(rec.movie, ref, border=6))
    np.testing.assert_allclose(
        m["epe"], M.endpoint_error(rec.flow, truth, border=6, per_frame=True)
    )
    stats = M.displacement_stats(rec.flow)
    np.testing.assert_allclose(m["max_disp"], stats["max_disp"])
    assert m["mean_raw"].dims == ("y", "x", "c")
    assert m.attrs["reference_frames"] == [0, 1]
    summary = M.summarize(m)
    assert summary["epe_mean"] == pytest.approx(M.endpoint_error(rec.flow, truth, border=6))
    assert all(v is None or isinstance(v, float) for v in summary.values())


def test_compute_metrics_without_raw_and_residual():
    rec = synthetic_recording(n_frames=6, height=40, width=40, n_channels=1, seed=6)
    m = M.compute_metrics(None, rec.movie, rec.reference, residual=False, progress=False)
    assert "correlation_corrected" in m and "correlation_raw" not in m
    assert "mse_factor" not in m and "residual_corrected" not in m
    np.testing.assert_array_equal(m["t"].values, np.arange(6))
    assert m["correlation_corrected"].dims == ("t",)


def test_compute_metrics_residual_step():
    rec = synthetic_recording(n_frames=8, height=40, width=40, n_channels=1, seed=7)
    m = M.compute_metrics(None, rec.movie, rec.reference, residual_step=3, progress=False)
    res = m["residual_corrected"].values
    assert np.isfinite(res[::3]).all() and np.isnan(res[1::3]).all()


# ------------------------------------------------------- a real registration scores better
N, H, W = 48, 64, 64
REF_FRAMES = list(range(16))


@pytest.fixture(scope="module")
def recording():
    return synthetic_recording(n_frames=N, height=H, width=W, n_channels=2, seed=11)


@pytest.fixture(scope="module")
def store(recording, tmp_path_factory):
    options = OFOptions(
        quality_setting="fast", buffer_size=16, reference_frames=REF_FRAMES, save_w=True
    )
    out = tmp_path_factory.mktemp("metrics") / "corrected.zarr"
    path = compensate_recording(
        options, RegistrationConfig(progress=False), recording=recording.movie, output=out
    ).output
    return path, options


def test_corrected_movie_beats_raw_on_every_metric(recording, store):
    path, _ = store
    res = M.from_result(path)
    truth = recording.flow - recording.flow[REF_FRAMES].mean(axis=0)
    m = M.compute_metrics(
        recording.movie,
        res.corrected,
        res.reference,
        flow=res.flow,
        truth=truth,
        border=8,
        factor_border=16,
        reference_frames=REF_FRAMES,
        progress=False,
    )
    s = M.summarize(m)
    assert s["correlation_corrected_mean"] > s["correlation_raw_mean"] + 0.05
    assert s["crispness_corrected"] > 1.1 * s["crispness_raw"]
    assert s["mse_factor"] > 2.0
    assert s["std_factor"] > 1.5
    assert s["residual_corrected_mean"] < 0.5 * s["residual_raw_mean"]
    # frame by frame too, for correlation and residual motion
    assert (m["correlation_corrected"] >= m["correlation_raw"] - 0.01).all()
    assert (m["residual_corrected"] < m["residual_raw"] + 0.1).all()
    # the estimated flow is close to the truth: much less than the motion it removed
    before = M.endpoint_error(np.zeros_like(truth), truth, border=8)
    assert s["epe_mean"] < 0.3 * before
    # the store's statistics are the ones displacement_stats computes from its flow
    np.testing.assert_allclose(m["mean_disp"], open_result(path)["mean_disp"].values, rtol=1e-5)
