"""The one coarse-to-fine driver shared by every flow backend (method spec §1.3–§1.7).

A backend supplies the per-level arithmetic as a :class:`LevelOps` (resampling, the warp of the
moving image at a level, the level solver and the 5x5 median); this module owns everything
around it, written once:

* the level plan (:func:`build_levels`: pyramid, per-level reference, channel weights and
  regularisation),
* one level of the solve (:meth:`LevelOps.level`: initial flow, warp, increments, median,
  graduated non-convexity with its warping steps), the pass over the pyramid
  (:func:`pyramid_pass`) and the GNC schedule (:func:`variational`),
* the rigid (phase-correlation) pre-alignment of ``cc_initialization`` and the composition of
  the two warps (:func:`rigid_initialised`).

The numba backend (:class:`flowreg_dask.core.solver.FlowEstimator`) runs it on one frame at a
time (arrays ``(h, w, C)`` and flows ``(h, w)``); the batched backends
(:class:`flowreg_dask.core.batched.BatchedFlowEstimator`, numpy or CuPy) on a batch (arrays
``(B, C, h, w)`` and flows ``(B, h, w)``). The driver never looks at the layout.

Method: Flotho et al., "Flow-Registration", J. Biophotonics 2022, :DOI:`10.1002/jbio.202100330`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import InvalidInputError, warn_user
from ..kernels.cpu import warp as _kwarp
from ..kernels.cpu.resample import resize
from .params import MIN_FRAME_SIZE, FlowParams
from .pyramid import Level, pyramid_plan
from .rigid import estimate_rigid_shift

__all__ = [
    "LevelData",
    "LevelPlan",
    "LevelOps",
    "build_levels",
    "pyramid_pass",
    "variational",
    "warp_linear",
    "rigid_initialised",
]


@dataclasses.dataclass
class LevelData:
    """One solved pyramid level: its geometry, reference, channel weights and smoothness."""

    level: Level
    ref: np.ndarray  # (h, w, C) float32 reference at this level
    weight: np.ndarray  # (C, h, w) float32 channel weights
    alpha: tuple[float, float]


@dataclasses.dataclass
class LevelPlan:
    """Everything a backend needs from the reference, computed once per reference."""

    shape: tuple[int, int, int]  # (H, W, C) of the frames
    reference: np.ndarray  # (H, W, C) float32
    levels: list[LevelData]  # coarsest first
    min_level: int  # the finest level solved (after clipping to the pyramid's depth)
    a_data: np.ndarray  # (C,) float32 robust exponents of the data term
    weight_vector: np.ndarray | None  # (C,) channel weights, or None with a weight map
    weight_map: np.ndarray | None  # (H, W, C) weight map, or None with a vector


def build_levels(reference: np.ndarray, params: FlowParams) -> LevelPlan:
    """The pyramid of a reference: per level its resampled reference, weights and alpha.

    Parameters
    ----------
    reference : ndarray
        (H, W, C) pre-processed reference, finite, at least ``MIN_FRAME_SIZE`` px on each side.
    params : FlowParams
        Validated parameters.

    Returns
    -------
    LevelPlan
        The levels from the coarsest to the finest solved one.
    """
    h, w, nc = reference.shape
    if min(h, w) < MIN_FRAME_SIZE:
        raise InvalidInputError(
            f"reference: frames of {h}x{w} px are too small for the pyramid; at least "
            f"{MIN_FRAME_SIZE}x{MIN_FRAME_SIZE} px are needed"
        )
    ref = np.ascontiguousarray(reference, dtype=np.float32)
    weight = params.weight_array(h, w, nc)
    weight_vector = weight if weight.ndim == 1 else None
    weight_map = weight if weight.ndim == 3 else None
    plan = pyramid_plan(h, w, eta=params.eta, levels=params.levels, min_level=params.min_level)
    if plan[-1].i != params.min_level:
        warn_user(
            f"min_level={params.min_level} is deeper than the pyramid of a {h}x{w} frame "
            f"allows; using min_level={plan[-1].i}"
        )
    min_level = plan[-1].i
    levels = []
    for lv in plan:
        ref_l = resize(ref, lv.height, lv.width)
        # channel-first (C, h, w) weights, like the motion tensors
        if weight_map is not None:
            w_l = np.ascontiguousarray(
                np.maximum(resize(weight_map, lv.height, lv.width), 0).transpose(2, 0, 1)
            )
        else:
            w_l = np.empty((nc, lv.height, lv.width), np.float32)
            w_l[...] = weight[:, None, None]
        if lv.i == min_level:
            alpha = params.alpha
        else:
            scale = params.eta ** (-lv.i / 2.0)
            alpha = (params.alpha[0] * scale, params.alpha[1] * scale)
        levels.append(LevelData(lv, ref_l, w_l, alpha))
    return LevelPlan(
        shape=(h, w, nc),
        reference=ref,
        levels=levels,
        min_level=min_level,
        a_data=params.a_data_vector(nc),
        weight_vector=weight_vector,
        weight_map=weight_map,
    )


class LevelOps:
    """The per-level arithmetic of a backend, on its own array layout.

    ``moving`` is the backend's full-resolution frame (or batch of frames), flows ``u``/``v`` are
    in pixels of the level they live on; ``k`` indexes :attr:`levels` (coarsest first). A
    backend implements the fine-grained operations; :meth:`level` composes them into one level
    of the solve, and a backend may replace it by a fused equivalent (the numba backend runs it
    as one compiled call; the tests check that both give the same flows).
    """

    levels: Sequence[Any]

    def resize(self, moving: Any, height: int, width: int) -> Any:
        """``moving`` resampled (area-averaged when shrinking) to ``height`` x ``width``."""
        raise NotImplementedError

    def resize_flow(self, u: Any, height: int, width: int, *, antialias: bool = True) -> Any:
        """One flow component resampled to ``height`` x ``width``."""
        raise NotImplementedError

    def zeros_flow(self, height: int, width: int) -> Any:
        """A zero flow component of a level."""
        raise NotImplementedError

    def warp(self, k: int, f2: Any, u: Any, v: Any) -> Any:
        """``f2`` (the moving image at level ``k``) warped by (``u``, ``v``) (bicubic)."""
        raise NotImplementedError

    def solve(self, k: int, f2w: Any, u: Any, v: Any, beta: float) -> tuple[Any, Any]:
        """Increments (du, dv) of level ``k`` around the flow (``u``, ``v``)."""
        raise NotImplementedError

    def median(self, a: Any) -> Any:
        """5x5 median of a flow component (new array)."""
        raise NotImplementedError

    def level(
        self, k: int, moving: Any, u: Any, v: Any, *, beta: float, gnc: bool, warping_steps: int
    ) -> tuple[Any, Any]:
        """Solve level ``k``; returns its flow.

        ``u``/``v`` is the flow of the coarser level (for ``k == 0`` the initial flow at full
        resolution, or None to start from zero). Without GNC the level solves once and the 5x5
        median filters the increments (the coarsest level without an initial flow is not
        warped); with GNC (robustness ``beta``) it re-warps ``warping_steps`` times and the
        median filters the accumulated flow.
        """
        lv = self.levels[k].level
        f2 = self.resize(moving, lv.height, lv.width)
        has_flow = u is not None
        if has_flow:
            u = self.resize_flow(u, lv.height, lv.width)
            v = self.resize_flow(v, lv.height, lv.width)
        else:
            u = self.zeros_flow(lv.height, lv.width)
            v = self.zeros_flow(lv.height, lv.width)
        use_median = min(lv.height, lv.width) > 5
        if not gnc:
            # The coarsest level is warped too when an initial flow is given: the linearisation
            # must be taken around the current estimate (the reference implementation skips
            # this warp, which makes large initial flows overshoot).
            f2w = self.warp(k, f2, u, v) if has_flow else f2
            du, dv = self.solve(k, f2w, u, v, beta)
            if use_median:
                du = self.median(du)
                dv = self.median(dv)
            return u + du, v + dv
        for _ in range(warping_steps):
            f2w = self.warp(k, f2, u, v)
            du, dv = self.solve(k, f2w, u, v, beta)
            u = u + du
            v = v + dv
            if use_median:
                u = self.median(u)
                v = self.median(v)
        return u, v


def pyramid_pass(
    ops: LevelOps,
    levels: Sequence[LevelData] | Sequence[Any],
    moving: Any,
    u0: Any,
    v0: Any,
    *,
    beta: float,
    gnc: bool,
    warping_steps: int,
    out_hw: tuple[int, int],
) -> tuple[Any, Any]:
    """One pass over the pyramid, coarsest to finest (:meth:`LevelOps.level` per level); returns
    the flow at ``out_hw``. ``u0``/``v0`` (full resolution) or None start it."""
    u, v = u0, v0
    for k in range(len(levels)):
        u, v = ops.level(k, moving, u, v, beta=beta, gnc=gnc, warping_steps=warping_steps)
    h, w = out_hw
    if u.shape[-2:] != (h, w):
        u = ops.resize_flow(u, h, w, antialias=False)
        v = ops.resize_flow(v, h, w, antialias=False)
    return u, v


def variational(
    ops: LevelOps,
    levels: Sequence[Any],
    moving: Any,
    u0: Any,
    v0: Any,
    *,
    params: FlowParams,
    out_hw: tuple[int, int],
) -> tuple[Any, Any]:
    """The variational flow: one pyramid pass, or one per GNC stage of ``params.gnc_schedule``."""
    if params.gnc_schedule is None:
        return pyramid_pass(
            ops, levels, moving, u0, v0, beta=1.0, gnc=False, warping_steps=1, out_hw=out_hw
        )
    u, v = u0, v0
    for beta in params.gnc_schedule:
        u, v = pyramid_pass(
            ops,
            levels,
            moving,
            u,
            v,
            beta=beta,
            gnc=True,
            warping_steps=params.warping_steps,
            out_hw=out_hw,
        )
    return u, v


def warp_linear(moving: np.ndarray, flow: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``moving`` (H, W, C) warped bilinearly by ``flow`` (H, W, 2); outside: the reference."""
    out = np.empty_like(moving)
    valid = np.empty(flow.shape[:2], np.uint8)
    _kwarp.warp_image(
        moving,
        np.ascontiguousarray(flow[..., 0]),
        np.ascontiguousarray(flow[..., 1]),
        reference,
        out,
        1,
        valid,
    )
    return out


