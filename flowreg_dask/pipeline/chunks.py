"""How a recording is cut into time chunks: the memory budget, the registration halo, the layout.

Results never depend on the layout (every frame is registered from the same data whatever chunk
it falls in); the layout only sets how much work and memory one task takes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from dask.array.overlap import ensure_minimum_chunksize

from .._constants import DIMS
from ..errors import InvalidInputError, InvalidOptionError
from ..options import OFOptions, RegistrationConfig
from ..preprocess.filters import temporal_depth
from ..store.layout import INNER_CHUNK_FRAMES
from .blocks import init_halo

__all__ = [
    "as_options",
    "aligned_chunk",
    "chunk_frames",
    "chunk_layout",
    "halo_depth",
    "output_dtype",
    "reader_source",
    "recording_for",
]


def chunk_frames(shape: tuple[int, ...], dtype, out_dtype, buffer_size: int, budget: int) -> int:
    """Frames per time chunk: ``buffer_size``, shortened to keep one chunk's working set (raw,
    pre-processed, corrected frames, flows, masks) within ``budget`` bytes."""
    _, h, w, c = shape
    # bytes per pixel and frame alive while a chunk is registered and written (measured): raw,
    # normalised, smoothed and halo-joined float32 copies, corrected frames and their transposed
    # copy for the store, flows (float32 u, v) and their transposed copy, valid masks
    per_px = c * (2 * np.dtype(dtype).itemsize + 12 + 2 * np.dtype(out_dtype).itemsize) + 18
    return int(max(1, min(buffer_size, budget // (h * w * per_px))))


def aligned_chunk(size: int, buffer_size: int, halo: int, inner: int = INNER_CHUNK_FRAMES) -> int:
    """A chunk length shortened by the memory budget, made a whole number of the store's inner
    chunks (``inner`` frames) and at least the halo.

    The store's shards follow the pipeline chunks and its inner chunks divide them, so a chunk of
    a prime number of frames (53 under a 128 MiB budget at 256x256) was stored as one-frame
    chunks, and a worker spent a quarter of its time waiting for zarr to write them. A length
    the user chose (``buffer_size`` itself) is kept as given.
    """
    if size >= buffer_size or size < inner:
        return size
    least = -(-halo // inner) * inner  # the halo, rounded up to whole inner chunks
    return min(buffer_size, max(size // inner * inner, least))


def halo_depth(*, sigma, n_channels: int, update_init: bool) -> tuple[int, int]:
    """Frames (before, after) a chunk needs from its neighbours: the temporal filter's radius on
    both sides, plus before it the frames whose coarse flows initialise its first frames."""
    depth_t = temporal_depth(sigma, n_channels)
    return init_halo(update_init) + depth_t, depth_t


def chunk_layout(chunks_t: tuple[int, ...], depth: tuple[int, int]) -> tuple[int, ...]:
    """The time chunks a registration runs in: ``chunks_t``, with chunks shorter than the halo
    merged into their neighbours (a halo comes from the adjacent chunk only). Results do not
    depend on the layout; it only sets how much work and memory one task takes."""
    need = max(depth)
    if len(chunks_t) == 1 or need == 0 or min(chunks_t) >= need:
        return tuple(chunks_t)
    if sum(chunks_t) <= need:
        return (sum(chunks_t),)
    return tuple(ensure_minimum_chunksize(need, tuple(chunks_t)))


def output_dtype(options: OFOptions, recording: xr.DataArray) -> np.dtype:
    """dtype of the corrected movie: ``options.output_typename``, else the recording's."""
    dt = options.resolved_output_dtype()
    return np.dtype(recording.dtype) if dt is None else dt


def recording_for(
    source: Any, options: OFOptions, config: RegistrationConfig | None = None
) -> xr.DataArray:
    """``source`` as the (t, y, x, c) dask-backed DataArray the registration runs on.

    Opened once (a file by :func:`flowreg_dask.io.open_recording`), then cut into chunks of
    ``buffer_size`` frames, fewer when one chunk's working set would exceed
    ``config.chunk_memory``, and never shorter than the registration halo
    (:func:`chunk_layout`).
    """
    from ..io import open_recording, with_time_chunks

    budget = (config or RegistrationConfig()).chunk_memory
    if isinstance(source, xr.DataArray) and tuple(source.dims) == DIMS:
        rec = source
    else:
        rec = open_recording(source, buffer_size=options.buffer_size, bin_size=options.bin_size)
    if rec.shape[0] == 0:
        raise InvalidInputError("recording: has zero frames; nothing to register")
    if options.channel_idx is not None:
        n_c = rec.shape[-1]
        bad = [c for c in options.channel_idx if c >= n_c]
        if bad:
            raise InvalidOptionError(
                f"channel_idx={options.channel_idx}: the recording has {n_c} channel(s) "
                f"(0..{n_c - 1}); channels {bad} do not exist"
            )
        rec = rec.isel(c=list(options.channel_idx))
    size = chunk_frames(
        rec.shape, rec.dtype, output_dtype(options, rec), options.buffer_size, budget
    )
    depth = halo_depth(
        sigma=options.sigma, n_channels=rec.shape[-1], update_init=options.update_initialization_w
    )
    size = aligned_chunk(size, options.buffer_size, max(depth))
    n = rec.shape[0]
    wanted = chunk_layout(tuple([size] * (n // size) + ([n % size] if n % size else [])), depth)
    if rec.chunks is None or tuple(rec.data.chunks[0]) != wanted or len(rec.data.chunks[1]) > 1:
        rec = with_time_chunks(rec, wanted)
    return rec


def as_options(options: Any) -> OFOptions:
    """``options`` as an :class:`OFOptions` (None: defaults; a dict; a path to a saved file)."""
    if options is None:
        return OFOptions()
    if isinstance(options, OFOptions):
        return options
    if isinstance(options, dict):
        return OFOptions.from_dict(options)
    if isinstance(options, (str, Path)):
        return OFOptions.load(options)
    raise InvalidOptionError(
        f"options: expected an OFOptions, a dict or a path to an options file, got "
        f"{type(options).__name__}"
    )


def reader_source(source: Any) -> Any:
    """A pyflowreg-style video reader given as the input: its frames, lazily."""
    from ..io import VideoReader, reader_recording

    if isinstance(source, VideoReader):
        return reader_recording(source)
    return source
