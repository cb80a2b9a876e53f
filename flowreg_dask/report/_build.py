"""``write_report``: metrics, figures, ``summary.json`` and one ``report.html`` for a store."""

from __future__ import annotations

import datetime as _dt
import io
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .._version import __version__
from ..errors import FlowRegWarning, InvalidInputError
from ..metrics import compute_metrics, from_result, summarize
from . import _html

__all__ = ["write_report", "default_report_dir", "FIGURES"]

#: Figure files of a report, in page order (the residual and flow figures are left out when
#: there is nothing to draw).
FIGURES = (
    "mean_images.png",
    "displacement.png",
    "correlation.png",
    "residual_motion.png",
    "flow_field.png",
    "frame_comparison.png",
)
_ARRAY_SOURCE = "<array>"


def default_report_dir(store_path: str | os.PathLike[str]) -> Path:
    """``<folder>/<store stem>_report`` next to the store (``OUT.zarr`` -> ``OUT_report``)."""
    store = Path(store_path)
    return store.with_name(f"{store.stem}_report")


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "write_report needs matplotlib for its figures: pip install 'flowreg-dask[report]' "
            "(or pip install matplotlib)"
        ) from exc


# ------------------------------------------------------------------------------------ raw input
def _open_raw(source: Any, options: dict[str, Any]) -> xr.DataArray | Any:
    if isinstance(source, (str, os.PathLike, list, tuple)):
        from ..io import open_recording

        return open_recording(
            source,
            buffer_size=int(options.get("buffer_size") or 400),
            bin_size=int(options.get("bin_size") or 1),
        )
    return source


def _recorded_input(metadata: dict[str, Any]) -> Any:
    """The store's recorded input as something open_recording takes, or None."""
    text = metadata.get("input")
    if not isinstance(text, str) or not text or text == _ARRAY_SOURCE:
        return None
    if Path(text).exists():
        return text
    parts = [p.strip() for p in text.split(", ")]
    if len(parts) > 1 and all(Path(p).exists() for p in parts):
        return parts  # one file per channel
    return None


def _shape_tyxc(raw: Any) -> tuple[int, ...]:
    if isinstance(raw, xr.DataArray) and set(raw.dims) == {"t", "y", "x", "c"}:
        return tuple(raw.sizes[d] for d in ("t", "y", "x", "c"))
    shape = tuple(np.shape(raw))
    return shape + (1,) if len(shape) == 3 else shape


def _resolve_raw(raw: Any, metadata: dict, options: dict, shape: tuple) -> tuple[Any, str | None]:
    """(raw movie or None, description). A raw given explicitly must fit; the recorded input
    is used only when it can be opened and fits (otherwise a warning)."""
    if raw is not None:
        desc = str(raw) if isinstance(raw, (str, os.PathLike)) else f"<{type(raw).__name__}>"
        movie = _open_raw(raw, options)
        if _shape_tyxc(movie) != shape:
            raise InvalidInputError(
                f"raw: shape {_shape_tyxc(movie)} (t, y, x, c) does not match the corrected "
                f"movie {shape}; pass the recording the store was made from"
            )
        return movie, desc
    source = _recorded_input(metadata)
    if source is None:
        recorded = metadata.get("input")
        if isinstance(recorded, str) and recorded and recorded != _ARRAY_SOURCE:
            warnings.warn(
                f"the store's input {recorded!r} could not be opened (not found); the report "
                "covers the corrected movie only (pass raw= to compare)",
                FlowRegWarning,
                stacklevel=3,
            )
        return None, None
    try:
        movie = _open_raw(source, options)
    except Exception as exc:  # unreadable input: report without it
        warnings.warn(
            f"the store's input {metadata.get('input')!r} could not be opened ({exc}); the "
            "report covers the corrected movie only (pass raw= to compare)",
            FlowRegWarning,
            stacklevel=3,
        )
        return None, None
    if _shape_tyxc(movie) != shape:
        warnings.warn(
            f"the store's input {metadata.get('input')!r} has shape {_shape_tyxc(movie)}, not "
            f"{shape}; the report covers the corrected movie only",
            FlowRegWarning,
            stacklevel=3,
        )
        return None, None
    return movie, str(source)


