"""Numba CPU kernels against the plain-numpy twins in ``tests/naive.py`` on tiny random inputs."""

from __future__ import annotations

import inspect

import naive
import numba
import numpy as np
import pytest
from numba.core.registry import CPUDispatcher

from flowreg_dask.kernels.cpu import _median_net, median, resample, sor, tensors, warp

KERNEL_MODULES = (median, resample, warp, tensors, sor)

# float32 single-pass tolerances
RTOL = 1e-4
ATOL = 1e-5


def _rng(seed):
    return np.random.default_rng(seed)


def _f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


def _close(actual, expected, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=rtol, atol=atol)


# --------------------------------------------------------------------------- flags


def _dispatchers():
    found = []
    for mod in KERNEL_MODULES:
        for name, obj in inspect.getmembers(mod):
            if isinstance(obj, CPUDispatcher) and obj.__module__ == mod.__name__:
                found.append((f"{mod.__name__}.{name}", obj))
    return found


def test_every_kernel_is_nogil():
    found = dict(_dispatchers())
    for name in (
        "median.median5x5",
        "resample.resample_x",
        "resample.resample_y",
        "warp.warp_image",
        "warp.valid_mask",
        "warp.bilinear_sample_flow",
        "tensors.tensor_gc",
        "tensors.tensor_gray",
        "tensors.tensor_cs",
        "sor.solve_level_ws",
    ):
        assert f"flowreg_dask.kernels.cpu.{name}" in found, name
    for name, disp in found.items():
        assert disp.targetoptions.get("nogil") is True, name
        assert isinstance(disp, numba.core.dispatcher.Dispatcher)


# --------------------------------------------------------------------------- median


def _kernel_median(a):
    a = _f32(a)
    out = np.empty_like(a)
    median.median5x5(a, out)
    return out


@pytest.mark.parametrize("shape", [(7, 9), (6, 6), (3, 3), (3, 8), (12, 5), (5, 5)])
def test_median5x5_matches_scipy(shape):
    rng = _rng(1)
    a = _f32(rng.standard_normal(shape))
    np.testing.assert_array_equal(_kernel_median(a), naive.median5x5(a))
    ties = _f32(rng.integers(0, 4, shape))
    np.testing.assert_array_equal(_kernel_median(ties), naive.median5x5(ties))


def test_median_network_random_vectors_with_ties():
    rng = _rng(2)
    net = _median_net.MEDIAN25_NETWORK
    for trial in range(400):
        if trial % 2:
            vals = rng.integers(0, 5, 25).astype(np.float64)
        else:
            vals = rng.standard_normal(25)
        assert naive.apply_network(vals.tolist(), net) == np.median(vals)


def test_median_network_all_zero_one_inputs():
    """0-1 principle: the network selects the median of every input iff it does so for all 2**25
    inputs of zeros and ones. Wires are bit-parallel uint64 words over the patterns
    (pattern = 64 * word + bit; wire k holds bit k of the pattern).
    """
    nwords = 1 << 19
    words = np.arange(nwords, dtype=np.uint64)
    bits = np.arange(64, dtype=np.uint64)
    ones = np.uint64(0xFFFFFFFFFFFFFFFF)
    wires = []
    for k in range(25):
        if k < 6:
            mask = np.bitwise_or.reduce(
                np.where((bits >> np.uint64(k)) & np.uint64(1), 1, 0).astype(np.uint64) << bits
            )
            wires.append(np.full(nwords, mask, np.uint64))
        else:
            sel = (words >> np.uint64(k - 6)) & np.uint64(1)
            wires.append(np.where(sel == 1, ones, np.uint64(0)))
    for kind, i, j in _median_net.MEDIAN25_NETWORK:
        if kind == 0:
            wires[i], wires[j] = wires[i] & wires[j], wires[i] | wires[j]
        else:
            wires[j] = wires[i].copy()
    # expected: the median bit is 1 iff popcount(pattern) = popcount(bit) + popcount(word) >= 13.
    # table[t] = the 64-bit mask of the bit positions b with popcount(b) >= t (t = 0..7).
    table = np.array(
        [sum(1 << b for b in range(64) if bin(b).count("1") >= t) for t in range(8)], np.uint64
    )
    pop10 = np.array([bin(x).count("1") for x in range(1 << 10)])
    pop_word = pop10[np.arange(nwords) & 1023] + pop10[np.arange(nwords) >> 10]
    need = np.clip(13 - pop_word, 0, 7)
    expected = table[need]
    np.testing.assert_array_equal(wires[12], expected)


