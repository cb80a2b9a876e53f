"""Backward warping kernels: ``out(y, x) = img(y + v, x + u)``; out-of-bounds pixels take ``fill``.

Interpolation: Keys cubic (a = -0.75, replicate border), bilinear, or nearest. A sample is out of
bounds when ``x + u`` is outside [0, w) or ``y + v`` outside [0, h) (method spec §1.8).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ._flags import JIT

_A = np.float32(-0.75)
_u = np.uint64


@numba.njit(**JIT)
def _cubic_weights(t):
    # Keys cubic weights for offsets -1, 0, 1, 2 at fractional position t in [0, 1)
    a = _A
    t1 = t + np.float32(1.0)
    t2 = t
    t3 = np.float32(1.0) - t
    t4 = np.float32(2.0) - t
    c2 = np.float32(2.0)
    c3 = np.float32(3.0)
    c4 = np.float32(4.0)
    c5 = np.float32(5.0)
    c8 = np.float32(8.0)
    one = np.float32(1.0)
    w0 = ((a * t1 - c5 * a) * t1 + c8 * a) * t1 - c4 * a
    w1 = ((a + c2) * t2 - (a + c3)) * t2 * t2 + one
    w2 = ((a + c2) * t3 - (a + c3)) * t3 * t3 + one
    w3 = ((a * t4 - c5 * a) * t4 + c8 * a) * t4 - c4 * a
    return w0, w1, w2, w3


@numba.njit(**JIT)
def _clampi(i, n):
    if i < 0:
        return 0
    if i >= n:
        return n - 1
    return i


@numba.njit(**JIT)
def warp_image(img, u, v, fill, out, order, valid):
    """Warp ``img`` (h, w, C) float32 by (u, v) (h, w) into ``out`` (h, w, C) float32.

    ``fill`` (h, w, C) supplies out-of-bounds pixels; ``order`` 3 cubic, 1 linear, 0 nearest.
    ``valid`` (h, w) uint8 receives 1 where the sample is in bounds.
    """
    h, w, nc = img.shape
    wm1 = np.float32(w - 1)
    hm1 = np.float32(h - 1)
    for y in range(h):
        for x in range(w):
            mx = np.float32(x) + u[y, x]
            my = np.float32(y) + v[y, x]
            if not (mx >= 0 and mx < w and my >= 0 and my < h):
                valid[y, x] = 0
                for c in range(nc):
                    out[y, x, c] = fill[y, x, c]
                continue
            valid[y, x] = 1
            mx = min(max(mx, np.float32(0.0)), wm1)
            my = min(max(my, np.float32(0.0)), hm1)
            if order == 0:
                xi = _clampi(int(math.floor(mx + 0.5)), w)
                yi = _clampi(int(math.floor(my + 0.5)), h)
                for c in range(nc):
                    out[y, x, c] = img[yi, xi, c]
            elif order == 1:
                x0 = int(math.floor(mx))
                y0 = int(math.floor(my))
                tx = mx - x0
                ty = my - y0
                x1 = _clampi(x0 + 1, w)
                y1 = _clampi(y0 + 1, h)
                one = np.float32(1.0)
                for c in range(nc):
                    top = img[y0, x0, c] * (one - tx) + img[y0, x1, c] * tx
                    bot = img[y1, x0, c] * (one - tx) + img[y1, x1, c] * tx
                    out[y, x, c] = top * (one - ty) + bot * ty
            else:
                # clamped taps computed branch-free (replicate border); float32 floor
                fx = np.floor(mx)
                fy = np.floor(my)
                x0 = np.int64(fx)
                y0 = np.int64(fy)
                wx0, wx1, wx2, wx3 = _cubic_weights(mx - fx)
                wy0, wy1, wy2, wy3 = _cubic_weights(my - fy)
                # unsigned tap indices: no negative-index handling in the 16 loads
                xa = _u(max(x0 - 1, 0))
                xc = _u(min(x0 + 1, w - 1))
                xd = _u(min(x0 + 2, w - 1))
                ya = _u(max(y0 - 1, 0))
                yc = _u(min(y0 + 1, h - 1))
                yd = _u(min(y0 + 2, h - 1))
                x0 = _u(x0)
                y0 = _u(y0)
                for c in range(nc):
                    r0 = wx0 * img[ya, xa, c] + wx1 * img[ya, x0, c] + wx2 * img[ya, xc, c]
                    r0 += wx3 * img[ya, xd, c]
                    r1 = wx0 * img[y0, xa, c] + wx1 * img[y0, x0, c] + wx2 * img[y0, xc, c]
                    r1 += wx3 * img[y0, xd, c]
                    r2 = wx0 * img[yc, xa, c] + wx1 * img[yc, x0, c] + wx2 * img[yc, xc, c]
                    r2 += wx3 * img[yc, xd, c]
                    r3 = wx0 * img[yd, xa, c] + wx1 * img[yd, x0, c] + wx2 * img[yd, xc, c]
                    r3 += wx3 * img[yd, xd, c]
                    out[y, x, c] = wy0 * r0 + wy1 * r1 + wy2 * r2 + wy3 * r3


@numba.njit(**JIT)
def valid_mask(u, v, out):
    """``out`` (h, w) uint8 = 1 where (x + u, y + v) lies inside the frame."""
    h, w = u.shape
    for y in range(h):
        for x in range(w):
            mx = x + u[y, x]
            my = y + v[y, x]
            out[y, x] = 1 if (mx >= 0 and mx < w and my >= 0 and my < h) else 0


@numba.njit(**JIT)
def bilinear_sample_flow(flow_u, flow_v, du, dv, out_u, out_v):
    """out(p) = flow(p + d(p)), bilinear with replicate border (composition of flows)."""
    h, w = flow_u.shape
    for y in range(h):
        for x in range(w):
            mx = min(max(np.float32(x) + du[y, x], np.float32(0.0)), np.float32(w - 1))
            my = min(max(np.float32(y) + dv[y, x], np.float32(0.0)), np.float32(h - 1))
            x0 = int(math.floor(mx))
            y0 = int(math.floor(my))
            tx = mx - x0
            ty = my - y0
            x1 = _clampi(x0 + 1, w)
            y1 = _clampi(y0 + 1, h)
            one = np.float32(1.0)
            a = flow_u[y0, x0] * (one - tx) + flow_u[y0, x1] * tx
            b = flow_u[y1, x0] * (one - tx) + flow_u[y1, x1] * tx
            out_u[y, x] = a * (one - ty) + b * ty
            a = flow_v[y0, x0] * (one - tx) + flow_v[y0, x1] * tx
            b = flow_v[y1, x0] * (one - tx) + flow_v[y1, x1] * tx
            out_v[y, x] = a * (one - ty) + b * ty


@numba.njit(**JIT)
def flow_statistics(u, v, out):
    """Per-frame statistics of one flow field into ``out`` (4,) float64: mean |w|, max |w|,
    mean divergence (central differences, one-sided at the edges) and |mean w|."""
    h, w = u.shape
    s_mag = 0.0
    m_mag = 0.0
    s_div = 0.0
    s_u = 0.0
    s_v = 0.0
    for y in range(h):
        ym = max(y - 1, 0)
        yp = min(y + 1, h - 1)
        dy = float(yp - ym)
        for x in range(w):
            xm = max(x - 1, 0)
            xp = min(x + 1, w - 1)
            uu = float(u[y, x])
            vv = float(v[y, x])
            mag = np.sqrt(uu * uu + vv * vv)
            s_mag += mag
            m_mag = max(m_mag, mag)
            s_div += (u[y, xp] - u[y, xm]) / float(xp - xm) + (v[yp, x] - v[ym, x]) / dy
            s_u += uu
            s_v += vv
    n = float(h * w)
    out[0] = s_mag / n
    out[1] = m_mag
    out[2] = s_div / n
    out[3] = np.sqrt((s_u / n) ** 2 + (s_v / n) ** 2)
