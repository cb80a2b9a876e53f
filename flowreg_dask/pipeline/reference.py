"""Resolve the reference of a run: an array, an image file, or pre-registered frame indices."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..core.params import FlowParams
from ..errors import FlowRegWarning, InvalidInputError, RecordingNotFoundError

__all__ = ["resolve_reference", "clip_reference_indices"]


def clip_reference_indices(indices, n_frames: int) -> list[int]:
    """Reference frame indices limited to the recording (out-of-range ones dropped, with a warning).

    Unlike the reference implementation, indices past the end are dropped rather than replaced by
    copies of the last frame; if none remain, the first min(n_frames, 50) frames are used.
    """
    idx = [int(i) for i in indices]
    kept = sorted({i for i in idx if 0 <= i < n_frames})
    if len(kept) < len(idx):
        if kept:
            msg = (
                f"reference_frames: {len(idx) - len(kept)} of {len(idx)} indices are outside the "
                f"recording's {n_frames} frames; using the {len(kept)} frames {kept[0]}..{kept[-1]}"
            )
        else:
            kept = list(range(min(n_frames, 50)))
            msg = (
                f"reference_frames: no index lies inside the recording's {n_frames} frames; using "
                f"frames 0..{kept[-1]}"
            )
        warnings.warn(msg, FlowRegWarning, stacklevel=4)
    return kept


def _read_image(path: Path, n_channels: int) -> np.ndarray:
    if not path.exists():
        raise RecordingNotFoundError(
            f"reference_frames: reference image file {path} does not exist"
        )
    suffix = path.suffix.lower()
    if suffix == ".npy":
        img = np.load(path)
    elif suffix in (".tif", ".tiff"):
        import tifffile

        img = tifffile.imread(path)
    else:
        from ..io import open_recording

        rec = open_recording(path)
        img = np.asarray(rec.data.mean(axis=0).compute()) if rec.shape[0] > 1 else rec.values[0]
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[-1] != n_channels and img.shape[0] == n_channels:
        img = np.moveaxis(img, 0, -1)  # (C, H, W) file
    return img


def check_reference_shape(ref: np.ndarray, height: int, width: int, n_channels: int) -> np.ndarray:
    """(H, W, C) float32 reference, or a clear error when its shape does not fit the recording."""
    ref = np.asarray(ref)
    if ref.ndim == 2:
        ref = np.repeat(ref[:, :, None], n_channels, axis=2) if n_channels > 1 else ref[:, :, None]
    if ref.ndim != 3 or ref.shape != (height, width, n_channels):
        raise InvalidInputError(
            f"reference: expected shape ({height}, {width}) or ({height}, {width}, {n_channels}) "
            "to "
            f"match the recording, got {ref.shape}"
        )
    if not np.all(np.isfinite(ref)):
        raise InvalidInputError("reference: contains NaN/Inf values")
    return np.ascontiguousarray(ref, dtype=np.float32)


def resolve_reference(
    recording,
    source: Any,
    *,
    params: FlowParams,
    sigma,
    channel_normalization: str,
    interpolation: str,
    runner=None,
    chunk: int | None = None,
) -> np.ndarray:
    """The raw reference (H, W, C) float32 for ``recording`` (an xarray t, y, x, c DataArray).

    ``source`` is an array, an image path, or frame indices to pre-register (method spec §2.2).
    ``chunk`` is the number of frames a worker pre-registers at a time (default: the recording's
    time chunk length, which the pipeline has already fitted to its memory budget).
    """
    n_frames, height, width, n_channels = recording.shape
    if isinstance(source, (str, Path)):
        return check_reference_shape(
            _read_image(Path(source), n_channels), height, width, n_channels
        )
    if not isinstance(source, (list, tuple, range)) and np.ndim(source) >= 2:
        return check_reference_shape(np.asarray(source), height, width, n_channels)
    indices = clip_reference_indices(np.atleast_1d(np.asarray(source)).tolist(), n_frames)
    if len(indices) == 1:
        frame = np.asarray(recording.data[indices[0]].compute(scheduler="synchronous"))
        return check_reference_shape(frame, height, width, n_channels)
    return preregistered_reference(
        recording,
        indices,
        params=params,
        sigma=sigma,
        channel_normalization=channel_normalization,
        interpolation=interpolation,
        runner=runner,
        chunk=chunk or int(recording.data.chunks[0][0]),
    )


def _prereg_block(source, indices, a: int, b: int, depth: int, sig) -> tuple:
    """Raw and smoothed frames of positions [a, b) of ``indices`` (the temporal filter sees
    ``depth`` neighbouring reference frames on each side, as if all were filtered at once)."""
    from ..preprocess.filters import smooth_frames

    lo = max(0, a - depth)
    hi = min(len(indices), b + depth)
    sel = indices[lo:hi]
    if sel == list(range(sel[0], sel[-1] + 1)):
        raw = source.read(sel[0], sel[-1] + 1)
    else:
        raw = np.asarray(source.array[np.asarray(sel)].compute(scheduler="synchronous"))
    smooth = smooth_frames(raw, sig)
    return raw[a - lo : b - lo], smooth[a - lo : b - lo]


def _prereg_pass1(source, indices, a, b, depth, sig, joint: bool) -> tuple:
    raw, smooth = _prereg_block(source, indices, a, b, depth, sig)
    axes = (0, 1, 2, 3) if joint else (0, 1, 2)
    return (
        smooth.min(axis=axes),
        smooth.max(axis=axes),
        smooth.sum(axis=0, dtype=np.float64),
        raw.sum(axis=0, dtype=np.float64),
    )


def _prereg_pass2(source, indices, a, b, depth, sig, lo, hi, mean_proc, raw_mean, params, interp):
    from ..core.solver import FlowEstimator
    from ..preprocess.normalize import normalize
    from .blocks import initial_flow, warp_frames

    raw, smooth = _prereg_block(source, indices, a, b, depth, sig)
    proc = normalize(smooth, vmin=lo, vmax=hi)
    init = initial_flow(mean_proc, params, proc[:0], proc, True)
    flows = FlowEstimator(mean_proc, params).flows(proc, init)
    warped, _ = warp_frames(raw, flows, raw_mean, interp, np.float32)
    return warped.sum(axis=0, dtype=np.float64)


def preregistered_reference(
    recording,
    indices: list[int],
    *,
    params: FlowParams,
    sigma,
    channel_normalization: str,
    interpolation: str,
    runner=None,
    chunk: int = 50,
) -> np.ndarray:
    """Reference from pre-registered frames (method spec §2.2), streamed in two passes.

    Pass 1 smooths the frames (sigma + [1, 1, 0.5], exact temporal halo) and reduces them to
    their intensity range and temporal mean; pass 2 smooths them again, registers each frame to
    the normalised mean with alpha + 2 and sums the raw frames warped by their flows. Each task
    reads its own block of at most ``chunk`` frames and returns only sums, so memory stays bounded
    and no frames travel between processes; both passes run in parallel with the run's scheduler.
    """
    import dask

    from ..core.reference import PREREG_EXTRA_SIGMA, prereg_params
    from ..preprocess.filters import sigma_matrix, temporal_depth
    from ..preprocess.normalize import normalize
    from .graph import _Source

    n_channels = recording.shape[-1]
    source = _Source(recording.data)
    n = len(indices)
    # blocks small enough that every worker gets several (balanced load), at most ``chunk``
    workers = runner.n_workers if runner is not None else 1
    chunk = max(8, min(chunk, -(-n // (4 * workers))))
    blocks = [(a, min(a + chunk, n)) for a in range(0, n, chunk)]
    sig = sigma_matrix(sigma, n_channels) + PREREG_EXTRA_SIGMA
    depth = temporal_depth(sig, n_channels)
    joint = str(channel_normalization).lower() in ("joint", "together")
    compute = runner.compute if runner is not None else dask.compute
    first = compute(
        *[dask.delayed(_prereg_pass1)(source, indices, a, b, depth, sig, joint) for a, b in blocks]
    )
    lo = np.min([f[0] for f in first], axis=0)
    hi = np.max([f[1] for f in first], axis=0)
    lo = np.broadcast_to(np.asarray(lo, np.float64), (n_channels,))
    hi = np.broadcast_to(np.asarray(hi, np.float64), (n_channels,))
    mean_proc = np.ascontiguousarray(normalize(sum(f[2] for f in first) / n, vmin=lo, vmax=hi))
    raw_mean = (sum(f[3] for f in first) / n).astype(np.float32)
    pparams = prereg_params(params)
    sums = compute(
        *[
            dask.delayed(_prereg_pass2)(
                source,
                indices,
                a,
                b,
                depth,
                sig,
                lo,
                hi,
                mean_proc,
                raw_mean,
                pparams,
                interpolation,
            )
            for a, b in blocks
        ]
    )
    return np.ascontiguousarray(sum(sums) / n, dtype=np.float32)
