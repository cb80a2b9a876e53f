"""Per-span work executed by the dask tasks (numpy in, numpy out; no dask here).

A *span* is a run of consecutive frames of the recording (a time chunk) together with the halo
frames around it that the chunk's results depend on. :func:`register_span` turns the raw frames
of a span into corrected frames, flows, valid masks and per-frame statistics. Every result of
frame ``t`` depends only on the recording, the options and ``t`` itself, never on where the span
starts or ends, so any chunking of the recording gives the same output:

* the pre-filter sees ``temporal_depth`` true neighbouring frames on each side (reflection only at
  the recording's ends);
* the initial flow of frame ``t`` (``update_initialization_w``) is the mean of the coarse flows of
  the frames ``s`` with ``s % INIT_STRIDE == 0`` and ``t - INIT_WINDOW <= s < t``: a rule in
  absolute frame positions (frame 0 starts from zero flow).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._constants import STAT_NAMES
from ..core.custom import CallableEstimator
from ..core.params import FlowParams
from ..core.solver import FlowEstimator, make_estimator
from ..core.warp import interpolation_order, warp_stack
from ..kernels.cpu import warp as _kwarp
from ..kernels.cpu.resample import resize
from ..preprocess.filters import smooth_frames

INIT_WINDOW = 20  # frames before t whose coarse flows initialise frame t
INIT_STRIDE = 4  # ... of which those at absolute positions s % INIT_STRIDE == 0 take part
INIT_SIZE = 32  # coarse flows are estimated on frames shrunk to at most this many pixels
INIT_MIN_SIZE = 16  # ... but never below this on the shorter side
_SUB_BATCH = 32  # frames per call of a batched (GPU) backend


def init_halo(update_init: bool) -> int:
    """Frames before a span that its initial flows need (0 when initialisation is off)."""
    return INIT_WINDOW if update_init else 0


def init_positions(t: int) -> range:
    """Absolute frame positions whose coarse flows are averaged into the initial flow of ``t``."""
    first = max(0, t - INIT_WINDOW)
    first += -first % INIT_STRIDE
    return range(first, t, INIT_STRIDE)


def preprocess_block(
    block: np.ndarray, *, vmin: np.ndarray, vmax: np.ndarray, sigma, temporal: bool = True
) -> np.ndarray:
    """Normalise (T, H, W, C) raw frames with the reference range, then Gaussian-filter them."""
    return smooth_frames(block, sigma, temporal=temporal, vmin=vmin, vmax=vmax)


def frame_statistics(flow: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame statistics of (T, H, W, 2) flows: mean/max displacement, mean divergence and
    the magnitude of the mean displacement (translation)."""
    out = np.empty((flow.shape[0], 4), np.float64)
    for t in range(flow.shape[0]):
        _kwarp.flow_statistics(
            np.ascontiguousarray(flow[t, ..., 0]), np.ascontiguousarray(flow[t, ..., 1]), out[t]
        )
    return {name: out[:, k].copy() for k, name in enumerate(STAT_NAMES)}


def degenerate_frames(raw: np.ndarray) -> np.ndarray:
    """(T,) bool: frames without any intensity variation (constant, e.g. all zero).

    Such a frame carries no information about motion; it gets zero flow instead of whatever the
    data term makes of a reference with structure against a flat image.
    """
    flat = raw.reshape(raw.shape[0], -1)
    return flat.min(axis=1) == flat.max(axis=1)


def _init_shape(height: int, width: int) -> tuple[int, int]:
    scale = min(1.0, INIT_SIZE / max(height, width))
    scale = max(scale, min(1.0, INIT_MIN_SIZE / min(height, width)))
    return max(1, round(height * scale)), max(1, round(width * scale))


