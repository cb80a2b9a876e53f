"""Image-based quality measures of a registration (no ground truth needed).

* Correlation of each frame with the reference (NoRMCorre ``motion_metrics.m``, CaImAn
  ``compute_metrics_motion_correction``): Pearson r per frame, border cropped.
* Crispness of the mean image (same sources): the Frobenius norm of the gradient magnitude.
* The performance factors of Flow-Registration (Flotho et al. 2022, Fig. 2; ``get_metrics.m``):
  frames are low-passed with a Gaussian of sigma (3, 3, ~0) (rows, columns, time; MATLAB
  ``imgaussfilt3`` conventions: kernel radius ``ceil(2 sigma)``, replicated borders); the *MSE
  factor* is the mean squared error of the low-passed raw frames against the low-passed reference
  divided by that of the corrected frames, and the *STD factor* the mean over pixels of the
  temporal standard deviation of the low-passed raw frames divided by that of the corrected frames.
  Both crop ``border`` = 25 px and leave the reference frames out. Values > 1 mean the correction
  helped.

All functions take frames in ``(t, y, x, c)`` order (``(t, y, x)`` = one channel) as numpy arrays,
dask arrays or xarray DataArrays. With numpy input the result is computed and returned as numpy /
float; with dask input it is a lazy dask array (compute it, or hand several of them to one
``dask.compute``). :func:`flowreg_dask.metrics.compute_metrics` evaluates all of them in one pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
from scipy.ndimage import gaussian_filter

from ..errors import InvalidInputError
from ._arrays import as_image, as_movie, check_border, check_reference, check_same_shape, crop
from ._arrays import is_lazy as _is_lazy

__all__ = [
    "correlation_with_reference",
    "crispness",
    "lowpass",
    "mse",
    "mse_factor",
    "temporal_std",
    "std_factor",
]

#: Low-pass of the performance factors (rows, columns, time), as in Flow-Registration.
FACTOR_SIGMA = (3.0, 3.0, 0.0)
#: Border (px) cropped by the performance factors.
FACTOR_BORDER = 25
#: Temporal sigmas below this are treated as "no temporal filter" (the original uses 1e-4).
_MIN_SIGMA_T = 1e-2


def _finish(value: Any, lazy: bool) -> Any:
    if lazy:
        return value
    (out,) = dask.compute(value, scheduler="threads")
    out = np.asarray(out)
    return float(out) if out.ndim == 0 else out


# ------------------------------------------------------------------------------- correlation
def _corr_block(block: np.ndarray, ref: np.ndarray, border: int) -> np.ndarray:
    f = crop(block, border).astype(np.float64)
    f = f - f.mean(axis=(1, 2), keepdims=True)
    num = np.einsum("tyxc,yxc->tc", f, ref)
    den = np.sqrt((f * f).sum(axis=(1, 2)) * (ref * ref).sum(axis=(0, 1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def correlation_lazy(movie: da.Array, ref: np.ndarray, border: int) -> da.Array:
    """Per-frame, per-channel Pearson r ``(t, c)`` of a (t, y, x, c) dask movie (lazy)."""
    r = crop(ref, border)
    r = r - r.mean(axis=(0, 1))
    return movie.map_blocks(
        _corr_block,
        ref=r,
        border=border,
        drop_axis=(1, 2),
        chunks=(movie.chunks[0], movie.chunks[3]),
        dtype=np.float64,
        meta=np.empty((0, 0), np.float64),
    )


def correlation_with_reference(
    frames: Any, reference: Any, *, border: int = 10, per_channel: bool = False
) -> Any:
    """Pearson correlation coefficient of each frame with the reference.

    Parameters
    ----------
    frames : array (t, y, x, c) or (t, y, x)
        Raw or corrected frames (numpy, dask or xarray).
    reference : array (y, x, c) or (y, x)
        Template, e.g. the pipeline's ``reference`` or the mean image.
    border : int
        Pixels cropped on every side of the frames and the reference before correlating.
    per_channel : bool
        Return ``(t, c)`` coefficients instead of their mean over the channels ``(t,)``.

    Returns
    -------
    ndarray or dask array
        ``(t,)`` (or ``(t, c)``) float64 in [-1, 1]; NaN for a constant frame.

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.arange(16.0).reshape(4, 4)
    >>> correlation_with_reference(np.stack([ref, -ref]), ref, border=0)
    array([ 1., -1.])
    """
    lazy = _is_lazy(frames, reference)
    movie = as_movie(frames, "frames")
    ref = check_reference(as_image(reference, "reference"), movie)
    border = check_border(border, movie.shape)
    r = correlation_lazy(movie, ref, border)
    if not per_channel:
        r = r.mean(axis=1)
    return _finish(r, lazy)


# --------------------------------------------------------------------------------- crispness
def crispness(mean_image: Any, *, border: int = 0) -> float:
    """Crispness of a mean image: the Frobenius norm of its gradient magnitude.

    ``sqrt(sum over pixels and channels of |grad I|^2)`` with central differences
    (``numpy.gradient``, one-sided at the image edges), after cropping ``border`` pixels from the
    gradient image. A sharper mean image (better registration) has a larger crispness; compare
    values of images with the same intensity scale and size only.

    Parameters
    ----------
    mean_image : array (y, x, c) or (y, x)
        Usually the temporal mean of the raw or corrected frames.
    border : int
        Pixels cropped on every side.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> crispness(np.tile(np.arange(4.0), (3, 1)))  # gradient 1 along x at all 12 pixels
    3.4641016151377544
    """
    img = as_image(mean_image, "mean_image")
    border = check_border(border, img.shape)
    gy = np.gradient(img, axis=0)
    gx = np.gradient(img, axis=1)
    mag2 = crop(gy * gy + gx * gx, border)
    return float(math.sqrt(float(mag2.sum())))


# ------------------------------------------------------------------------------------ low-pass
def _check_sigma(sigma: Sequence[float]) -> tuple[float, float, float]:
    try:
        s = tuple(float(v) for v in sigma)
    except TypeError:
        s = (float(sigma),) * 2 + (0.0,)
    if len(s) == 2:
        s = (*s, 0.0)
    if len(s) != 3 or any(not math.isfinite(v) or v < 0 for v in s):
        raise InvalidInputError(
            f"sigma: expected (s_rows, s_cols[, s_t]) finite values >= 0, got {sigma!r}"
        )
    return s  # type: ignore[return-value]


def _radius(s: float) -> int:
    return int(math.ceil(2.0 * s)) if s > 0 else 0


def _lowpass_block(block: np.ndarray, sigma: tuple[float, float, float]) -> np.ndarray:
    sy, sx, st = sigma
    st = st if st >= _MIN_SIGMA_T else 0.0
    sig = (st, sy, sx, 0.0)
    radius = tuple(max(_radius(s), 1) for s in sig)
    return gaussian_filter(block.astype(np.float64), sig, mode="nearest", radius=radius)


def lowpass_lazy(movie: da.Array, sigma: tuple[float, float, float]) -> da.Array:
    """Gaussian low-pass (rows, cols, time) of a (t, y, x, c) dask movie as float64 (lazy)."""
    st = sigma[2] if sigma[2] >= _MIN_SIGMA_T else 0.0
    depth = _radius(st)
    if depth == 0:
        return movie.map_blocks(_lowpass_block, sigma=sigma, dtype=np.float64)
    return movie.map_overlap(
        _lowpass_block,
        depth={0: depth, 1: 0, 2: 0, 3: 0},
        boundary="nearest",
        sigma=sigma,
        dtype=np.float64,
    )


def lowpass(frames: Any, *, sigma: Sequence[float] = FACTOR_SIGMA) -> Any:
    """Gaussian low-pass of frames as used by the performance factors.

    Parameters
    ----------
    frames : array (t, y, x, c) or (t, y, x)
    sigma : (s_rows, s_cols, s_t)
        Standard deviations in pixels / frames; ``s_t < 0.01`` means no temporal filter. Kernel
        radius ``ceil(2 sigma)`` and replicated borders, as MATLAB's ``imgaussfilt3``.

    Returns
    -------
    ndarray or dask array
        (t, y, x, c) float64.
    """
    lazy = _is_lazy(frames)
    movie = as_movie(frames, "frames")
    return _finish(lowpass_lazy(movie, _check_sigma(sigma)), lazy)


# ---------------------------------------------------------------------- performance factors
def frame_mask(n_frames: int, reference_frames: Any) -> np.ndarray:
    """Boolean (t,) mask of the frames that are evaluated (all but ``reference_frames``)."""
    keep = np.ones(n_frames, bool)
    if reference_frames is not None:
        idx = np.asarray(list(reference_frames), dtype=np.int64).ravel()
        idx = idx[(idx >= -n_frames) & (idx < n_frames)]
        keep[idx] = False
    if not keep.any():
        raise InvalidInputError(
            "reference_frames: every frame is a reference frame, none is left to evaluate"
        )
    return keep


def mse_lazy(lp: da.Array, lp_ref: Any, border: int, keep: np.ndarray) -> da.Array:
    """Per-frame MSE ``(t,)`` of low-passed frames against a low-passed reference; NaN where
    ``keep`` is False (lazy)."""
    diff = crop(lp, border) - crop(lp_ref, border)
    per_frame = (diff * diff).mean(axis=(1, 2, 3))
    if keep.all():
        return per_frame
    return da.where(da.from_array(keep, chunks=(lp.chunks[0],)), per_frame, np.nan)


def std_lazy(lp: da.Array, border: int, keep: np.ndarray) -> da.Array:
    """Mean over pixels of the temporal STD (ddof=1) of the kept low-passed frames (lazy 0-d)."""
    x = crop(lp, border)
    if not keep.all():
        x = x[np.flatnonzero(keep)]
    n = x.shape[0]
    if n < 2:
        return da.from_array(np.array(np.nan))
    s1 = x.sum(axis=0)
    s2 = (x * x).sum(axis=0)
    var = da.maximum(s2 - s1 * s1 / n, 0.0) / (n - 1)
    return da.sqrt(var).mean()


def _reference_lp(
    movie: da.Array, lp: da.Array, reference: Any, sigma, reference_frames: Any, name: str
) -> Any:
    if reference is not None:
        ref = check_reference(as_image(reference, name), movie)
        return _lowpass_block(ref[None], sigma)[0]
    if reference_frames is None:
        raise InvalidInputError(
            f"{name}: give a reference image, or reference_frames= to use the mean of those "
            "low-passed frames (as Flow-Registration's get_metrics.m does)"
        )
    idx = np.asarray(list(reference_frames), dtype=np.int64)
    return lp[idx].mean(axis=0)


def mse(
    frames: Any,
    reference: Any = None,
    *,
    sigma: Sequence[float] = FACTOR_SIGMA,
    border: int = FACTOR_BORDER,
    reference_frames: Any = None,
) -> Any:
    """Per-frame mean squared error of low-passed frames against the low-passed reference.

    Parameters
    ----------
    frames : array (t, y, x, c) or (t, y, x)
    reference : array (y, x, c), optional
        Reference image. ``None``: the mean of the low-passed ``reference_frames`` of ``frames``
        itself (Flow-Registration's ``get_metrics.m``).
    sigma, border
        Low-pass sigma (rows, cols, time) and the border cropped after filtering.
    reference_frames : sequence of int, optional
        Frames left out of the evaluation (NaN in the result).

    Returns
    -------
    ndarray or dask array
        (t,) float64, in squared intensity units.
    """
    lazy = _is_lazy(frames, reference)
    movie = as_movie(frames, "frames")
    border = check_border(border, movie.shape)
    sigma = _check_sigma(sigma)
    lp = lowpass_lazy(movie, sigma)
    lp_ref = _reference_lp(movie, lp, reference, sigma, reference_frames, "reference")
    keep = frame_mask(movie.shape[0], reference_frames)
    return _finish(mse_lazy(lp, lp_ref, border, keep), lazy)


def mse_factor(
    raw: Any,
    corrected: Any,
    reference: Any = None,
    *,
    sigma: Sequence[float] = FACTOR_SIGMA,
    border: int = FACTOR_BORDER,
    reference_frames: Any = None,
) -> Any:
    """MSE performance factor: ``mean MSE(raw) / mean MSE(corrected)`` (> 1: improvement).

    Parameters
    ----------
    raw, corrected : array (t, y, x, c) or (t, y, x)
        Frames before and after registration (same shape).
    reference : array (y, x, c), optional
        One reference for both (e.g. the pipeline's). ``None``: each movie is compared with the
        mean of its own low-passed ``reference_frames``, as in Flow-Registration's
        ``get_metrics.m``.
    sigma : (s_rows, s_cols, s_t)
        Low-pass applied to frames and reference, default (3, 3, 0).
    border : int
        Pixels cropped on each side after the low-pass, default 25.
    reference_frames : sequence of int, optional
        Frames left out of the average.

    Returns
    -------
    float or dask array (0-d)
    """
    lazy = _is_lazy(raw, corrected, reference)
    a = as_movie(raw, "raw")
    b = as_movie(corrected, "corrected")
    check_same_shape(a, b, ("raw", "corrected"))
    border = check_border(border, a.shape)
    sigma = _check_sigma(sigma)
    keep = frame_mask(a.shape[0], reference_frames)
    values = []
    for movie in (a, b):
        lp = lowpass_lazy(movie, sigma)
        lp_ref = _reference_lp(movie, lp, reference, sigma, reference_frames, "reference")
        values.append(da.nanmean(mse_lazy(lp, lp_ref, border, keep)))
    return _finish(values[0] / values[1], lazy)


def temporal_std(
    frames: Any,
    *,
    sigma: Sequence[float] = FACTOR_SIGMA,
    border: int = FACTOR_BORDER,
    reference_frames: Any = None,
) -> Any:
    """Mean over pixels of the temporal standard deviation (ddof=1) of low-passed frames.

    Parameters are those of :func:`mse`. Returns a float (or a 0-d dask array).
    """
    lazy = _is_lazy(frames)
    movie = as_movie(frames, "frames")
    border = check_border(border, movie.shape)
    lp = lowpass_lazy(movie, _check_sigma(sigma))
    keep = frame_mask(movie.shape[0], reference_frames)
    return _finish(std_lazy(lp, border, keep), lazy)


def std_factor(
    raw: Any,
    corrected: Any,
    reference: Any = None,
    *,
    sigma: Sequence[float] = FACTOR_SIGMA,
    border: int = FACTOR_BORDER,
    reference_frames: Any = None,
) -> Any:
    """STD performance factor: ``temporal_std(raw) / temporal_std(corrected)`` (> 1: improvement).

    Parameters are those of :func:`mse_factor`; ``reference`` is accepted for symmetry with it and
    not used (the temporal STD needs no reference). Note: the original ``get_metrics.m`` does not
    crop a border for the STD; here ``border`` applies to both factors, which keeps the fill
    values of out-of-view pixels of corrected frames out of the measure.

    Returns
    -------
    float or dask array (0-d)
    """
    del reference
    lazy = _is_lazy(raw, corrected)
    a = as_movie(raw, "raw")
    b = as_movie(corrected, "corrected")
    check_same_shape(a, b, ("raw", "corrected"))
    border = check_border(border, a.shape)
    sigma = _check_sigma(sigma)
    keep = frame_mask(a.shape[0], reference_frames)
    sa = std_lazy(lowpass_lazy(a, sigma), border, keep)
    sb = std_lazy(lowpass_lazy(b, sigma), border, keep)
    return _finish(sa / sb, lazy)
