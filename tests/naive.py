"""Plain numpy/python twins of the numba CPU kernels in :mod:`flowreg_dask.kernels.cpu`.

Each function is written straight from the formulas of the method spec (``method.md`` §1.3, §1.5,
§1.6, §1.8) with the deliberate differences of our kernels (clamped derivative neighbours, a solver
boundary that leaves outside neighbours out of the stencil, row-major SOR sweep). Speed is not a
goal: inputs in the tests are tiny, so everything is evaluated in float64 with explicit loops.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.ndimage

KEYS_A = -0.75
CENSUS_EPS = 0.1 / 255.0
SOLVER_EPS = 1e-5


# --------------------------------------------------------------------------- median


def median5x5(a: np.ndarray) -> np.ndarray:
    """5x5 median with scipy's ``mode="mirror"`` boundary."""
    return scipy.ndimage.median_filter(np.asarray(a), size=5, mode="mirror")


def apply_network(values, network) -> float:
    """Run a comparator network ``(kind, i, j)`` on a list of 25 values; returns position 12."""
    b = list(values)
    for kind, i, j in network:
        if kind == 0:
            b[i], b[j] = min(b[i], b[j]), max(b[i], b[j])
        else:
            b[j] = b[i]
    return b[12]


# --------------------------------------------------------------------------- resampler


def keys_cubic(t: float, a: float = KEYS_A) -> float:
    """Keys cubic convolution kernel."""
    t = abs(t)
    if t <= 1.0:
        return (a + 2.0) * t**3 - (a + 3.0) * t**2 + 1.0
    if t < 2.0:
        return a * t**3 - 5.0 * a * t**2 + 8.0 * a * t - 4.0 * a
    return 0.0


def mirror_half_sample(j: int, n: int) -> int:
    """Half-sample symmetric mirror: -1 -> 0, -2 -> 1, n -> n-1, n+1 -> n-2."""
    while j < 0 or j >= n:
        j = -j - 1 if j < 0 else 2 * n - 1 - j
    return j


def resize_1d_weights(n_in: int, n_out: int, sigma: float) -> np.ndarray:
    """Dense (n_out, n_in) matrix of the fused Gaussian + Keys-cubic resampler along one axis."""
    scale = n_out / n_in
    if sigma > 0:
        radius = math.ceil(2.0 * sigma)
        g = {k: math.exp(-0.5 * (k / sigma) ** 2) for k in range(-radius, radius + 1)}
        gsum = sum(g.values())
        g = {k: gk / gsum for k, gk in g.items()}
    else:
        radius = 0
        g = {0: 1.0}
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        x = (i + 0.5) / scale - 0.5
        row = np.zeros(n_in)
        for p in range(2 * radius + 4):
            j = math.floor(x - 2.0) - radius + p
            wj = sum(gk * keys_cubic(x - j - k) for k, gk in g.items())
            row[mirror_half_sample(j, n_in)] += wj
        m[i] = row / row.sum()
    return m


def resize(img: np.ndarray, oh: int, ow: int, antialias: bool = True) -> np.ndarray:
    """Resize (h, w, C) to (oh, ow, C) as ``My @ img_c @ Mx.T``.

    When shrinking, sigma = 0.6/s (s = the smaller axis scale) is used on BOTH axes (spec §1.3).
    """
    h, w, nc = img.shape
    s = min(oh / h, ow / w)
    sigma = 0.6 / s if (antialias and s < 1.0) else 0.0
    my = resize_1d_weights(h, oh, sigma)
    mx = resize_1d_weights(w, ow, sigma)
    out = np.empty((oh, ow, nc))
    for c in range(nc):
        out[:, :, c] = my @ img[:, :, c].astype(np.float64) @ mx.T
    return out


# --------------------------------------------------------------------------- warping


def _clamp(i: int, n: int) -> int:
    return min(max(i, 0), n - 1)


def warp(img, u, v, fill, order):
    """Backward warp: out(y, x) = img(y + v, x + u); out of bounds -> fill. Returns (out, valid)."""
    h, w, nc = img.shape
    img64 = img.astype(np.float64)
    out = np.zeros((h, w, nc))
    valid = np.zeros((h, w), np.uint8)
    for y in range(h):
        for x in range(w):
            # the kernel forms the sample position in float32; do the same so the bounds test agrees
            mx = float(np.float32(x) + np.float32(u[y, x]))
            my = float(np.float32(y) + np.float32(v[y, x]))
            if mx < 0 or mx >= w or my < 0 or my >= h:
                out[y, x] = fill[y, x]
                continue
            valid[y, x] = 1
            mx = min(max(mx, 0.0), w - 1.0)
            my = min(max(my, 0.0), h - 1.0)
            if order == 0:
                out[y, x] = img64[_clamp(math.floor(my + 0.5), h), _clamp(math.floor(mx + 0.5), w)]
            elif order == 1:
                x0, y0 = math.floor(mx), math.floor(my)
                tx, ty = mx - x0, my - y0
                acc = np.zeros(nc)
                for yy, wy in ((y0, 1.0 - ty), (y0 + 1, ty)):
                    for xx, wx in ((x0, 1.0 - tx), (x0 + 1, tx)):
                        acc += wy * wx * img64[_clamp(yy, h), _clamp(xx, w)]
                out[y, x] = acc
            else:
                x0, y0 = math.floor(mx), math.floor(my)
                acc = np.zeros(nc)
                for yy in range(y0 - 1, y0 + 3):
                    for xx in range(x0 - 1, x0 + 3):
                        wgt = keys_cubic(my - yy) * keys_cubic(mx - xx)
                        acc += wgt * img64[_clamp(yy, h), _clamp(xx, w)]
                out[y, x] = acc
    return out, valid


