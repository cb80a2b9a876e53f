"""One pyramid level of the coarse-to-fine solve in one nogil call (method spec §1.3–§1.7).

:func:`level_step` chains the kernels of one level — resampling of the moving frame and of the
flow from the coarser level, the bicubic warp, the motion tensors, the SOR level solver, the 5x5
median and the update — exactly as :mod:`flowreg_dask.core.coarse_to_fine` composes them, but
inside compiled code: a level costs one dispatch instead of about twenty Python-level calls, so
the interpreter (and the GIL) is held for a fraction of the time and threads scale (the composed
path held the GIL for ~2 ms of a ~9 ms frame at the fast preset).

The resampling plans (:func:`resize_plan`) are the tap tables of
:func:`flowreg_dask.kernels.cpu.resample.resize`, computed once per reference.
"""

from __future__ import annotations

import numba
import numpy as np

from . import median as _median
from . import sor as _sor
from . import tensors as _tensors
from . import warp as _warp
from ._flags import JIT
from .resample import _mirror_cached, resample_x, resample_y, tap_table

__all__ = ["resize_plan", "level_step", "TERMS"]

#: data terms by the integer code :func:`level_step` takes
TERMS = {"gc": 0, "gray": 1, "cs": 2}

_NO_TAPS = (
    np.zeros(1, np.int64),
    np.zeros((1, 1), np.float32),
    np.zeros(1, np.int64),
)
for _a in _NO_TAPS:
    _a.flags.writeable = False