# --------------------------------------------------------------------------- resampler


def _kernel_resize(img, oh, ow, antialias=True):
    return resample.resize(_f32(img), oh, ow, antialias=antialias)


@pytest.mark.parametrize(
    ("shape", "out", "antialias"),
    [
        ((7, 9, 1), (7, 9), True),  # identity
        ((12, 10, 2), (17, 23), True),  # upsampling
        ((12, 10, 3), (9, 6), True),  # downsampling with Gaussian
        ((12, 10, 1), (9, 6), False),  # downsampling without Gaussian
        ((20, 13, 2), (5, 7), True),  # strong shrink (R = 3 taps of Gaussian)
        ((9, 12, 1), (14, 7), True),  # mixed: up in y, down in x
    ],
)
def test_resize_matches_dense_matrices(shape, out, antialias):
    img = _f32(_rng(3).standard_normal(shape))
    got = _kernel_resize(img, *out, antialias=antialias)
    assert got.shape == (*out, shape[2]) and got.dtype == np.float32
    _close(got, naive.resize(img, *out, antialias=antialias))


def test_resize_identity_when_size_unchanged():
    img = _f32(_rng(4).standard_normal((7, 9, 2)))
    np.testing.assert_array_equal(_kernel_resize(img, 7, 9), img)
    np.testing.assert_allclose(naive.resize(img, 7, 9), img, atol=1e-6)


@pytest.mark.parametrize("out", [(12, 6), (7, 10)])
def test_resize_one_axis_unchanged_other_shrunk(out):
    """Spec §1.3: sigma = 0.6/s (s = smaller scale) applies to BOTH axes, also an unchanged one."""
    img = _f32(_rng(5).standard_normal((12, 10, 1)))
    _close(_kernel_resize(img, *out), naive.resize(img, *out))


def test_resample_tap_tables_match_dense_matrix():
    for n_in, n_out, sigma in [(10, 6, 1.0), (12, 17, 0.0), (9, 9, 0.8), (20, 5, 2.4)]:
        start, wts, pad = resample.tap_table(n_in, n_out, sigma)
        mirror = resample.mirror_indices(n_in, pad)
        dense = np.zeros((n_out, n_in))
        for i in range(n_out):
            for t in range(wts.shape[1]):
                dense[i, mirror[start[i] + t]] += wts[i, t]
        _close(dense, naive.resize_1d_weights(n_in, n_out, sigma), atol=1e-6)


# --------------------------------------------------------------------------- warping


def _kernel_warp(img, u, v, fill, order):
    out = np.empty_like(img)
    valid = np.empty(u.shape, np.uint8)
    warp.warp_image(img, u, v, fill, out, order, valid)
    return out, valid


@pytest.mark.parametrize("order", [3, 1, 0])
@pytest.mark.parametrize(("shape", "nc"), [((7, 9), 1), ((12, 10), 3)])
def test_warp_matches_naive(order, shape, nc):
    rng = _rng(6 + order)
    img = _f32(rng.standard_normal((*shape, nc)))
    fill = _f32(rng.standard_normal((*shape, nc)) + 10.0)
    u = _f32(rng.uniform(-2.5, 2.5, shape))
    v = _f32(rng.uniform(-2.5, 2.5, shape))
    got, valid = _kernel_warp(img, u, v, fill, order)
    want, want_valid = naive.warp(img, u, v, fill, order)
    np.testing.assert_array_equal(valid, want_valid)
    assert 0 < valid.sum() < valid.size  # both branches exercised
    _close(got, want)
    # out-of-bounds pixels carry the fill exactly
    np.testing.assert_array_equal(got[valid == 0], fill[valid == 0])


def test_warp_boundary_positions():
    """Samples exactly on / just inside the last row and column (clip + replicate border)."""
    h, w = 6, 7
    img = _f32(_rng(9).standard_normal((h, w, 2)))
    fill = np.zeros_like(img)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = _f32((w - 1) - xx + np.float32(0.4))  # lands at x = w - 0.6
    v = _f32(-yy)  # lands at y = 0 exactly
    for order in (3, 1, 0):
        got, valid = _kernel_warp(img, u, v, fill, order)
        want, want_valid = naive.warp(img, u, v, fill, order)
        np.testing.assert_array_equal(valid, want_valid)
        _close(got, want)


