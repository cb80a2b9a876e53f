"""Tests of the flow engine: ``get_displacement(s)``, ``warp``, ``valid_mask``, rigid pre-alignment.

Accuracy is measured against known ground truth: synthetic non-rigid pairs from
:mod:`flowreg_dask.datasets` and sub-pixel translations of a random smooth texture made here with
scipy (never with :func:`flowreg_dask.warp`, which is under test). Images are small (64-128 px)
so the whole module runs in a few seconds once numba's on-disk cache is warm.

Conventions (method spec §1): flow ``(u, v) = (x, y)``, backward warp
``registered(y, x) = moving(y + v, x + u)``; content moved by ``(+dy, +dx)`` (``ndi.shift(t, (dy,
dx))``) is registered by ``u = +dx, v = +dy``.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
from scipy import ndimage as ndi

import flowreg_dask
from flowreg_dask import estimate_rigid_shift, get_displacement, get_displacements, valid_mask
from flowreg_dask.core.params import resolve_params
from flowreg_dask.core.solver import FlowEstimator
from flowreg_dask.core.warp import warp
from flowreg_dask.datasets import synthetic_pair
from flowreg_dask.errors import FlowRegWarning, InvalidInputError, InvalidOptionError
from flowreg_dask.options import OFOptions
from flowreg_dask.preprocess import intensity_range, normalize, smooth_image

BORDER = 10  # px excluded from every error measure (content entering the frame)
SIGMA = [[1.0, 1.0, 0.1]]
TERMS = ("gc", "gray", "cs")
PRESETS = ("quality", "balanced", "fast")
SHIFTS = ((1.7, -2.3), (0.25, 0.5), (-3.4, 0.6))  # (dy, dx)


# --------------------------------------------------------------------------------------- helpers
def _interior(a: np.ndarray, border: int = BORDER) -> np.ndarray:
    return a[..., border:-border, border:-border, :]


def _epe(flow: np.ndarray, truth: np.ndarray, border: int = BORDER) -> float:
    """Mean endpoint error over the interior."""
    d = _interior(flow - truth, border)
    return float(np.mean(np.hypot(d[..., 0], d[..., 1])))


def _mean_flow(flow: np.ndarray) -> np.ndarray:
    return _interior(flow).reshape(-1, 2).mean(axis=0)


def _uv(shift: tuple[float, float]) -> np.ndarray:
    """Ground-truth (u, v) of a content shift (dy, dx)."""
    return np.array([shift[1], shift[0]], np.float64)


def _preprocess(reference: np.ndarray, moving: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pipeline pre-processing: normalise both with the reference range, then smooth (sigma 1)."""
    lo, hi = intensity_range(reference)
    ref = smooth_image(normalize(reference, vmin=lo, vmax=hi), SIGMA)
    mov = smooth_image(normalize(moving, vmin=lo, vmax=hi), SIGMA)
    return ref, mov


def _texture(size: int, seed: int, sigma: float = 1.5, pad: int = 16) -> np.ndarray:
    """Smooth random texture in [0, 1] of (size + 2 pad)^2 px (float64)."""
    rng = np.random.default_rng(seed)
    t = ndi.gaussian_filter(rng.standard_normal((size + 2 * pad, size + 2 * pad)), sigma)
    return (t - t.min()) / (t.max() - t.min())