def _reference_frames(options: dict[str, Any], n_frames: int) -> list[int] | None:
    ref = options.get("reference_frames")
    if isinstance(ref, (list, tuple)) and ref and all(isinstance(i, int) for i in ref):
        idx = sorted({i for i in ref if 0 <= i < n_frames})
        return idx if 0 < len(idx) < n_frames else None
    return None


def _frame_of(x: Any, k: int) -> np.ndarray:
    if isinstance(x, xr.DataArray):
        if set(x.dims) == {"t", "y", "x", "c"}:
            x = x.transpose("t", "y", "x", "c")
        x = x.data
    return np.asarray(x[k])


# ------------------------------------------------------------------------------------ figures
def _png(fig: Any, dpi: int) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _change(raw: float | None, cor: float | None, kind: str) -> tuple[str, str]:
    """(text, css class) of the change column; kind: 'higher', 'lower' (better) or 'factor'."""
    if kind == "factor":
        if cor is None:
            return "–", ""
        return f"factor {_html.fmt(cor, 3)}", "good" if cor > 1 else "bad"
    if raw is None or cor is None:
        return "–", ""
    if kind == "delta":
        d = cor - raw
        return f"{d:+.3f}", "good" if d > 0 else "bad"
    if raw == 0:
        return "–", ""
    ratio = cor / raw
    good = ratio > 1 if kind == "higher" else ratio < 1
    return f"x {ratio:.3g}", "good" if good else "bad"


def _metric_rows(s: dict[str, Any]) -> list[list[tuple[str, str]]]:
    def row(label, raw_key, cor_key, kind, meaning, change_value=None):
        raw = s.get(raw_key) if raw_key else None
        cor = s.get(cor_key) if cor_key else None
        if kind == "factor":
            text, cls = _change(None, change_value, "factor")
        else:
            text, cls = _change(raw, cor, kind)
        return [
            (label, ""),
            (_html.fmt(raw), "num"),
            (_html.fmt(cor), "num"),
            (text, f"num {cls}".strip()),
            (meaning, ""),
        ]

    rows = [
        row(
            "Correlation with reference (mean r)",
            "correlation_raw_mean",
            "correlation_corrected_mean",
            "delta",
            "Pearson r of each frame with the reference, border cropped; higher is better",
        ),
        row(
            "Crispness of the mean image",
            "crispness_raw",
            "crispness_corrected",
            "higher",
            "Frobenius norm of the gradient magnitude of the mean image; higher is sharper",
        ),
        row(
            "MSE vs reference (low-passed)",
            "mse_raw_mean",
            "mse_corrected_mean",
            "factor",
            "Flow-Registration MSE performance factor = raw / corrected; > 1 is better",
            s.get("mse_factor"),
        ),
        row(
            "Temporal STD (low-passed)",
            "std_raw",
            "std_corrected",
            "factor",
            "Flow-Registration STD performance factor = raw / corrected; > 1 is better",
            s.get("std_factor"),
        ),
    ]
    if "residual_corrected_mean" in s:
        rows.append(
            row(
                "Residual motion [px]",
                "residual_raw_mean",
                "residual_corrected_mean",
                "lower",
                "mean |w| of the optical flow from each frame to the reference; lower is better",
            )
        )
    for key, label in (
        ("mean_disp_mean", "Estimated displacement, mean [px]"),
        ("max_disp_max", "Estimated displacement, max [px]"),
        ("mean_translation_mean", "Estimated translation, mean [px]"),
    ):
        if key in s:
            rows.append(
                [
                    (label, ""),
                    ("–", "num"),
                    (_html.fmt(s[key]), "num"),
                    ("", "num"),
                    ("from the registration's flow fields (motion that was removed)", ""),
                ]
            )
    return rows