class InitialFlows:
    """Initial flows of frames from the coarse flows of the frames before them.

    The coarse flow of a frame is estimated on the frame and the reference shrunk to at most
    ``INIT_SIZE`` px (its own coarse-to-fine pyramid, same parameters, no rigid pre-alignment),
    in full-resolution pixels. An initial flow only has to bring the coarsest pyramid level of
    the real solve close to the answer, so this costs a few percent of the solve.

    Parameters
    ----------
    ref_proc : ndarray
        (H, W, C) pre-processed reference.
    params : FlowParams
        Parameters of the registration.
    """

    def __init__(self, ref_proc: np.ndarray, params: FlowParams) -> None:
        h, w, _ = ref_proc.shape
        self.shape = (h, w)
        self.small = _init_shape(h, w)
        coarse = dataclasses.replace(
            params, min_level=0, cc_initialization=False, gnc_schedule=None
        )
        if params.weight is not None and np.ndim(params.weight) >= 2:
            wmap = np.asarray(params.weight, np.float32)
            wmap = wmap[:, :, None] if wmap.ndim == 2 else wmap
            coarse = dataclasses.replace(coarse, weight=resize(wmap, *self.small))
        self._est = FlowEstimator(resize(np.asarray(ref_proc, np.float32), *self.small), coarse)
        self._scale = np.array([w / self.small[1], h / self.small[0]], np.float32)

    def coarse_flow(self, frame_proc: np.ndarray) -> np.ndarray:
        """(h, w, 2) coarse flow of one pre-processed (H, W, C) frame, full-resolution pixels."""
        small = resize(np.ascontiguousarray(frame_proc, np.float32), *self.small)
        return self._est.flow(small) * self._scale

    def upsample(self, coarse: np.ndarray) -> np.ndarray:
        """(H, W, 2) full-resolution initial flow from an (h, w, 2) coarse one."""
        return resize(np.ascontiguousarray(coarse), *self.shape, antialias=False)


def _init_groups(start: int, stop: int) -> list[tuple[int, int]]:
    """Runs [a, b) of frames in [start, stop) that share their initial flow."""
    groups, a = [], start
    while a < stop:
        b = a + 1
        while b < stop and init_positions(b) == init_positions(a):
            b += 1
        groups.append((a, b))
        a = b
    return groups


def span_flows(
    proc: np.ndarray,
    *,
    start: int,
    ref_proc: np.ndarray,
    params: FlowParams,
    update_init: bool,
    halo: Mapping[int, np.ndarray | None] | None = None,
    skip: np.ndarray | None = None,
    backend: str = "numba",
    backend_params: dict | None = None,
    flow_fn: Any = None,
    flow_kwargs: Mapping | None = None,
) -> np.ndarray:
    """Flows of frames ``start .. start + len(proc)`` of the recording.

    Parameters
    ----------
    proc : ndarray
        (T, H, W, C) pre-processed frames ``start .. start + T``.
    start : int
        Absolute index of ``proc[0]``.
    ref_proc : ndarray
        (H, W, C) pre-processed reference.
    update_init : bool
        Initialise each frame from the coarse flows of the frames before it (the rule in the
        module docstring); False: every frame starts from zero flow.
    halo : mapping of int to ndarray or None, optional
        The pre-processed frames before ``start`` that the initial flows need
        (:func:`init_positions`), by absolute index; None for a degenerate frame.
    skip : ndarray of bool, optional
        (T,) degenerate frames: zero flow, never solved, zero coarse flow.
    backend, backend_params
        Flow backend of the registration (:func:`flowreg_dask.core.solver.make_estimator`); the
        coarse initial flows are always estimated with numba.
    flow_fn, flow_kwargs
        A user's flow function instead of the backend (:class:`~flowreg_dask.core.custom.
        CallableEstimator`), with the options' flow keyword arguments.

    Returns
    -------
    ndarray
        (T, H, W, 2) float32 flows.
    """
    n = proc.shape[0]
    stop = start + n
    skip = np.zeros(n, bool) if skip is None else np.asarray(skip, bool)
    if flow_fn is not None:
        estimator = CallableEstimator(ref_proc, flow_fn, flow_kwargs or {})
        backend = "numba"  # frame by frame
    else:
        estimator = make_estimator(ref_proc, params, backend, **(backend_params or {}))
    flows = np.zeros(proc.shape[:3] + (2,), np.float32)
    if not update_init:
        rows = np.flatnonzero(~skip)
        if rows.size:
            flows[rows] = estimator.flows(proc[rows])
        return flows
    init = InitialFlows(ref_proc, params)
    halo = dict(halo or {})

    @functools.cache
    def coarse(s: int) -> np.ndarray:
        frame = halo[s] if s < start else (None if skip[s - start] else proc[s - start])
        if frame is None:
            return np.zeros(init.small + (2,), np.float32)
        return init.coarse_flow(frame)

    def guess(t: int) -> np.ndarray | None:
        positions = init_positions(t)
        if not positions:
            return None
        return init.upsample(np.mean([coarse(s) for s in positions], axis=0))

    # numba solves frame by frame: one call per run of frames sharing an initial flow; the
    # batched backends get batches of frames with one initial flow each
    batch = 1 if backend == "numba" else _SUB_BATCH
    pending: list[tuple[list[int], np.ndarray | None]] = []

    def flush() -> None:
        if not pending:
            return
        rows = np.asarray([t for ts, _ in pending for t in ts]) - start
        if batch == 1:  # one run of frames sharing one initial flow (or none)
            flows[rows] = estimator.flows(proc[rows], pending[0][1])
        else:
            hw2 = proc.shape[1:3] + (2,)
            stacked = np.stack(
                [np.zeros(hw2, np.float32) if g is None else g for ts, g in pending for _ in ts]
            )
            flows[rows] = estimator.flows(proc[rows], stacked)
        pending.clear()

    for a, b in _init_groups(start, stop):
        todo = [t for t in range(a, b) if not skip[t - start]]
        if todo:
            pending.append((todo, guess(a)))
        if sum(len(ts) for ts, _ in pending) >= batch:
            flush()
    flush()
    return flows


