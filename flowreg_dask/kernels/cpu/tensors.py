"""Motion tensors (data terms) of the linearised constancy assumptions, method spec §1.5.

Inputs are the reference ``f1`` and the warped moving image ``f2``, both (h, w, C) float32, with
grid spacings ``hy`` (rows) and ``hx`` (columns) in full-resolution pixels. Derivatives use central
differences with edge-duplicating (clamped) neighbours. Output ``J`` is (C, 6, h, w) float32 holding
J11, J22, J33, J12, J13, J23 per channel (planes contiguous, so the solver's row loops stream).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ._flags import JIT

CENSUS_EPS = np.float32(0.1 / 255.0)


@numba.njit(**JIT)
def _pad_planes(f, out):
    """``out`` (C, h + 2, w + 2): the channels of ``f`` (h, w, C) as planes with one replicated
    border pixel, which is the clamped-neighbour rule of the derivatives."""
    h, w, nc = f.shape
    for c in range(nc):
        for yy in range(h + 2):
            y = min(max(yy - 1, 0), h - 1)
            o = out[c, yy]
            o[0] = f[y, 0, c]
            for x in range(w):
                o[x + 1] = f[y, x, c]
            o[w + 1] = f[y, w - 1, c]


@numba.njit(**JIT)
def tensor_gc(f1, f2, hy, hx, J):
    """Gradient constancy with Zimmer-style normalisation (``"gc"``).

    Works on padded channel planes (:func:`_pad_planes`), so the row loops have no clamping and
    vectorise.
    """
    h, w, nc = f1.shape
    ihx2 = np.float32(1.0 / (2.0 * hx))
    ihy2 = np.float32(1.0 / (2.0 * hy))
    ihxx = np.float32(1.0 / (hx * hx))
    ihyy = np.float32(1.0 / (hy * hy))
    half = np.float32(0.5)
    two = np.float32(2.0)
    eps = np.float32(1e-6)
    one = np.float32(1.0)
    P1 = np.empty((nc, h + 2, w + 2), np.float32)
    P2 = np.empty((nc, h + 2, w + 2), np.float32)
    _pad_planes(f1, P1)
    _pad_planes(f2, P2)
    # direct indexing (no row views): the vectoriser then sees one base pointer per array and
    # needs few run-time alias checks (with 12 separate row pointers it gives up)
    for c in range(nc):
        for y in range(h):
            m = y
            z = y + 1
            p = y + 2
            for x in range(w):
                # padded row/column k + 1 is pixel k; k and k + 2 its (clamped) neighbours
                fx_p = (P1[c, p, x + 2] - P1[c, p, x] + P2[c, p, x + 2] - P2[c, p, x]) * ihx2 * half
                fx_m = (P1[c, m, x + 2] - P1[c, m, x] + P2[c, m, x + 2] - P2[c, m, x]) * ihx2 * half
                fxy = (fx_p - fx_m) * ihy2
                fxt = (P2[c, z, x + 2] - P1[c, z, x + 2] - P2[c, z, x] + P1[c, z, x]) * ihx2
                fyt = (P2[c, p, x + 1] - P1[c, p, x + 1] - P2[c, m, x + 1] + P1[c, m, x + 1]) * ihy2
                c1 = P1[c, z, x + 1]
                c2 = P2[c, z, x + 1]
                fxx = P1[c, z, x + 2] - two * c1 + P1[c, z, x] + P2[c, z, x + 2] - two * c2
                fxx = (fxx + P2[c, z, x]) * (half * ihxx)
                fyy = P1[c, p, x + 1] - two * c1 + P1[c, m, x + 1] + P2[c, p, x + 1] - two * c2
                fyy = (fyy + P2[c, m, x + 1]) * (half * ihyy)
                rx = one / (fxx * fxx + fxy * fxy + eps)
                ry = one / (fxy * fxy + fyy * fyy + eps)
                J[c, 0, y, x] = rx * fxx * fxx + ry * fxy * fxy
                J[c, 1, y, x] = rx * fxy * fxy + ry * fyy * fyy
                J[c, 2, y, x] = rx * fxt * fxt + ry * fyt * fyt
                J[c, 3, y, x] = rx * fxx * fxy + ry * fxy * fyy
                J[c, 4, y, x] = rx * fxx * fxt + ry * fxy * fyt
                J[c, 5, y, x] = rx * fxy * fxt + ry * fyy * fyt


@numba.njit(**JIT)
def tensor_gray(f1, f2, hy, hx, J):
    """Brightness constancy (``"gray"``), no normalisation (padded planes, like
    :func:`tensor_gc`)."""
    h, w, nc = f1.shape
    ihx2 = np.float32(0.5 / (2.0 * hx))
    ihy2 = np.float32(0.5 / (2.0 * hy))
    P1 = np.empty((nc, h + 2, w + 2), np.float32)
    P2 = np.empty((nc, h + 2, w + 2), np.float32)
    _pad_planes(f1, P1)
    _pad_planes(f2, P2)
    for c in range(nc):
        for y in range(h):
            m = y
            z = y + 1
            p = y + 2
            for x in range(w):
                fx = (P1[c, z, x + 2] - P1[c, z, x] + P2[c, z, x + 2] - P2[c, z, x]) * ihx2
                fy = (P1[c, p, x + 1] - P1[c, m, x + 1] + P2[c, p, x + 1] - P2[c, m, x + 1]) * ihy2
                ft = P2[c, z, x + 1] - P1[c, z, x + 1]
                J[c, 0, y, x] = fx * fx
                J[c, 1, y, x] = fy * fy
                J[c, 2, y, x] = ft * ft
                J[c, 3, y, x] = fx * fy
                J[c, 4, y, x] = fx * ft
                J[c, 5, y, x] = fy * ft


@numba.njit(**JIT)
def _census_signature(f, c, dy, dx, inv_dist, eps, s):
    h, w = s.shape
    for y in range(h):
        yn = min(max(y + dy, 0), h - 1)
        for x in range(w):
            xn = min(max(x + dx, 0), w - 1)
            r = (f[yn, xn, c] - f[y, x, c]) * inv_dist
            s[y, x] = np.float32(0.5) * (np.float32(1.0) + r / math.sqrt(r * r + eps * eps))


@numba.njit(**JIT)
def tensor_cs(f1, f2, hy, hx, J):
    """Smoothed census transform (``"cs"``): 8 neighbours, smoothed Heaviside, x0.25."""
    h, w, nc = f1.shape
    s1 = np.empty((h, w), np.float32)
    s2 = np.empty((h, w), np.float32)
    ihx2 = np.float32(0.5 / (2.0 * hx))
    ihy2 = np.float32(0.5 / (2.0 * hy))
    eps = CENSUS_EPS
    for y in range(h):
        for x in range(w):
            for c in range(nc):
                for k in range(6):
                    J[c, k, y, x] = 0.0
    for c in range(nc):
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                if dy == 0 and dx == 0:
                    continue
                inv_dist = np.float32(1.0 / math.sqrt((hy * dy) ** 2 + (hx * dx) ** 2))
                _census_signature(f1, c, dy, dx, inv_dist, eps, s1)
                _census_signature(f2, c, dy, dx, inv_dist, eps, s2)
                for y in range(h):
                    ym = max(y - 1, 0)
                    yp = min(y + 1, h - 1)
                    for x in range(w):
                        xm = max(x - 1, 0)
                        xp = min(x + 1, w - 1)
                        sx = (s1[y, xp] - s1[y, xm] + s2[y, xp] - s2[y, xm]) * ihx2
                        sy = (s1[yp, x] - s1[ym, x] + s2[yp, x] - s2[ym, x]) * ihy2
                        st = s2[y, x] - s1[y, x]
                        J[c, 0, y, x] += sx * sx
                        J[c, 1, y, x] += sy * sy
                        J[c, 2, y, x] += st * st
                        J[c, 3, y, x] += sx * sy
                        J[c, 4, y, x] += sx * st
                        J[c, 5, y, x] += sy * st
    for y in range(h):
        for x in range(w):
            for c in range(nc):
                for k in range(6):
                    J[c, k, y, x] *= np.float32(0.25)