# ---------------------------------------------------------------------------------- the report
def write_report(
    store_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    raw: Any = None,
    frame: int | None = None,
    progress: bool = True,
    residual: bool = True,
    dpi: int = 100,
) -> Path:
    """Quality report of a corrected store: metrics, PNG figures, summary.json, report.html.

    Parameters
    ----------
    store_path : path
        A complete store of :func:`flowreg_dask.compensate_recording`.
    out_dir : path, optional
        Output folder (created); default ``<store stem>_report`` next to the store
        (``OUT.zarr`` -> ``OUT_report/``). Existing report files in it are replaced.
    raw : path, array or DataArray, optional
        The raw recording (t, y, x, c) to compare with. Default: the store's recorded input
        (``metadata["input"]``) when it exists and opens with the same shape; otherwise the
        report covers the corrected movie only (no raw columns, no performance factors).
    frame : int, optional
        Frame shown in the flow-field and frame-comparison figures (default: the frame with the
        largest mean displacement).
    progress : bool
        Progress bar while the metrics are computed (one pass over the data).
    residual : bool
        Include the residual motion (one ``fast`` optical flow per frame of each movie).
    dpi : int
        Resolution of the PNG figures.

    Returns
    -------
    pathlib.Path
        The ``report.html`` file. Next to it: ``summary.json`` (metrics, options, frames per
        second, shapes, software version) and one PNG per figure (see :data:`FIGURES`).
    """
    _require_matplotlib()
    from .. import plot
    from ..store.reader import open_result

    start = time.perf_counter()
    store = Path(store_path)
    ds_store = open_result(store)
    res = from_result(ds_store)
    attrs = dict(ds_store.attrs)
    metadata = attrs.get("metadata") or {}
    options = dict(metadata.get("options") or {})
    corrected = res["corrected"]
    n, h, w, c = (corrected.sizes[d] for d in ("t", "y", "x", "c"))
    shape = (n, h, w, c)
    raw_movie, raw_desc = _resolve_raw(raw, metadata, options, shape)
    reference = np.asarray(res["reference"].values, dtype=np.float64)
    has_flow = "flow" in res
    ref_frames = _reference_frames(options, n)
    metrics = compute_metrics(
        raw_movie,
        corrected,
        reference,
        flow=res["flow"] if has_flow else None,
        reference_frames=ref_frames,
        residual=residual,
        progress=progress,
    )
    summary_metrics = summarize(metrics)
    border, factor_border = metrics.attrs["border"], metrics.attrs["factor_border"]

    stats = {
        k: np.asarray(ds_store[k].values)
        for k in ("mean_translation", "mean_disp", "max_disp")
        if k in ds_store
    }
    stats = {k: v for k, v in stats.items() if v.shape == (n,)} or {
        k: metrics[k].values for k in ("mean_translation", "max_disp") if k in metrics
    }
    if frame is None:
        disp = stats.get("mean_disp", stats.get("mean_translation"))
        frame = int(np.nanargmax(disp)) if disp is not None and np.isfinite(disp).any() else n // 2
    frame = int(frame)
    if not -n <= frame < n:
        raise InvalidInputError(f"frame: expected an index in [0, {n}), got {frame}")
    frame %= n
    frame_rate = attrs.get("frame_rate")
    has_raw = raw_movie is not None

    out = Path(out_dir) if out_dir is not None else default_report_dir(store)
    out.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[str, str, Any, str]] = []
    crisp = {"raw": summary_metrics.get("crispness_raw")} if has_raw else {}
    crisp["corrected"] = summary_metrics.get("crispness_corrected")
    figures.append(
        (
            "mean_images.png",
            "Mean images",
            plot.mean_images(
                metrics["mean_raw"].values if has_raw else None,
                metrics["mean_corrected"].values,
                crispness=crisp,
            ),
            "Temporal mean before and after correction: motion blurs the raw mean.",
        )
    )
    if stats:
        figures.append(
            (
                "displacement.png",
                "Estimated motion",
                plot.displacement_traces(stats, frame_rate=frame_rate),
                "Per-frame statistics of the estimated flow relative to the reference (pixels).",
            )
        )
    figures.append(
        (
            "correlation.png",
            "Correlation with the reference",
            plot.correlation_traces(
                metrics["correlation_raw"].values if has_raw else None,
                metrics["correlation_corrected"].values,
                frame_rate=frame_rate,
            ),
            f"Pearson r of each frame with the reference ({border} px border cropped).",
        )
    )
    if residual:
        figures.append(
            (
                "residual_motion.png",
                "Residual motion",
                plot.correlation_traces(
                    metrics["residual_raw"].values if has_raw else None,
                    metrics["residual_corrected"].values,
                    frame_rate=frame_rate,
                    ylabel="residual motion [px]",
                    title="Mean optical flow from each frame to the reference",
                ),
                "Mean |w| of a fast optical flow between each frame and the reference: what is "
                "left to correct.",
            )
        )
    cor_frame = _frame_of(corrected, frame)
    raw_frame = _frame_of(raw_movie, frame) if has_raw else None
    if has_flow:
        figures.append(
            (
                "flow_field.png",
                f"Flow field of frame {frame}",
                plot.flow_field(
                    _frame_of(res["flow"], frame),
                    image=raw_frame if raw_frame is not None else reference,
                    title=f"Displacement of frame {frame}",
                ),
                "Backward flow used to correct this frame: colour = direction, saturation = "
                "magnitude (key in the corner); arrows every few pixels.",
            )
        )
    figures.append(
        (
            "frame_comparison.png",
            f"Frame {frame}",
            plot.frame_comparison(
                raw_frame, cor_frame, reference, title=f"Frame {frame}: raw, corrected, reference"
            ),
            "Differences to the reference shrink when the frame is registered.",
        )
    )
    rendered = []
    for filename, name, fig, caption in figures:
        png = _png(fig, dpi)
        (out / filename).write_bytes(png)
        rendered.append((filename, name, png, caption))
    for stale in set(FIGURES) - {f for f, *_ in rendered}:
        (out / stale).unlink(missing_ok=True)

    fps = attrs.get("frames_per_second")
    created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    summary = {
        "report_format": 1,
        "created": created,
        "software_version": __version__,
        "store": str(store.resolve()),
        "store_software_version": attrs.get("software_version"),
        "input": metadata.get("input"),
        "raw": raw_desc,
        "shape": {"t": n, "y": h, "x": w, "c": c},
        "dtype": str(corrected.dtype),
        "frames_per_second": _num(fps),
        "frame_rate": _num(frame_rate),
        "pixel_size": attrs.get("pixel_size"),
        "frame": frame,
        "metrics": summary_metrics,
        "metric_parameters": {k: _jsonable(v) for k, v in metrics.attrs.items()},
        "options": options,
        "figures": [f for f, *_ in rendered],
        "elapsed_s": round(time.perf_counter() - start, 3),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))

    info = [
        ("Store", str(store.resolve())),
        ("Input", str(metadata.get("input") or "–")),
        ("Raw recording compared", raw_desc or "not available (corrected movie only)"),
        ("Frames x height x width x channels", f"{n} x {h} x {w} x {c} ({corrected.dtype})"),
        ("Registration speed", f"{_html.fmt(_num(fps), 4)} frames/s" if fps else "–"),
        ("Frame rate", f"{_html.fmt(_num(frame_rate))} Hz" if frame_rate else "unknown"),
        ("Quality preset", str(options.get("quality_setting", "–"))),
        ("Created", f"{created} with flowreg_dask {__version__}"),
    ]
    note = (
        f"Correlation, crispness and residual motion crop {border} px at each border; the "
        f"performance factors low-pass frames with sigma {tuple(metrics.attrs['sigma'])} "
        f"(rows, cols, time) and crop {factor_border} px"
        + (f", leaving out the {len(ref_frames)} reference frames" if ref_frames else "")
        + ". Green: the corrected movie scores better."
    )
    page = _html.render(
        title=f"Motion-correction report: {store.name}",
        subtitle="flowreg_dask: variational optical-flow motion correction (Flow-Registration)",
        info=info,
        metric_rows=_metric_rows(summary_metrics),
        metric_note=note,
        figures=[(name, png, caption) for _, name, png, caption in rendered],
        options=options,
    )
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def _num(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
