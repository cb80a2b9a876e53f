"""Tests of live (frame-by-frame) correction, :class:`flowreg_dask.FlowRegLive`.

Small synthetic recordings with known motion (48x56 px, <= 40 frames). Accuracy is measured as the
mean endpoint error (EPE) against the ground-truth flow, excluding a 10 px border. The fused warp
kernel of the live corrector is checked against the plain-numpy twin in ``tests/naive.py``.
"""

from __future__ import annotations

import functools

import naive
import numpy as np
import pytest

import flowreg_dask
from flowreg_dask import FlowRegLive, OFOptions
from flowreg_dask.core.warp import warp, warp_into
from flowreg_dask.datasets import synthetic_recording
from flowreg_dask.errors import InvalidInputError, InvalidOptionError
from flowreg_dask.kernels.cpu import remap
from flowreg_dask.preprocess import intensity_range, smooth_frames

H, W = 48, 56
BORDER = 10


@functools.lru_cache(maxsize=4)
def _rec(n_channels: int = 1, n_frames: int = 30, seed: int = 3):
    return synthetic_recording(
        n_frames=n_frames, height=H, width=W, n_channels=n_channels, seed=seed
    )


def _epe(flow: np.ndarray, truth: np.ndarray) -> float:
    b = BORDER
    d = flow[:, b:-b, b:-b] - truth[:, b:-b, b:-b]
    return float(np.mean(np.linalg.norm(d, axis=-1)))


# ------------------------------------------------------------------------------------ accuracy
def _spy_inputs(live: FlowRegLive) -> list:
    """Record the pre-processed frames (and initial flows) handed to the flow estimator."""
    seen = []
    estimator = live._estimator
    original = estimator.flow

    def spy(moving, init=None, **kw):
        seen.append((moving.copy(), None if init is None else init.copy()))
        return original(moving, init, **kw)

    estimator.flow = spy
    return seen


def test_uint16_frames_are_normalised_like_float_frames():
    """Raw uint16 frames are pre-processed exactly like the same frames scaled to [0, 1]: every
    frame is normalised with the raw reference's range (pyflowreg's live normalisation bug, which
    leaves raw integer frames unnormalised, is absent), and the flows are as accurate."""
    rec = _rec()
    scale = np.float32(1.0 / 65535.0)
    live16, live01 = FlowRegLive(), FlowRegLive()
    live16.set_reference(rec.reference)
    live01.set_reference(rec.reference * scale)
    seen16, seen01 = _spy_inputs(live16), _spy_inputs(live01)
    live16(rec.movie[0])
    live01(rec.movie[0].astype(np.float32) * scale)
    proc16, proc01 = seen16[0][0], seen01[0][0]
    assert -0.5 < proc16.min() and proc16.max() < 1.5  # on the reference's [0, 1] scale
    np.testing.assert_allclose(proc16, proc01, atol=1e-5)

    live16.set_reference(rec.reference)
    live01.set_reference(rec.reference * scale)
    reg16, flow16 = live16.register_frames(rec.movie)
    reg01, flow01 = live01.register_frames(rec.movie.astype(np.float32) * scale)
    assert reg16.dtype == np.uint16 and reg01.dtype == np.float32
    zero = _epe(np.zeros_like(rec.flow), rec.flow)
    epe16, epe01 = _epe(flow16, rec.flow), _epe(flow01, rec.flow)
    assert epe16 < 0.35 * zero, (epe16, zero)
    assert abs(epe16 - epe01) < 0.02, (epe16, epe01)
    # float32 rounding differences grow along the warm-start chain, but stay small on average
    np.testing.assert_allclose(flow16[:3], flow01[:3], atol=0.02)
    assert np.abs(flow16 - flow01).mean() < 0.1


def test_float32_frames_match_uint16_frames_and_reference_update_helps():
    rec = _rec()
    live = FlowRegLive()
    live.set_reference(rec.reference)
    _, flow_f = live.register_frames(rec.movie.astype(np.float32))
    live16 = FlowRegLive(reference_update_interval=0)
    live16.set_reference(rec.reference)
    _, flow_16 = live16.register_frames(rec.movie)
    assert _epe(flow_f, rec.flow) < _epe(np.zeros_like(rec.flow), rec.flow) * 0.35
    # no reference update for live16: identical up to the first update (frame 20)
    np.testing.assert_allclose(flow_f[:20], flow_16[:20], atol=1e-3)


