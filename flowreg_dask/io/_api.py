"""``open_recording``: any supported source -> lazy ``xarray.DataArray`` ``(t, y, x, c)``.

This is the only place where readers' lazy wrappers become dask arrays, and the only place
where chunking is decided (``buffer_size`` frames per chunk, whole frames).
"""

from __future__ import annotations

import glob
import inspect
import os
import re
from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from .._constants import DEFAULT_BUFFER_SIZE, DIMS
from ..errors import (
    InvalidInputError,
    InvalidOptionError,
    RecordingNotFoundError,
    UnsupportedFormatError,
)
from ._lazy import (
    BinnedFrames,
    ChannelStackFrames,
    ConcatFrames,
    DeinterleavedFrames,
    LazyFrames,
    SubsetFrames,
    bin_frames,
)
from ._registry import Reader, call_open, get_reader, guess_reader, list_readers
from ._util import format_frame_ranges, frame_runs, warn_user
from .memory import ARRAY_SOURCE, array_to_dask, is_array_source

__all__ = ["open_recording", "with_time_chunks", "info", "describe", "natural_sort_key"]

_TIFF_SUFFIXES = (".tif", ".tiff")
_GLOB_CHARS = re.compile(r"[*?\[]")
#: Metadata of a wrapper copied into ``DataArray.attrs`` when present (all JSON-friendly).
_EXTRA_ATTRS = ("dataset", "dataset_reason", "pixel_size_yx")


