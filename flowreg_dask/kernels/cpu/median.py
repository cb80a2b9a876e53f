"""5x5 median filter (scipy ``mode="mirror"`` boundary) with a pruned comparator network."""

from __future__ import annotations

import numba
import numpy as np

from ._flags import JIT
from ._median_net import MEDIAN25_NETWORK

_NET = np.array(MEDIAN25_NETWORK, dtype=np.int32)


@numba.njit(**JIT)
def _mirror(i: int, n: int) -> int:
    # scipy "mirror": d c b | a b c d | c b a  (assumes n >= 3 and |overshoot| < n)
    if i < 0:
        return -i
    if i >= n:
        return 2 * n - 2 - i
    return i


@numba.njit(**JIT)
def median5x5(a, out):
    """Median of each 5x5 window of ``a`` (h, w) float32 into ``out`` (h, w); h, w >= 3."""
    h, w = a.shape
    net = _NET
    buf = np.empty((25, w), dtype=np.float32)
    xidx = np.empty((5, w), dtype=np.int64)
    for k in range(5):
        for x in range(w):
            xidx[k, x] = _mirror(x + k - 2, w)
    for y in range(h):
        k = 0
        for dy in range(-2, 3):
            yy = _mirror(y + dy, h)
            row = a[yy]
            for dx in range(5):
                xi = xidx[dx]
                b = buf[k]
                for x in range(w):
                    b[x] = row[xi[x]]
                k += 1
        for n in range(net.shape[0]):
            i = net[n, 1]
            j = net[n, 2]
            bi = buf[i]
            bj = buf[j]
            if net[n, 0] == 0:
                for x in range(w):
                    p = bi[x]
                    q = bj[x]
                    bi[x] = min(p, q)
                    bj[x] = max(p, q)
            else:
                for x in range(w):
                    bj[x] = bi[x]
        o = out[y]
        m = buf[12]
        for x in range(w):
            o[x] = m[x]