def test_register_frames_equals_sequential_calls():
    rec = _rec()
    a = FlowRegLive(reference_update_interval=7)
    a.set_reference(rec.reference)
    reg_a, flow_a = a.register_frames(rec.movie[:15])
    b = FlowRegLive(reference_update_interval=7)
    b.set_reference(rec.reference)
    for t in range(15):
        reg_b, flow_b = b(rec.movie[t])
        np.testing.assert_array_equal(reg_a[t], reg_b)
        np.testing.assert_array_equal(flow_a[t], flow_b)
    assert a.frame_count == b.frame_count == 15


# ------------------------------------------------------------------------------ shapes, channels
def test_two_dimensional_frames_keep_their_shape():
    rec = _rec()
    live = FlowRegLive()
    live.set_reference(rec.reference[..., 0])
    reg, flow = live(rec.movie[0, ..., 0])
    assert reg.shape == (H, W) and reg.dtype == np.uint16
    assert flow.shape == (H, W, 2) and flow.dtype == np.float32
    assert live.reference.shape == (H, W)
    regs, flows = live.register_frames(rec.movie[1:4, ..., 0])
    assert regs.shape == (3, H, W) and flows.shape == (3, H, W, 2)


@pytest.mark.parametrize("normalization", ["joint", "separate"])
def test_multichannel_frames(normalization):
    rec = _rec(n_channels=2, n_frames=12)
    live = FlowRegLive(channel_normalization=normalization)
    live.set_reference(rec.reference)
    reg, flow = live.register_frames(rec.movie)
    assert reg.shape == rec.movie.shape and reg.dtype == rec.movie.dtype
    assert _epe(flow, rec.flow) < 0.5 * _epe(np.zeros_like(rec.flow), rec.flow)
    lo, hi = live.normalization_range
    assert lo.shape == (2,) and (normalization == "separate" or lo[0] == lo[1])


# ---------------------------------------------------------------------------------- reference
def test_frames_are_buffered_until_a_reference_is_set():
    rec = _rec()
    live = FlowRegLive(reference_buffer_size=6)
    with pytest.raises(InvalidInputError, match="no frame has been buffered"):
        live.set_reference()
    for t in range(8):
        out, flow = live(rec.movie[t])
        np.testing.assert_array_equal(out, rec.movie[t])
        assert out is not rec.movie[t] and not np.shares_memory(out, rec.movie)
        assert not flow.any() and flow.shape == (H, W, 2)
    assert live.buffered_frames == 6 and not live.has_reference
    live.set_reference()  # pre-registers the 6 most recent frames
    assert live.has_reference and live.reference.shape == (H, W, 1)
    reg, flow = live(rec.movie[8])
    assert flow.any()


def test_set_reference_from_a_stack_registers_it_first():
    rec = _rec()
    stack = rec.movie[:16]
    live = FlowRegLive()
    live.set_reference(stack)
    ref = live.reference
    assert ref.shape == (H, W, 1) and ref.dtype == np.float32

    def sharpness(img):  # mean gradient magnitude relative to the contrast
        img = img[BORDER:-BORDER, BORDER:-BORDER, 0].astype(np.float64)
        gy, gx = np.gradient(img)
        return np.mean(np.hypot(gx, gy)) / img.std()

    # the mean of the registered frames is sharper than the plain mean, which motion blurs
    assert sharpness(ref) > 1.05 * sharpness(stack.mean(axis=0))
    # a (T, H, W) single-channel stack is recognised by its shape
    live2 = FlowRegLive()
    live2.set_reference(stack[..., 0])
    assert live2.reference.shape == (H, W)


def test_reference_update_every_n_frames():
    rec = _rec()
    live = FlowRegLive(reference_update_interval=5, reference_update_weight=0.5)
    live.set_reference(rec.reference)
    ref0, proc0 = live.reference, live.reference_processed
    for t in range(4):
        live(rec.movie[t])
    np.testing.assert_array_equal(live.reference, ref0)
    np.testing.assert_array_equal(live.reference_processed, proc0)
    reg, _ = live(rec.movie[4])
    ref1 = live.reference
    assert not np.allclose(ref1, ref0)
    # raw reference <- 0.5 ref + 0.5 registered (registered is the rounded float result)
    np.testing.assert_allclose(ref1, 0.5 * ref0 + 0.5 * reg, atol=0.5 * 0.5 + 1e-3)
    # the normalisation range follows the blended raw reference
    lo, hi = live.normalization_range
    want_lo, want_hi = intensity_range(ref1)
    np.testing.assert_allclose(lo, want_lo)
    np.testing.assert_allclose(hi, want_hi)