def rigid_initialised(
    frames: np.ndarray,
    init: np.ndarray | None,
    *,
    plan: LevelPlan,
    params: FlowParams,
    solve: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """``cc_initialization``: rigid pre-alignment, the variational flow, then the composition.

    Each frame (after its initial flow) is aligned by phase correlation (:func:`estimate_rigid_
    shift`), ``solve`` computes the variational flows of the aligned stack at once, and the two
    warps are composed: ``moving(p + res + comb(p + res))``.

    Parameters
    ----------
    frames : ndarray
        (T, H, W, C) float32 pre-processed frames.
    init : ndarray or None
        (H, W, 2) initial flow of every frame, (T, H, W, 2) per frame, or None.
    plan : LevelPlan
        The reference's plan (reference and channel weights).
    params : FlowParams
        ``cc_hw`` and ``cc_up`` of the rigid step.
    solve : callable
        (T, H, W, C) aligned frames -> (T, H, W, 2) float32 variational flows.

    Returns
    -------
    ndarray
        (T, H, W, 2) float32 flows.
    """
    n = frames.shape[0]
    hw = plan.shape[:2]
    wvec = plan.weight_vector if plan.weight_vector is not None else plan.weight_map
    comb = np.empty((n,) + hw + (2,), np.float32)
    aligned = np.empty_like(frames)
    for t in range(n):
        base = np.zeros(hw + (2,), np.float32)
        if init is not None:
            base = np.array(init[t] if init.ndim == 4 else init, np.float32)
        partial = warp_linear(frames[t], base, plan.reference)
        dx, dy = estimate_rigid_shift(
            plan.reference, partial, target_hw=params.cc_hw, upsample=params.cc_up, weight=wvec
        )
        comb[t] = base + np.array([dx, dy], np.float32)
        aligned[t] = warp_linear(frames[t], comb[t], plan.reference)
    res = solve(aligned)
    out = np.empty_like(res)
    cu = np.empty(hw, np.float32)
    cv = np.empty_like(cu)
    for t in range(n):
        _kwarp.bilinear_sample_flow(
            np.ascontiguousarray(comb[t, ..., 0]),
            np.ascontiguousarray(comb[t, ..., 1]),
            np.ascontiguousarray(res[t, ..., 0]),
            np.ascontiguousarray(res[t, ..., 1]),
            cu,
            cv,
        )
        out[t, ..., 0] = res[t, ..., 0] + cu
        out[t, ..., 1] = res[t, ..., 1] + cv
    return out
