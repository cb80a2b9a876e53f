"""Separable Gaussian filtering of frame stacks with scipy's ``reflect`` boundary
(``d c b a | a b c d | d c b a``), with the intensity normalisation fused into the first pass.

Used by the pre-processing of every chunk: ``smooth(normalise(raw))`` equals
``normalise(smooth(raw))`` because the kernel weights sum to one, so raw integer frames are read
once, scaled while the rows are filtered, and no normalised copy is made.
"""

from __future__ import annotations

import numba
import numpy as np

from ._flags import JIT


@numba.njit(**JIT)
def _reflect(i, n):
    period = 2 * n
    i = i % period
    if i < 0:
        i += period
    if i >= n:
        i = period - 1 - i
    return i


@numba.njit(**JIT)
def filter_rows_normalised(src, c, lo, scale, weights, out):
    """out[t, y, x] = scale * (sum_k w_k src[t, reflect(y + k - r), x, c] - lo) (axis y).

    ``src`` is (T, H, W, C) of any numeric dtype; ``out`` (T, H, W) float32.
    """
    t_n, h, w, _ = src.shape
    r = (weights.shape[0] - 1) // 2
    for t in range(t_n):
        for y in range(h):
            o = out[t, y]
            for x in range(w):
                o[x] = 0.0
            for k in range(weights.shape[0]):
                yy = _reflect(y + k - r, h)
                wk = weights[k]
                row = src[t, yy]
                for x in range(w):
                    o[x] += wk * np.float32(row[x, c])
            for x in range(w):
                o[x] = (o[x] - lo) * scale


@numba.njit(**JIT)
def filter_cols(a, weights, out):
    """Filter (T, H, W) float32 ``a`` along x into ``out`` (reflect boundary)."""
    t_n, h, w = a.shape
    n_k = weights.shape[0]
    r = (n_k - 1) // 2
    buf = np.empty(w + 2 * r, np.float32)
    for t in range(t_n):
        for y in range(h):
            row = a[t, y]
            for i in range(w + 2 * r):
                buf[i] = row[_reflect(i - r, w)]
            o = out[t, y]
            for x in range(w):
                o[x] = 0.0
            for k in range(n_k):
                wk = weights[k]
                for x in range(w):
                    o[x] += wk * buf[x + k]


@numba.njit(**JIT)
def filter_time(a, weights, out):
    """Filter (T, H, W) float32 ``a`` along t into ``out`` (reflect boundary)."""
    t_n, h, w = a.shape
    r = (weights.shape[0] - 1) // 2
    for t in range(t_n):
        o = out[t]
        for y in range(h):
            for x in range(w):
                o[y, x] = 0.0
        for k in range(weights.shape[0]):
            src = a[_reflect(t + k - r, t_n)]
            wk = weights[k]
            for y in range(h):
                for x in range(w):
                    o[y, x] += wk * src[y, x]