def test_reference_update_with_weight_zero_or_interval_zero_keeps_it():
    rec = _rec()
    for kwargs in ({"reference_update_weight": 0.0}, {"reference_update_interval": 0}):
        live = FlowRegLive(**kwargs)
        live.set_reference(rec.reference)
        ref0, proc0 = live.reference, live.reference_processed
        live.register_frames(rec.movie[:21])
        np.testing.assert_allclose(live.reference, ref0, atol=1e-4)
        np.testing.assert_allclose(live.reference_processed, proc0, atol=1e-5)


def test_reset_reference_restarts():
    rec = _rec()
    live = FlowRegLive()
    live(rec.movie[0])  # buffered
    live.set_reference(rec.reference)
    live.register_frames(rec.movie[:3])
    assert live.frame_count == 3 and live.get_current_flow() is not None
    new = rec.movie[5].astype(np.float32)
    live.reset_reference(new)
    assert live.frame_count == 0 and live.get_current_flow() is None
    assert live.buffered_frames == 0
    np.testing.assert_array_equal(live.reference, new)
    with pytest.raises(InvalidInputError, match="reference"):
        live.reset_reference(None)


# ---------------------------------------------------------------------------------- flow init
def test_get_current_flow_and_set_flow_init():
    rec = _rec()
    live = FlowRegLive()
    live.set_reference(rec.reference)
    assert live.get_current_flow() is None
    _, flow = live(rec.movie[0])
    current = live.get_current_flow()
    np.testing.assert_array_equal(current, flow)
    current += 100.0  # a copy: the warm start is unchanged
    np.testing.assert_array_equal(live.get_current_flow(), flow)

    seen = _spy_inputs(live)
    live(rec.movie[1])
    np.testing.assert_array_equal(seen[-1][1], flow)  # warm start = previous flow
    given = np.full((H, W, 2), 0.75, np.float32)
    live.set_flow_init(given)
    np.testing.assert_array_equal(live.get_current_flow(), given)
    live(rec.movie[2])
    np.testing.assert_array_equal(seen[-1][1], given)


# -------------------------------------------------------------------------------- output dtype
@pytest.mark.parametrize("dtype", ["uint8", "int16", "float64", "float16"])
def test_output_dtype_is_rounded_and_clipped(dtype):
    rng = np.random.default_rng(5)
    ref = np.zeros((H, W), np.float32)
    ref[::4, :] = 255.0  # sharp stripes: the cubic warp overshoots below 0 and above 255
    if dtype == "int16":
        ref -= 128.0
    frame = ref.astype(dtype)
    live = FlowRegLive(reference_update_interval=0)
    live.set_reference(ref)
    flow = rng.uniform(-0.4, 0.4, (H, W, 2)).astype(np.float32)
    live.set_flow_init(flow)
    reg, got_flow = live(frame)
    assert reg.dtype == np.dtype(dtype) and reg.shape == (H, W)
    want = warp(frame.astype(np.float32), got_flow, fill=ref, interpolation="cubic")
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        np.testing.assert_array_equal(reg, np.clip(np.rint(want), info.min, info.max))
        if dtype == "uint8":  # the undershoot really happened (and was clipped, not wrapped)
            assert want.min() < 0 and reg.min() == 0
    else:
        np.testing.assert_allclose(reg.astype(np.float64), want, rtol=1e-3, atol=0.2)


def test_int32_output_is_exact_at_the_ends_of_the_range():
    """int32 outputs (wider than float32's mantissa) go through float64 rounding: the largest
    values stay in range and exact, never wrapped."""
    img = np.full((4, 5, 1), 2**31 + 100.0, np.float32)
    img[0, 0, 0] = -(2.0**31) - 100
    out = np.empty(img.shape, np.int32)
    valid = np.empty((4, 5), np.uint8)
    zero = np.zeros((4, 5, 2), np.float32)
    warp_into(img, zero, img, order=3, out=out, valid=valid)
    assert out[0, 0, 0] == np.iinfo(np.int32).min and out[1, 1, 0] == np.iinfo(np.int32).max
    assert valid.all()


