"""Flow-based measures: displacement statistics, endpoint error, residual motion.

Flow fields are ``(t, y, x, 2)`` with ``(u, v)`` = (horizontal, vertical) displacement in pixels
on the last axis (one ``(y, x, 2)`` frame is read as ``t = 1``); DataArrays with a ``component``
dim (``flow`` of :func:`flowreg_dask.register` / :func:`flowreg_dask.open_result`) are transposed to
that order. numpy in, numpy out; dask in, lazy dask out.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np

from ..errors import InvalidInputError
from ._arrays import as_flow, as_image, as_movie, check_border, check_reference, crop
from ._arrays import is_lazy as _is_lazy
from .quality import _finish

__all__ = ["displacement_stats", "endpoint_error", "residual_motion", "STAT_NAMES"]

#: Names of the per-frame statistics of :func:`displacement_stats` (those the pipeline stores).
from .._constants import STAT_NAMES


# ------------------------------------------------------------------------ displacement stats
def _stats_block(block: np.ndarray, border: int) -> np.ndarray:
    u = block[..., 0].astype(np.float64)
    v = block[..., 1].astype(np.float64)
    div = np.gradient(u, axis=2) + np.gradient(v, axis=1)
    if border:
        u, v, div = (a[:, border:-border, border:-border] for a in (u, v, div))
    mag = np.sqrt(u * u + v * v)
    return np.stack(
        [
            mag.mean(axis=(1, 2)),
            mag.max(axis=(1, 2)),
            div.mean(axis=(1, 2)),
            np.hypot(u.mean(axis=(1, 2)), v.mean(axis=(1, 2))),
        ],
        axis=1,
    )


def stats_lazy(flow: da.Array, border: int) -> da.Array:
    """``(t, 4)`` statistics (in :data:`STAT_NAMES` order) of a (t, y, x, 2) dask flow (lazy)."""
    return flow.map_blocks(
        _stats_block,
        border=border,
        drop_axis=(1, 2),
        chunks=(flow.chunks[0], (len(STAT_NAMES),)),
        dtype=np.float64,
        meta=np.empty((0, 0), np.float64),
    )


def displacement_stats(flow: Any, *, border: int = 0) -> dict[str, Any]:
    """Per-frame statistics of displacement fields.

    Parameters
    ----------
    flow : array (t, y, x, 2) or (y, x, 2)
        ``(u, v)`` in pixels.
    border : int
        Pixels cropped on every side (0 = whole frame, the definition of the pipeline's stored
        statistics; the divergence is computed before cropping).

    Returns
    -------
    dict
        ``mean_disp`` (mean of ``|w|``), ``max_disp`` (max of ``|w|``), ``mean_div`` (mean of
        ``du/dx + dv/dy``, central differences), ``mean_translation`` (``|mean w|``, the rigid
        part): each ``(t,)`` float64 (numpy, or dask for dask input).

    Examples
    --------
    >>> import numpy as np
    >>> w = np.zeros((1, 4, 4, 2)); w[..., 0] = 3.0; w[..., 1] = 4.0
    >>> displacement_stats(w)["mean_disp"]
    array([5.])
    """
    lazy = _is_lazy(flow)
    f = as_flow(flow, "flow")
    border = check_border(border, (*f.shape[1:3], 1))
    stats = stats_lazy(f, border)
    values = _finish(stats, lazy)
    return {name: values[:, i] for i, name in enumerate(STAT_NAMES)}


# -------------------------------------------------------------------------------------- EPE
def epe_lazy(flow: da.Array, truth: da.Array, border: int) -> da.Array:
    """Per-frame endpoint error ``(t,)`` (lazy)."""
    d = crop(flow.astype(np.float64) - truth.astype(np.float64), border)
    return da.sqrt((d * d).sum(axis=-1)).mean(axis=(1, 2))


def endpoint_error(flow: Any, truth: Any, *, border: int = 10, per_frame: bool = False) -> Any:
    """Endpoint error: mean of ``||w_est - w_true||_2`` over pixels (and frames).

    Parameters
    ----------
    flow, truth : array (t, y, x, 2) or (y, x, 2)
        Estimated and ground-truth flows (same convention and shape).
    border : int
        Pixels cropped on every side (the Flow-Registration protocol uses 25 on 512 px frames).
    per_frame : bool
        Return the ``(t,)`` per-frame errors instead of their mean.

    Returns
    -------
    float or ndarray (numpy input); dask array (dask input)

    Notes
    -----
    When the pipeline builds its reference from frames ``idx``, the ground truth relative to that
    reference is to first order ``truth - truth[idx].mean(0)``.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.zeros((2, 8, 8, 2)); t = w.copy(); t[..., 0] = 3.0; t[..., 1] = 4.0
    >>> endpoint_error(w, t, border=2)
    5.0
    """
    lazy = _is_lazy(flow, truth)
    f = as_flow(flow, "flow")
    g = as_flow(truth, "truth")
    if f.shape != g.shape:
        raise InvalidInputError(
            f"truth: shape {g.shape} differs from flow shape {f.shape}; both must be (t, y, x, 2)"
        )
    border = check_border(border, (*f.shape[1:3], 1))
    e = epe_lazy(f, g, border)
    return _finish(e if per_frame else e.mean(), lazy)


# --------------------------------------------------------------------------- residual motion
#: Pre-smoothing (rows, cols, time) of frames and reference before the residual flow.
RESIDUAL_SIGMA = (1.0, 1.0, 0.0)


def _residual_block(
    block: np.ndarray,
    *,
    ref_proc: np.ndarray,
    vmin: np.ndarray,
    vmax: np.ndarray,
    quality_setting: str,
    border: int,
) -> np.ndarray:
    from ..core.solver import get_displacements
    from ..preprocess import normalize, smooth_frames

    proc = smooth_frames(normalize(block, vmin=vmin, vmax=vmax), RESIDUAL_SIGMA, temporal=False)
    w = get_displacements(ref_proc, proc, quality_setting=quality_setting).astype(np.float64)
    w = crop(w, border)
    return np.sqrt((w * w).sum(axis=-1)).mean(axis=(1, 2))


def residual_lazy(
    movie: da.Array, ref: np.ndarray, *, quality_setting: str, border: int
) -> da.Array:
    """Per-frame mean residual displacement ``(t,)`` of a (t, y, x, c) dask movie (lazy)."""
    from ..preprocess import intensity_range, normalize, smooth_image

    vmin, vmax = intensity_range(ref)
    ref_proc = smooth_image(normalize(ref, vmin=vmin, vmax=vmax), RESIDUAL_SIGMA)
    return movie.map_blocks(
        _residual_block,
        ref_proc=ref_proc,
        vmin=vmin,
        vmax=vmax,
        quality_setting=quality_setting,
        border=border,
        drop_axis=(1, 2, 3),
        chunks=(movie.chunks[0],),
        dtype=np.float64,
        meta=np.empty((0,), np.float64),
    )


def residual_motion(
    corrected: Any, reference: Any, *, quality_setting: str = "fast", border: int = 10
) -> Any:
    """Residual motion: mean ``|w|`` of the optical flow from each frame to the reference.

    The flow is estimated with :func:`flowreg_dask.get_displacement`'s solver on frames and
    reference normalised to the reference's intensity range and smoothed with sigma 1 px. A
    well-registered movie leaves little residual motion (CaImAn uses Farneback flow for the same
    measure). Applied to raw frames it estimates the motion that was there to correct.

    Parameters
    ----------
    corrected : array (t, y, x, c) or (t, y, x)
        Frames (corrected or raw).
    reference : array (y, x, c) or (y, x)
        Template the frames should match.
    quality_setting : {"fast", "balanced", "quality"}
        Solver preset of the residual flow.
    border : int
        Pixels cropped on every side of the flow before averaging.

    Returns
    -------
    ndarray or dask array
        ``(t,)`` float64 mean displacement magnitude in pixels.
    """
    lazy = _is_lazy(corrected, reference)
    movie = as_movie(corrected, "corrected")
    ref = check_reference(as_image(reference, "reference"), movie)
    border = check_border(border, movie.shape)
    return _finish(residual_lazy(movie, ref, quality_setting=quality_setting, border=border), lazy)
