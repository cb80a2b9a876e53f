"""Per-chunk work executed by the dask tasks (numpy in, numpy out; no dask here).

``preprocess_block`` normalises and smooths a chunk (with its temporal halo);
``register_block`` estimates the flows of a chunk (using its leading halo for the initial flow),
warps the raw frames and computes valid masks and per-frame statistics.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..core.params import FlowParams
from ..core.solver import FlowEstimator, make_estimator
from ..core.warp import cast_like, interpolation_order
from ..kernels.cpu import warp as _kwarp
from ..preprocess.filters import smooth_frames

STAT_NAMES = ("mean_disp", "max_disp", "mean_div", "mean_translation")
FIRST_CHUNK_INIT_FRAMES = 22
INIT_STRIDE = 4  # every 4th halo frame is enough for a mean initial flow
INIT_MIN_LEVEL = 4  # ... at no finer than the balanced preset's resolution


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


def initial_flow(
    ref_proc: np.ndarray,
    params: FlowParams,
    halo: np.ndarray,
    chunk: np.ndarray,
    update_init: bool,
) -> np.ndarray | None:
    """Initial flow of a chunk: the mean flow of its leading halo frames (the previous chunk's
    last frames) or, for the first chunk, of its own first frames; None when disabled.

    Only every ``INIT_STRIDE``-th of those frames is registered, at no finer than pyramid level
    ``INIT_MIN_LEVEL``: an initial flow only has to be close, and this keeps the cost of the
    chunk-independent initialisation to a few percent of the chunk's own work.
    """
    if not update_init:
        return None
    frames = halo if halo.shape[0] > 0 else chunk[:FIRST_CHUNK_INIT_FRAMES]
    if frames.shape[0] == 0:
        return None
    frames = frames[::-1][::INIT_STRIDE][::-1]
    coarse = dataclasses.replace(params, min_level=max(params.min_level, INIT_MIN_LEVEL))
    return FlowEstimator(ref_proc, coarse).flows(frames).mean(axis=0)


def warp_frames(
    raw: np.ndarray, flows: np.ndarray, fill: np.ndarray, interpolation: str, out_dtype
) -> tuple[np.ndarray, np.ndarray]:
    """Warp raw (T, H, W, C) frames by their flows; returns (corrected in ``out_dtype``, valid)."""
    order = interpolation_order(interpolation)
    t, h, w, nc = raw.shape
    out = np.empty(raw.shape, dtype=out_dtype)
    valid = np.empty((t, h, w), np.uint8)
    tmp = np.empty((h, w, nc), np.float32)
    fill = np.ascontiguousarray(fill, dtype=np.float32)
    for k in range(t):
        _kwarp.warp_image(
            np.ascontiguousarray(raw[k], dtype=np.float32),
            np.ascontiguousarray(flows[k, ..., 0]),
            np.ascontiguousarray(flows[k, ..., 1]),
            fill,
            tmp,
            order,
            valid[k],
        )
        out[k] = cast_like(tmp, out_dtype)
    return out, valid.astype(bool)


def register_block(
    proc: np.ndarray,
    raw: np.ndarray,
    *,
    ref_proc: np.ndarray,
    ref_raw: np.ndarray,
    params: FlowParams,
    interpolation: str,
    out_dtype,
    update_init: bool = True,
    backend: str = "numba",
    backend_params: dict | None = None,
) -> dict[str, np.ndarray]:
    """Register one chunk.

    Parameters
    ----------
    proc : ndarray
        Pre-processed frames (L + T, H, W, C) float32: an optional leading halo of L frames (the
        previous chunk's last frames) followed by the chunk's T frames.
    raw : ndarray
        The chunk's raw frames (T, H, W, C).
    ref_proc, ref_raw : ndarray
        Pre-processed and raw reference (H, W, C).
    backend, backend_params
        Flow backend of the chunk's frames (:func:`flowreg_dask.core.solver.make_estimator`:
        ``"numba"``, ``"cupy"`` or ``"numpy"``); the coarse initial flow stays on numba.

    Returns
    -------
    dict
        ``corrected`` (T, H, W, C) ``out_dtype``, ``flow`` (T, H, W, 2) float32, ``valid``
        (T, H, W) bool and the per-frame statistics (T,) float64.
    """
    n = raw.shape[0]
    halo = proc[: proc.shape[0] - n]
    chunk = proc[proc.shape[0] - n :]
    init = initial_flow(ref_proc, params, halo, chunk, update_init)
    estimator = make_estimator(ref_proc, params, backend, **(backend_params or {}))
    flows = estimator.flows(chunk, init)
    corrected, valid = warp_frames(raw, flows, ref_raw, interpolation, out_dtype)
    out = {"corrected": corrected, "flow": flows, "valid": valid}
    out.update(frame_statistics(flows))
    return out