def valid_mask(u, v):
    h, w = u.shape
    out = np.zeros((h, w), np.uint8)
    for y in range(h):
        for x in range(w):
            mx = float(np.float32(x) + np.float32(u[y, x]))
            my = float(np.float32(y) + np.float32(v[y, x]))
            out[y, x] = 0 <= mx < w and 0 <= my < h
    return out


def bilinear_sample_flow(fu, fv, du, dv):
    """out(p) = flow(p + d(p)), bilinear, positions clipped to the frame (replicate border)."""
    h, w = fu.shape
    ou = np.zeros((h, w))
    ov = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            mx = min(max(float(np.float32(x) + np.float32(du[y, x])), 0.0), w - 1.0)
            my = min(max(float(np.float32(y) + np.float32(dv[y, x])), 0.0), h - 1.0)
            x0, y0 = math.floor(mx), math.floor(my)
            tx, ty = mx - x0, my - y0
            for yy, wy in ((y0, 1.0 - ty), (y0 + 1, ty)):
                for xx, wx in ((x0, 1.0 - tx), (x0 + 1, tx)):
                    ou[y, x] += wy * wx * fu[_clamp(yy, h), _clamp(xx, w)]
                    ov[y, x] += wy * wx * fv[_clamp(yy, h), _clamp(xx, w)]
    return ou, ov


# --------------------------------------------------------------------------- motion tensors


def _pad(f):
    """Edge-duplicating one-pixel pad of a 2-D array (float64)."""
    return np.pad(np.asarray(f, np.float64), 1, mode="edge")


def _dx(f, hx):
    p = _pad(f)
    return (p[1:-1, 2:] - p[1:-1, :-2]) / (2.0 * hx)


def _dy(f, hy):
    p = _pad(f)
    return (p[2:, 1:-1] - p[:-2, 1:-1]) / (2.0 * hy)


def _dxx(f, hx):
    p = _pad(f)
    return (p[1:-1, 2:] - 2.0 * p[1:-1, 1:-1] + p[1:-1, :-2]) / hx**2


def _dyy(f, hy):
    p = _pad(f)
    return (p[2:, 1:-1] - 2.0 * p[1:-1, 1:-1] + p[:-2, 1:-1]) / hy**2


def _stack(j11, j22, j33, j12, j13, j23):
    return np.stack([j11, j22, j33, j12, j13, j23], axis=-1)


def tensor_gc(f1, f2, hy, hx):
    """Gradient constancy, Zimmer normalisation; (h, w, C) -> (h, w, C, 6)."""
    out = []
    for c in range(f1.shape[2]):
        a, b = f1[:, :, c], f2[:, :, c]
        fx = 0.5 * (_dx(a, hx) + _dx(b, hx))
        ft = b.astype(np.float64) - a
        fxy = _dy(fx, hy)
        fxt = _dx(ft, hx)
        fyt = _dy(ft, hy)
        fxx = 0.5 * (_dxx(a, hx) + _dxx(b, hx))
        fyy = 0.5 * (_dyy(a, hy) + _dyy(b, hy))
        rx = 1.0 / (fxx**2 + fxy**2 + 1e-6)
        ry = 1.0 / (fxy**2 + fyy**2 + 1e-6)
        out.append(
            _stack(
                rx * fxx**2 + ry * fxy**2,
                rx * fxy**2 + ry * fyy**2,
                rx * fxt**2 + ry * fyt**2,
                rx * fxx * fxy + ry * fxy * fyy,
                rx * fxx * fxt + ry * fxy * fyt,
                rx * fxy * fxt + ry * fyy * fyt,
            )
        )
    return np.stack(out, axis=2)


def tensor_gray(f1, f2, hy, hx):
    """Brightness constancy; (h, w, C) -> (h, w, C, 6)."""
    out = []
    for c in range(f1.shape[2]):
        a, b = f1[:, :, c], f2[:, :, c]
        fx = 0.5 * (_dx(a, hx) + _dx(b, hx))
        fy = 0.5 * (_dy(a, hy) + _dy(b, hy))
        ft = b.astype(np.float64) - a
        out.append(_stack(fx * fx, fy * fy, ft * ft, fx * fy, fx * ft, fy * ft))
    return np.stack(out, axis=2)


