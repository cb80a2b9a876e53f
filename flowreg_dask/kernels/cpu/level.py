"""One pyramid level of the coarse-to-fine solve in one nogil call (method spec §1.3–§1.7).

:func:`level_step` chains the kernels of one level — resampling of the moving frame and of the
flow from the coarser level, the bicubic warp, the motion tensors, the SOR level solver, the 5x5
median and the update — exactly as :mod:`flowreg_dask.core.coarse_to_fine` composes them, but
inside compiled code: a level costs one dispatch instead of about twenty Python-level calls, so
the interpreter (and the GIL) is held for a fraction of the time and threads scale (the composed
path held the GIL for ~2 ms of a ~9 ms frame at the fast preset).

The resampling plans (:func:`~flowreg_dask.kernels.cpu.resample.resize_plan`, the ones
:func:`~flowreg_dask.kernels.cpu.resample.resize` runs) are computed once per reference.
"""

from __future__ import annotations

import numba
import numpy as np

from . import median as _median
from . import sor as _sor
from . import tensors as _tensors
from . import warp as _warp
from ._flags import JIT
from .resample import resize_planned

__all__ = ["level_step", "TERMS"]

#: data terms by the integer code :func:`level_step` takes
TERMS = {"gc": 0, "gray": 1, "cs": 2}


@numba.njit(**JIT)
def _resize_flow(u, plan, out_h, out_w):
    h, w = u.shape
    return resize_planned(u.reshape((h, w, 1)), plan, out_h, out_w).reshape((out_h, out_w))


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
        :func:`~flowreg_dask.kernels.cpu.resample.resize_plan` from (H, W) to this level's
        (h, w) (antialiased).
    u, v : 2-D float32
        Flow of the coarser level (or the initial flow at full resolution for the coarsest
        level); ignored when ``has_flow`` is False (the coarsest level starts from zero).
    flow_plan : tuple
        :func:`~flowreg_dask.kernels.cpu.resample.resize_plan` from the shape of ``u`` to (h, w).
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
    f2 = resize_planned(moving, moving_plan, oh, ow)
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
