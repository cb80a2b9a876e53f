"""Reference image from pre-registered frames (method spec §2.2), numpy level.

The frames are smoothed more strongly (sigma + [1, 1, 0.5]), normalised, registered to their own
temporal mean with a stiffer regulariser (alpha + 2), and the reference is the mean of the *raw*
frames warped by those flows. Unlike the reference implementation the frames are filtered once
(no second normalisation and filtering pass) and averaged in float (no integer truncation).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..preprocess.filters import sigma_matrix, smooth_frames
from ..preprocess.normalize import intensity_range, normalize
from .params import FlowParams
from .warp import warp

PREREG_EXTRA_SIGMA = np.array([1.0, 1.0, 0.5])
PREREG_EXTRA_ALPHA = 2.0


def prereg_frames(
    frames: np.ndarray, *, sigma, channel_normalization: str = "joint"
) -> tuple[np.ndarray, np.ndarray]:
    """Smooth (sigma + [1, 1, 0.5]) and normalise (T, H, W, C) frames for pre-registration.

    Returns the processed frames (T, H, W, C) float32 and their temporal mean (H, W, C).
    """
    frames = np.asarray(frames, dtype=np.float32)
    sig = sigma_matrix(sigma, frames.shape[-1]) + PREREG_EXTRA_SIGMA
    smooth = smooth_frames(frames, sig)
    lo, hi = intensity_range(smooth, mode=channel_normalization)
    proc = normalize(smooth, vmin=lo, vmax=hi)
    return proc, proc.mean(axis=0)


def prereg_params(params: FlowParams) -> FlowParams:
    """Parameters of the pre-registration: alpha + 2, no rigid pre-alignment, no GNC."""
    return dataclasses.replace(
        params,
        alpha=(params.alpha[0] + PREREG_EXTRA_ALPHA, params.alpha[1] + PREREG_EXTRA_ALPHA),
        cc_initialization=False,
        gnc_schedule=None,
    )


def mean_of_warped(frames: np.ndarray, flows: np.ndarray, *, interpolation: str = "cubic"):
    """Mean (H, W, C) float32 of raw frames warped by their flows (fill: the raw mean)."""
    frames = np.asarray(frames, dtype=np.float32)
    fill = frames.mean(axis=0)
    return warp(frames, flows, fill=fill, interpolation=interpolation).mean(axis=0)