def _census_signature(f, dy, dx, hy, hx):
    p = _pad(f)
    h, w = f.shape
    neighbour = p[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
    r = (neighbour - p[1:-1, 1:-1]) / math.sqrt((hy * dy) ** 2 + (hx * dx) ** 2)
    return 0.5 * (1.0 + r / np.sqrt(r * r + CENSUS_EPS**2))


def tensor_cs(f1, f2, hy, hx):
    """Smoothed census over the 8 neighbours, x0.25; (h, w, C) -> (h, w, C, 6)."""
    out = []
    for c in range(f1.shape[2]):
        acc = 0.0
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dy == 0 and dx == 0:
                    continue
                s1 = _census_signature(f1[:, :, c], dy, dx, hy, hx)
                s2 = _census_signature(f2[:, :, c], dy, dx, hy, hx)
                sx = 0.5 * (_dx(s1, hx) + _dx(s2, hx))
                sy = 0.5 * (_dy(s1, hy) + _dy(s2, hy))
                st = s2 - s1
                acc = acc + _stack(sx * sx, sy * sy, st * st, sx * sy, sx * st, sy * st)
        out.append(0.25 * acc)
    return np.stack(out, axis=2)


# --------------------------------------------------------------------------- level solver


def _psi(s2, a):
    return a * (s2 + SOLVER_EPS) ** (a - 1.0)


def solve_level(
    J, W, u, v, alpha_x, alpha_y, hx, hy, iterations, update_lag, a_data, a_smooth, beta, omega
):
    """Lagged-nonlinearity SOR, sums evaluated directly at every pixel of every sweep.

    J (h, w, C, 6) ordered J11, J22, J33, J12, J13, J23; W (h, w, C); u, v (h, w).
    Neighbours outside the grid are left out; sweep is row-major; du then dv (with the new du).
    """
    J = np.asarray(J, np.float64)
    W = np.asarray(W, np.float64)
    u = np.asarray(u, np.float64)
    v = np.asarray(v, np.float64)
    h, w, nc, _ = J.shape
    du = np.zeros((h, w))
    dv = np.zeros((h, w))
    psi_d = np.ones((h, w, nc))
    psi_s = np.ones((h, w))
    robust_smooth = a_smooth != 1.0
    for it in range(iterations):
        if (it + 1) % update_lag == 0:
            for c in range(nc):
                j11, j22, j33, j12, j13, j23 = (J[:, :, c, k] for k in range(6))
                s2 = (
                    j11 * du**2
                    + j22 * dv**2
                    + 2 * j12 * du * dv
                    + 2 * j13 * du
                    + 2 * j23 * dv
                    + j33
                )
                p = _psi(np.maximum(s2, 0.0), a_data[c])
                if 0 < a_data[c] < 1:
                    p = (1.0 - beta) + beta * p
                psi_d[:, :, c] = p
            if robust_smooth:
                uy, ux = np.gradient(u + du, hy, hx)
                vy, vx = np.gradient(v + dv, hy, hx)
                psi_s = _psi(ux**2 + uy**2 + vx**2 + vy**2, a_smooth)
                if 0 < a_smooth < 1:
                    psi_s = (1.0 - beta) + beta * psi_s
        for y in range(h):
            for x in range(w):
                nbrs = []
                for ny, nx, alpha, hh in (
                    (y, x - 1, alpha_x, hx),
                    (y, x + 1, alpha_x, hx),
                    (y - 1, x, alpha_y, hy),
                    (y + 1, x, alpha_y, hy),
                ):
                    if 0 <= ny < h and 0 <= nx < w:
                        wn = alpha / hh**2
                        if robust_smooth:
                            wn *= 0.5 * (psi_s[y, x] + psi_s[ny, nx])
                        nbrs.append((ny, nx, wn))
                dw = [W[y, x, c] * psi_d[y, x, c] for c in range(nc)]
                jp = J[y, x]
                num = sum(wn * (u[ny, nx] + du[ny, nx] - u[y, x]) for ny, nx, wn in nbrs)
                num -= sum(dw[c] * (jp[c, 4] + jp[c, 3] * dv[y, x]) for c in range(nc))
                den = sum(wn for _, _, wn in nbrs) + sum(dw[c] * jp[c, 0] for c in range(nc))
                star = num / den if den != 0 else 0.0
                du[y, x] = (1.0 - omega) * du[y, x] + omega * star
                num = sum(wn * (v[ny, nx] + dv[ny, nx] - v[y, x]) for ny, nx, wn in nbrs)
                num -= sum(dw[c] * (jp[c, 5] + jp[c, 3] * du[y, x]) for c in range(nc))
                den = sum(wn for _, _, wn in nbrs) + sum(dw[c] * jp[c, 1] for c in range(nc))
                star = num / den if den != 0 else 0.0
                dv[y, x] = (1.0 - omega) * dv[y, x] + omega * star
    return du, dv