@pytest.mark.parametrize("order", [3, 1, 0])
def test_warp_zero_flow_is_identity(order):
    img = _f32(_rng(10).standard_normal((7, 9, 2)))
    z = np.zeros((7, 9), np.float32)
    got, valid = _kernel_warp(img, z, z, img + 5, order)
    assert valid.all()
    _close(got, img, rtol=0, atol=1e-6)


@pytest.mark.parametrize("order", [3, 1, 0])
def test_warp_large_flow_is_all_fill(order):
    rng = _rng(11)
    img = _f32(rng.standard_normal((7, 9, 2)))
    fill = _f32(rng.standard_normal((7, 9, 2)))
    big = np.full((7, 9), 50.0, np.float32)
    for u, v in ((big, 0 * big), (0 * big, -big), (-big, big)):
        got, valid = _kernel_warp(img, _f32(u), _f32(v), fill, order)
        assert not valid.any()
        np.testing.assert_array_equal(got, fill)


def test_valid_mask_matches_naive():
    rng = _rng(12)
    u = _f32(rng.uniform(-3, 3, (7, 9)))
    v = _f32(rng.uniform(-3, 3, (7, 9)))
    u[0, 0] = 0.0  # exactly on the lower bound: in bounds
    u[0, 8] = 1.0  # exactly w: out of bounds
    out = np.empty((7, 9), np.uint8)
    warp.valid_mask(u, v, out)
    np.testing.assert_array_equal(out, naive.valid_mask(u, v))


def test_bilinear_sample_flow_matches_naive():
    rng = _rng(13)
    fu, fv = _f32(rng.standard_normal((7, 9))), _f32(rng.standard_normal((7, 9)))
    du, dv = _f32(rng.uniform(-3, 3, (7, 9))), _f32(rng.uniform(-3, 3, (7, 9)))
    ou, ov = np.empty_like(fu), np.empty_like(fv)
    warp.bilinear_sample_flow(fu, fv, du, dv, ou, ov)
    wu, wv = naive.bilinear_sample_flow(fu, fv, du, dv)
    _close(ou, wu)
    _close(ov, wv)


# --------------------------------------------------------------------------- motion tensors

TENSORS = {
    "gc": (tensors.tensor_gc, naive.tensor_gc),
    "gray": (tensors.tensor_gray, naive.tensor_gray),
    "cs": (tensors.tensor_cs, naive.tensor_cs),
}


def _kernel_tensor(fn, f1, f2, hy, hx):
    h, w, nc = f1.shape
    J = np.full((nc, 6, h, w), np.nan, np.float32)  # the kernels' channel-first layout
    fn(_f32(f1), _f32(f2), hy, hx, J)
    return np.ascontiguousarray(J.transpose(2, 3, 0, 1))  # (h, w, C, 6) like the twins


def _assert_tensor_close(got, want):
    """rtol 1e-4 plus an atol of 1e-5 x the largest magnitude of each tensor component."""
    atol = 1e-5 * np.abs(want).max(axis=(0, 1, 2), keepdims=True) + 1e-12
    err = np.abs(got.astype(np.float64) - want)
    bad = err > atol + RTOL * np.abs(want)
    assert not bad.any(), (
        f"{bad.sum()} / {bad.size} mismatches, first at {np.argwhere(bad)[0]}, "
        f"max abs err {err.max():.3g}"
    )


@pytest.mark.parametrize("kind", ["gc", "gray", "cs"])
@pytest.mark.parametrize(
    ("shape", "hy", "hx", "amp"),
    [((7, 9, 1), 1.0, 1.0, 1.0), ((12, 10, 2), 1.25, 2.0, 1.0), ((6, 11, 3), 0.8, 1.5, 1e-3)],
)
def test_tensors_match_naive(kind, shape, hy, hx, amp):
    kernel, twin = TENSORS[kind]
    rng = _rng(14)
    f1 = _f32(amp * rng.standard_normal(shape))
    f2 = _f32(f1 + amp * 0.3 * rng.standard_normal(shape))
    got = _kernel_tensor(kernel, f1, f2, hy, hx)
    want = twin(f1, f2, hy, hx)
    assert got.shape == (*shape, 6)
    _assert_tensor_close(got, want)


