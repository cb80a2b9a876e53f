"""Gaussian pre-filtering per channel (method spec §1.2), exact across chunk borders.

The spatio-temporal filter of a chunk needs ``temporal_depth(sigma)`` neighbouring frames on each
side; the pipeline supplies them as a ``map_overlap`` halo, so results do not depend on the chunk
size (the reference implementation filters each batch alone).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from ..errors import InvalidOptionError

TRUNCATE = 4.0


def sigma_matrix(sigma, n_channels: int) -> np.ndarray:
    """(C, 3) sigma rows (rows, cols, time); missing rows repeat the last one."""
    s = np.atleast_2d(np.asarray(sigma, dtype=np.float64))
    if s.ndim != 2 or s.shape[1] != 3:
        raise InvalidOptionError(
            f"sigma: expected 3 values (s_rows, s_cols, s_t) or one row of 3 per channel, got "
            f"shape {np.shape(sigma)}"
        )
    if np.any(s < 0) or not np.all(np.isfinite(s)):
        raise InvalidOptionError(f"sigma: values must be finite and >= 0, got {s.tolist()}")
    rows = [s[min(c, s.shape[0] - 1)] for c in range(n_channels)]
    return np.array(rows)


def temporal_radius(sigma_t: float, truncate: float = TRUNCATE) -> int:
    """Radius in frames of scipy's temporal Gaussian kernel (0 = no temporal filtering)."""
    return int(truncate * float(sigma_t) + 0.5)


def temporal_depth(sigma, n_channels: int) -> int:
    """Frames of halo a chunk needs on each side for an exact spatio-temporal filter."""
    return max(temporal_radius(row[2]) for row in sigma_matrix(sigma, n_channels))


def smooth_frames(frames: np.ndarray, sigma, *, temporal: bool = True) -> np.ndarray:
    """Gaussian filter each channel of (T, H, W, C) float32 frames over (t, y, x).

    Boundary: scipy ``reflect``, truncate 4 sigma. With ``temporal=False`` only (y, x) is filtered.
    """
    frames = np.asarray(frames, dtype=np.float32)
    sig = sigma_matrix(sigma, frames.shape[-1])
    out = np.empty_like(frames)
    for c in range(frames.shape[-1]):
        s_rows, s_cols, s_t = sig[c]
        st = s_t if (temporal and temporal_radius(s_t) > 0) else 0.0
        out[..., c] = gaussian_filter(
            frames[..., c], (st, s_rows, s_cols), mode="reflect", truncate=TRUNCATE
        )
    return out


def smooth_image(image: np.ndarray, sigma) -> np.ndarray:
    """Spatial Gaussian filter of an (H, W, C) image per channel (the reference)."""
    image = np.asarray(image, dtype=np.float32)
    return smooth_frames(image[None], sigma, temporal=False)[0]
