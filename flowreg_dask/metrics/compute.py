"""All metrics of a registration in one pass over the data."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from typing import Any

import dask
import numpy as np
import xarray as xr

from .._constants import STAT_NAMES
from ..errors import InvalidInputError
from ._arrays import as_flow, as_image, as_movie, check_border, check_reference, check_same_shape
from .flow import epe_lazy, residual_lazy, stats_lazy
from .quality import (
    FACTOR_BORDER,
    FACTOR_SIGMA,
    _check_sigma,
    _lowpass_block,
    correlation_lazy,
    crispness,
    frame_mask,
    lowpass_lazy,
    mse_lazy,
    std_lazy,
)

__all__ = ["compute_metrics", "summarize"]


def _distributed_client() -> Any:
    """The default ``dask.distributed`` client, if one is active (never imports distributed)."""
    if "distributed" not in sys.modules:
        return None
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def _compute(values: dict[str, Any], *, progress: bool, scheduler: Any) -> dict[str, Any]:
    """One ``dask.compute`` of every lazy value (distributed: one ``client.compute``)."""
    names = list(values)
    lazy = [values[k] for k in names]
    client = _distributed_client() if scheduler is None else None
    if client is not None:
        futures = client.compute(lazy)
        if progress:
            from distributed import progress as dist_progress

            dist_progress(futures, notebook=False)
        results = client.gather(futures)
    elif progress:
        from tqdm.auto import tqdm
        from tqdm.dask import TqdmCallback

        with TqdmCallback(desc="metrics", tqdm_class=tqdm, file=sys.stderr):
            results = dask.compute(*lazy, scheduler=scheduler)
    else:
        results = dask.compute(*lazy, scheduler=scheduler)
    return dict(zip(names, results, strict=True))


def compute_metrics(
    raw: Any,
    corrected: Any,
    reference: Any,
    *,
    flow: Any = None,
    truth: Any = None,
    border: int | None = None,
    factor_border: int | None = None,
    sigma: Sequence[float] = FACTOR_SIGMA,
    reference_frames: Any = None,
    residual: bool = True,
    residual_step: int = 1,
    quality_setting: str = "fast",
    progress: bool = True,
    scheduler: Any = None,
) -> xr.Dataset:
    """Evaluate every quality metric of a registration lazily, in one pass over the data.

    The movies are read chunk by chunk, once: every metric is a dask expression on the same input
    chunks and all of them are evaluated by one ``dask.compute`` (one ``client.compute`` when a
    ``dask.distributed`` client is active), with a progress bar.

    Parameters
    ----------
    raw : array (t, y, x, c) or None
        The recording before registration (numpy, dask or a DataArray of
        :func:`flowreg_dask.open_recording`). ``None``: only the corrected movie is evaluated (no
        factors).
    corrected : array (t, y, x, c)
        The registered movie (a DataArray with named dims may come in any order).
    reference : array (y, x, c)
        The template (the pipeline's ``reference``).
    flow : array (t, y, x, 2), optional
        Estimated flows: adds the displacement statistics (and the EPE with ``truth``).
    truth : array (t, y, x, 2), optional
        Ground-truth flows relative to ``reference`` (synthetic data): adds the endpoint error.
    border : int, optional
        Border (px) cropped by the correlation, crispness, residual motion and EPE. Default 10,
        narrowed to 1/8 of the shorter frame side for frames under 80 px.
    factor_border : int, optional
        Border (px) cropped by the MSE / STD performance factors. Default 25 (as the original),
        narrowed to 1/4 of the shorter frame side for frames under 100 px.
    sigma : (s_rows, s_cols, s_t)
        Low-pass of the performance factors (default (3, 3, 0)).
    reference_frames : sequence of int, optional
        Frames the reference was built from: left out of the performance factors.
    residual : bool
        Also estimate the residual motion (an optical flow per evaluated frame: the most expensive
        metric; about the cost of a ``fast`` registration per movie).
    residual_step : int
        Estimate the residual motion on every ``residual_step``-th frame only (others are NaN).
    quality_setting : str
        Solver preset of the residual motion.
    progress : bool
        Show a progress bar (tqdm for local schedulers, ``distributed.progress`` on a cluster).
    scheduler : optional
        Passed to ``dask.compute`` (default: dask's current scheduler or client).

    Returns
    -------
    xarray.Dataset
        Per frame (``t``): ``correlation_{raw,corrected}``, ``mse_{raw,corrected}``,
        ``residual_{raw,corrected}``, the flow statistics ``mean_disp``, ``max_disp``,
        ``mean_div``, ``mean_translation`` and ``epe`` when available. Images (``y, x, c``):
        ``mean_raw``, ``mean_corrected``. Scalars: ``crispness_{raw,corrected}``,
        ``std_{raw,corrected}``, ``mse_factor``, ``std_factor``. ``attrs`` record
        the parameters and ``elapsed_s``. :func:`summarize` turns it into a flat dict of floats.
        All values are float64 numpy (computed).
    """
    start = time.perf_counter()
    corr = as_movie(corrected, "corrected")
    movies = {"corrected": corr}
    if raw is not None:
        movies["raw"] = as_movie(raw, "raw")
        check_same_shape(corr, movies["raw"], ("corrected", "raw"))
    n_frames = corr.shape[0]
    ref = check_reference(as_image(reference, "reference"), corr)
    side = min(corr.shape[1:3])
    border = check_border(min(10, side // 8) if border is None else border, corr.shape)
    factor_border = check_border(
        min(FACTOR_BORDER, side // 4) if factor_border is None else factor_border,
        corr.shape,
        "factor_border",
    )
    sigma = _check_sigma(sigma)
    keep = frame_mask(n_frames, reference_frames)
    if (
        isinstance(residual_step, bool)
        or not isinstance(residual_step, (int, np.integer))
        or (residual_step < 1)
    ):
        raise InvalidInputError(f"residual_step: expected an integer >= 1, got {residual_step!r}")

    lp_ref = _lowpass_block(ref[None], sigma)[0]
    lazy: dict[str, Any] = {}
    for name, movie in movies.items():
        lazy[f"correlation_{name}"] = correlation_lazy(movie, ref, border).mean(axis=1)
        lazy[f"mean_{name}"] = movie.astype(np.float64).mean(axis=0)
        lp = lowpass_lazy(movie, sigma)
        lazy[f"mse_{name}"] = mse_lazy(lp, lp_ref, factor_border, keep)
        lazy[f"std_{name}"] = std_lazy(lp, factor_border, keep)
        if residual:
            lazy[f"residual_{name}"] = residual_lazy(
                movie[::residual_step], ref, quality_setting=quality_setting, border=border
            )
    if flow is not None:
        f = as_flow(flow, "flow")
        if f.shape[:3] != corr.shape[:3]:
            raise InvalidInputError(
                f"flow: expected shape {corr.shape[:3] + (2,)} (t, y, x, 2), got {f.shape}"
            )
        lazy["stats"] = stats_lazy(f, 0)
        if truth is not None:
            g = as_flow(truth, "truth")
            if g.shape != f.shape:
                raise InvalidInputError(f"truth: shape {g.shape} differs from flow {f.shape}")
            lazy["epe"] = epe_lazy(f, g, border)
    elif truth is not None:
        raise InvalidInputError("truth: given without flow; pass the estimated flow= as well")

    out = _compute(lazy, progress=progress, scheduler=scheduler)

    t_coord = _t_coord(corrected, n_frames)
    data: dict[str, Any] = {}
    for name in movies:
        data[f"correlation_{name}"] = ("t", np.asarray(out[f"correlation_{name}"]))
        data[f"mse_{name}"] = ("t", np.asarray(out[f"mse_{name}"]))
        if residual:
            full = np.full(n_frames, np.nan)
            full[::residual_step] = np.asarray(out[f"residual_{name}"])
            data[f"residual_{name}"] = ("t", full)
        mean = np.asarray(out[f"mean_{name}"])
        data[f"mean_{name}"] = (("y", "x", "c"), mean)
        data[f"crispness_{name}"] = ((), crispness(mean, border=border))
        data[f"std_{name}"] = ((), float(out[f"std_{name}"]))
    if raw is not None:
        mse_raw = np.nanmean(data["mse_raw"][1])
        mse_cor = np.nanmean(data["mse_corrected"][1])
        data["mse_factor"] = ((), _ratio(mse_raw, mse_cor))
        data["std_factor"] = ((), _ratio(data["std_raw"][1], data["std_corrected"][1]))
    if "stats" in out:
        stats = np.asarray(out["stats"])
        for i, name in enumerate(STAT_NAMES):
            data[name] = ("t", stats[:, i])
    if "epe" in out:
        epe = np.asarray(out["epe"])
        data["epe"] = ("t", epe)
    ds = xr.Dataset(data, coords={"t": t_coord})
    ds.attrs.update(
        {
            "border": border,
            "factor_border": factor_border,
            "sigma": list(sigma),
            "reference_frames": [int(i) for i in np.flatnonzero(~keep)],
            "residual_quality_setting": quality_setting if residual else None,
            "residual_step": int(residual_step),
            "n_frames": int(n_frames),
            "elapsed_s": time.perf_counter() - start,
        }
    )
    return ds


def _ratio(a: float, b: float) -> float:
    a, b = float(a), float(b)
    if b == 0 or not (math.isfinite(a) and math.isfinite(b)):
        return math.nan
    return a / b


def _t_coord(x: Any, n: int) -> np.ndarray:
    if isinstance(x, xr.DataArray) and "t" in x.coords and x.sizes.get("t") == n:
        return np.asarray(x["t"].values)
    return np.arange(n)


def _json_float(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def summarize(metrics: xr.Dataset) -> dict[str, float | None]:
    """Flatten the result of :func:`compute_metrics` into a dict of floats (JSON-friendly).

    Scalars are copied; per-frame variables give their mean over the evaluated frames
    (``<name>_mean``, NaN frames ignored), and ``max_disp`` its maximum too. NaN becomes None.
    """
    out: dict[str, float | None] = {}
    for name, var in metrics.data_vars.items():
        if var.ndim == 0:
            out[name] = _json_float(var.values)
        elif var.dims == ("t",):
            values = np.asarray(var.values, dtype=np.float64)
            finite = values[np.isfinite(values)]
            out[f"{name}_mean"] = _json_float(finite.mean()) if finite.size else None
            if name == "max_disp" and finite.size:
                out["max_disp_max"] = _json_float(finite.max())
    return out
