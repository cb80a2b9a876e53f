"""Figures of a motion correction (matplotlib, lazily imported; safe on headless Agg).

Every function returns a :class:`matplotlib.figure.Figure` built without ``pyplot`` (no global
figure state, nothing to close; ``fig.savefig("x.png")`` works on any backend). In Jupyter run
``%matplotlib inline`` once and a returned figure displays itself.

Images are ``(y, x)`` or ``(y, x, c)``; flows ``(y, x, 2)`` with ``(u, v)`` = (horizontal,
vertical) displacement in pixels, the order of :mod:`flowreg_dask.metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "flow_to_color",
    "color_wheel",
    "mean_images",
    "displacement_traces",
    "correlation_traces",
    "flow_field",
    "frame_comparison",
]

# --------------------------------------------------------------------------- colour wheel
# Hue segments of the Middlebury optical-flow colour wheel (Baker et al., "A Database and
# Evaluation Methodology for Optical Flow", IJCV 2011): numbers of hue steps between the six
# primaries red, yellow, green, cyan, blue, magenta, chosen so that hue changes look about
# uniform to the eye.
_SEGMENTS = (("RY", 15), ("YG", 6), ("GC", 4), ("CB", 11), ("BM", 13), ("MR", 6))
_PRIMARY = {
    "R": (1.0, 0.0, 0.0),
    "Y": (1.0, 1.0, 0.0),
    "G": (0.0, 1.0, 0.0),
    "C": (0.0, 1.0, 1.0),
    "B": (0.0, 0.0, 1.0),
    "M": (1.0, 0.0, 1.0),
}


def _wheel() -> np.ndarray:
    """(55, 3) float RGB hues, linear ramps between consecutive primaries."""
    rows = []
    for name, n in _SEGMENTS:
        a = np.array(_PRIMARY[name[0]])
        b = np.array(_PRIMARY[name[1]])
        f = np.arange(n)[:, None] / n
        rows.append(a * (1 - f) + b * f)
    return np.concatenate(rows)


#: Flow components above this magnitude mark "unknown" flow (Middlebury convention).
UNKNOWN_FLOW = 1e9


def flow_to_color(flow: Any, max_flow: float | None = None) -> np.ndarray:
    """Colour-code a flow field: hue = direction, saturation = magnitude (Middlebury style).

    Parameters
    ----------
    flow : array (..., 2)
        ``(u, v)`` displacements in pixels (``v`` points down, image convention).
    max_flow : float, optional
        Magnitude shown fully saturated; default the largest finite magnitude in ``flow``.
        Longer vectors are drawn darker (75 % brightness). NaN vectors, and "unknown" ones with
        a component of magnitude above 1e9 (pyflowreg's and Middlebury's marker), are black.

    Returns
    -------
    numpy.ndarray
        ``(..., 3)`` uint8 RGB. Zero motion is white; the hue gives the direction: red for
        ``+u`` (pointing right), yellow for ``+v`` (down), cyan for ``-u`` (left), blue-violet
        for ``-v`` (up), with green and magenta in between.

    Examples
    --------
    >>> flow_to_color(np.zeros((2, 2, 2)))[0, 0]
    array([255, 255, 255], dtype=uint8)
    """
    w = np.asarray(flow, dtype=np.float64)
    if w.shape[-1:] != (2,):
        raise ValueError(f"flow: expected shape (..., 2) with (u, v) last, got {w.shape}")
    u, v = w[..., 0], w[..., 1]
    bad = (
        ~(np.isfinite(u) & np.isfinite(v)) | (np.abs(u) > UNKNOWN_FLOW) | (np.abs(v) > UNKNOWN_FLOW)
    )
    u = np.where(bad, 0.0, u)
    v = np.where(bad, 0.0, v)
    mag = np.hypot(u, v)
    if max_flow is None:
        max_flow = float(mag.max()) if mag.size else 0.0
    if not np.isfinite(max_flow) or max_flow <= 0:
        max_flow = 1.0
    rad = mag / float(max_flow)
    wheel = _wheel()
    n = len(wheel)
    # direction angle in [-1, 1] (units of pi); both ends (+u, pointing right) are red
    angle = np.arctan2(-v, -u) / np.pi
    pos = (angle + 1.0) / 2.0 * n  # [0, n]: the last hue blends back into the first
    k0 = np.floor(pos).astype(np.int64) % n
    k1 = (k0 + 1) % n
    f = (pos - np.floor(pos))[..., None]
    hue = (1 - f) * wheel[k0] + f * wheel[k1]
    r = rad[..., None]
    inside = r <= 1
    rgb = np.where(inside, 1.0 - np.minimum(r, 1.0) * (1.0 - hue), hue * 0.75)
    rgb[bad] = 0.0
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def color_wheel(size: int = 101) -> np.ndarray:
    """The colour key of :func:`flow_to_color`: a ``(size, size, 4)`` RGBA disc (max at rim)."""
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    flow = np.stack([(xx - c) / c, (yy - c) / c], axis=-1)
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., :3] = flow_to_color(flow, max_flow=1.0)
    rgba[..., 3] = np.where(np.hypot(flow[..., 0], flow[..., 1]) <= 1.0, 255, 0)
    return rgba


# ------------------------------------------------------------------------------------ helpers
def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _hwc(image: Any, name: str) -> np.ndarray:
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3:
        raise ValueError(f"{name}: expected an image (y, x) or (y, x, c), got shape {a.shape}")
    return a


def _limits(*images: np.ndarray | None, lo: float = 0.5, hi: float = 99.5) -> tuple[float, float]:
    vals = np.concatenate([np.ravel(i) for i in images if i is not None])
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return 0.0, 1.0
    a, b = np.percentile(vals, [lo, hi])
    return (float(a), float(b)) if b > a else (float(a), float(a) + 1.0)


def _series(x: Any) -> np.ndarray | None:
    if x is None:
        return None
    return np.asarray(getattr(x, "values", x), dtype=np.float64).ravel()


def _time_axis(n: int, frame_rate: float | None) -> tuple[np.ndarray, str]:
    if frame_rate:
        return np.arange(n) / float(frame_rate), "time [s]"
    return np.arange(n), "frame"


def _image_axis(ax: Any, title: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


# ------------------------------------------------------------------------------------- figures
def mean_images(
    raw_mean: Any, corrected_mean: Any, *, crispness: Mapping[str, float] | None = None
) -> Figure:
    """Temporal mean images before and after correction, side by side (one row per channel).

    A blurred raw mean and a sharp corrected mean show that the motion was removed.

    Parameters
    ----------
    raw_mean : array (y, x[, c]) or None
        Mean of the raw frames (``None``: only the corrected mean is shown).
    corrected_mean : array (y, x[, c])
        Mean of the corrected frames.
    crispness : mapping, optional
        ``{"raw": value, "corrected": value}`` appended to the titles.
    """
    cor = _hwc(corrected_mean, "corrected_mean")
    raw = None if raw_mean is None else _hwc(raw_mean, "raw_mean")
    if raw is not None and raw.shape != cor.shape:
        raise ValueError(f"raw_mean: shape {raw.shape} differs from corrected_mean {cor.shape}")
    panels = [("raw", raw), ("corrected", cor)] if raw is not None else [("corrected", cor)]
    n_c = cor.shape[2]
    fig = _figure(3.6 * len(panels), 3.4 * n_c + 0.4)
    axes = np.atleast_2d(fig.subplots(n_c, len(panels), squeeze=False))
    for c in range(n_c):
        vmin, vmax = _limits(*(img[..., c] for _, img in panels))
        for j, (label, img) in enumerate(panels):
            ax = axes[c, j]
            ax.imshow(img[..., c], cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
            title = f"{label} mean" + (f", channel {c}" if n_c > 1 else "")
            if c == 0 and crispness and crispness.get(label) is not None:
                title += f"\ncrispness {crispness[label]:.4g}"
            _image_axis(ax, title)
    fig.suptitle("Mean images")
    return fig


def displacement_traces(stats: Any, *, frame_rate: float | None = None) -> Figure:
    """Estimated motion over time: mean translation and maximum displacement per frame.

    Parameters
    ----------
    stats : mapping or xarray.Dataset
        Per-frame ``mean_translation`` and ``max_disp`` (and optionally ``mean_disp``) in pixels,
        e.g. the statistics of a store or of :func:`flowreg_dask.metrics.displacement_stats`.
    frame_rate : float, optional
        Frames per second: the x axis is in seconds instead of frames.
    """
    fig = _figure(9.0, 3.2)
    ax = fig.add_subplot()
    labels = {
        "mean_translation": "mean translation (rigid part)",
        "mean_disp": "mean displacement",
        "max_disp": "max displacement",
    }
    found = False
    for key, label in labels.items():
        if key in stats and stats[key] is not None:
            y = _series(stats[key])
            x, xlabel = _time_axis(len(y), frame_rate)
            ax.plot(x, y, label=label, lw=1.2)
            found = True
    if not found:
        raise ValueError(
            "stats: expected per-frame 'mean_translation' and/or 'max_disp' (pixels), found "
            f"{sorted(stats)}"
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("displacement [px]")
    ax.set_title("Estimated motion (flow relative to the reference)")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def correlation_traces(
    r_raw: Any,
    r_corrected: Any,
    *,
    frame_rate: float | None = None,
    ylabel: str = "correlation with reference",
    title: str = "Correlation of each frame with the reference",
) -> Figure:
    """Per-frame traces before and after correction (correlation, or any per-frame metric).

    Parameters
    ----------
    r_raw : array (t,) or None
        Raw-movie values (``None``: only the corrected trace).
    r_corrected : array (t,)
        Corrected-movie values.
    frame_rate : float, optional
        x axis in seconds.
    ylabel, title : str
        Labels (reuse the figure for e.g. the residual motion in pixels).
    """
    fig = _figure(8.0, 3.2)
    ax = fig.add_subplot()
    for label, values, color in (
        ("raw", r_raw, "tab:gray"),
        ("corrected", r_corrected, "tab:blue"),
    ):
        y = _series(values)
        if y is None:
            continue
        x, xlabel = _time_axis(len(y), frame_rate)
        finite = y[np.isfinite(y)]
        mean = f" (mean {finite.mean():.3g})" if finite.size else ""
        ax.plot(x, y, label=label + mean, color=color, lw=1.2, marker="." if len(y) < 80 else None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def flow_field(
    flow_frame: Any,
    *,
    image: Any = None,
    step: int | None = None,
    max_flow: float | None = None,
    title: str | None = None,
) -> Figure:
    """One displacement field: colour-coded (hue = direction, saturation = magnitude) with
    arrows, and, when ``image`` is given, the arrows over the image.

    Parameters
    ----------
    flow_frame : array (y, x, 2)
        ``(u, v)`` in pixels.
    image : array (y, x[, c]), optional
        Frame to draw the arrows on (first channel shown).
    step : int, optional
        Arrow spacing in pixels (default: about 16 arrows across the longer side).
    max_flow : float, optional
        Saturation magnitude of the colour code (default: the largest in the frame).
    title : str, optional
        Figure title.
    """
    w = np.asarray(flow_frame, dtype=np.float64)
    if w.ndim != 3 or w.shape[2] != 2:
        raise ValueError(f"flow_frame: expected (y, x, 2), got shape {w.shape}")
    h, wd = w.shape[:2]
    if step is None:
        step = max(1, max(h, wd) // 16)
    mag = np.hypot(w[..., 0], w[..., 1])
    finite = mag[np.isfinite(mag)]
    top = float(finite.max()) if finite.size else 0.0
    mf = top if max_flow is None else float(max_flow)
    n_ax = 2 if image is not None else 1
    fig = _figure(4.4 * n_ax, 4.4)
    axes = fig.subplots(1, n_ax, squeeze=False)[0]
    ax = axes[0]
    ax.imshow(flow_to_color(w, mf if mf > 0 else None), interpolation="nearest")
    _image_axis(ax, f"flow (colour: direction, saturation: |w|, max {mf:.2f} px)")
    inset = ax.inset_axes((0.78, 0.78, 0.2, 0.2))
    inset.imshow(color_wheel(65))
    inset.set_axis_off()
    yy, xx = np.mgrid[step // 2 : h : step, step // 2 : wd : step]
    u = w[yy, xx, 0]
    v = w[yy, xx, 1]
    # arrows in data (pixel) units, the longest about one grid step long
    scale = max(top, 1e-6) / (0.9 * step)
    targets = [ax]
    if image is not None:
        img = _hwc(image, "image")[..., 0]
        if img.shape != (h, wd):
            raise ValueError(f"image: shape {img.shape} differs from the flow's {(h, wd)}")
        vmin, vmax = _limits(img)
        axes[1].imshow(img, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
        _image_axis(axes[1], "displacement arrows on the frame")
        targets.append(axes[1])
    for target in targets:
        target.quiver(
            xx,
            yy,
            u,
            v,
            angles="xy",
            scale_units="xy",
            scale=scale,
            color="k" if target is ax else "yellow",
            width=0.004,
            headwidth=4,
        )
    if title:
        fig.suptitle(title)
    return fig


def frame_comparison(
    raw_frame: Any,
    corrected_frame: Any,
    reference: Any,
    *,
    channel: int = 0,
    title: str | None = None,
) -> Figure:
    """One frame before and after correction next to the reference, with difference images.

    Top row: raw, corrected, reference (shared contrast). Bottom row: raw - reference,
    corrected - reference (shared symmetric scale) and a colour overlay (reference in magenta,
    corrected in green: grey where they agree).

    Parameters
    ----------
    raw_frame : array (y, x[, c]) or None
        The raw frame (``None``: panels without it).
    corrected_frame : array (y, x[, c])
    reference : array (y, x[, c])
    channel : int
        Channel shown.
    title : str, optional
        Figure title.
    """
    cor = _hwc(corrected_frame, "corrected_frame")
    ref = _hwc(reference, "reference")
    raw = None if raw_frame is None else _hwc(raw_frame, "raw_frame")
    for name, a in (("reference", ref), ("raw_frame", raw)):
        if a is not None and a.shape[:2] != cor.shape[:2]:
            raise ValueError(f"{name}: shape {a.shape} differs from corrected_frame {cor.shape}")
    c = int(channel)
    if not 0 <= c < cor.shape[2]:
        raise ValueError(f"channel: expected 0..{cor.shape[2] - 1}, got {channel}")
    pick = [None if a is None else a[..., min(c, a.shape[2] - 1)] for a in (raw, cor, ref)]
    raw_c, cor_c, ref_c = pick
    vmin, vmax = _limits(raw_c, cor_c, ref_c)
    fig = _figure(11.0, 7.4)
    axes = fig.subplots(2, 3)
    for ax, img, label in zip(axes[0], pick, ("raw", "corrected", "reference"), strict=True):
        if img is None:
            ax.text(0.5, 0.5, "raw recording\nnot available", ha="center", va="center")
            _image_axis(ax, label)
            continue
        ax.imshow(img, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
        _image_axis(ax, label)
    diffs = [None if raw_c is None else raw_c - ref_c, cor_c - ref_c]
    lim = max(float(np.nanpercentile(np.abs(d), 99.5)) for d in diffs if d is not None) or 1.0
    im = None
    for ax, d, label in zip(
        axes[1][:2], diffs, ("raw - reference", "corrected - reference"), strict=True
    ):
        if d is None:
            ax.text(0.5, 0.5, "raw recording\nnot available", ha="center", va="center")
            _image_axis(ax, label)
            continue
        im = ax.imshow(d, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        rms = float(np.sqrt(np.nanmean(d * d)))
        _image_axis(ax, f"{label} (RMS {rms:.4g})")
    if im is not None:
        fig.colorbar(
            im, ax=list(axes[1][:2]), location="bottom", shrink=0.5, label="intensity difference"
        )
    scaled_ref = np.clip((ref_c - vmin) / (vmax - vmin), 0, 1)
    scaled_cor = np.clip((cor_c - vmin) / (vmax - vmin), 0, 1)
    overlay = np.stack([scaled_ref, scaled_cor, scaled_ref], axis=-1)
    axes[1][2].imshow(overlay, interpolation="nearest")
    _image_axis(axes[1][2], "overlay: reference magenta, corrected green")
    fig.suptitle(title or f"Frame comparison (channel {c})")
    return fig