# ---------------------------------------------------------------------------- pre-processing
def test_causal_temporal_filter_matches_numpy():
    """With sigma_t = 1 the flow sees the half-Gaussian average of the last 5 frames, each
    normalised by the reference range and smoothed like the offline pipeline's frames."""
    rec = _rec(n_frames=8)
    sigma = [[1.0, 1.0, 1.0]]
    live = FlowRegLive(sigma=sigma, reference_update_interval=0)
    live.set_reference(rec.reference)
    seen = _spy_inputs(live)
    live.register_frames(rec.movie)
    lo, hi = intensity_range(rec.reference)
    spatial = smooth_frames(rec.movie, sigma, temporal=False, vmin=lo, vmax=hi)
    taps = np.exp(-0.5 * np.arange(5.0) ** 2)
    for t in range(8):
        k = min(t + 1, 5)
        wts = taps[:k] / taps[:k].sum()
        want = sum(wts[a] * spatial[t - a] for a in range(k))
        np.testing.assert_allclose(seen[t][0], want, rtol=1e-4, atol=1e-5)


def test_normalize_false_takes_prenormalised_frames():
    rec = _rec(n_frames=5)
    live_a = FlowRegLive(reference_update_interval=0)
    live_a.set_reference(rec.reference)
    _, flow_a = live_a.register_frames(rec.movie)
    lo, hi = live_a.normalization_range
    live_b = FlowRegLive(reference_update_interval=0)
    live_b.set_reference(rec.reference)
    pre = (rec.movie.astype(np.float64) - lo) / (hi - lo + 1e-8)
    flow_b = np.stack([live_b(frame.astype(np.float32), normalize=False)[1] for frame in pre])
    # float32 rounding differences grow along the warm-start chain, but stay small on average
    np.testing.assert_allclose(flow_b[:2], flow_a[:2], atol=5e-3)
    assert np.abs(flow_b - flow_a).mean() < 0.02


# ------------------------------------------------------------------------------------ options
def test_options_fast_preset_and_overrides():
    opts = OFOptions(alpha=3)
    live = FlowRegLive(opts, iterations=20)
    assert live.options.effective_min_level == 6 and live.options.quality_setting == "fast"
    assert live.options.alpha == (3.0, 3.0) and live.options.iterations == 20
    assert opts.iterations == 50 and opts.quality_setting == "quality"  # caller's copy untouched
    assert FlowRegLive(min_level=3).options.effective_min_level == 3
    assert FlowRegLive(OFOptions(min_level=2)).options.effective_min_level == 2
    assert FlowRegLive({"alpha": 2.0}).options.alpha == (2.0, 2.0)
    assert "FlowRegLive(no reference" in repr(FlowRegLive())
    assert flowreg_dask.FlowRegLive is FlowRegLive


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"reference_buffer_size": 0}, "reference_buffer_size"),
        ({"reference_buffer_size": 2.5}, "reference_buffer_size"),
        ({"reference_update_interval": -1}, "reference_update_interval"),
        ({"reference_update_weight": 1.5}, "reference_update_weight"),
        ({"truncate": 0.0}, "truncate"),
        ({"not_an_option": 1}, "not_an_option"),
        ({"options": 3}, "options"),
    ],
)
def test_bad_constructor_arguments(kwargs, name):
    with pytest.raises(InvalidOptionError, match=name) as info:
        FlowRegLive(**kwargs)
    assert isinstance(info.value, ValueError)


def test_bad_frames():
    rec = _rec(n_frames=3)
    live = FlowRegLive()
    live.set_reference(rec.reference)
    with pytest.raises(InvalidInputError, match=r"frame: expected shape \(48, 56\)"):
        live(np.zeros((H, W + 1), np.uint16))
    with pytest.raises(InvalidInputError, match="frame: expected an"):
        live(rec.movie[:2])
    bad = rec.movie[0].astype(np.float32)
    bad[3, 4] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        live(bad)
    with pytest.raises(InvalidInputError, match="real-valued"):
        live(rec.movie[0].astype(np.complex64))
    with pytest.raises(InvalidInputError, match="flow"):
        live.set_flow_init(np.zeros((H, W), np.float32))
    with pytest.raises(InvalidInputError, match="frames"):
        live.set_reference(np.zeros((2, 2, H, W, 1)))
    with pytest.raises(InvalidInputError, match="NaN"):
        live.set_reference(bad)
    with pytest.raises(InvalidInputError, match="set_reference"):
        FlowRegLive().set_flow_init(np.zeros((H, W, 2), np.float32))
    with pytest.raises(InvalidInputError, match="frames"):
        live.register_frames(rec.movie[0, 0])
    assert live.frame_count == 0  # nothing was registered by the failed calls


# ------------------------------------------------------------------------------- warp kernel
def _kernel(img, flow, fill, order, out_dtype):
    out = np.empty(img.shape, out_dtype)
    valid = np.empty(img.shape[:2], np.uint8)
    warp_into(img, flow, fill, order=order, out=out, valid=valid)
    want_valid = naive.warp(img, flow[..., 0], flow[..., 1], fill, order)[1]
    np.testing.assert_array_equal(valid, want_valid)
    return out