def _shifted_pair(
    shift: tuple[float, float], size: int = 96, seed: int = 0, pad: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """(reference, moving) float32 (size, size): moving = texture translated by (dy, dx).

    The texture is larger than the crop, so content really enters the frame (no wrap-around).
    """
    t = _texture(size, seed, pad=pad)
    s = ndi.shift(t, shift, order=3, mode="reflect")
    crop = (slice(pad, pad + size), slice(pad, pad + size))
    return t[crop].astype(np.float32), s[crop].astype(np.float32)


@functools.cache
def _nonrigid(size: int = 128, seed: int = 0):
    """Pre-processed synthetic non-rigid pair (reference, moving, true flow), read-only."""
    ref, mov, flow = synthetic_pair(height=size, width=size, seed=seed, kind="nonrigid")
    ref, mov = _preprocess(ref, mov)
    for a in (ref, mov, flow):
        a.setflags(write=False)
    return ref, mov, flow


@functools.cache
def _nonrigid_epe(term: str, preset: str) -> float:
    ref, mov, truth = _nonrigid()
    return _epe(
        get_displacement(ref, mov, constancy_assumption=term, quality_setting=preset), truth
    )


def _noise_channel(shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return smooth_image(rng.random(shape).astype(np.float32), SIGMA)


# ------------------------------------------------------------------------------------ public API
def test_public_names_resolve_to_the_engine_functions():
    import flowreg_dask.core.rigid as rigid_mod
    import flowreg_dask.core.solver as solver_mod
    import flowreg_dask.core.warp as warp_mod

    assert flowreg_dask.get_displacement is solver_mod.get_displacement
    assert flowreg_dask.get_displacements is solver_mod.get_displacements
    assert flowreg_dask.FlowEstimator is solver_mod.FlowEstimator
    assert flowreg_dask.valid_mask is warp_mod.valid_mask
    assert flowreg_dask.estimate_rigid_shift is rigid_mod.estimate_rigid_shift
    # `flowreg_dask.warp` must be the function, not the module flowreg_dask.core.warp
    assert flowreg_dask.warp is warp_mod.warp


def test_output_shape_dtype_and_identity():
    ref = _texture(48, seed=3)[16:-16, 16:-16].astype(np.float32)
    flow = get_displacement(ref, ref)
    assert flow.shape == (48, 48, 2)
    assert flow.dtype == np.float32
    assert np.abs(flow).max() < 1e-3  # identical images: no motion


# ------------------------------------------------------------------------------ accuracy (EPE)
# Measured on the 128x128 synthetic non-rigid pair (seed 0, shift (1.5, -2.5) + 1.5 px RMS
# deformation), default parameters, EPE in px over the interior (10 px border excluded):
#   zero flow: 3.181
#             quality  balanced  fast     (ratio to zero-flow EPE)
#   gc        0.062    0.113     0.199    (0.019 / 0.035 / 0.062)
#   gray      0.317    0.555     0.687    (0.100 / 0.175 / 0.216)
#   cs        0.366    0.726     0.975    (0.115 / 0.228 / 0.306)
# (seeds 1-3: ratios up to 0.07 gc, 0.36 gray, 0.31 cs, always fast > balanced > quality.)
# gray and cs are limited by the default alpha = 1.5, which is tuned for the scale-invariant gc
# term: with alpha = 0.05 gray reaches 0.06 px (test below). Bounds leave ~1.4-2.5x headroom.
EPE_FACTOR = {
    ("gc", "quality"): 0.05,
    ("gc", "balanced"): 0.08,
    ("gc", "fast"): 0.15,
    ("gray", "quality"): 0.25,
    ("gray", "balanced"): 0.35,
    ("gray", "fast"): 0.42,
    ("cs", "quality"): 0.22,
    ("cs", "balanced"): 0.35,
    ("cs", "fast"): 0.45,
}


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("term", TERMS)
def test_nonrigid_epe_beats_zero_flow(term, preset):
    ref, mov, truth = _nonrigid()
    zero = _epe(np.zeros_like(truth), truth)
    assert zero > 2.5  # the pair really moves
    epe = _nonrigid_epe(term, preset)
    assert epe < EPE_FACTOR[term, preset] * zero, (term, preset, epe, zero)


@pytest.mark.parametrize("term", TERMS)
def test_presets_are_ordered_by_accuracy(term):
    q, b, f = (_nonrigid_epe(term, p) for p in PRESETS)
    assert q <= b + 0.02, (q, b)
    assert b <= f + 0.02, (b, f)
    assert q < f  # finer levels do help (measured gaps 0.14-0.61 px)


def test_gc_quality_is_subpixel_accurate():
    assert _nonrigid_epe("gc", "quality") < 0.12  # measured 0.062 px


def test_gray_with_small_alpha_is_accurate():
    # The brightness-constancy term works; its default-alpha error is over-smoothing.
    ref, mov, truth = _nonrigid()
    epe = _epe(get_displacement(ref, mov, constancy_assumption="gray", alpha=0.05), truth)
    assert epe < 0.2, epe  # measured 0.06 px


# ------------------------------------------------------------------------- rigid sub-pixel shifts
@pytest.mark.parametrize("shift", SHIFTS)
def test_subpixel_translation_recovered_by_flow(shift):
    ref, mov = _shifted_pair(shift)
    flow = get_displacement(ref, mov)  # gc, quality preset
    # measured |mean error| <= 0.030 px, max interior deviation <= 0.13 px (texture sigma 1.5)
    np.testing.assert_allclose(_mean_flow(flow), _uv(shift), atol=0.05)
    assert np.abs(_interior(flow) - _uv(shift)).max() < 0.5  # no outliers in the interior


@pytest.mark.parametrize("shift", SHIFTS)
def test_estimate_rigid_shift_subpixel(shift):
    ref, mov = _shifted_pair(shift)
    dx, dy = estimate_rigid_shift(ref, mov, target_hw=(256, 256), upsample=20, weight=None)
    # Phase correlation (whitened cross-power spectrum, Hann window) is biased on a
    # non-periodic smooth texture: measured errors 0.0-0.1 px (identical to a brute-force
    # evaluation of the same correlation surface on a 0.01 px grid).
    assert abs(dx - shift[1]) <= 0.12 and abs(dy - shift[0]) <= 0.12, (dx, dy, shift)
    # integer precision without upsampling
    dx1, dy1 = estimate_rigid_shift(ref, mov, target_hw=(256, 256), upsample=1)
    assert dx1 == round(dx1) and dy1 == round(dy1)
    assert abs(dx1 - shift[1]) <= 0.6 and abs(dy1 - shift[0]) <= 0.6


def test_estimate_rigid_shift_downsampled_and_multichannel():
    shift = (-3.4, 0.6)
    ref, mov = _shifted_pair(shift, size=128)
    # working size 64 px: the result is scaled back to full-resolution pixels
    dx, dy = estimate_rigid_shift(ref, mov, target_hw=(64, 64), upsample=20)
    assert abs(dx - shift[1]) < 0.3 and abs(dy - shift[0]) < 0.3, (dx, dy)
    # two channels, the second pure noise: weight [1, 0] ignores it
    ref2 = np.stack([ref, _noise_channel(ref.shape + (1,), 5)[..., 0]], -1)
    mov2 = np.stack([mov, _noise_channel(ref.shape + (1,), 6)[..., 0]], -1)
    dx, dy = estimate_rigid_shift(ref2, mov2, upsample=20, weight=np.array([1.0, 0.0]))
    dx0, dy0 = estimate_rigid_shift(ref, mov, upsample=20)
    assert (dx, dy) == pytest.approx((dx0, dy0), abs=1e-6)


@pytest.mark.parametrize("shift", SHIFTS)
@pytest.mark.parametrize("channels", ["one", "two", "two+map2d", "two+map3d"])
def test_cc_initialization_is_accurate(shift, channels):
    ref, mov = _shifted_pair(shift)
    kw: dict = {}
    if channels != "one":  # pyflowreg crashes on this path with C > 1 (method spec §1.10)
        ref = np.stack([ref, ref**2], -1)
        mov = np.stack([mov, mov**2], -1)
    if channels == "two+map2d":
        wmap = np.ones(ref.shape[:2], np.float32)
        wmap[:, : ref.shape[1] // 2] = 0.2
        kw["weight"] = wmap
    elif channels == "two+map3d":
        wmap = np.ones(ref.shape, np.float32)
        wmap[..., 1] = 0.5
        kw["weight"] = wmap
    flow = get_displacement(ref, mov, cc_initialization=True, cc_up=20, **kw)
    assert np.all(np.isfinite(flow))
    # measured |mean error| <= 0.013 px (flow alone: <= 0.030 px)
    np.testing.assert_allclose(_mean_flow(flow), _uv(shift), atol=0.05)


def test_cc_initialization_large_shift():
    # a 10 px translation: rigid pre-alignment takes the bulk of it
    shift = (6.3, -7.6)
    ref, mov = _shifted_pair(shift, size=96, pad=24)
    flow = get_displacement(ref, mov, cc_initialization=True, cc_up=20, quality_setting="fast")
    np.testing.assert_allclose(_mean_flow(flow), _uv(shift), atol=0.1)


# ------------------------------------------------------------------------------ data terms
def test_census_is_invariant_to_an_intensity_offset_gray_is_not():
    ref, mov, truth = _nonrigid(96)
    offset = np.float32(0.3)
    cs0 = get_displacement(ref, mov, constancy_assumption="cs")
    cs1 = get_displacement(ref, mov + offset, constancy_assumption="cs")
    gray0 = get_displacement(ref, mov, constancy_assumption="gray")
    gray1 = get_displacement(ref, mov + offset, constancy_assumption="gray")
    # Census compares each pixel only with its neighbours. The flow is not bit-identical because
    # samples leaving the frame are filled from the (un-offset) reference, which leaks in from
    # the border (measured: interior mean |diff| 0.02 px, max 0.24 px; with the fill offset too
    # the max diff is 0.0014 px). The accuracy is unchanged (EPE 0.415 -> 0.415 px).
    diff = np.abs(_interior(cs1 - cs0))
    assert diff.mean() < 0.08, diff.mean()
    assert abs(_epe(cs1, truth) - _epe(cs0, truth)) < 0.03
    # brightness constancy breaks down (measured EPE 0.55 -> 9.1 px)
    assert _epe(gray1, truth) > 3 * _epe(gray0, truth)
    assert _epe(gray1, truth) > _epe(cs1, truth) + 1.0


def test_census_offset_on_both_images_changes_nothing():
    ref, mov, _ = _nonrigid(96)
    f0 = get_displacement(ref, mov, constancy_assumption="cs")
    f1 = get_displacement(ref + np.float32(0.2), mov + np.float32(0.2), constancy_assumption="cs")
    assert np.abs(f1 - f0).max() < 0.02  # measured 1e-4 px (float32 rounding)


# ---------------------------------------------------------------------------------- channels
# Channel 0 informative, channel 1 independent smooth noise. Measured EPE (96 px, seed 0):
#   single channel / weight [1, 0] / equal weights
#   gc   0.075 / 0.075 / 0.086     gray 0.550 / 0.550 / 0.854     cs 0.415 / 0.415 / 0.556
@pytest.mark.parametrize("term", TERMS)
def test_channel_weights_ignore_a_noise_channel(term):
    ref, mov, truth = _nonrigid(96)
    ref2 = np.concatenate([ref, _noise_channel(ref.shape, 1)], -1)
    mov2 = np.concatenate([mov, _noise_channel(ref.shape, 2)], -1)
    single = get_displacement(ref, mov, constancy_assumption=term)
    w10 = get_displacement(ref2, mov2, constancy_assumption=term, weight=[1, 0])
    equal = get_displacement(ref2, mov2, constancy_assumption=term)
    # a zero-weight channel contributes nothing
    np.testing.assert_allclose(w10, single, atol=1e-4)
    assert _epe(w10, truth) <= _epe(single, truth) + 0.01
    assert _epe(equal, truth) > 1.05 * _epe(w10, truth)
    # weights are normalised: [2, 0] == [1, 0]
    np.testing.assert_allclose(
        get_displacement(ref2, mov2, constancy_assumption=term, weight=np.array([2.0, 0.0])),
        w10,
        atol=1e-5,
    )


def test_weight_maps_run_and_match_vectors():
    ref, mov, truth = _nonrigid(96)
    ref2 = np.concatenate([ref, _noise_channel(ref.shape, 1)], -1)
    mov2 = np.concatenate([mov, _noise_channel(ref.shape, 2)], -1)
    h, w = ref.shape[:2]
    # (H, W, C) map equal to the vector [1, 0] everywhere
    map3 = np.zeros((h, w, 2), np.float32)
    map3[..., 0] = 1.0
    base = OFOptions()  # the options' defaults (alpha 1.5), as this comparison was tuned with
    f_map3 = get_displacement(ref2, mov2, weight=map3, options=base)
    f_vec = get_displacement(ref2, mov2, weight=[1.0, 0.0], options=base)
    assert np.all(np.isfinite(f_map3))
    # the resampled map is [1, 0] +- 1e-7 per level: flows agree closely, not bit for bit
    assert np.abs(f_map3 - f_vec).mean() < 0.005
    assert np.abs(f_map3 - f_vec).max() < 0.1
    # (H, W) map of 0.5 is replicated to every channel == equal weights
    # (the resampled map is 0.5 +- 1e-7; with a noise channel the solution reacts to such tiny
    # perturbations by up to ~0.3 px at single pixels, mean 0.035 px, so compare means and EPE)
    f_map2 = get_displacement(ref2, mov2, weight=np.full((h, w), 0.5, np.float32), options=base)
    f_eq = get_displacement(ref2, mov2, options=base)
    assert np.abs(f_map2 - f_eq).mean() < 0.1
    assert abs(_epe(f_map2, truth) - _epe(f_eq, truth)) < 0.02
    # a spatially varying map (down-weighting the left half) runs and stays accurate
    vary = np.ones((h, w), np.float32)
    vary[:, : w // 2] = 0.1
    f_vary = get_displacement(ref, mov, weight=vary)
    assert np.all(np.isfinite(f_vary))
    assert _epe(f_vary, truth) < 0.35 * _epe(np.zeros_like(truth), truth)


def test_two_channel_input_of_identical_channels_matches_one_channel():
    ref, mov, _ = _nonrigid(64)
    f1 = get_displacement(ref, mov)
    f2 = get_displacement(np.repeat(ref, 2, -1), np.repeat(mov, 2, -1))
    np.testing.assert_allclose(f2, f1, atol=1e-3)


def test_2d_and_single_channel_3d_inputs_agree():
    ref, mov, _ = _nonrigid(64)
    np.testing.assert_array_equal(
        get_displacement(ref[..., 0], mov[..., 0]), get_displacement(ref, mov)
    )


# -------------------------------------------------------------------------------------- init
@pytest.mark.parametrize("shift", [(1.7, -2.3), (-3.4, 0.6)])
def test_exact_init_keeps_result_accurate(shift):
    ref, mov = _shifted_pair(shift)
    init = np.broadcast_to(_uv(shift).astype(np.float32), ref.shape + (2,)).copy()
    flow = get_displacement(ref, mov, init=init)
    # measured |mean error| <= 0.023 px, max interior deviation <= 0.14 px
    np.testing.assert_allclose(_mean_flow(flow), _uv(shift), atol=0.05)
    assert np.abs(_interior(flow) - _uv(shift)).max() < 0.5


def _translation_stack(size: int = 64):
    pairs = [_shifted_pair(s, size=size) for s in SHIFTS]
    ref = pairs[0][0]
    frames = np.stack([m for _, m in pairs])[..., None]
    truth = np.stack([np.broadcast_to(_uv(s).astype(np.float32), (size, size, 2)) for s in SHIFTS])
    return ref, frames, truth


def test_get_displacements_with_per_frame_init():
    ref, frames, truth = _translation_stack()
    flows = get_displacements(ref, frames, init=truth)
    assert flows.shape == truth.shape and flows.dtype == np.float32
    for t in range(len(SHIFTS)):
        np.testing.assert_allclose(_mean_flow(flows[t]), truth[t, 0, 0], atol=0.05)


@pytest.mark.parametrize("init_kind", ["none", "shared", "per_frame"])
def test_get_displacements_equals_per_frame_calls(init_kind):
    ref, frames, truth = _translation_stack()
    init = {"none": None, "shared": truth[1], "per_frame": truth}[init_kind]
    params = {"quality_setting": "balanced", "constancy_assumption": "cs"}
    flows = get_displacements(ref, frames, init=init, **params)
    for t in range(frames.shape[0]):
        it = None if init is None else (init[t] if init.ndim == 4 else init)
        single = get_displacement(ref, frames[t], init=it, **params)
        np.testing.assert_array_equal(flows[t], single)
    # (T, H, W) frames for a one-channel reference are accepted too
    np.testing.assert_array_equal(
        get_displacements(ref, frames[..., 0], init=init, **params), flows
    )


def test_flow_estimator_reuses_the_reference():
    ref, frames, _ = _translation_stack()
    est = FlowEstimator(ref, resolve_params(None, n_channels=1, quality_setting="fast"))
    a = est.flow(frames[0])
    b = est.flow(frames[0])
    np.testing.assert_array_equal(a, b)  # deterministic
    np.testing.assert_array_equal(
        a, get_displacement(ref, frames[0], options={"quality_setting": "fast"})
    )
    np.testing.assert_array_equal(est.flows(frames)[2], est.flow(frames[2]))
    # the unchecked entry (the live corrector's) computes the same flow
    mov = np.ascontiguousarray(frames[1].reshape(est.shape), np.float32)
    np.testing.assert_array_equal(est.flow(mov, a, check=False), est.flow(frames[1], a))
    with pytest.raises(InvalidInputError):
        est.flow(frames[1][:-1], a)


# -------------------------------------------------------------------------------------- warp
def test_warp_with_true_flow_reproduces_reference():
    ref, mov, flow = synthetic_pair(height=96, width=96, seed=0, kind="nonrigid")
    lo, hi = float(ref.min()), float(ref.max())
    out = warp(mov, flow)
    assert out.shape == mov.shape and out.dtype == mov.dtype
    err = np.abs(_interior(out - ref)) / (hi - lo)
    before = np.abs(_interior(mov - ref)) / (hi - lo)
    assert err.mean() < 0.1 * before.mean(), (err.mean(), before.mean())
    assert err.mean() < 0.01, err.mean()
    # scipy-made translation: exact round trip up to interpolation error
    shift = (1.7, -2.3)
    r, m = _shifted_pair(shift)
    const = np.broadcast_to(_uv(shift).astype(np.float32), r.shape + (2,))
    for interp, tol in (("cubic", 0.01), ("linear", 0.03)):
        out = warp(m, const, interpolation=interp)
        assert np.abs(_interior(out[..., None] - r[..., None])).mean() < tol, interp


@pytest.mark.parametrize("interpolation", ["cubic", "linear", "nearest"])
def test_warp_integer_shift_is_exact_for_every_interpolation(interpolation):
    rng = np.random.default_rng(0)
    img = rng.random((24, 20, 2)).astype(np.float32)
    flow = np.zeros((24, 20, 2), np.float32)
    flow[..., 0] = 2.0  # u: sample 2 px to the right
    flow[..., 1] = -1.0  # v: sample 1 px up
    out = warp(img, flow, interpolation=interpolation)
    np.testing.assert_allclose(out[1:, :-2], img[:-1, 2:], atol=1e-5)
    assert np.all(out[0] == 0) and np.all(out[:, -2:] == 0)  # out of bounds, fill defaults to 0


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("interpolation", ["cubic", "linear", "nearest"])
def test_warp_integer_dtypes_round_and_clip(dtype, interpolation):
    img = np.zeros((32, 32), dtype)
    img[:, 16:] = 250  # sharp edge
    flow = np.zeros((32, 32, 2), np.float32)
    flow[..., 0] = 0.5
    flow[..., 1] = 0.3
    out = warp(img, flow, interpolation=interpolation)
    assert out.dtype == dtype and out.shape == img.shape
    dark, bright = out[:, :15], out[:, 16:-1]
    # no wrap-around: cubic undershoots (-23) would wrap to 233 and overshoots (273) to 17 in uint8
    assert dark.max() <= 125 and bright.min() >= 125
    if interpolation == "cubic":
        # Keys cubic (a = -0.75) overshoots the input range at the edge by 9.4 %; the result is
        # clipped to the dtype's range, not to the input's [min, max]
        assert out.min() == 0
        assert out.max() == min(np.iinfo(dtype).max, 273)
    else:
        assert out.min() >= 0 and out.max() <= 250  # convex interpolation stays in range
    if interpolation == "linear":
        np.testing.assert_array_equal(out[:, 15], 125)  # rounded, not truncated (half-way: 125)


def test_warp_stack_matches_frame_by_frame_and_broadcasts_one_flow():
    rng = np.random.default_rng(1)
    frames = rng.random((3, 20, 24, 2)).astype(np.float32)
    flows = rng.normal(0, 1.5, (3, 20, 24, 2)).astype(np.float32)
    out = warp(frames, flows)
    assert out.shape == frames.shape
    for t in range(3):
        np.testing.assert_array_equal(out[t], warp(frames[t], flows[t]))
    shared = warp(frames, flows[0])
    for t in range(3):
        np.testing.assert_array_equal(shared[t], warp(frames[t], flows[0]))
    # a 2-D frame gives a 2-D result
    assert warp(frames[0, ..., 0], flows[0]).shape == (20, 24)


def test_valid_mask_and_fill():
    h, w = 16, 20
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0] = 3.0
    flow[..., 1] = -2.0
    mask = valid_mask(flow)
    assert mask.dtype == bool and mask.shape == (h, w)
    expected = np.zeros((h, w), bool)
    expected[2:, : w - 3] = True  # x + 3 < w and y - 2 >= 0
    np.testing.assert_array_equal(mask, expected)
    # (T, H, W, 2) -> (T, H, W)
    assert valid_mask(np.stack([flow, -flow])).shape == (2, h, w)
    # samples in [w - 1, w) are in bounds (spec §1.8), exactly w is not
    edge = np.zeros((h, w, 2), np.float32)
    edge[..., 0] = 0.5
    assert valid_mask(edge)[:, -1].all()
    edge[..., 0] = 1.0
    assert not valid_mask(edge)[:, -1].any()
    # fill is used exactly where the mask is False
    img = np.ones((h, w, 2), np.float32)
    fill = np.full((h, w, 2), 7.0, np.float32)
    for interp in ("cubic", "linear", "nearest"):
        out = warp(img, flow, fill=fill, interpolation=interp)
        np.testing.assert_array_equal(out[~mask], 7.0)
        np.testing.assert_allclose(out[mask], 1.0, atol=1e-6)
    # an (H, W) fill is broadcast to every channel
    out = warp(img, flow, fill=fill[..., 0])
    np.testing.assert_array_equal(out[~mask], 7.0)


def test_warp_rejects_bad_arguments():
    img = np.zeros((16, 16), np.float32)
    flow = np.zeros((16, 16, 2), np.float32)
    with pytest.raises(ValueError, match="interpolation"):
        warp(img, flow, interpolation="lanczos")
    with pytest.raises(ValueError, match="flow"):
        warp(img, np.zeros((16, 15, 2), np.float32))
    with pytest.raises(ValueError, match="flow"):
        warp(np.zeros((3, 16, 16, 1), np.float32), np.zeros((2, 16, 16, 2), np.float32))
    with pytest.raises(ValueError, match="fill"):
        warp(img, flow, fill=np.zeros((8, 8)))
    with pytest.raises(ValueError, match="flow"):
        valid_mask(np.zeros((16, 16, 3)))


# ------------------------------------------------------------------------------- option paths
OPTION_CASES = {
    "a_smooth": {"a_smooth": 0.5},
    "gnc": {"gnc_schedule": (0.0, 0.5, 1.0), "warping_steps": 2},
    "gnc_robust_smooth": {"gnc_schedule": (0.0, 1.0), "warping_steps": 1, "a_smooth": 0.5},
    "anisotropic_alpha": {"alpha": (1.0, 3.0)},
    "alpha_scalar_list": {"alpha": [2.0]},
    "a_data_per_channel": {"a_data": (0.45, 0.9), "_channels": 2},
    "a_data_one": {"a_data": 1.0},
    "eta": {"eta": 0.5},
    "levels": {"levels": 3},
    "iterations": {"iterations": 10, "update_lag": 3},
    "min_level": {"min_level": 2},
    "preset_overridden_by_min_level": {"quality_setting": "fast", "min_level": 1},
    "cc": {"cc_initialization": True, "cc_hw": 32, "cc_up": 10},
    "census_gnc": {"constancy_assumption": "census", "gnc_schedule": (0, 1), "warping_steps": 1},
    "gray_balanced": {"constancy_assumption": "brightness", "quality_setting": "balanced"},
}


@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_option_paths_run_and_are_finite(case):
    params = dict(OPTION_CASES[case])
    n_channels = params.pop("_channels", 1)
    ref, mov, truth = _nonrigid(64)
    if n_channels == 2:
        ref = np.repeat(ref, 2, -1)
        mov = np.repeat(mov, 2, -1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FlowRegWarning)  # none of these should warn
        flow = get_displacement(ref, mov, **params)
    assert flow.shape == (64, 64, 2) and flow.dtype == np.float32
    assert np.all(np.isfinite(flow))
    # every variant still registers the pair (zero-flow EPE 3.24 px; measured 0.08-0.12 px,
    # census+GNC 0.57, gray balanced 0.90)
    assert _epe(flow, truth) < 0.5 * _epe(np.zeros_like(truth), truth), _epe(flow, truth)


@pytest.mark.parametrize(
    ("alias", "name"), [("gradient", "gc"), ("brightness", "gray"), ("census", "cs"), ("GC", "gc")]
)
def test_data_term_aliases(alias, name):
    ref, mov, _ = _nonrigid(64)
    a = get_displacement(ref, mov, constancy_assumption=alias, quality_setting="fast")
    b = get_displacement(ref, mov, constancy_assumption=name, quality_setting="fast")
    np.testing.assert_array_equal(a, b)
    # pyflowreg's keyword name is accepted as well
    c = get_displacement(ref, mov, const_assumption=alias, quality_setting="fast")
    np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize(("preset", "min_level"), [("quality", 0), ("balanced", 4), ("fast", 6)])
def test_quality_presets_map_to_min_level(preset, min_level):
    ref, mov, _ = _nonrigid(64)
    np.testing.assert_array_equal(
        get_displacement(ref, mov, quality_setting=preset),
        get_displacement(ref, mov, min_level=min_level),
    )


def test_min_level_deeper_than_pyramid_warns_and_runs():
    ref, mov, truth = _nonrigid(64)  # eta 0.8: 9 levels for 64 px
    with pytest.warns(FlowRegWarning, match="min_level"):
        flow = get_displacement(ref, mov, min_level=40)
    assert flow.shape == (64, 64, 2) and np.all(np.isfinite(flow))
    with pytest.warns(FlowRegWarning, match="min_level"):
        flow = get_displacement(ref, mov, min_level=3, levels=2)
    assert np.all(np.isfinite(flow))


def test_smallest_allowed_frame_runs():
    rng = np.random.default_rng(0)
    ref = smooth_image(rng.random((8, 8, 1)).astype(np.float32), SIGMA)
    flow = get_displacement(ref, ref)
    assert flow.shape == (8, 8, 2) and np.all(np.isfinite(flow))


def test_ofoptions_object_is_accepted():
    ref, mov, truth = _nonrigid(64)
    opts = OFOptions(quality_setting="balanced", alpha=(2.0, 2.0), constancy_assumption="census")
    flow = get_displacement(ref, mov, options=opts)
    expected = get_displacement(
        ref, mov, quality_setting="balanced", alpha=2.0, constancy_assumption="cs"
    )
    np.testing.assert_array_equal(flow, expected)
    # keywords override option fields
    np.testing.assert_array_equal(
        get_displacement(ref, mov, options=opts, constancy_assumption="gc", alpha=2.0),
        get_displacement(ref, mov, quality_setting="balanced", alpha=2.0),
    )
    # get_displacements accepts it too
    flows = get_displacements(ref, mov[None], options=opts)
    np.testing.assert_array_equal(flows[0], flow)


def test_ofoptions_channel_weights_are_used():
    ref, mov, _ = _nonrigid(64)
    ref2 = np.concatenate([ref, _noise_channel(ref.shape, 1)], -1)
    mov2 = np.concatenate([mov, _noise_channel(ref.shape, 2)], -1)
    opts = OFOptions(weight=[1.0, 0.0], quality_setting="fast")
    np.testing.assert_allclose(
        get_displacement(ref2, mov2, options=opts),
        get_displacement(ref2, mov2, weight=[1.0, 0.0], options=OFOptions(quality_setting="fast")),
        atol=1e-6,
    )


def test_options_as_dict():
    ref, mov, _ = _nonrigid(64)
    np.testing.assert_array_equal(
        get_displacement(ref, mov, options={"alpha": 3.0, "min_level": 2}),
        get_displacement(ref, mov, alpha=3.0, min_level=2),
    )


# ------------------------------------------------------------------------------ bad input
_RNG = np.random.default_rng(0)
_IMG = _RNG.random((32, 32)).astype(np.float32)
_IMG2 = _RNG.random((32, 32, 2)).astype(np.float32)


def _with(value, index=(3, 3)):
    a = _IMG.copy()
    a[index] = value
    return a


BAD_CALLS = {
    "shape_mismatch": (lambda: get_displacement(_IMG, _IMG[:30]), "moving"),
    "channel_mismatch": (lambda: get_displacement(_IMG2, _IMG), "moving"),
    "nan_moving": (lambda: get_displacement(_IMG, _with(np.nan)), "moving"),
    "inf_moving": (lambda: get_displacement(_IMG, _with(-np.inf)), "moving"),
    "nan_reference": (lambda: get_displacement(_with(np.nan), _IMG), "reference"),
    "nan_in_stack": (
        lambda: get_displacements(_IMG, np.stack([_IMG, _with(np.nan)])[..., None]),
        "moving",
    ),
    "too_small": (lambda: get_displacement(_IMG[:7, :7], _IMG[:7, :7]), "8x8"),
    "too_narrow": (lambda: get_displacement(_IMG[:, :7], _IMG[:, :7]), "8x8"),
    "4d_image": (
        lambda: get_displacement(_IMG[None, ..., None], _IMG[None, ..., None]),
        "fixed",
    ),
    "unknown_term": (lambda: get_displacement(_IMG, _IMG, constancy_assumption="ncc"), "constancy"),
    "weight_length": (lambda: get_displacement(_IMG2, _IMG2, weight=[1, 2, 3]), "weight"),
    "weight_length_short": (lambda: get_displacement(_IMG2, _IMG2, weight=[1]), "weight"),
    "weight_negative": (lambda: get_displacement(_IMG2, _IMG2, weight=[1, -1]), "weight"),
    "weight_map_shape": (
        lambda: get_displacement(_IMG2, _IMG2, weight=np.ones((31, 32))),
        "weight",
    ),
    "init_shape": (lambda: get_displacement(_IMG, _IMG, init=np.zeros((32, 32, 3))), "init"),
    "init_hw": (lambda: get_displacement(_IMG, _IMG, init=np.zeros((16, 16, 2))), "init"),
    "init_nan": (lambda: get_displacement(_IMG, _IMG, init=np.full((32, 32, 2), np.nan)), "init"),
    "init_frames": (
        lambda: get_displacements(_IMG, np.stack([_IMG, _IMG]), init=np.zeros((3, 32, 32, 2))),
        "init",
    ),
    "frames_shape": (lambda: get_displacements(_IMG, np.zeros((2, 30, 32, 1))), "frames"),
    "frames_not_stack": (lambda: get_displacements(_IMG2, _IMG2), "frames"),
    "alpha_zero": (lambda: get_displacement(_IMG, _IMG, alpha=0), "alpha"),
    "alpha_negative": (lambda: get_displacement(_IMG, _IMG, alpha=(1.0, -1.0)), "alpha"),
    "alpha_three": (lambda: get_displacement(_IMG, _IMG, alpha=(1, 2, 3)), "alpha"),
    "alpha_nan": (lambda: get_displacement(_IMG, _IMG, alpha=np.nan), "alpha"),
    "gnc_not_from_zero": (lambda: get_displacement(_IMG, _IMG, gnc_schedule=(0.5, 1.0)), "gnc"),
    "gnc_decreasing": (
        lambda: get_displacement(_IMG, _IMG, gnc_schedule=(0.0, 0.7, 0.5, 1.0)),
        "gnc_schedule",
    ),
    "gnc_single": (lambda: get_displacement(_IMG, _IMG, gnc_schedule=(0.0,)), "gnc_schedule"),
    "gnc_not_to_one": (lambda: get_displacement(_IMG, _IMG, gnc_schedule=(0, 0.8)), "gnc_schedule"),
    "warping_steps": (
        lambda: get_displacement(_IMG, _IMG, gnc_schedule=(0, 1), warping_steps=0),
        "warping_steps",
    ),
    "eta_zero": (lambda: get_displacement(_IMG, _IMG, eta=0.0), "eta"),
    "eta_above_one": (lambda: get_displacement(_IMG, _IMG, eta=1.5), "eta"),
    "a_data": (lambda: get_displacement(_IMG, _IMG, a_data=1.5), "a_data"),
    "a_data_channels": (lambda: get_displacement(_IMG2, _IMG2, a_data=(0.4, 0.5, 0.6)), "a_data"),
    "a_smooth": (lambda: get_displacement(_IMG, _IMG, a_smooth=0.0), "a_smooth"),
    "iterations": (lambda: get_displacement(_IMG, _IMG, iterations=0), "iterations"),
    "update_lag": (lambda: get_displacement(_IMG, _IMG, update_lag=0), "update_lag"),
    "levels": (lambda: get_displacement(_IMG, _IMG, levels=0), "levels"),
    "preset": (lambda: get_displacement(_IMG, _IMG, quality_setting="ultra"), "quality_setting"),
    "unknown_param": (lambda: get_displacement(_IMG, _IMG, smoothness=1.0), "smoothness"),
    "options_type": (lambda: get_displacement(_IMG, _IMG, options=42), "options"),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_bad_input_raises_value_error_naming_the_parameter(case):
    call, name = BAD_CALLS[case]
    with pytest.raises(ValueError, match=name) as info:
        call()
    assert isinstance(info.value, (InvalidInputError, InvalidOptionError))


@pytest.mark.parametrize("term", ["gc", "gray", "cs"])
@pytest.mark.parametrize("gnc", [None, (0.0, 1.0)])
def test_fused_level_equals_the_composed_level(term, gnc, monkeypatch):
    """The numba backend runs each pyramid level as one compiled call; it must give the flows of
    the driver's composition of the separate kernels, bit for bit (with and without an initial
    flow, with GNC, for every data term)."""
    from flowreg_dask.core.params import resolve_params
    from flowreg_dask.core.solver import FlowEstimator

    rng = np.random.default_rng(11)
    ref = rng.random((45, 52, 2)).astype(np.float32)
    frames = np.stack([np.roll(ref, (1, -2), axis=(0, 1)), np.roll(ref, 2, axis=1)])
    params = resolve_params(
        quality_setting="balanced", n_channels=2, constancy_assumption=term, gnc_schedule=gnc
    )
    est = FlowEstimator(ref, params)
    init = np.full((45, 52, 2), 0.5, np.float32)
    fused = [est.flows(frames), est.flows(frames, init)]
    monkeypatch.setattr(est._ops, "level", est._ops.composed_level)
    composed = [est.flows(frames), est.flows(frames, init)]
    for a, b in zip(fused, composed, strict=True):
        np.testing.assert_array_equal(a, b)
        assert np.abs(a).max() > 0.1  # a real flow, not zeros