def warp_frames(
    raw: np.ndarray, flows: np.ndarray, fill: np.ndarray, interpolation: str, out_dtype
) -> tuple[np.ndarray, np.ndarray]:
    """Warp raw (T, H, W, C) frames by their flows; returns (corrected in ``out_dtype``, valid)."""
    return warp_stack(
        raw, flows, fill, order=interpolation_order(interpolation), out_dtype=out_dtype
    )


def _preprocessed_raw(fn: Any, raw: np.ndarray) -> np.ndarray:
    out = np.asarray(fn(raw))
    if out.shape != raw.shape:
        from ..errors import InvalidInputError

        raise InvalidInputError(
            f"preproc_funct: {fn!r} turned frames of shape {raw.shape} into {out.shape}; it must "
            "keep the shape (T, H, W, C) and work frame by frame"
        )
    return out


def _finite(raw: np.ndarray, first: int, ref_raw: np.ndarray, policy: str) -> np.ndarray:
    """``raw`` with its NaN/Inf handled by ``policy`` (float frames only)."""
    if raw.dtype.kind != "f":
        return raw
    bad = ~np.isfinite(raw)
    if not bad.any():
        return raw
    if policy != "reference":
        from ..errors import InvalidInputError
        from .checks import format_frames

        frames = first + np.flatnonzero(bad.reshape(raw.shape[0], -1).any(axis=1))
        raise InvalidInputError(
            f"recording: frames {format_frames(frames)} hold NaN or Inf values; replace them, or "
            "pass nonfinite='reference' to fill them from the reference"
        )
    return np.where(bad, np.broadcast_to(ref_raw, raw.shape), raw)


