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
) -> np.ndarray:
    """The raw reference (H, W, C) float32 for ``recording`` (an xarray t, y, x, c DataArray).

    ``source`` is an array, an image path, or frame indices to pre-register (method spec §2.2).
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
    )


PREREG_BLOCK = 16  # reference frames per task: fixed, so the reference depends on nothing else


def _sequence_frames(data, indices: list[int], lo: int, hi: int):
    """Lazy raw frames of positions [lo, hi) of the index sequence (a slice when contiguous, so
    a file-backed recording reads only those frames)."""
    sel = indices[lo:hi]
    if sel == list(range(sel[0], sel[-1] + 1)):
        return data[sel[0] : sel[-1] + 1]
    return data[np.asarray(sel)]


def _smoothed(raw: np.ndarray, offset: int, n: int, sig) -> tuple[np.ndarray, np.ndarray]:
    """Raw and smoothed frames ``offset .. offset + n`` of a block read with its temporal halo."""
    from ..preprocess.filters import smooth_frames

    smooth = smooth_frames(raw, sig)
    return raw[offset : offset + n], smooth[offset : offset + n]


def _prereg_pass1(raw, offset: int, n: int, sig, joint: bool) -> tuple:
    raw, smooth = _smoothed(np.asarray(raw), offset, n, sig)
    axes = (0, 1, 2, 3) if joint else (0, 1, 2)
    return (
        smooth.min(axis=axes),
        smooth.max(axis=axes),
        smooth.sum(axis=0, dtype=np.float64),
        raw.sum(axis=0, dtype=np.float64),
    )


def _prereg_pass2(raw, offset, n, sig, lo, hi, mean_proc, raw_mean, params, interp):
    from ..core.solver import FlowEstimator
    from ..preprocess.normalize import normalize
    from .blocks import warp_frames

    raw, smooth = _smoothed(np.asarray(raw), offset, n, sig)
    proc = normalize(smooth, vmin=lo, vmax=hi)
    flows = FlowEstimator(mean_proc, params).flows(proc)
    warped, _ = warp_frames(raw, flows, raw_mean, interp, np.float32)
    return warped.sum(axis=0, dtype=np.float64)


def _tree(parts: list, combine):
    """A fixed binary tree of ``combine`` over ``parts`` (dask.delayed): the same order of
    operations, so the same floating-point result, whatever the scheduler."""
    import dask

    while len(parts) > 1:
        parts = [
            dask.delayed(combine)(parts[k], parts[k + 1]) if k + 1 < len(parts) else parts[k]
            for k in range(0, len(parts), 2)
        ]
    return parts[0]


def _combine1(x: tuple, y: tuple) -> tuple:
    return (np.minimum(x[0], y[0]), np.maximum(x[1], y[1]), x[2] + y[2], x[3] + y[3])


def preregistered_reference(
    recording,
    indices: list[int],
    *,
    params: FlowParams,
    sigma,
    channel_normalization: str,
    interpolation: str,
    runner=None,
) -> np.ndarray:
    """Reference from pre-registered frames (method spec §2.2), streamed in two passes.

    Pass 1 smooths the frames (sigma + [1, 1, 0.5], exact temporal halo) and reduces them to
    their intensity range and temporal mean; pass 2 smooths them again, registers each frame to
    the normalised mean with alpha + 2 (from zero flow) and sums the raw frames warped by their
    flows. Each task handles a fixed block of ``PREREG_BLOCK`` positions of ``indices`` and
    returns only sums, reduced in a fixed tree: memory stays bounded, no frames travel between
    processes, and the reference is the same bit for bit whatever the scheduler, the number of
    workers or the recording's chunking.
    """
    import dask

    from ..core.reference import PREREG_EXTRA_SIGMA, prereg_params
    from ..preprocess.filters import sigma_matrix, temporal_depth
    from ..preprocess.normalize import normalize

    n_channels = recording.shape[-1]
    data = recording.data
    n = len(indices)
    sig = sigma_matrix(sigma, n_channels) + PREREG_EXTRA_SIGMA
    depth = temporal_depth(sig, n_channels)
    joint = str(channel_normalization).lower() in ("joint", "together")
    blocks = []
    for a in range(0, n, PREREG_BLOCK):
        b = min(a + PREREG_BLOCK, n)
        lo, hi = max(0, a - depth), min(n, b + depth)
        blocks.append((_sequence_frames(data, indices, lo, hi), a - lo, b - a))
    compute = runner.compute if runner is not None else dask.compute
    (first,) = compute(
        _tree(
            [dask.delayed(_prereg_pass1)(x, off, m, sig, joint) for x, off, m in blocks],
            _combine1,
        )
    )
    lo = np.broadcast_to(np.asarray(first[0], np.float64), (n_channels,))
    hi = np.broadcast_to(np.asarray(first[1], np.float64), (n_channels,))
    mean_proc = np.ascontiguousarray(normalize(first[2] / n, vmin=lo, vmax=hi))
    raw_mean = (first[3] / n).astype(np.float32)
    pparams = prereg_params(params)
    (total,) = compute(
        _tree(
            [
                dask.delayed(_prereg_pass2)(
                    x, off, m, sig, lo, hi, mean_proc, raw_mean, pparams, interpolation
                )
                for x, off, m in blocks
            ],
            np.add,
        )
    )
    return np.ascontiguousarray(total / n, dtype=np.float32)
