"""5x5 median filter (scipy ``mode="mirror"`` boundary) with a pruned comparator network.

The network (:data:`~flowreg_dask.kernels.cpu._median_net.MEDIAN25_NETWORK`, the comparators that
reach the median) is unrolled over 25 scalars below, and the loop over the pixels of a row runs it
on the mirror-padded image: no index tables, no branches, so the row loop vectorises (one
comparator = one vector min and one vector max). Regenerate the unrolled block from the network
if it ever changes (``tests/test_kernels.py`` checks the kernel against scipy).
"""

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
def mirror_pad2(a, out):
    """``out`` (h + 4, w + 4) = ``a`` (h, w) with two mirrored rows/columns on each side."""
    h, w = a.shape
    for yy in range(h + 4):
        row = a[_mirror(yy - 2, h)]
        o = out[yy]
        o[0] = row[_mirror(-2, w)]
        o[1] = row[_mirror(-1, w)]
        for x in range(w):
            o[x + 2] = row[x]
        o[w + 2] = row[_mirror(w, w)]
        o[w + 3] = row[_mirror(w + 1, w)]


@numba.njit(**JIT)
def median5x5(a, out):
    """Median of each 5x5 window of ``a`` (h, w) float32 into ``out`` (h, w); h, w >= 3."""
    h, w = a.shape
    pad = np.empty((h + 4, w + 4), dtype=np.float32)
    mirror_pad2(a, pad)
    for y in range(h):
        r0 = pad[y]
        r1 = pad[y + 1]
        r2 = pad[y + 2]
        r3 = pad[y + 3]
        r4 = pad[y + 4]
        o = out[y]
        for x in range(w):
            v0 = r0[x]
            v1 = r0[x + 1]
            v2 = r0[x + 2]
            v3 = r0[x + 3]
            v4 = r0[x + 4]
            v5 = r1[x]
            v6 = r1[x + 1]
            v7 = r1[x + 2]
            v8 = r1[x + 3]
            v9 = r1[x + 4]
            v10 = r2[x]
            v11 = r2[x + 1]
            v12 = r2[x + 2]
            v13 = r2[x + 3]
            v14 = r2[x + 4]
            v15 = r3[x]
            v16 = r3[x + 1]
            v17 = r3[x + 2]
            v18 = r3[x + 3]
            v19 = r3[x + 4]
            v20 = r4[x]
            v21 = r4[x + 1]
            v22 = r4[x + 2]
            v23 = r4[x + 3]
            v24 = r4[x + 4]
            v0, v1 = min(v0, v1), max(v0, v1)
            v2, v3 = min(v2, v3), max(v2, v3)
            v4, v5 = min(v4, v5), max(v4, v5)
            v6, v7 = min(v6, v7), max(v6, v7)
            v8, v9 = min(v8, v9), max(v8, v9)
            v10, v11 = min(v10, v11), max(v10, v11)
            v12, v13 = min(v12, v13), max(v12, v13)
            v14, v15 = min(v14, v15), max(v14, v15)
            v16, v17 = min(v16, v17), max(v16, v17)
            v18, v19 = min(v18, v19), max(v18, v19)
            v20, v21 = min(v20, v21), max(v20, v21)
            v22, v23 = min(v22, v23), max(v22, v23)
            v0, v2 = min(v0, v2), max(v0, v2)
            v1, v3 = min(v1, v3), max(v1, v3)
            v4, v6 = min(v4, v6), max(v4, v6)
            v5, v7 = min(v5, v7), max(v5, v7)
            v8, v10 = min(v8, v10), max(v8, v10)
            v9, v11 = min(v9, v11), max(v9, v11)
            v12, v14 = min(v12, v14), max(v12, v14)
            v13, v15 = min(v13, v15), max(v13, v15)
            v16, v18 = min(v16, v18), max(v16, v18)
            v17, v19 = min(v17, v19), max(v17, v19)
            v20, v22 = min(v20, v22), max(v20, v22)
            v21, v23 = min(v21, v23), max(v21, v23)
            v1, v2 = min(v1, v2), max(v1, v2)
            v5, v6 = min(v5, v6), max(v5, v6)
            v9, v10 = min(v9, v10), max(v9, v10)
            v13, v14 = min(v13, v14), max(v13, v14)
            v17, v18 = min(v17, v18), max(v17, v18)
            v21, v22 = min(v21, v22), max(v21, v22)
            v0, v4 = min(v0, v4), max(v0, v4)
            v1, v5 = min(v1, v5), max(v1, v5)
            v2, v6 = min(v2, v6), max(v2, v6)
            v3, v7 = min(v3, v7), max(v3, v7)
            v8, v12 = min(v8, v12), max(v8, v12)
            v9, v13 = min(v9, v13), max(v9, v13)
            v10, v14 = min(v10, v14), max(v10, v14)
            v11, v15 = min(v11, v15), max(v11, v15)
            v16, v20 = min(v16, v20), max(v16, v20)
            v17, v21 = min(v17, v21), max(v17, v21)
            v18, v22 = min(v18, v22), max(v18, v22)
            v19, v23 = min(v19, v23), max(v19, v23)
            v2, v4 = min(v2, v4), max(v2, v4)
            v3, v5 = min(v3, v5), max(v3, v5)
            v10, v12 = min(v10, v12), max(v10, v12)
            v11, v13 = min(v11, v13), max(v11, v13)
            v18, v20 = min(v18, v20), max(v18, v20)
            v19, v21 = min(v19, v21), max(v19, v21)
            v1, v2 = min(v1, v2), max(v1, v2)
            v3, v4 = min(v3, v4), max(v3, v4)
            v5, v6 = min(v5, v6), max(v5, v6)
            v9, v10 = min(v9, v10), max(v9, v10)
            v11, v12 = min(v11, v12), max(v11, v12)
            v13, v14 = min(v13, v14), max(v13, v14)
            v17, v18 = min(v17, v18), max(v17, v18)
            v19, v20 = min(v19, v20), max(v19, v20)
            v21, v22 = min(v21, v22), max(v21, v22)
            v0, v8 = min(v0, v8), max(v0, v8)
            v1, v9 = min(v1, v9), max(v1, v9)
            v2, v10 = min(v2, v10), max(v2, v10)
            v3, v11 = min(v3, v11), max(v3, v11)
            v4, v12 = min(v4, v12), max(v4, v12)
            v5, v13 = min(v5, v13), max(v5, v13)
            v6, v14 = min(v6, v14), max(v6, v14)
            v7, v15 = min(v7, v15), max(v7, v15)
            v16, v24 = min(v16, v24), max(v16, v24)
            v4, v8 = min(v4, v8), max(v4, v8)
            v5, v9 = min(v5, v9), max(v5, v9)
            v6, v10 = min(v6, v10), max(v6, v10)
            v7, v11 = min(v7, v11), max(v7, v11)
            v20, v24 = min(v20, v24), max(v20, v24)
            v2, v4 = min(v2, v4), max(v2, v4)
            v3, v5 = min(v3, v5), max(v3, v5)
            v6, v8 = min(v6, v8), max(v6, v8)
            v7, v9 = min(v7, v9), max(v7, v9)
            v10, v12 = min(v10, v12), max(v10, v12)
            v11, v13 = min(v11, v13), max(v11, v13)
            v18, v20 = min(v18, v20), max(v18, v20)
            v19, v21 = min(v19, v21), max(v19, v21)
            v22, v24 = min(v22, v24), max(v22, v24)
            v1, v2 = min(v1, v2), max(v1, v2)
            v3, v4 = min(v3, v4), max(v3, v4)
            v5, v6 = min(v5, v6), max(v5, v6)
            v7, v8 = min(v7, v8), max(v7, v8)
            v9, v10 = min(v9, v10), max(v9, v10)
            v11, v12 = min(v11, v12), max(v11, v12)
            v13, v14 = min(v13, v14), max(v13, v14)
            v17, v18 = min(v17, v18), max(v17, v18)
            v19, v20 = min(v19, v20), max(v19, v20)
            v21, v22 = min(v21, v22), max(v21, v22)
            v23, v24 = min(v23, v24), max(v23, v24)
            v0, v16 = min(v0, v16), max(v0, v16)
            v1, v17 = min(v1, v17), max(v1, v17)
            v2, v18 = min(v2, v18), max(v2, v18)
            v3, v19 = min(v3, v19), max(v3, v19)
            v4, v20 = min(v4, v20), max(v4, v20)
            v5, v21 = min(v5, v21), max(v5, v21)
            v6, v22 = min(v6, v22), max(v6, v22)
            v7, v23 = min(v7, v23), max(v7, v23)
            v8, v24 = min(v8, v24), max(v8, v24)
            v8, v16 = min(v8, v16), max(v8, v16)
            v9, v17 = min(v9, v17), max(v9, v17)
            v10, v18 = min(v10, v18), max(v10, v18)
            v11, v19 = min(v11, v19), max(v11, v19)
            v12, v20 = min(v12, v20), max(v12, v20)
            v13, v21 = min(v13, v21), max(v13, v21)
            v6, v10 = min(v6, v10), max(v6, v10)
            v7, v11 = min(v7, v11), max(v7, v11)
            v12, v16 = min(v12, v16), max(v12, v16)
            v13, v17 = min(v13, v17), max(v13, v17)
            v10, v12 = min(v10, v12), max(v10, v12)
            v11, v13 = min(v11, v13), max(v11, v13)
            v11, v12 = min(v11, v12), max(v11, v12)
            o[x] = v12