def register_span(
    raw: np.ndarray,
    *,
    first: int,
    start: int,
    stop: int,
    n_frames: int,
    depth_t: int,
    vmin: np.ndarray,
    vmax: np.ndarray,
    sigma,
    ref_proc: np.ndarray,
    ref_raw: np.ndarray,
    params: FlowParams,
    interpolation: str,
    out_dtype,
    update_init: bool = True,
    backend: str = "numba",
    backend_params: dict | None = None,
    nonfinite: str = "error",
    flow_fn: Any = None,
    flow_kwargs: Mapping | None = None,
    preproc: Any = None,
) -> dict[str, np.ndarray]:
    """Register frames ``start .. stop`` of a recording of ``n_frames`` frames.

    Parameters
    ----------
    raw : ndarray
        Raw frames ``first .. first + len(raw)`` (T', H, W, C): the frames to register with the
        halos they need, at least ``init_halo(update_init) + depth_t`` frames before ``start``
        and ``depth_t`` after ``stop - 1`` (fewer only at the recording's ends).
    first, start, stop : int
        Absolute index of ``raw[0]``, first frame to register, one past the last.
    n_frames : int
        Length of the recording (its ends are where the temporal filter reflects).
    depth_t : int
        Radius of the temporal pre-filter in frames (0: spatial filtering only).
    vmin, vmax, sigma
        Normalisation range (the raw reference's) and Gaussian sigmas of the pre-filter.
    ref_proc, ref_raw : ndarray
        Pre-processed and raw reference (H, W, C).
    params, interpolation, out_dtype, update_init, backend, backend_params
        As in the options: flow parameters, final warp, output dtype, initial flows, backend.
    nonfinite : {"error", "reference"}
        NaN/Inf in float frames: raise :class:`~flowreg_dask.errors.InvalidInputError` naming
        the frames, or replace those pixels by the raw reference's.
    flow_fn, flow_kwargs
        A user's flow function (see :func:`span_flows`).
    preproc : callable, optional
        Applied to the raw frames (T', H, W, C) first; the corrected frames are warped from its
        result (``OFOptions.preproc_funct``).

    Returns
    -------
    dict
        ``corrected`` (T, H, W, C) ``out_dtype``, ``flow`` (T, H, W, 2) float32, ``valid``
        (T, H, W) bool and the per-frame statistics (T,) float64, for the T = stop - start frames.
    """
    last = first + raw.shape[0]
    lo = max(0, start - init_halo(update_init))
    need_lo = max(0, lo - depth_t)
    need_hi = min(n_frames, stop + depth_t)
    if first > need_lo or last < need_hi:
        raise ValueError(
            f"register_span: frames {first}..{last - 1} given, {need_lo}..{need_hi - 1} needed"
        )
    if preproc is not None:
        raw = _preprocessed_raw(preproc, raw)
    raw = _finite(raw, first, ref_raw, nonfinite)
    pre = functools.partial(preprocess_block, vmin=vmin, vmax=vmax, sigma=sigma)
    # the temporal filter is exact for every frame that has depth_t true neighbours in what it
    # is given, or that sits at the recording's ends
    a = max(0, start - depth_t)
    proc = pre(raw[a - first : need_hi - first], temporal=depth_t > 0)[start - a : stop - a]
    core = raw[start - first : stop - first]
    halo: dict[int, np.ndarray | None] = {}
    wanted = list(init_positions(start)) if update_init else []  # all halo frames any t uses
    if wanted:
        if depth_t == 0:
            picked = raw[np.asarray(wanted) - first]
            smoothed = pre(picked, temporal=False)
        else:  # the halo frames with their temporal neighbours
            b = min(n_frames, wanted[-1] + 1 + depth_t)
            smoothed = pre(raw[need_lo - first : b - first])[np.asarray(wanted) - need_lo]
            picked = raw[np.asarray(wanted) - first]
        flat = degenerate_frames(picked)
        halo = {
            s: (None if f else smoothed[k])
            for k, (s, f) in enumerate(zip(wanted, flat, strict=True))
        }
    flows = span_flows(
        proc,
        start=start,
        ref_proc=ref_proc,
        params=params,
        update_init=update_init,
        halo=halo,
        skip=degenerate_frames(core),
        backend=backend,
        backend_params=backend_params,
        flow_fn=flow_fn,
        flow_kwargs=flow_kwargs,
    )
    corrected, valid = warp_frames(core, flows, ref_raw, interpolation, out_dtype)
    out = {"corrected": corrected, "flow": flows, "valid": valid}
    out.update(frame_statistics(flows))
    return out
