"""Batched array logic of the flow method, written once for an array module ``xp``.

Every function takes ``xp`` (numpy or cupy) and arrays of that module, float32, with a leading batch
axis ``B`` (frames of one batch) and channel-first images ``(B, C, h, w)``; per-pixel fields (flow,
increments, solver coefficients) are ``(B, h, w)``. The reference side of an operation may have
``B = 1`` and broadcasts. No Python loop runs over pixels; loops over the 6 tensor components,
4x4 cubic taps, 8 census neighbours or the median network's comparators are fixed-size.

Semantics follow the numba CPU kernels (:mod:`flowreg_dask.kernels.cpu`): resampling by the same
tap tables, Keys-cubic warp with replicate border and reference fill, motion tensors with clamped
neighbours, scipy-``mirror`` 5x5 median, lagged robust weights and reflecting solver boundary.
The one deliberate difference: SOR runs in **red-black** order (two half-sweeps per iteration, each
updating one colour of the checkerboard from the other), which vectorises; the CPU solver sweeps
lexicographically (row-major).
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

import numpy as np

from ..cpu._median_net import MEDIAN25_NETWORK
from ..cpu.resample import mirror_indices, tap_table
from ..cpu.tensors import CENSUS_EPS

Array = Any
F32 = np.float32
SOLVER_EPS = F32(1e-5)
_A = F32(-0.75)


# ------------------------------------------------------------------------------------ resampling
@functools.lru_cache(maxsize=256)
def resample_matrix(n_in: int, n_out: int, sigma: float) -> np.ndarray:
    """Dense (n_out, n_in) float32 matrix of the CPU resampler along one axis.

    Built from :func:`~flowreg_dask.kernels.cpu.resample.tap_table`: row i holds the taps of output
    i, the mirrored source positions folded onto their source columns. Applying it is a matmul,
    which runs at full speed on a GPU (and through BLAS on the CPU).
    """
    start, wts, pad = tap_table(n_in, n_out, sigma)
    mirror = mirror_indices(n_in, pad)
    n_taps = wts.shape[1]
    cols = mirror[start[:, None] + np.arange(n_taps)[None, :]]
    rows = np.repeat(np.arange(n_out), n_taps)
    m = np.zeros((n_out, n_in), np.float64)
    np.add.at(m, (rows, cols.ravel()), wts.astype(np.float64).ravel())
    out = m.astype(np.float32)
    out.flags.writeable = False
    return out


class Resampler:
    """Resizes ``(..., h, w)`` arrays like :func:`flowreg_dask.kernels.cpu.resample.resize`.

    Matrices are cached on the device per (n_in, n_out, sigma). Each pass is one ``tensordot``
    (a single large GEMM over all frames and channels, also on numpy, where a broadcast
    ``matmul`` of a 2-D matrix with a stack does not reach BLAS): rows first, then columns, as the
    CPU kernel does.
    """

    def __init__(self, xp: ModuleType) -> None:
        self.xp = xp
        self._cache: dict[tuple[int, int, float], Array] = {}

    def _matrix(self, n_in: int, n_out: int, sigma: float) -> Array:
        key = (n_in, n_out, float(sigma))
        mat = self._cache.get(key)
        if mat is None:
            mat = self.xp.asarray(resample_matrix(n_in, n_out, float(sigma)))
            self._cache[key] = mat
        return mat

    def resize(self, img: Array, out_h: int, out_w: int, *, antialias: bool = True) -> Array:
        """``img`` (..., h, w) float32 -> (..., out_h, out_w); Gaussian fused in when shrinking."""
        xp = self.xp
        h, w = img.shape[-2:]
        if (out_h, out_w) == (h, w):
            return img.copy()
        s = min(out_h / h, out_w / w)
        sigma = 0.6 / s if (antialias and s < 1.0) else 0.0
        do_y = out_h != h or sigma > 0
        do_x = out_w != w or sigma > 0
        nd = img.ndim  # non-negative axes throughout (portable across array modules)
        if not do_y:
            return xp.tensordot(img, self._matrix(w, out_w, sigma), axes=([nd - 1], [1]))
        # rows: (..., h, w) x (out_h, h) -> (..., w, out_h), i.e. transposed
        tmp = xp.tensordot(img, self._matrix(h, out_h, sigma), axes=([nd - 2], [1]))
        if not do_x:
            return xp.ascontiguousarray(xp.swapaxes(tmp, nd - 1, nd - 2))
        # columns: (..., w, out_h) x (out_w, w) -> (..., out_h, out_w)
        return xp.tensordot(tmp, self._matrix(w, out_w, sigma), axes=([nd - 2], [1]))


# --------------------------------------------------------------------------------------- warping
def cubic_weights(t: Array) -> tuple[Array, Array, Array, Array]:
    """Keys cubic (a = -0.75) weights of offsets -1, 0, 1, 2 at fractional position ``t``
    (float32, same operation order as the CPU kernel)."""
    a = _A
    t1 = t + F32(1.0)
    t3 = F32(1.0) - t
    t4 = F32(2.0) - t
    w0 = ((a * t1 - F32(5.0) * a) * t1 + F32(8.0) * a) * t1 - F32(4.0) * a
    w1 = ((a + F32(2.0)) * t - (a + F32(3.0))) * t * t + F32(1.0)
    w2 = ((a + F32(2.0)) * t3 - (a + F32(3.0))) * t3 * t3 + F32(1.0)
    w3 = ((a * t4 - F32(5.0) * a) * t4 + F32(8.0) * a) * t4 - F32(4.0) * a
    return w0, w1, w2, w3


def warp_cubic(xp: ModuleType, img: Array, u: Array, v: Array, fill: Array) -> tuple[Array, Array]:
    """Backward warp ``out(y, x) = img(y + v, x + u)``, Keys cubic, replicate border.

    ``img`` (B, C, h, w), ``u``/``v`` (B, h, w) in pixels of this grid, ``fill`` (1 or B, C, h, w)
    for samples outside [0, w) x [0, h). Returns ``(out, inside)`` with ``inside`` (B, h, w) bool.
    The 16 taps are gathered with ``xp.take`` on the flattened image.
    """
    b, nc, h, w = img.shape
    mx = xp.arange(w, dtype=xp.float32)[None, None, :] + u
    my = xp.arange(h, dtype=xp.float32)[None, :, None] + v
    inside = (mx >= 0) & (mx < w) & (my >= 0) & (my < h)
    mx = xp.minimum(xp.maximum(mx, F32(0.0)), F32(w - 1))
    my = xp.minimum(xp.maximum(my, F32(0.0)), F32(h - 1))
    fx0 = xp.floor(mx)
    fy0 = xp.floor(my)
    wx = cubic_weights(mx - fx0)
    wy = cubic_weights(my - fy0)
    x0 = fx0.astype(xp.int64)
    y0 = fy0.astype(xp.int64)
    xs = [xp.clip(x0 + k, 0, w - 1) for k in (-1, 0, 1, 2)]
    plane = xp.arange(b * nc, dtype=xp.int64).reshape(b, nc, 1, 1) * (h * w)
    flat = xp.ascontiguousarray(img).reshape(-1)
    out = None
    for ky in range(4):
        row = (xp.clip(y0 + (ky - 1), 0, h - 1) * w)[:, None] + plane
        acc = None
        for kx in range(4):
            term = wx[kx][:, None] * xp.take(flat, row + xs[kx][:, None])
            acc = term if acc is None else acc + term
        term = wy[ky][:, None] * acc
        out = term if out is None else out + term
    return xp.where(inside[:, None], out, fill), inside


# --------------------------------------------------------------------------------- motion tensors
def _edge_pad(xp: ModuleType, a: Array) -> Array:
    pad = [(0, 0)] * (a.ndim - 2) + [(1, 1), (1, 1)]
    return xp.pad(a, pad, mode="edge")


def _shifted(p: Array, dy: int, dx: int) -> Array:
    """View of the edge-padded ``p`` (..., h+2, w+2) at offset (dy, dx): clamped neighbours."""
    h = p.shape[-2] - 2
    w = p.shape[-1] - 2
    return p[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]


def tensor_gc(xp: ModuleType, f1: Array, f2: Array, hy: float, hx: float) -> Array:
    """Gradient constancy with Zimmer normalisation; f1 (1|B, C, h, w), f2 (B, C, h, w) ->
    J (B, C, 6, h, w) holding J11, J22, J33, J12, J13, J23."""
    p1 = _edge_pad(xp, f1)
    p2 = _edge_pad(xp, f2)

    def s1(dy, dx):
        return _shifted(p1, dy, dx)

    def s2(dy, dx):
        return _shifted(p2, dy, dx)

    ihx2 = F32(1.0 / (2.0 * hx))
    ihy2 = F32(1.0 / (2.0 * hy))
    ihxx = F32(1.0 / (hx * hx))
    ihyy = F32(1.0 / (hy * hy))
    half = F32(0.5)
    two = F32(2.0)
    fx_p = (s1(1, 1) - s1(1, -1) + s2(1, 1) - s2(1, -1)) * ihx2 * half
    fx_m = (s1(-1, 1) - s1(-1, -1) + s2(-1, 1) - s2(-1, -1)) * ihx2 * half
    fxy = (fx_p - fx_m) * ihy2
    fxt = (s2(0, 1) - s1(0, 1) - s2(0, -1) + s1(0, -1)) * ihx2
    fyt = (s2(1, 0) - s1(1, 0) - s2(-1, 0) + s1(-1, 0)) * ihy2
    fxx = (s1(0, 1) - two * f1 + s1(0, -1) + s2(0, 1) - two * f2 + s2(0, -1)) * (half * ihxx)
    fyy = (s1(1, 0) - two * f1 + s1(-1, 0) + s2(1, 0) - two * f2 + s2(-1, 0)) * (half * ihyy)
    eps = F32(1e-6)
    rx = F32(1.0) / (fxx * fxx + fxy * fxy + eps)
    ry = F32(1.0) / (fxy * fxy + fyy * fyy + eps)
    b, nc, h, w = f2.shape
    J = xp.empty((b, nc, 6, h, w), xp.float32)
    J[:, :, 0] = rx * fxx * fxx + ry * fxy * fxy
    J[:, :, 1] = rx * fxy * fxy + ry * fyy * fyy
    J[:, :, 2] = rx * fxt * fxt + ry * fyt * fyt
    J[:, :, 3] = rx * fxx * fxy + ry * fxy * fyy
    J[:, :, 4] = rx * fxx * fxt + ry * fxy * fyt
    J[:, :, 5] = rx * fxy * fxt + ry * fyy * fyt
    return J


def _outer_products(J: Array, sx: Array, sy: Array, st: Array, accumulate: bool) -> None:
    terms = (sx * sx, sy * sy, st * st, sx * sy, sx * st, sy * st)
    for k, term in enumerate(terms):
        if accumulate:
            J[:, :, k] += term
        else:
            J[:, :, k] = term


def tensor_gray(xp: ModuleType, f1: Array, f2: Array, hy: float, hx: float) -> Array:
    """Brightness constancy: outer product of (fx, fy, ft); shapes as :func:`tensor_gc`."""
    p1 = _edge_pad(xp, f1)
    p2 = _edge_pad(xp, f2)
    ihx2 = F32(0.5 / (2.0 * hx))
    ihy2 = F32(0.5 / (2.0 * hy))
    fx = (
        _shifted(p1, 0, 1) - _shifted(p1, 0, -1) + _shifted(p2, 0, 1) - _shifted(p2, 0, -1)
    ) * ihx2
    fy = (
        _shifted(p1, 1, 0) - _shifted(p1, -1, 0) + _shifted(p2, 1, 0) - _shifted(p2, -1, 0)
    ) * ihy2
    ft = f2 - f1
    b, nc, h, w = f2.shape
    J = xp.empty((b, nc, 6, h, w), xp.float32)
    _outer_products(J, fx, fy, ft, accumulate=False)
    return J


def tensor_cs(xp: ModuleType, f1: Array, f2: Array, hy: float, hx: float) -> Array:
    """Smoothed census over the 8 neighbours (x0.25); shapes as :func:`tensor_gc`."""
    p1 = _edge_pad(xp, f1)
    p2 = _edge_pad(xp, f2)
    ihx2 = F32(0.5 / (2.0 * hx))
    ihy2 = F32(0.5 / (2.0 * hy))
    eps2 = CENSUS_EPS * CENSUS_EPS
    b, nc, h, w = f2.shape
    J = xp.zeros((b, nc, 6, h, w), xp.float32)

    def signature(p, f, dy, dx, inv_dist):
        r = (_shifted(p, dy, dx) - f) * inv_dist
        return F32(0.5) * (F32(1.0) + r / xp.sqrt(r * r + eps2))

    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue
            inv_dist = F32(1.0 / np.sqrt((hy * dy) ** 2 + (hx * dx) ** 2))
            q1 = _edge_pad(xp, signature(p1, f1, dy, dx, inv_dist))
            q2 = _edge_pad(xp, signature(p2, f2, dy, dx, inv_dist))
            sx = (
                _shifted(q1, 0, 1) - _shifted(q1, 0, -1) + _shifted(q2, 0, 1) - _shifted(q2, 0, -1)
            ) * ihx2
            sy = (
                _shifted(q1, 1, 0) - _shifted(q1, -1, 0) + _shifted(q2, 1, 0) - _shifted(q2, -1, 0)
            ) * ihy2
            st = _shifted(q2, 0, 0) - _shifted(q1, 0, 0)
            _outer_products(J, sx, sy, st, accumulate=True)
    J *= F32(0.25)
    return J


TENSORS = {"gc": tensor_gc, "gray": tensor_gray, "cs": tensor_cs}


# ---------------------------------------------------------------------------------------- median
def median5x5(xp: ModuleType, a: Array) -> Array:
    """5x5 median of each (h, w) plane of ``a`` (B, h, w), scipy ``mode="mirror"``; h, w >= 3.

    The same pruned comparator network as the CPU kernel, run on 25 shifted views with
    ``xp.minimum``/``xp.maximum``: bit-identical to it.
    """
    h, w = a.shape[-2:]
    p = xp.pad(a, [(0, 0)] * (a.ndim - 2) + [(2, 2), (2, 2)], mode="reflect")
    buf = [p[..., dy : dy + h, dx : dx + w] for dy in range(5) for dx in range(5)]
    for kind, i, j in MEDIAN25_NETWORK:
        if kind == 0:
            lo = xp.minimum(buf[i], buf[j])
            buf[j] = xp.maximum(buf[i], buf[j])
            buf[i] = lo
        else:
            buf[j] = buf[i]
    return xp.ascontiguousarray(buf[12])


# ---------------------------------------------------------------------------------------- solver
def _psi(xp: ModuleType, s2: Array, a: Any) -> Array:
    """Lagged robust weight ``a (s2 + eps)^(a - 1)`` (float32)."""
    return a * xp.exp((a - F32(1.0)) * xp.log(s2 + SOLVER_EPS))


def _pad0(xp: ModuleType, a: Array) -> Array:
    return xp.pad(a, [(0, 0), (1, 1), (1, 1)])


def data_coefficients(
    xp: ModuleType,
    J: Array,
    W: Array,
    du: Array | None,
    dv: Array | None,
    a_data: Array,
    blend: Array,
    beta: float,
) -> tuple[Array, Array, Array, Array, Array]:
    """Data term folded over channels: A = sum_c W_c psi_c J_c (padded (B, h+2, w+2) outputs).

    ``J`` (B, C, 6, h, w); ``W`` (1, C, h, w); ``a_data`` (1, C, 1, 1) float32; ``blend``
    (1, C, 1, 1) bool, True where the GNC blend applies (0 < a < 1). With ``du`` None the robust
    weights are 1 (psi not yet updated). Returns padded A11, A22, A12, B1, B2.
    """
    if du is None:
        p = W
    else:
        d_u = du[:, None]
        d_v = dv[:, None]
        two = F32(2.0)
        r = (
            J[:, :, 0] * d_u * d_u
            + J[:, :, 1] * d_v * d_v
            + two * J[:, :, 3] * d_u * d_v
            + two * J[:, :, 4] * d_u
            + two * J[:, :, 5] * d_v
            + J[:, :, 2]
        )
        psi = _psi(xp, xp.maximum(r, F32(0.0)), a_data)
        p = xp.where(blend, (F32(1.0) - F32(beta)) + F32(beta) * psi, psi) * W
    return tuple(_pad0(xp, (p * J[:, :, k]).sum(axis=1)) for k in (0, 1, 3, 4, 5))


def smooth_weights(
    xp: ModuleType,
    u: Array,
    v: Array,
    du: Array | None,
    dv: Array | None,
    wx: float,
    wy: float,
    hx: float,
    hy: float,
    a_smooth: float,
    beta: float,
) -> tuple[Array, Array]:
    """Padded edge weights WE (east) and WS (south), zero towards the one-pixel ring.

    With ``du`` None the weights are the constant ``wx``/``wy`` (quadratic smoothness, or robust
    weights not yet updated); otherwise ``0.5 (psi_p + psi_n) w`` with psi of |grad(u+du)|^2 +
    |grad(v+dv)|^2 by central differences (one-sided at the edges).
    """
    b, h, w = u.shape
    WE = xp.zeros((b, h + 2, w + 2), xp.float32)
    WS = xp.zeros((b, h + 2, w + 2), xp.float32)
    if du is None:
        WE[:, 1 : h + 1, 1:w] = F32(wx)
        WS[:, 1:h, 1 : w + 1] = F32(wy)
        return WE, WS
    cols = np.arange(w)
    rows = np.arange(h)
    dxn = ((np.minimum(cols + 1, w - 1) - np.maximum(cols - 1, 0)) * hx).astype(np.float32)
    dyn = ((np.minimum(rows + 1, h - 1) - np.maximum(rows - 1, 0)) * hy).astype(np.float32)
    inv_dx = xp.asarray(np.where(dxn > 0, 1.0 / np.where(dxn > 0, dxn, 1.0), 0.0).astype(F32))
    inv_dy = xp.asarray(np.where(dyn > 0, 1.0 / np.where(dyn > 0, dyn, 1.0), 0.0).astype(F32))
    grad2 = None
    for f in (u + du, v + dv):
        p = _edge_pad(xp, f)
        gx = (_shifted(p, 0, 1) - _shifted(p, 0, -1)) * inv_dx[None, None, :]
        gy = (_shifted(p, 1, 0) - _shifted(p, -1, 0)) * inv_dy[None, :, None]
        g = gx * gx + gy * gy
        grad2 = g if grad2 is None else grad2 + g
    psi = _psi(xp, grad2, F32(a_smooth))
    if 0 < a_smooth < 1:
        psi = (F32(1.0) - F32(beta)) + F32(beta) * psi
    WE[:, 1 : h + 1, 1:w] = F32(0.5) * (psi[:, :, :-1] + psi[:, :, 1:]) * F32(wx)
    WS[:, 1:h, 1 : w + 1] = F32(0.5) * (psi[:, :-1, :] + psi[:, 1:, :]) * F32(wy)
    return WE, WS


def fold(
    xp: ModuleType,
    u: Array,
    v: Array,
    WE: Array,
    WS: Array,
    A11: Array,
    A22: Array,
    B1: Array,
    B2: Array,
) -> tuple[Array, Array, Array, Array]:
    """Inverse diagonals and constant right-hand sides (padded (B, h+2, w+2)).

    ``inv1 = 1 / (sum_n w_n + A11)`` (0 where the denominator is 0) and
    ``Lu = sum_n w_n (u_n - u_p) - B1``; likewise for v.
    """
    ww = WE[:, 1:-1, :-2]
    we = WE[:, 1:-1, 1:-1]
    wn = WS[:, :-2, 1:-1]
    ws = WS[:, 1:-1, 1:-1]
    sw = ww + we + wn + ws
    out = []
    for f, A, Bc in ((u, A11, B1), (v, A22, B2)):
        p = _edge_pad(xp, f)
        lap = (
            ww * (_shifted(p, 0, -1) - f)
            + we * (_shifted(p, 0, 1) - f)
            + wn * (_shifted(p, -1, 0) - f)
            + ws * (_shifted(p, 1, 0) - f)
        )
        d = sw + A[:, 1:-1, 1:-1]
        nz = d != 0
        inv = xp.where(nz, F32(1.0) / xp.where(nz, d, F32(1.0)), F32(0.0))
        out.append((_pad0(xp, inv), _pad0(xp, lap - Bc[:, 1:-1, 1:-1])))
    (inv1, Lu), (inv2, Lv) = out
    return inv1, inv2, Lu, Lv


def rb_half_sweep(
    du: Array,
    dv: Array,
    WE: Array,
    WS: Array,
    A12: Array,
    inv1: Array,
    inv2: Array,
    Lu: Array,
    Lv: Array,
    omega: float,
    color: int,
) -> None:
    """One red-black SOR half-sweep in place: update the pixels of one checkerboard colour.

    All arrays are padded (B, h+2, w+2); ``color`` 0 updates interior pixels (y, x) with
    (y + x) even, 1 the odd ones. Every neighbour of a pixel has the other colour, so all pixels
    of one colour update at once; du first, then dv with the new du (as in the CPU sweep). The
    colour is split into two strided sub-lattices (plain slicing, no masks, no copies).
    """
    hp, wp = du.shape[-2:]
    h, w = hp - 2, wp - 2
    om = F32(omega)
    om1 = F32(1.0) - om
    for oy in (0, 1):
        ox = (color + oy) % 2
        if oy >= h or ox >= w:
            continue
        ys = slice(1 + oy, h + 1, 2)
        xs = slice(1 + ox, w + 1, 2)
        ysm = slice(oy, h, 2)  # rows above
        ysp = slice(2 + oy, h + 2, 2)  # rows below
        xsm = slice(ox, w, 2)
        xsp = slice(2 + ox, w + 2, 2)
        ww = WE[:, ys, xsm]
        we = WE[:, ys, xs]
        wn = WS[:, ysm, xs]
        ws = WS[:, ys, xs]
        ru = Lu[:, ys, xs] + (
            ww * du[:, ys, xsm] + we * du[:, ys, xsp] + wn * du[:, ysm, xs] + ws * du[:, ysp, xs]
        )
        rv = Lv[:, ys, xs] + (
            ww * dv[:, ys, xsm] + we * dv[:, ys, xsp] + wn * dv[:, ysm, xs] + ws * dv[:, ysp, xs]
        )
        a12 = A12[:, ys, xs]
        du_c = du[:, ys, xs]
        dv_c = dv[:, ys, xs]
        du_new = om1 * du_c + (om * inv1[:, ys, xs]) * (ru - a12 * dv_c)
        dv_new = om1 * dv_c + (om * inv2[:, ys, xs]) * (rv - a12 * du_new)
        du[:, ys, xs] = du_new
        dv[:, ys, xs] = dv_new


def solve_level(
    xp: ModuleType,
    J: Array,
    W: Array,
    u: Array,
    v: Array,
    *,
    alpha: tuple[float, float],
    hx: float,
    hy: float,
    iterations: int,
    update_lag: int,
    a_data: Array,
    blend: Array,
    a_smooth: float,
    beta: float,
    omega: float,
    half_sweep: Any = None,
) -> tuple[Array, Array]:
    """Increments (du, dv), each (B, h, w), of one pyramid level by red-black SOR.

    Same energy, lagged psi cadence ((it + 1) % update_lag == 0) and boundary as
    :func:`flowreg_dask.kernels.cpu.sor.solve_level`; each iteration is a red then a black
    half-sweep. ``half_sweep`` replaces :func:`rb_half_sweep` (the fused CuPy kernel).
    """
    sweep = rb_half_sweep if half_sweep is None else half_sweep
    b, _, _, h, w = J.shape
    wx = float(alpha[0]) / (hx * hx)
    wy = float(alpha[1]) / (hy * hy)
    robust = a_smooth != 1.0
    dup = xp.zeros((b, h + 2, w + 2), xp.float32)
    dvp = xp.zeros((b, h + 2, w + 2), xp.float32)
    A11, A22, A12, B1, B2 = data_coefficients(xp, J, W, None, None, a_data, blend, beta)
    WE, WS = smooth_weights(xp, u, v, None, None, wx, wy, hx, hy, a_smooth, beta)
    inv1, inv2, Lu, Lv = fold(xp, u, v, WE, WS, A11, A22, B1, B2)
    for it in range(iterations):
        if (it + 1) % update_lag == 0:
            du_i = dup[:, 1:-1, 1:-1]
            dv_i = dvp[:, 1:-1, 1:-1]
            A11, A22, A12, B1, B2 = data_coefficients(xp, J, W, du_i, dv_i, a_data, blend, beta)
            if robust:
                WE, WS = smooth_weights(xp, u, v, du_i, dv_i, wx, wy, hx, hy, a_smooth, beta)
            inv1, inv2, Lu, Lv = fold(xp, u, v, WE, WS, A11, A22, B1, B2)
        sweep(dup, dvp, WE, WS, A12, inv1, inv2, Lu, Lv, omega, 0)
        sweep(dup, dvp, WE, WS, A12, inv1, inv2, Lu, Lv, omega, 1)
    return xp.ascontiguousarray(dup[:, 1:-1, 1:-1]), xp.ascontiguousarray(dvp[:, 1:-1, 1:-1])