def natural_sort_key(path: str) -> list[Any]:
    """Sort key putting ``file2`` before ``file10``."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", path)]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        msg = f"{name} must be a positive integer (>= 1), got {value!r}"
        raise InvalidOptionError(msg)
    return int(value)


# --------------------------------------------------------------------------------------------
# files -> LazyFrames
# --------------------------------------------------------------------------------------------


def _open_file(
    path: str,
    *,
    format: str | None,
    deinterleave: int,
    reader_kwargs: dict[str, Any],
) -> LazyFrames:
    reader: Reader = get_reader(format) if format is not None else guess_reader(path)
    kwargs = dict(reader_kwargs)
    handles_deinterleave = "deinterleave" in inspect.signature(reader.open).parameters
    if handles_deinterleave:
        kwargs["deinterleave"] = deinterleave
    lazy = call_open(reader, path, kwargs)
    if deinterleave > 1 and not handles_deinterleave:
        t = lazy.shape[0]
        if t < deinterleave:
            msg = f"'{path}' has {t} frame(s), fewer than deinterleave={deinterleave}"
            raise InvalidInputError(msg)
        if t % deinterleave:
            warn_user(
                f"'{path}' has {t} frames, not a multiple of deinterleave={deinterleave}; the "
                f"last {t % deinterleave} frame(s) are ignored"
            )
        lazy = DeinterleavedFrames(lazy, deinterleave)
    return lazy


def _warn_promoted(parts: Sequence[LazyFrames], paths: Sequence[str], what: str) -> None:
    dtypes = [p.dtype for p in parts]
    if len(set(dtypes)) > 1:
        target = np.result_type(*dtypes)
        listing = ", ".join(f"'{f}' {d}" for f, d in zip(paths, dtypes, strict=True))
        warn_user(f"{what} have different data types ({listing}); reading all as {target}")


def _concat_files(paths: list[str], source: str, where: str, open_kw: dict[str, Any]) -> LazyFrames:
    parts = [_open_file(p, **open_kw) for p in paths]
    first = parts[0]
    for p, part in zip(paths[1:], parts[1:], strict=True):
        if part.shape[1:] != first.shape[1:]:
            (_, h0, w0, c0), (_, h1, w1, c1) = first.shape, part.shape
            msg = (
                f"Files of {where} differ in frame size: '{paths[0]}' has {h0}x{w0} px x {c0} "
                f"channel(s), '{p}' has {h1}x{w1} px x {c1}. All files of one recording must "
                "have the same height, width and channels."
            )
            raise InvalidInputError(msg)
    if len(parts) == 1:
        return first
    _warn_promoted(parts, paths, f"files of {where}")
    meta = dict(first.metadata)
    meta.update({"source": source, "files": [f for part in parts for f in part.metadata["files"]]})
    return ConcatFrames(parts, meta)


def _stack_channels(paths: list[str], open_kw: dict[str, Any]) -> LazyFrames:
    parts = [_open_path(p, open_kw) for p in paths]
    first = parts[0]
    for p, part in zip(paths[1:], parts[1:], strict=True):
        for label, i in (("frame count", 0), ("height", 1), ("width", 2)):
            if part.shape[i] != first.shape[i]:
                msg = (
                    f"Channel files '{paths[0]}' and '{p}' differ in {label}: "
                    f"{first.shape[i]} vs {part.shape[i]} (shapes T,H,W,C {first.shape} and "
                    f"{part.shape}). Channel files must have equal frame count, height and width."
                )
                raise InvalidInputError(msg)
    _warn_promoted(parts, paths, "channel files")
    names: list[str] | None = []
    for p, part in zip(paths, parts, strict=True):
        part_names = part.metadata.get("channel_names")
        stem = os.path.basename(p).split(".")[0]
        if part_names and len(part_names) == part.shape[3]:
            names.extend(part_names)  # type: ignore[union-attr]
        elif part.shape[3] == 1:
            names.append(stem)  # type: ignore[union-attr]
        else:
            names.extend(f"{stem}_{i}" for i in range(part.shape[3]))  # type: ignore[union-attr]
    if len(set(names)) != len(names):  # type: ignore[arg-type]
        names = None
    meta = dict(first.metadata)
    meta.update(
        {
            "source": ", ".join(paths),
            "files": [f for part in parts for f in part.metadata["files"]],
            "channel_names": names,
        }
    )
    return ChannelStackFrames(parts, meta)


def _folder_files(folder: str) -> list[str]:
    names = [
        os.path.join(folder, n)
        for n in os.listdir(folder)
        if n.lower().endswith(_TIFF_SUFFIXES) and not n.startswith(".")
    ]
    return sorted((n for n in names if os.path.isfile(n)), key=natural_sort_key)


def _open_path(path: str, open_kw: dict[str, Any]) -> LazyFrames:
    fmt = open_kw["format"]
    if os.path.isfile(path):
        return _open_file(path, **open_kw)
    if os.path.isdir(path):
        reader = get_reader(fmt) if fmt is not None else None
        if reader is None:
            for candidate in list_readers().values():
                if candidate.sniff(path, b""):
                    reader = candidate
                    break
        if reader is not None and reader.name != "tiff":
            return _open_file(path, **open_kw)
        files = _folder_files(path)
        if not files:
            listing = sorted(os.listdir(path))
            shown = ", ".join(listing[:8]) + (", ..." if len(listing) > 8 else "")
            msg = (
                f"Folder '{path}' holds no TIFF files and is not a zarr store "
                f"(contents: {shown or 'empty'}). Pass a file, a glob pattern such as "
                f"'{os.path.join(path, '*.h5')}', or a list of per-channel files."
            )
            raise UnsupportedFormatError(msg)
        return _concat_files(files, path, f"folder '{path}'", open_kw)
    if _GLOB_CHARS.search(path):
        files = sorted((f for f in glob.glob(path) if os.path.isfile(f)), key=natural_sort_key)
        if not files:
            msg = f"No files match the pattern '{path}'"
            raise RecordingNotFoundError(msg)
        return _concat_files(files, path, f"pattern '{path}'", open_kw)
    parent = os.path.dirname(os.path.abspath(path))
    hint = "" if os.path.isdir(parent) else f" (the folder '{parent}' does not exist either)"
    msg = f"Recording file not found: '{path}'{hint}. Check the path and the working directory."
    raise RecordingNotFoundError(msg)


def _frame_indices(frames: Any, n: int, where: str) -> np.ndarray:
    if isinstance(frames, slice):
        idx = np.arange(n)[frames]
    else:
        try:
            idx = np.asarray(frames)
        except (TypeError, ValueError) as exc:
            msg = f"frames={frames!r} must be a slice or a list of frame indices"
            raise InvalidOptionError(msg) from exc
        if idx.dtype == bool:
            if idx.shape != (n,):
                msg = f"boolean frames= mask has shape {idx.shape}, {where} has {n} frames"
                raise InvalidOptionError(msg)
            idx = np.flatnonzero(idx)
        elif idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            msg = f"frames={frames!r} must be a slice or a 1-D list of integer frame indices"
            raise InvalidOptionError(msg)
        idx = idx.astype(np.int64)
        bad = idx[(idx < -n) | (idx >= n)]
        if bad.size:
            msg = (
                f"frames= index {int(bad[0])} is out of range for {where} with {n} frames "
                f"(valid: 0..{n - 1}, or negative from the end)"
            )
            raise InvalidOptionError(msg)
        idx = np.where(idx < 0, idx + n, idx)
    if idx.size == 0:
        msg = f"frames={frames!r} selects no frames of {where} ({n} frames)"
        raise InvalidOptionError(msg)
    return idx


def _leaves(lazy: LazyFrames) -> list[LazyFrames]:
    inner = lazy.sources()
    if not inner:
        return [lazy]
    return [leaf for part in inner for leaf in _leaves(part)]


def _check_written(lazy: LazyFrames, idx: np.ndarray | None) -> None:
    """Refuse frames that a file declares but never received (they would read as zeros).

    ``lazy`` is the recording before ``frames=``/binning, ``idx`` the frames selected from it.
    Uses what the readers found in the metadata on opening; reads no pixels.
    """
    mask = lazy.unwritten_mask()
    if mask is None:
        return
    hit = mask if idx is None else mask[idx]
    if not hit.any():
        return
    details = "; ".join(m for m in (leaf.unwritten_message() for leaf in _leaves(lazy)) if m)
    written = frame_runs(~mask)
    if written:
        a, b = max(written, key=lambda r: (r[1] - r[0], -r[0]))
        what = "the written part" if len(written) == 1 else "the longest written part"
        todo = f"Read {what} with frames=slice({a}, {b}) (CLI: --frames {a}:{b})"
        if len(written) > 1:
            todo += f" (written frames: {format_frame_ranges(written)})"
        todo += ", or complete the file."
    else:
        todo = "No frame of it holds data: there is nothing to read."
    selected = ""
    if idx is not None:
        bad = np.unique(idx[hit])
        runs = frame_runs(np.isin(np.arange(mask.size), bad))
        selected = f" frames= selects {bad.size} of them ({format_frame_ranges(runs)})."
    msg = (
        f"{details}.{selected} The file is probably from an interrupted acquisition; these "
        "frames would be read as the fill value (zeros), not as data. "
        f"{todo}"
    )
    raise InvalidInputError(msg)


def _check_nonempty(shape: tuple[int, ...], where: str) -> None:
    t, h, w, c = shape
    if t == 0:
        msg = f"{where} has zero frames; nothing to read"
        raise InvalidInputError(msg)
    if h == 0 or w == 0 or c == 0:
        msg = f"{where} has empty frames (H, W, C = {h}, {w}, {c})"
        raise InvalidInputError(msg)


# --------------------------------------------------------------------------------------------
# dask transforms for in-memory dask inputs
# --------------------------------------------------------------------------------------------


def _deinterleave_block(block: np.ndarray, n: int) -> np.ndarray:
    k, h, w, c = block.shape
    return block.reshape(k // n, n, h, w, c).transpose(0, 2, 3, 1, 4).reshape(k // n, h, w, n * c)


def _transform_dask(
    data: da.Array, meta: dict[str, Any], deinterleave: int, frames: Any, bin_size: int
) -> da.Array:
    if deinterleave > 1:
        n = deinterleave
        t = data.shape[0]
        if t < n:
            msg = f"{ARRAY_SOURCE} has {t} frame(s), fewer than deinterleave={n}"
            raise InvalidInputError(msg)
        if t % n:
            warn_user(
                f"{ARRAY_SOURCE} has {t} frames, not a multiple of deinterleave={n}; the last "
                f"{t % n} frame(s) are ignored"
            )
        data = data[: t - t % n]
        chunk = max(n, (data.chunks[0][0] // n) * n)
        data = data.rechunk({0: chunk, 1: -1, 2: -1, 3: -1})
        _, h, w, c = data.shape
        data = data.map_blocks(
            _deinterleave_block,
            n,
            chunks=(tuple(k // n for k in data.chunks[0]), (h,), (w,), (n * c,)),
            dtype=data.dtype,
        )
        meta["channel_names"] = None
    if frames is not None:
        idx = _frame_indices(frames, data.shape[0], ARRAY_SOURCE)
        data = data[idx]
        rate = meta.get("frame_rate")
        if rate is not None and idx.size > 1:
            steps = np.unique(np.diff(idx))
            even = steps.size == 1 and steps[0] > 0
            meta["frame_rate"] = rate / float(steps[0]) if even else None
    if bin_size > 1:
        b = bin_size
        chunk = max(b, (max(data.chunks[0]) // b) * b)
        data = data.rechunk({0: chunk, 1: -1, 2: -1, 3: -1})
        data = data.map_blocks(
            bin_frames,
            b,
            data.dtype,
            chunks=(tuple(-(-k // b) for k in data.chunks[0]), *data.chunks[1:]),
            dtype=data.dtype,
        )
        if meta.get("frame_rate") is not None:
            meta["frame_rate"] = meta["frame_rate"] / b
    return data


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def _to_dataarray(
    data: da.Array, meta: dict[str, Any], *, bin_size: int, deinterleave: int
) -> xr.DataArray:
    t, _, _, c = data.shape
    names = meta.get("channel_names")
    if names is not None:
        names = [str(v) for v in names]
        if len(names) != c:
            names = None
    attrs: dict[str, Any] = {
        "source": str(meta.get("source") or ARRAY_SOURCE),
        "format": meta.get("format"),
        "files": list(meta.get("files") or []),
        "frame_rate": None if meta.get("frame_rate") is None else float(meta["frame_rate"]),
        "pixel_size": None if meta.get("pixel_size") is None else float(meta["pixel_size"]),
        "channel_names": names,
        "dtype": str(data.dtype),
        "bin_size": bin_size,
        "deinterleave": int(meta.get("deinterleave") or deinterleave),
    }
    for key in _EXTRA_ATTRS:
        if meta.get(key) is not None:
            attrs[key] = meta[key]
    frame = np.arange(t, dtype=np.int64)
    rate, px = attrs["frame_rate"], attrs["pixel_size"]
    # physical coordinates when the file says them (seconds, micrometres), as open_result has
    coords: dict[str, Any] = {
        "t": ("t", frame / rate, {"units": "second"}) if rate else ("t", frame),
        "frame": ("t", frame),
    }
    if px:
        h, w = data.shape[1:3]
        coords["y"] = ("y", np.arange(h) * px, {"units": "micrometer"})
        coords["x"] = ("x", np.arange(w) * px, {"units": "micrometer"})
    if names is not None and len(set(names)) == len(names):
        coords["c"] = names
    return xr.DataArray(data, dims=DIMS, coords=coords, attrs=attrs)


def open_recording(
    source: Any,
    *,
    buffer_size: int = DEFAULT_BUFFER_SIZE,
    format: str | None = None,
    dataset: str | list[str] | None = None,
    deinterleave: int = 1,
    bin_size: int = 1,
    frames: slice | Sequence[int] | None = None,
    axes: str | None = None,
    **reader_kwargs: Any,
) -> xr.DataArray:
    """Open a recording lazily as a dask-backed ``xarray.DataArray`` with dims (t, y, x, c).

    Only headers and metadata are read here; pixels are read when the array is computed, one
    chunk of ``buffer_size`` frames at a time, by whichever dask scheduler runs it (threads,
    processes or a distributed cluster). The input is opened read-only.

    Parameters
    ----------
    source : str, path, list of paths, or array
        * a file: TIFF (multi-page, BigTIFF, ImageJ, OME, ScanImage), HDF5, MAT (v5/v7/v7.3),
          ``.npy``, raw binary (``format="raw"``), or a zarr / OME-Zarr folder;
        * a folder of TIFF files or a glob pattern (``"run1_*.tif"``): the files are read one
          after the other in natural order (``file2`` before ``file10``);
        * a list of files (or folders / patterns): one per channel (same frame count, height
          and width; data types are promoted to the widest with a warning);
        * a numpy, dask or xarray array: (H, W), (T, H, W), (T, H, W, C), or named dims.
    buffer_size : int
        Frames per dask chunk (default 400); frames are never split.
    format : str, optional
        Reader name (see :func:`list_readers`); guessed from the file's content and extension
        when omitted.
    dataset : str or list of str, optional
        HDF5 dataset / MAT variable / zarr array name, or one per channel.
    deinterleave : int
        ``N > 1``: N consecutive single-channel frames (pages) form one N-channel frame.
        ScanImage files are de-interleaved from their metadata without it.
    bin_size : int
        Temporal binning: each output frame is the mean of ``bin_size`` consecutive frames
        (the last bin may be partial), cast back to the input dtype (integers rounded).
    frames : slice or list of int, optional
        Frames to read, indexed after de-interleaving and before binning.
    axes : str, optional
        Stored order of the dimensions (letters t, z, y, x, c), e.g. ``"yxt"`` or ``"tcyx"``,
        for sources whose layout is not (T, H, W[, C]) or is labelled wrongly.
    **reader_kwargs
        Options of the chosen reader, e.g. ``shape=`` and ``dtype=`` for ``format="raw"``,
        ``level=`` for OME-Zarr, ``series=`` or ``scanimage=False`` for TIFF. Options the
        reader does not know raise ``TypeError``.

    Returns
    -------
    xarray.DataArray
        dims ``("t", "y", "x", "c")``, dask chunks ``(buffer_size, H, W, C)``, coordinate
        ``t`` (frame index) and ``c`` (channel names, when known); ``attrs``: ``source``,
        ``format``, ``files``, ``frame_rate`` (Hz), ``pixel_size`` (µm), ``channel_names``,
        ``dtype``, ``bin_size``, ``deinterleave``.

    Raises
    ------
    RecordingNotFoundError
        The file, pattern or dataset does not exist.
    UnsupportedFormatError
        No reader recognises the file (the message lists the readers and their extensions).
    InvalidInputError
        The file is truncated or corrupted, or the data have an unusable shape or type.
    InvalidOptionError
        ``buffer_size``, ``bin_size``, ``deinterleave`` or ``frames`` are invalid.

    Notes
    -----
    Worker threads keep the files they read open (read-only) for the next chunk. Call
    :func:`flowreg_dask.io.clear_handle_cache` before overwriting or deleting an input file in
    the same Python session.

    Examples
    --------
    >>> rec = open_recording("run1.tif", buffer_size=200)  # doctest: +SKIP
    >>> rec.sizes  # doctest: +SKIP
    {'t': 12000, 'y': 512, 'x': 512, 'c': 2}
    >>> first = rec[:10].values  # reads only the first chunk  # doctest: +SKIP
    """
    buffer_size = _positive_int("buffer_size", buffer_size)
    bin_size = _positive_int("bin_size", bin_size)
    deinterleave = _positive_int("deinterleave", deinterleave)

    if is_array_source(source):
        if format not in (None, "array", "memory"):
            msg = f"format={format!r} does not apply to an in-memory array; omit it"
            raise InvalidOptionError(msg)
        if dataset is not None or reader_kwargs:
            extra = ["dataset"] if dataset is not None else []
            extra += sorted(reader_kwargs)
            msg = f"open_recording got options {extra} that do not apply to an in-memory array"
            raise TypeError(msg)
        data, meta = array_to_dask(
            source, axes=axes, chunk_frames=buffer_size * bin_size * deinterleave
        )
        data = _transform_dask(data, meta, deinterleave, frames, bin_size)
        _check_nonempty(data.shape, ARRAY_SOURCE)
        data = data.rechunk({0: buffer_size, 1: -1, 2: -1, 3: -1})
        return _to_dataarray(data, meta, bin_size=bin_size, deinterleave=deinterleave)

    if isinstance(source, (str, os.PathLike)):
        kind, paths = "path", [os.path.expanduser(os.fspath(source))]
    elif isinstance(source, (list, tuple)):
        if not source:
            msg = "open_recording got an empty list of files; pass at least one file"
            raise InvalidInputError(msg)
        bad = [s for s in source if not isinstance(s, (str, os.PathLike))]
        if bad:
            msg = (
                f"a list source must hold file paths (one file per channel), got {bad[0]!r}; "
                "stack arrays yourself (numpy.stack(..., axis=-1)) to pass channels in memory"
            )
            raise InvalidInputError(msg)
        kind, paths = "list", [os.path.expanduser(os.fspath(s)) for s in source]
    else:
        msg = (
            f"cannot open a source of type {type(source).__name__}; pass a path, a list of "
            "per-channel paths, or a numpy/dask/xarray array"
        )
        raise InvalidInputError(msg)

    reader_options = dict(reader_kwargs)
    if dataset is not None:
        reader_options["dataset"] = dataset
    if axes is not None:
        reader_options["axes"] = axes
    open_kw = {"format": format, "deinterleave": deinterleave, "reader_kwargs": reader_options}
    if kind == "list" and len(paths) > 1:
        lazy = _stack_channels(paths, open_kw)
    else:
        lazy = _open_path(paths[0], open_kw)

    where = f"'{lazy.metadata.get('source')}'"
    _check_nonempty(lazy.shape, where)
    idx = None if frames is None else _frame_indices(frames, lazy.shape[0], where)
    _check_written(lazy, idx)
    if idx is not None:
        lazy = SubsetFrames(lazy, idx)
    if bin_size > 1:
        lazy = BinnedFrames(lazy, bin_size)

    rec = _to_dataarray(
        _lazy_dask(lazy, buffer_size), lazy.metadata, bin_size=bin_size, deinterleave=deinterleave
    )
    rec.encoding["frames"] = lazy  # so with_time_chunks can re-cut it without reopening the file
    return rec


def _lazy_dask(lazy: LazyFrames, chunks_t: int | tuple[int, ...]) -> da.Array:
    """The dask array of a reader's frames: one task per chunk reads only that chunk's frames."""
    _, h, w, c = lazy.shape
    return da.from_array(
        lazy,
        chunks=(chunks_t, h, w, c),
        name="open_recording-" + tokenize(lazy, chunks_t),
        asarray=False,
        lock=False,
        inline_array=True,
        meta=np.empty((0, 0, 0, 0), dtype=lazy.dtype),
    )


def with_time_chunks(recording: xr.DataArray, chunks_t: int | tuple[int, ...]) -> xr.DataArray:
    """``recording`` (t, y, x, c) cut into other time chunks.

    A recording opened from a file is re-cut from its reader (each new chunk reads only its own
    frames, the file is not opened again); any other DataArray is rechunked by dask.
    """
    lazy = recording.encoding.get("frames")
    if isinstance(lazy, LazyFrames) and tuple(lazy.shape) == tuple(recording.shape):
        out = recording.copy(data=_lazy_dask(lazy, chunks_t))
        out.encoding["frames"] = lazy
        return out
    return recording.chunk({"t": chunks_t, "y": -1, "x": -1, "c": -1})


# --------------------------------------------------------------------------------------------
# info / describe
# --------------------------------------------------------------------------------------------


def _size_on_disk(paths: Sequence[str]) -> int | None:
    total = 0
    for p in paths:
        try:
            if os.path.isdir(p):
                for root, _, files in os.walk(p):
                    total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
            else:
                total += os.path.getsize(p)
        except OSError:
            return None
    return total if paths else None


def _human_bytes(n: float | None) -> str:
    if n is None:
        return "n/a"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def info(source: Any, **kwargs: Any) -> dict[str, Any]:
    """Facts about a recording (for ``flowreg-dask info FILE``); reads no pixel data.

    ``source`` is anything :func:`open_recording` accepts (``kwargs`` are passed to it) or a
    DataArray it returned. Keys: ``source``, ``format``, ``files``, ``shape`` (T, H, W, C),
    ``n_frames``, ``height``, ``width``, ``n_channels``, ``channel_names``, ``dtype``,
    ``frame_rate``, ``pixel_size``, ``chunk_frames``, ``n_chunks``, ``chunk_bytes``, ``nbytes``
    (uncompressed), ``size_on_disk`` (bytes, None for in-memory sources), ``dataset`` (the
    HDF5 dataset / MAT variable / zarr array / TIFF series read, a list for one per channel;
    None where the format has no choice) and ``dataset_reason`` (how it was chosen).
    """
    rec = source if isinstance(source, xr.DataArray) and "format" in source.attrs else None
    if rec is None:
        rec = open_recording(source, **kwargs)
    t, h, w, c = (int(rec.sizes[d]) for d in DIMS)
    chunks = rec.chunks[0] if rec.chunks is not None else (t,)
    itemsize = np.dtype(rec.dtype).itemsize
    files = list(rec.attrs.get("files") or [])
    return {
        "source": rec.attrs.get("source"),
        "format": rec.attrs.get("format"),
        "files": files,
        "shape": (t, h, w, c),
        "n_frames": t,
        "height": h,
        "width": w,
        "n_channels": c,
        "channel_names": rec.attrs.get("channel_names"),
        "dtype": str(rec.dtype),
        "frame_rate": rec.attrs.get("frame_rate"),
        "pixel_size": rec.attrs.get("pixel_size"),
        "chunk_frames": int(max(chunks)),
        "n_chunks": len(chunks),
        "chunk_bytes": int(max(chunks)) * h * w * c * itemsize,
        "nbytes": t * h * w * c * itemsize,
        "size_on_disk": _size_on_disk(files) if files else None,
        "dataset": rec.attrs.get("dataset"),
        "dataset_reason": rec.attrs.get("dataset_reason"),
    }


def describe(recording: Any, **kwargs: Any) -> str:
    """A short human-readable summary of a recording (what ``flowreg-dask info`` prints)."""
    d = info(recording, **kwargs)
    t, h, w, c = d["shape"]
    names = ", ".join(d["channel_names"]) if d["channel_names"] else "-"
    rate = f"{d['frame_rate']:.6g} Hz" if d["frame_rate"] else "unknown"
    px = f"{d['pixel_size']:.6g} µm" if d["pixel_size"] else "unknown"
    files = d["files"]
    lines = [
        f"Recording:    {d['source']}",
        f"reader:       {d['format']}",
    ]
    if d["dataset"] is not None:
        chosen = d["dataset"] if isinstance(d["dataset"], list) else [d["dataset"]]
        listed = ", ".join(str(v) if str(v).startswith("series") else f"'{v}'" for v in chosen)
        reason = f"  ({d['dataset_reason']})" if d["dataset_reason"] else ""
        lines.append(f"dataset:      {listed}{reason}")
    lines += [
        f"shape:        {t} frames x {h} x {w} px x {c} channel(s)  (t, y, x, c)",
        f"dtype:        {d['dtype']}",
        f"channels:     {names}",
        f"frame rate:   {rate}",
        f"pixel size:   {px}",
        f"chunks:       {d['n_chunks']} of up to {d['chunk_frames']} frames "
        f"({_human_bytes(d['chunk_bytes'])} each)",
        f"in memory:    {_human_bytes(d['nbytes'])}",
        f"on disk:      {_human_bytes(d['size_on_disk'])}"
        + (f" in {len(files)} files" if len(files) > 1 else ""),
    ]
    return "\n".join(lines)
