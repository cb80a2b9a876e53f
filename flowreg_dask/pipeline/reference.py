"""Resolve the reference of a run: an array, an image file, or pre-registered frame indices."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..core.params import FlowParams
from ..errors import FlowRegWarning, InvalidInputError, InvalidOptionError, RecordingNotFoundError
from ._heap import tune_heap
from .run import Runner

__all__ = [
    "resolve_reference",
    "build_reference",
    "clip_reference_indices",
    "check_reference_source",
]


DEFAULT_REFERENCE_FRAMES = range(50, 500)


def clip_reference_indices(indices, n_frames: int, *, warn: bool = True) -> list[int]:
    """Reference frame indices checked against the recording.

    Indices given by the user must all lie in the recording (an error names those that do not).
    The default 50..499 is limited to the recording with a warning, as in the reference
    implementation (which repeats the last frame instead); if no default index lies in it, an
    error says what to pass instead.
    """
    idx = [int(i) for i in indices]
    kept = sorted({i for i in idx if 0 <= i < n_frames})
    if len(kept) == len(idx):
        return kept
    outside = sorted({i for i in idx if not 0 <= i < n_frames})
    default = idx == list(DEFAULT_REFERENCE_FRAMES)
    if not default or not kept:
        shown = ", ".join(map(str, outside[:8])) + (", ..." if len(outside) > 8 else "")
        raise InvalidOptionError(
            f"reference_frames: {len(outside)} of {len(idx)} indices lie outside the recording's "
            f"{n_frames} frames (0..{n_frames - 1}): {shown}. Pass indices inside the recording, "
            f"e.g. reference_frames=range(0, {min(n_frames, 50)}), or a reference image."
        )
    if not warn:
        return kept
    warnings.warn(
        f"reference_frames: the default frames 50..499 reach past the recording's {n_frames} "
        f"frames; using the {len(kept)} frames {kept[0]}..{kept[-1]}",
        FlowRegWarning,
        stacklevel=4,
    )
    return kept


def check_reference_source(source: Any, n_frames: int) -> None:
    """Refuse frame indices outside a recording of ``n_frames`` frames before any work starts
    (arrays and image files are checked when they are read)."""
    if isinstance(source, (str, Path)):
        return
    if not isinstance(source, (list, tuple, range)) and np.ndim(source) >= 2:
        return
    clip_reference_indices(np.atleast_1d(np.asarray(source)).tolist(), n_frames, warn=False)


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
    on_frames: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> np.ndarray:
    """The raw reference (H, W, C) float32 for ``recording`` (an xarray t, y, x, c DataArray).

    ``source`` is an array, an image path, or frame indices to pre-register (method spec §2.2).
    Pre-registration reports its progress: ``on_start(total)`` once (each frame counts once per
    pass), then ``on_frames(n)``.
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
        from dask.local import get_sync

        frame = np.asarray(recording.data[indices[0]].compute(scheduler=get_sync))
        return check_reference_shape(frame, height, width, n_channels)
    return preregistered_reference(
        recording,
        indices,
        params=params,
        sigma=sigma,
        channel_normalization=channel_normalization,
        interpolation=interpolation,
        runner=runner,
        on_frames=on_frames,
        on_start=on_start,
    )


PREREG_BLOCK = 16  # reference frames per task: fixed, so the reference depends on nothing else


def _sequence_frames(data, indices: list[int], lo: int, hi: int):
    """Raw frames of positions [lo, hi) of the index sequence as one ``dask.delayed`` (a slice
    when contiguous, so a file-backed recording reads only those frames).

    Built from the slice's own chunk tasks (``to_delayed``) rather than by handing the dask array
    to ``dask.delayed``, which imports ``distributed`` (about 0.2 s, on one core) to check the
    graph for shuffles.
    """
    import dask

    sel = indices[lo:hi]
    if sel == list(range(sel[0], sel[-1] + 1)):
        block = data[sel[0] : sel[-1] + 1]
    else:
        block = data[np.asarray(sel)]
    parts = block.to_delayed()
    if parts.size == 1:
        return parts.flat[0]
    return dask.delayed(np.block)(parts.tolist())


def _smoothed(raw: np.ndarray, offset: int, n: int, sig) -> tuple[np.ndarray, np.ndarray]:
    """Raw and smoothed frames ``offset .. offset + n`` of a block read with its temporal halo."""
    tune_heap()  # the first work of every reference task
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
    on_frames: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Reference from pre-registered frames (method spec §2.2), streamed in two passes.

    Pass 1 smooths the frames (sigma + [1, 1, 0.5], exact temporal halo) and reduces them to
    their intensity range and temporal mean; pass 2 smooths them again, registers each frame to
    the normalised mean with alpha + 2 (from zero flow) and sums the raw frames warped by their
    flows. Each task handles a fixed block of ``PREREG_BLOCK`` positions of ``indices`` and
    returns only sums, reduced in a fixed tree: memory stays bounded, no frames travel between
    processes, and the reference is the same bit for bit whatever the scheduler, the number of
    workers or the recording's chunking. ``on_frames(n)`` reports progress: each frame counts once
    per pass.
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
    run = runner if runner is not None else Runner("sequential", 1)
    if on_start is not None:
        on_start(2 * n)

    def advance(i: int) -> None:
        if on_frames is not None:
            on_frames(blocks[i][2])

    first = run.reduce(
        [dask.delayed(_prereg_pass1)(x, off, m, sig, joint) for x, off, m in blocks],
        _combine1,
        advance,
    )
    lo = np.broadcast_to(np.asarray(first[0], np.float64), (n_channels,))
    hi = np.broadcast_to(np.asarray(first[1], np.float64), (n_channels,))
    mean_proc = np.ascontiguousarray(normalize(first[2] / n, vmin=lo, vmax=hi))
    raw_mean = (first[3] / n).astype(np.float32)
    pparams = prereg_params(params, height=recording.shape[1], width=recording.shape[2])
    total = run.reduce(
        [
            dask.delayed(_prereg_pass2)(
                x, off, m, sig, lo, hi, mean_proc, raw_mean, pparams, interpolation
            )
            for x, off, m in blocks
        ],
        np.add,
        advance,
    )
    return np.ascontiguousarray(total / n, dtype=np.float32)


def build_reference(
    recording,
    options,
    params: FlowParams,
    reference: Any,
    runner,
    *,
    show: bool = False,
    skip: Any = (),
) -> np.ndarray:
    """The raw reference of a run: ``reference`` if given, else built from
    ``options.reference_frames`` (leaving out the frames ``skip``), with a progress bar when
    ``show``."""
    from .progress import FrameProgress

    source = options.reference_frames if reference is None else reference
    if skip and isinstance(source, (list, tuple, range)):
        source = [i for i in source if i not in set(skip)]
    bar = FrameProgress(0, show=show, desc="reference (2 passes)")
    try:
        return resolve_reference(
            recording,
            source,
            params=params,
            sigma=options.sigma,
            channel_normalization=options.channel_normalization,
            interpolation=options.interpolation_method,
            runner=runner,
            on_frames=bar.advance,
            on_start=bar.set_total,
        )
    finally:
        bar.close()
