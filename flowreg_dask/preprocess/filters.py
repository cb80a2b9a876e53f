"""Gaussian pre-filtering per channel (method spec §1.2), exact across chunk borders.

The spatio-temporal filter of a chunk needs ``temporal_depth(sigma)`` neighbouring frames on each
side; the pipeline supplies them as a ``map_overlap`` halo, so results do not depend on the chunk
size (the reference implementation filters each batch alone).
"""

from __future__ import annotations

import functools

import numpy as np

from ..errors import InvalidOptionError
from ..kernels.cpu import gaussian as _g
from .normalize import EPS

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


@functools.lru_cache(maxsize=64)
def gaussian_weights(sigma: float, truncate: float = TRUNCATE) -> np.ndarray:
    """Normalised 1-D Gaussian taps of scipy's ``gaussian_filter`` (radius int(4 sigma + 0.5))."""
    radius = int(truncate * float(sigma) + 0.5)
    if sigma <= 0 or radius == 0:
        w = np.ones(1, np.float32)
    else:
        x = np.arange(-radius, radius + 1, dtype=np.float64)
        phi = np.exp(-0.5 / float(sigma) ** 2 * x**2)
        w = (phi / phi.sum()).astype(np.float32)
    w.flags.writeable = False
    return w


def smooth_frames(
    frames: np.ndarray,
    sigma,
    *,
    temporal: bool = True,
    vmin: np.ndarray | None = None,
    vmax: np.ndarray | None = None,
) -> np.ndarray:
    """Gaussian filter each channel of (T, H, W, C) frames over (t, y, x) -> float32.

    Boundary: scipy ``reflect``, truncate 4 sigma (the taps of ``scipy.ndimage.gaussian_filter``).
    With ``temporal=False`` only (y, x) is filtered. With ``vmin``/``vmax`` (C,) the result is
    normalised as by :func:`~flowreg_dask.preprocess.normalize.normalize`; the scaling is fused
    into the first filter pass (the taps sum to one, so it commutes with the filter) and raw
    integer frames are read only once. Both spatial passes run frame by frame
    (:func:`~flowreg_dask.kernels.cpu.gaussian.filter_frames`); a temporal pass follows.
    """
    frames = np.asarray(frames)
    t_n, h, w, n_channels = frames.shape
    sig = sigma_matrix(sigma, n_channels)
    if vmin is None:
        lo = np.zeros(n_channels, np.float32)
        scale = np.ones(n_channels, np.float32)
    else:
        lo = np.broadcast_to(np.asarray(vmin, np.float32), (n_channels,))
        hi = np.broadcast_to(np.asarray(vmax, np.float32), (n_channels,))
        scale = np.float32(1.0) / (hi - lo + np.float32(EPS))
    src = np.ascontiguousarray(frames)
    out = np.empty((t_n, h, w, n_channels), np.float32)
    plane, tmp = np.empty((h, w), np.float32), np.empty((h, w), np.float32)
    spatial = None
    for c in range(n_channels):
        s_rows, s_cols, s_t = sig[c]
        lo_c, scale_c = np.float32(lo[c]), np.float32(scale[c])
        w_rows, w_cols = gaussian_weights(s_rows), gaussian_weights(s_cols)
        if temporal and temporal_radius(s_t) > 0:
            if spatial is None:
                spatial = np.empty((t_n, h, w, 1), np.float32)
            _g.filter_frames(src, c, lo_c, scale_c, w_rows, w_cols, spatial, 0, plane, tmp)
            _g.filter_time(spatial[..., 0], gaussian_weights(s_t), out[..., c])
        else:
            _g.filter_frames(src, c, lo_c, scale_c, w_rows, w_cols, out, c, plane, tmp)
    return out


def smooth_image(image: np.ndarray, sigma) -> np.ndarray:
    """Spatial Gaussian filter of an (H, W, C) image per channel (the reference)."""
    image = np.asarray(image, dtype=np.float32)
    return smooth_frames(image[None], sigma, temporal=False)[0]
