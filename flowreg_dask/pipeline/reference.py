"""Resolve the reference of a run: an array, an image file, or pre-registered frame indices."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..core.params import FlowParams
from ..core.reference import mean_of_warped, prereg_frames, prereg_params
from ..core.solver import FlowEstimator
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
    frames = np.asarray(recording.data[indices].compute(scheduler="synchronous"))
    if len(indices) == 1:
        return check_reference_shape(frames[0], height, width, n_channels)
    proc, mean = prereg_frames(frames, sigma=sigma, channel_normalization=channel_normalization)
    pparams = prereg_params(params)
    flows = _prereg_flows(proc, mean, pparams, runner)
    return np.ascontiguousarray(mean_of_warped(frames, flows, interpolation=interpolation))


def _flows_of(frames: np.ndarray, mean: np.ndarray, params: FlowParams) -> np.ndarray:
    est = FlowEstimator(mean, params)
    init = est.flows(frames[:22]).mean(axis=0)
    return est.flows(frames, init)


def _prereg_flows(proc: np.ndarray, mean: np.ndarray, params: FlowParams, runner) -> np.ndarray:
    """Flows of the pre-registration, parallel over frames with the run's scheduler."""
    if runner is None or runner.n_workers <= 1 or proc.shape[0] < 8:
        return _flows_of(proc, mean, params)
    import dask.array as da

    est_init = FlowEstimator(mean, params).flows(proc[:22]).mean(axis=0)
    n_chunks = min(proc.shape[0], 2 * runner.n_workers)
    size = -(-proc.shape[0] // n_chunks)
    arr = da.from_array(proc, chunks=(size, -1, -1, -1))

    def block(fr: np.ndarray) -> np.ndarray:
        return FlowEstimator(mean, params).flows(fr, est_init)

    flows = arr.map_blocks(
        block, dtype=np.float32, chunks=(arr.chunks[0], arr.chunks[1], arr.chunks[2], (2,))
    )
    (result,) = runner.compute(flows)
    return np.asarray(result)
