"""Intensity normalisation against the reference's range (method spec §1.2)."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidOptionError

EPS = 1e-8


def intensity_range(image: np.ndarray, *, mode: str = "joint") -> tuple[np.ndarray, np.ndarray]:
    """(min, max) of ``image`` (..., C) as (C,) float64 vectors, jointly or per channel.

    Parameters
    ----------
    image : ndarray
        (H, W, C) or (T, H, W, C) array; the last axis is the channel axis.
    mode : {"joint", "separate"}
        One range for all channels, or one per channel.
    """
    mode = str(getattr(mode, "value", mode)).lower()
    image = np.asarray(image)
    n_channels = image.shape[-1]
    if mode in ("joint", "together"):
        lo = np.full(n_channels, float(np.min(image)))
        hi = np.full(n_channels, float(np.max(image)))
    elif mode == "separate":
        flat = image.reshape(-1, n_channels)
        lo = flat.min(axis=0).astype(np.float64)
        hi = flat.max(axis=0).astype(np.float64)
    else:
        raise InvalidOptionError(
            f"channel_normalization: expected 'joint' or 'separate', got {mode!r}"
        )
    return lo, hi


def normalize(frames: np.ndarray, *, vmin: np.ndarray, vmax: np.ndarray) -> np.ndarray:
    """``(frames - vmin) / (vmax - vmin + 1e-8)`` per channel, as float32.

    ``frames`` is (..., C); ``vmin``/``vmax`` are (C,) (or scalars). Values outside the range
    map outside [0, 1] (the range is the reference's, not the frames' own).
    """
    lo = np.asarray(vmin, dtype=np.float32)
    scale = np.float32(1.0) / (np.asarray(vmax, dtype=np.float32) - lo + np.float32(EPS))
    out = np.asarray(frames, dtype=np.float32) - lo
    out *= scale
    return out
