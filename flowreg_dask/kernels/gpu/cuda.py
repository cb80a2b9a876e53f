"""Fused CuPy kernels for the two hottest batched operations (used only when ``xp`` is cupy).

UNTESTED HERE: these kernels were written without a GPU and have not been compiled or run in CI.
They implement exactly the arithmetic of their array-module twins in :mod:`.ops`
(:func:`~flowreg_dask.kernels.gpu.ops.rb_half_sweep` and
:func:`~flowreg_dask.kernels.gpu.ops.median5x5`), which the CPU tests check; the ``gpu``-marked
tests in ``tests/test_gpu_backend.py`` compare fused and unfused results on a CUDA machine.
Disable them with ``backend_params={"fused": False}`` if they misbehave.

* ``rb_half_sweep``: one thread per pixel of the colour being updated (half of the interior),
  instead of ~25 separate array operations over strided views per sub-lattice.
* ``median5x5``: one thread per output pixel with the 25 values in registers and the CPU kernel's
  pruned comparator network unrolled, instead of ~120 ``minimum``/``maximum`` passes over 25
  shifted copies.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..cpu._median_net import MEDIAN25_NETWORK

_BLOCK = 256

_RB_SOURCE = r"""
extern "C" __global__
void rb_half_sweep(float* __restrict__ du, float* __restrict__ dv,
                   const float* __restrict__ WE, const float* __restrict__ WS,
                   const float* __restrict__ A12,
                   const float* __restrict__ inv1, const float* __restrict__ inv2,
                   const float* __restrict__ Lu, const float* __restrict__ Lv,
                   const float omega, const int nb, const int h, const int w, const int color)
{
    // padded planes of (h + 2) x (w + 2); thread -> (b, y, xh), x = 2 xh + ((y + color) & 1)
    const int half = (w + 1) / 2;
    const long long n = (long long)nb * h * half;
    const int wp = w + 2;
    const long long plane = (long long)(h + 2) * wp;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        const int xh = (int)(i % half);
        const long long r = i / half;
        const int y = (int)(r % h);
        const int b = (int)(r / h);
        const int x = 2 * xh + ((y + color) & 1);
        if (x >= w) continue;
        const long long p = b * plane + (long long)(y + 1) * wp + (x + 1);
        const float ww = WE[p - 1], we = WE[p], wn = WS[p - wp], ws = WS[p];
        const float ru = Lu[p]
            + (ww * du[p - 1] + we * du[p + 1] + wn * du[p - wp] + ws * du[p + wp]);
        const float rv = Lv[p]
            + (ww * dv[p - 1] + we * dv[p + 1] + wn * dv[p - wp] + ws * dv[p + wp]);
        const float a12 = A12[p];
        const float om1 = 1.0f - omega;
        const float dun = om1 * du[p] + (omega * inv1[p]) * (ru - a12 * dv[p]);
        const float dvn = om1 * dv[p] + (omega * inv2[p]) * (rv - a12 * dun);
        du[p] = dun;
        dv[p] = dvn;
    }
}
"""


def _median_source() -> str:
    steps = []
    for kind, i, j in MEDIAN25_NETWORK:
        if kind == 0:
            steps.append(f"{{ float t = fminf(v[{i}], v[{j}]); v[{j}] = fmaxf(v[{i}], v[{j}]); ")
            steps[-1] += f"v[{i}] = t; }}"
        else:
            steps.append(f"v[{j}] = v[{i}];")
    network = "\n        ".join(steps)
    return r"""
__device__ __forceinline__ int mirror(int i, int n) {
    // scipy "mirror": d c b | a b c d | c b a  (n >= 3)
    return i < 0 ? -i : (i >= n ? 2 * n - 2 - i : i);
}

extern "C" __global__
void median5x5(const float* __restrict__ a, float* __restrict__ out,
               const int nb, const int h, const int w)
{
    const long long n = (long long)nb * h * w;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        const int x = (int)(i % w);
        const long long r = i / w;
        const int y = (int)(r % h);
        const long long base = (r / h) * h * w;
        float v[25];
        int k = 0;
        #pragma unroll
        for (int dy = -2; dy <= 2; ++dy) {
            const long long row = base + (long long)mirror(y + dy, h) * w;
            #pragma unroll
            for (int dx = -2; dx <= 2; ++dx) {
                v[k++] = a[row + mirror(x + dx, w)];
            }
        }
        NETWORK
        out[i] = v[12];
    }
}
""".replace("NETWORK", network)


@functools.cache
def _kernels() -> tuple[Any, Any]:
    import cupy

    rb = cupy.RawKernel(_RB_SOURCE, "rb_half_sweep")
    med = cupy.RawKernel(_median_source(), "median5x5")
    return rb, med


def _grid(n: int) -> tuple[int]:
    return (max(1, min((n + _BLOCK - 1) // _BLOCK, 65535 * 8)),)


def rb_half_sweep(du, dv, WE, WS, A12, inv1, inv2, Lu, Lv, omega, color) -> None:
    """Fused twin of :func:`flowreg_dask.kernels.gpu.ops.rb_half_sweep` (same signature; all
    arrays C-contiguous cupy float32 (B, h+2, w+2)). UNTESTED without a GPU."""
    rb, _ = _kernels()
    nb, hp, wp = du.shape
    h, w = hp - 2, wp - 2
    n = nb * h * ((w + 1) // 2)
    args = (du, dv, WE, WS, A12, inv1, inv2, Lu, Lv)
    for arr in args:
        if not arr.flags.c_contiguous or arr.dtype != np.float32:
            raise ValueError("rb_half_sweep: expected C-contiguous float32 arrays")
    rb(
        _grid(n),
        (_BLOCK,),
        args + (np.float32(omega), np.int32(nb), np.int32(h), np.int32(w), np.int32(color)),
    )


def median5x5(xp, a):
    """Fused twin of :func:`flowreg_dask.kernels.gpu.ops.median5x5` for ``a`` (B, h, w) cupy
    float32, h, w >= 3. UNTESTED without a GPU."""
    _, med = _kernels()
    a = xp.ascontiguousarray(a, dtype=xp.float32)
    nb, h, w = a.shape
    out = xp.empty_like(a)
    n = nb * h * w
    med(_grid(n), (_BLOCK,), (a, out, np.int32(nb), np.int32(h), np.int32(w)))
    return out