def test_tensor_gc_unit_check():
    """f = 1e-3 X^2 with X the physical column coordinate (hx = 2): fxx = 2e-3, J11 = 0.8."""
    h, w, hx = 11, 11, 2.0
    X = hx * np.arange(w, dtype=np.float64)
    f = _f32(np.broadcast_to(1e-3 * X**2, (h, w))[:, :, None])
    J = _kernel_tensor(tensors.tensor_gc, f, f, 1.0, hx)
    assert abs(J[h // 2, w // 2, 0, 0] - 0.8) < 0.01
    np.testing.assert_allclose(
        J[h // 2, w // 2, 0, 0], naive.tensor_gc(f, f, 1.0, hx)[5, 5, 0, 0], rtol=1e-3
    )


def test_tensor_cs_offset_invariant_and_zero_for_constant():
    rng = _rng(15)
    shape = (8, 9, 2)
    # multiples of 2**-10: adding 3.0 is exact in float32, so invariance must be exact
    f1 = _f32(rng.integers(0, 8, shape) / 1024.0)
    f2 = _f32(rng.integers(0, 8, shape) / 1024.0)
    J = _kernel_tensor(tensors.tensor_cs, f1, f2, 1.0, 1.5)
    J_off = _kernel_tensor(tensors.tensor_cs, f1 + np.float32(3.0), f2 + np.float32(3.0), 1.0, 1.5)
    assert np.abs(J).max() > 0.01
    np.testing.assert_array_equal(J, J_off)
    const = np.full(shape, 0.25, np.float32)
    np.testing.assert_array_equal(_kernel_tensor(tensors.tensor_cs, const, const, 1.0, 1.5), 0.0)
    J_c = _kernel_tensor(tensors.tensor_cs, const, const + np.float32(7.0), 1.0, 1.5)
    np.testing.assert_array_equal(J_c, 0.0)


# --------------------------------------------------------------------------- level solver


def _random_problem(rng, h, w, nc, amp=1.0):
    """Gray-value-like tensors (outer products of random gradients) plus a random current flow.

    J33 gets +0.05 so the residual s^2 stays >= 0.05: with a pure outer product s^2 is a square
    that the solver drives towards 0, and the expanded float32 quadratic form then loses ~1e-6
    absolute to cancellation, i.e. up to ~10 % of psi = a (s^2 + 1e-5)^(a - 1) -- a conditioning
    effect of float32, not a kernel difference (the twin runs in float64).
    """
    g = amp * rng.standard_normal((h, w, nc, 3))
    fx, fy, ft = g[..., 0], g[..., 1], g[..., 2]
    J = np.stack([fx * fx, fy * fy, ft * ft + 0.05, fx * fy, fx * ft, fy * ft], axis=-1)
    W = rng.uniform(0.2, 1.0, (h, w, nc))
    u = rng.standard_normal((h, w))
    v = rng.standard_normal((h, w))
    return _f32(J), _f32(W), _f32(u), _f32(v)


def _kernel_solve(
    J, W, u, v, alpha_x, alpha_y, hx, hy, iterations, lag, a_data, a_smooth, beta, omega
):
    du = np.full(u.shape, np.nan, np.float32)
    dv = np.full(u.shape, np.nan, np.float32)
    sor.solve_level(
        np.ascontiguousarray(J.transpose(2, 3, 0, 1)),  # kernel layout (C, 6, h, w)
        np.ascontiguousarray(W.transpose(2, 0, 1)),  # (C, h, w)
        u,
        v,
        alpha_x,
        alpha_y,
        hx,
        hy,
        iterations,
        lag,
        _f32(a_data),
        a_smooth,
        beta,
        omega,
        du,
        dv,
    )
    return du, dv


@pytest.mark.parametrize(
    ("shape", "nc", "a_data", "a_smooth", "beta", "hx", "hy", "alpha", "its"),
    [
        ((7, 9), 1, [1.0], 1.0, 1.0, 1.0, 1.0, (1.5, 1.5), 7),
        ((7, 9), 1, [0.45], 1.0, 1.0, 1.25, 1.6, (1.5, 2.0), 7),
        ((12, 10), 2, [1.0, 0.5], 0.5, 1.0, 2.0, 1.25, (2.0, 1.0), 7),
        ((6, 11), 3, [0.5, 1.0, 0.3], 0.5, 0.6, 1.5, 0.8, (1.0, 3.0), 7),
        ((9, 7), 2, [0.5, 0.5], 1.0, 0.3, 1.0, 2.0, (0.5, 0.7), 7),
        ((8, 6), 2, [0.5, 0.3], 0.3, 0.6, 1.0, 1.5, (0.8, 1.2), 20),
    ],
)
def test_solve_level_matches_naive(shape, nc, a_data, a_smooth, beta, hx, hy, alpha, its):
    rng = _rng(16)
    h, w = shape
    J, W, u, v = _random_problem(rng, h, w, nc)
    args = (alpha[0], alpha[1], hx, hy, its, 3, a_data, a_smooth, beta, 1.95)
    du, dv = _kernel_solve(J, W, u, v, *args)
    wdu, wdv = naive.solve_level(J, W, u, v, *args)
    scale = max(np.abs(wdu).max(), np.abs(wdv).max())
    assert scale > 1e-3
    _close(du, wdu, rtol=1e-4, atol=1e-4 * scale)
    _close(dv, wdv, rtol=1e-4, atol=1e-4 * scale)


def test_solve_level_lag_cadence_and_single_sweep():
    """Lag larger than the iteration count: psi never refreshed; one sweep from zero."""
    rng = _rng(17)
    J, W, u, v = _random_problem(rng, 5, 8, 2)
    for iterations, lag in ((1, 1), (1, 5), (4, 5), (5, 5), (6, 2)):
        args = (1.0, 2.0, 1.5, 1.0, iterations, lag, [0.5, 0.7], 0.5, 1.0, 1.95)
        du, dv = _kernel_solve(J, W, u, v, *args)
        wdu, wdv = naive.solve_level(J, W, u, v, *args)
        scale = max(np.abs(wdu).max(), np.abs(wdv).max())
        _close(du, wdu, rtol=1e-4, atol=1e-4 * scale)
        _close(dv, wdv, rtol=1e-4, atol=1e-4 * scale)


def test_solve_level_workspace_contents_do_not_matter():
    """The per-thread scratch is reused across level sizes: a NaN-filled workspace, and a kept
    workspace after a larger and a smaller level, give the results of a fresh one."""
    rng = _rng(19)
    args = (1.0, 2.0, 1.5, 1.0, 6, 2, [0.5, 0.7], 0.5, 1.0, 1.95)
    J, W, u, v = _random_problem(rng, 9, 7, 2)
    first = _kernel_solve(J, W, u, v, *args)
    _kernel_solve(*_random_problem(rng, 13, 11, 2), *args)
    _kernel_solve(*_random_problem(rng, 5, 4, 2), *args)
    again = _kernel_solve(J, W, u, v, *args)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    du = np.empty((9, 7), np.float32)
    dv = np.empty_like(du)
    ws = np.full(sor.workspace_size(9, 7, 2), np.nan, np.float32)
    sor.solve_level_ws(
        np.ascontiguousarray(J.transpose(2, 3, 0, 1)),
        np.ascontiguousarray(W.transpose(2, 0, 1)),
        u, v, 1.0, 2.0, 1.5, 1.0, 6, 2, _f32([0.5, 0.7]), 0.5, 1.0, 1.95, du, dv, ws,
    )  # fmt: skip
    np.testing.assert_array_equal(du, first[0])
    np.testing.assert_array_equal(dv, first[1])


def test_solve_level_zero_tensor_and_flat_flow_gives_zero():
    J = np.zeros((6, 7, 1, 6), np.float32)
    W = np.ones((6, 7, 1), np.float32)
    z = np.zeros((6, 7), np.float32)
    du, dv = _kernel_solve(J, W, z, z, 1.0, 1.0, 1.0, 1.0, 7, 3, [0.5], 0.5, 1.0, 1.95)
    np.testing.assert_array_equal(du, 0.0)
    np.testing.assert_array_equal(dv, 0.0)


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (5, 8), (13, 6), (17, 19)])
@pytest.mark.parametrize("const", [False, True])
def test_wavefront_sweep_is_the_row_major_sweep(shape, const):
    """The diagonal-by-diagonal sweep of the solver against the row-major reference sweep
    ``sor._sweep`` on random coefficients (padded layout, zero edge weights towards the ring),
    including the layout round trip and the constant-weight variant."""
    rng = _rng(18)
    h, w = shape
    omega = np.float32(1.7)
    wx, wy = np.float32(0.8), np.float32(1.3)
    WE = np.zeros((h + 2, w + 2), np.float32)
    WS = np.zeros((h + 2, w + 2), np.float32)
    WE[1 : h + 1, 1:w] = wx if const else _f32(rng.random((h, w - 1)) + 0.2)
    WS[1:h, 1 : w + 1] = wy if const else _f32(rng.random((h - 1, w)) + 0.2)
    pad = np.zeros((h + 2, w + 2), np.float32)
    coef = {}
    for name, lo, hi in (
        ("A12", -0.3, 0.3),
        ("Lu", -1, 1),
        ("Lv", -1, 1),
        ("d1", 3, 5),
        ("d2", 3, 5),
    ):
        a = pad.copy()
        a[1 : h + 1, 1 : w + 1] = _f32(rng.uniform(lo, hi, (h, w)))
        coef[name] = a
    inv1 = np.where(coef["d1"] != 0, 1 / np.where(coef["d1"] != 0, coef["d1"], 1), 0).astype(
        np.float32
    )
    inv2 = np.where(coef["d2"] != 0, 1 / np.where(coef["d2"] != 0, coef["d2"], 1), 0).astype(
        np.float32
    )
    du0 = _f32(rng.standard_normal((h, w)))
    dv0 = _f32(rng.standard_normal((h, w)))
    want_u, want_v = pad.copy(), pad.copy()
    want_u[1 : h + 1, 1 : w + 1] = du0
    want_v[1 : h + 1, 1 : w + 1] = dv0
    for _ in range(3):
        sor._sweep(want_u, want_v, WE, WS, coef["A12"], inv1, inv2, coef["Lu"], coef["Lv"], omega)

    base, nf = sor._diag_bases(h, w)

    def diag(a, oy=1, ox=1):
        t = np.zeros(nf, np.float32)
        sor._to_diag(a, oy, ox, h, w, base, t)
        return t

    du, dv = diag(du0, 0, 0), diag(dv0, 0, 0)
    args = (diag(coef["A12"]), diag(omega * inv1), diag(omega * inv2))
    args += (diag(coef["Lu"]), diag(coef["Lv"]), omega, h, w, base)
    for _ in range(3):
        if const:
            sor._wave_sweep_const(du, dv, wx, wy, *args)
        else:
            sor._wave_sweep(du, dv, diag(WE), diag(WS), *args)
    got_u, got_v = np.zeros((h, w), np.float32), np.zeros((h, w), np.float32)
    sor._from_diag(du, h, w, base, got_u, 0, 0)
    sor._from_diag(dv, h, w, base, got_v, 0, 0)
    _close(got_u, want_u[1 : h + 1, 1 : w + 1], rtol=1e-5, atol=1e-5)
    _close(got_v, want_v[1 : h + 1, 1 : w + 1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("temporal", [True, False])
@pytest.mark.parametrize("shape", [(9, 7, 11, 2), (3, 5, 4, 1), (4, 12, 40, 1)])
def test_gaussian_prefilter_matches_scipy(shape, temporal):
    """The numba pre-filter (normalisation fused in) against scipy's gaussian_filter, including
    kernels wider than the array (repeated reflection), sigma 0 on an axis, and rows longer
    than the kernel (reflected only at their ends)."""
    from scipy.ndimage import gaussian_filter

    from flowreg_dask.kernels.cpu import gaussian
    from flowreg_dask.preprocess.filters import smooth_frames

    rng = np.random.default_rng(3)
    raw = (rng.random(shape) * 4000).astype(np.uint16)
    lo = np.array([10.0, 20.0])[: shape[-1]]
    hi = np.array([3900.0, 4100.0])[: shape[-1]]
    sigma = [[1.0, 2.5, 1.2], [0.0, 0.7, 0.1]][: shape[-1]]
    got = smooth_frames(raw, sigma, vmin=lo, vmax=hi, temporal=temporal)
    for c in range(shape[-1]):
        norm = (raw[..., c].astype(np.float64) - lo[c]) / (hi[c] - lo[c] + 1e-8)
        s_rows, s_cols, s_t = sigma[c]
        s_t = s_t if int(4 * s_t + 0.5) > 0 and temporal else 0.0
        want = gaussian_filter(norm, (s_t, s_rows, s_cols), mode="reflect", truncate=4.0)
        np.testing.assert_allclose(got[..., c], want, rtol=0, atol=2e-6)
    assert gaussian.filter_frames.targetoptions["nogil"] is True
    assert gaussian.filter_time.targetoptions["nogil"] is True
