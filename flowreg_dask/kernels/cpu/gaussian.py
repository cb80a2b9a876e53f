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
def filter_frames(src, c, lo, scale, w_rows, w_cols, out, oc, plane, tmp):
    """out[t, :, :, oc] = (G_x * G_y * src[t, :, :, c] - lo) * scale: both spatial passes of
    channel ``c``, one frame at a time.

    ``src`` (T, H, W, C) of any numeric dtype; ``out`` (T, H, W, OC) float32; ``plane`` and
    ``tmp`` (H, W) float32 scratch. Per frame the channel is copied to a contiguous float32
    ``plane``, filtered along y with the scaling fused (rows of ``plane`` weighted into rows of
    ``tmp``), then along x (each row of ``tmp``, reflected only at its two ends, weighted into a
    line buffer) into ``out``. Each frame's intermediates stay in cache and only the ends of a row
    are reflected: at 256x256 with sigma 1, 0.15 ms per frame against 0.35 for two stack-wide
    passes with a reflected index per sample (2 channels: 0.42 against 1.18).
    """
    t_n, h, w, _ = src.shape
    r_y = (w_rows.shape[0] - 1) // 2
    n_x = w_cols.shape[0]
    r_x = (n_x - 1) // 2
    buf = np.empty(w + 2 * r_x, np.float32)
    line = np.empty(w, np.float32)
    for t in range(t_n):
        for y in range(h):
            for x in range(w):
                plane[y, x] = np.float32(src[t, y, x, c])
        for y in range(h):
            o = tmp[y]
            for x in range(w):
                o[x] = 0.0
            for k in range(w_rows.shape[0]):
                yy = _reflect(y + k - r_y, h)
                wk = w_rows[k]
                row = plane[yy]
                for x in range(w):
                    o[x] += wk * row[x]
            for x in range(w):
                o[x] = (o[x] - lo) * scale
        for y in range(h):
            row = tmp[y]
            for i in range(r_x):
                buf[i] = row[_reflect(i - r_x, w)]
                buf[w + r_x + i] = row[_reflect(w + i, w)]
            for x in range(w):
                buf[r_x + x] = row[x]
            for x in range(w):
                line[x] = 0.0
            for k in range(n_x):
                wk = w_cols[k]
                for x in range(w):
                    line[x] += wk * buf[x + k]
            o = out[t, y]
            for x in range(w):
                o[x, oc] = line[x]


@numba.njit(**JIT)
def filter_time(a, weights, out):
    """Filter (T, H, W) float32 ``a`` along t into ``out`` (reflect boundary); ``out`` may be a
    strided view, e.g. one channel ``[..., c]`` of a (T, H, W, C) stack."""
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