@pytest.mark.parametrize("order", [3, 1, 0])
@pytest.mark.parametrize(("shape", "nc"), [((7, 9), 1), ((12, 10), 3)])
def test_warp_frame_matches_naive(order, shape, nc):
    rng = np.random.default_rng(20 + order + nc)
    img = rng.standard_normal((*shape, nc)).astype(np.float32)
    fill = (rng.standard_normal((*shape, nc)) + 10.0).astype(np.float32)
    flow = rng.uniform(-2.5, 2.5, (*shape, 2)).astype(np.float32)
    want, valid = naive.warp(img, flow[..., 0], flow[..., 1], fill, order)
    assert 0 < valid.sum() < valid.size
    got = _kernel(img, flow, fill, order, np.float32)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(got[valid == 0], fill[valid == 0])
    # integer output: rounded half to even and clipped, never wrapped
    scaled = (img * 200.0).astype(np.float32)
    want_i, _ = naive.warp(scaled, flow[..., 0], flow[..., 1], fill, order)
    got_i = _kernel(scaled, flow, fill, order, np.uint8)
    diff = got_i.astype(np.int64) - np.clip(np.rint(want_i), 0, 255)
    assert np.abs(diff).max() <= 1 and np.mean(diff != 0) < 0.05  # float rounding at .5 ties


@pytest.mark.parametrize("nc", [1, 2])  # 1: the flat single-channel cubic kernel
def test_warp_frame_boundary_positions(nc):
    """Samples on / just inside the last row and column use the replicated border."""
    h, w = 6, 7
    img = np.random.default_rng(9).standard_normal((h, w, nc)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    flow = np.stack([(w - 1) - xx + np.float32(0.4), -yy], axis=-1).astype(np.float32)
    for order in (3, 1, 0):
        want, _ = naive.warp(img, flow[..., 0], flow[..., 1], np.zeros_like(img), order)
        got = _kernel(img, flow, np.zeros_like(img), order, np.float32)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("nc", [1, 2, 3])
def test_warp_frame_equals_warp_image(nc):
    """The fused output warp (flat single-channel kernel included) gives the engine's warp
    bit for bit."""
    from flowreg_dask.kernels.cpu import warp as kwarp

    rng = np.random.default_rng(31 + nc)
    img = rng.uniform(0, 1000, (23, 29, nc)).astype(np.float32)
    fill = rng.uniform(0, 1000, (23, 29, nc)).astype(np.float32)
    flow = rng.uniform(-3.0, 3.0, (23, 29, 2)).astype(np.float32)
    want = np.empty_like(img)
    want_valid = np.empty((23, 29), np.uint8)
    kwarp.warp_image(img, flow[..., 0].copy(), flow[..., 1].copy(), fill, want, 3, want_valid)
    got = np.empty_like(img)
    valid = np.empty((23, 29), np.uint8)
    remap.warp_frame(img, flow, fill, 3, False, np.float32(0), np.float32(0), got, valid)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(valid, want_valid)


def test_warp_frame_kernels_use_the_shared_flags():
    for name in ("warp_frame", "_cubic_1ch", "_cubic_at", "_cubic_weights", "_store", "_clampi"):
        assert getattr(remap, name).targetoptions.get("nogil") is True, name


def test_live_accuracy_is_close_to_the_offline_pipeline():
    """Frame by frame (warm-started by the previous frame, fast preset), the endpoint error stays
    within 0.03 px of the offline pipeline's with the same preset and reference (96x96 frames;
    measured: 0.247 px live, 0.243 px offline)."""
    rec = synthetic_recording(n_frames=30, height=96, width=96, n_channels=2, seed=5)
    opts = OFOptions(quality_setting="fast")
    live = FlowRegLive(opts, reference_update_interval=0)
    live.set_reference(rec.reference)
    live_flow = np.stack([live(frame)[1] for frame in rec.movie])
    _, offline_flow = flowreg_dask.compensate_arr(
        rec.movie, rec.reference, opts.copy(buffer_size=30)
    )
    live_epe, offline_epe = _epe(live_flow, rec.flow), _epe(offline_flow, rec.flow)
    assert live_epe < 0.5 * _epe(np.zeros_like(rec.flow), rec.flow)
    assert live_epe <= offline_epe + 0.03, (live_epe, offline_epe)