def _taps(n_in: int, n_out: int, sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    start, wts, pad = tap_table(n_in, n_out, sigma)
    return start, wts, _mirror_cached(n_in, pad)


def resize_plan(h: int, w: int, out_h: int, out_w: int, *, antialias: bool = True) -> tuple:
    """How :func:`~flowreg_dask.kernels.cpu.resample.resize` maps (h, w) to (out_h, out_w):
    ``(mode, sy, wy, my, sx, wx, mx)`` with mode 0 copy, 1 rows only, 2 columns only, 3 rows
    then columns, 4 columns then rows (when the rows grow: the column pass runs on the smaller
    row count, as ``resize`` does), and the tap tables (start, weights, mirror) of each axis."""
    if (out_h, out_w) == (h, w):
        return (0, *_NO_TAPS, *_NO_TAPS)
    s = min(out_h / h, out_w / w)
    sigma = 0.6 / s if (antialias and s < 1.0) else 0.0
    do_y = out_h != h or sigma > 0  # the antialiasing Gaussian acts on both axes
    do_x = out_w != w or sigma > 0
    ty = _taps(h, out_h, sigma) if do_y else _NO_TAPS
    tx = _taps(w, out_w, sigma) if do_x else _NO_TAPS
    if do_y and do_x:
        mode = 4 if out_h > h else 3
    else:
        mode = 1 if do_y else 2
    return (mode, *ty, *tx)


@numba.njit(**JIT)
def _resize(img, plan, out_h, out_w):
    """``img`` (h, w, C) float32 resampled by a :func:`resize_plan` (new array)."""
    mode, sy, wy, my, sx, wx, mx = plan
    h, w, nc = img.shape
    if mode == 0:
        return img.copy()
    if mode == 1:
        out = np.empty((out_h, w, nc), np.float32)
        resample_y(img, sy, wy, my, out)
        return out
    if mode == 2:
        out = np.empty((h, out_w, nc), np.float32)
        resample_x(img, sx, wx, mx, out)
        return out
    out = np.empty((out_h, out_w, nc), np.float32)
    if mode == 3:
        tmp = np.empty((out_h, w, nc), np.float32)
        resample_y(img, sy, wy, my, tmp)
        resample_x(tmp, sx, wx, mx, out)
    else:
        tmp = np.empty((h, out_w, nc), np.float32)
        resample_x(img, sx, wx, mx, tmp)
        resample_y(tmp, sy, wy, my, out)
    return out


@numba.njit(**JIT)
def _resize_flow(u, plan, out_h, out_w):
    h, w = u.shape
    return _resize(u.reshape((h, w, 1)), plan, out_h, out_w).reshape((out_h, out_w))


@numba.njit(**JIT)
def _warp_level(f2, ref, u, v, inv_hx, inv_hy):
    out = np.empty_like(f2)
    valid = np.empty(u.shape, np.uint8)
    _warp.warp_image(f2, u * inv_hx, v * inv_hy, ref, out, 3, valid)
    return out


@numba.njit(**JIT)
def _increments(f2w, ref, weight, u, v, term, hx, hy, ax, ay, its, lag, a_data, a_s, beta, om, ws):
    oh, ow = u.shape
    J = np.empty((f2w.shape[2], 6, oh, ow), np.float32)
    if term == 0:
        _tensors.tensor_gc(ref, f2w, hy, hx, J)
    elif term == 1:
        _tensors.tensor_gray(ref, f2w, hy, hx, J)
    else:
        _tensors.tensor_cs(ref, f2w, hy, hx, J)
    du = np.empty((oh, ow), np.float32)
    dv = np.empty_like(du)
    _sor.solve_level_ws(
        J, weight, u, v, ax, ay, hx, hy, its, lag, a_data, a_s, beta, om, du, dv, ws
    )
    return du, dv


@numba.njit(**JIT)
def _median5(a):
    out = np.empty_like(a)
    _median.median5x5(a, out)
    return out


@numba.njit(**JIT)
def level_step(
    moving,
    moving_plan,
    u,
    v,
    flow_plan,
    has_flow,
    ref,
    weight,
    hx,
    hy,
    inv_hx,
    inv_hy,
    alpha_x,
    alpha_y,
    iterations,
    update_lag,
    a_data,
    a_smooth,
    beta,
    omega,
    term,
    gnc,
    warping_steps,
    ws,
):
    """Solve one pyramid level; returns the flow (u, v) at this level, (h, w) float32 each.

    Parameters
    ----------
    moving : (H, W, C) float32
        The full-resolution moving frame (pre-processed).
    moving_plan : tuple
        :func:`resize_plan` from (H, W) to this level's (h, w) (antialiased).
    u, v : 2-D float32
        Flow of the coarser level (or the initial flow at full resolution for the coarsest
        level); ignored when ``has_flow`` is False (the coarsest level starts from zero).
    flow_plan : tuple
        :func:`resize_plan` from the shape of ``u`` to (h, w).
    ref, weight : (h, w, C), (C, h, w) float32
        The level's reference and channel weights.
    hx, hy, inv_hx, inv_hy, alpha_x, alpha_y : float32
        Grid spacings, their inverses and the level's smoothness weights.
    iterations, update_lag, a_data, a_smooth, beta, omega
        As :func:`flowreg_dask.kernels.cpu.sor.solve_level`.
    term : int
        Data term, :data:`TERMS`.
    ws : 1-D float32
        Scratch of the level solver, at least
        :func:`~flowreg_dask.kernels.cpu.sor.workspace_size` elements.
    gnc : bool
        Graduated non-convexity: ``warping_steps`` re-warps, the median on the flow; otherwise
        one solve with the median on the increments (the first level without a flow unwarped).
    """
    oh, ow = ref.shape[0], ref.shape[1]
    f2 = _resize(moving, moving_plan, oh, ow)
    if has_flow:
        u = _resize_flow(u, flow_plan, oh, ow)
        v = _resize_flow(v, flow_plan, oh, ow)
    else:
        u = np.zeros((oh, ow), np.float32)
        v = np.zeros((oh, ow), np.float32)
    use_median = min(oh, ow) > 5
    if not gnc:
        f2w = _warp_level(f2, ref, u, v, inv_hx, inv_hy) if has_flow else f2
        du, dv = _increments(
            f2w, ref, weight, u, v, term, hx, hy, alpha_x, alpha_y, iterations, update_lag,
            a_data, a_smooth, beta, omega, ws,
        )  # fmt: skip
        if use_median:
            du = _median5(du)
            dv = _median5(dv)
        return u + du, v + dv
    for _ in range(warping_steps):
        f2w = _warp_level(f2, ref, u, v, inv_hx, inv_hy)
        du, dv = _increments(
            f2w, ref, weight, u, v, term, hx, hy, alpha_x, alpha_y, iterations, update_lag,
            a_data, a_smooth, beta, omega, ws,
        )  # fmt: skip
        u = u + du
        v = v + dv
        if use_median:
            u = _median5(u)
            v = _median5(v)
    return u, v
