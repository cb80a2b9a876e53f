"""pyflowreg's video readers (``pyflowreg.util.io``) over flowreg_dask's lazy readers.

A :class:`VideoReader` hands out frames as numpy arrays ``(T, H, W, C)``, eagerly, batch by batch
or by index; the file readers here are thin facades over the lazy frames of
:func:`flowreg_dask.io.open_recording`, so every format, check and metadata of that front end
applies, and a read touches only the frames asked for.

Indices address **binned** frames: with ``bin_size = b`` frame ``i`` is the mean of raw frames
``i*b .. i*b + b - 1``. Differences from pyflowreg, kept on purpose:

* the mean is cast back to the input dtype **rounded** (and clipped) for integer types, where
  pyflowreg truncates toward zero (which biases every binned value down by half a unit);
* the last, partial bin is the mean of the frames it has, where pyflowreg pads it by repeating
  the last frame (which weights that frame more than the others). This is also how
  ``open_recording(..., bin_size=b)`` and the registration bin, so a reader and a run see the
  same frames.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ClosedError, InvalidInputError, InvalidOptionError, NotSupportedError
from .._api import open_recording
from .._lazy import bin_frames, cast_to_dtype, release_handles
from ._common import check_numeric, ordering_axes, positive_int

__all__ = [
    "VideoReader",
    "RecordingReader",
    "TIFFFileReader",
    "HDF5FileReader",
    "MATFileReader",
    "MULTICHANNELFileReader",
    "SUBSETFileReader",
    "ArrayReader",
]


def _frame_index_array(indices: np.ndarray) -> slice | list[int]:
    """The key for ``_read_raw_frames``: a slice for a run of consecutive frames, else a list."""
    if indices.size and np.all(np.diff(indices) == 1):
        return slice(int(indices[0]), int(indices[-1]) + 1)
    return indices.tolist()


class VideoReader:
    """Base class of the video readers: indexing, batches and iteration over binned frames.

    Subclasses implement two methods (as in pyflowreg):

    * ``_initialize()`` sets ``height``, ``width``, ``n_channels``, ``frame_count`` (raw, i.e.
      unbinned frames) and ``dtype``; it is called once, before the first use;
    * ``_read_raw_frames(frame_indices)`` returns raw frames ``(n, H, W, C)`` for a ``slice``
      (step 1) or a list of non-negative indices.

    and may override ``close()``.

    Parameters
    ----------
    buffer_size : int
        Binned frames returned by each :meth:`read_batch` (default 500).
    bin_size : int
        Raw frames averaged into one frame (default 1: no binning).

    Attributes
    ----------
    current_frame : int
        Next **raw** frame :meth:`read_batch` reads (0 after :meth:`reset`).
    height, width, n_channels, frame_count : int
        Frame size, channels and number of raw frames.
    dtype : numpy.dtype
        Data type of the frames (binned frames keep it).

    Notes
    -----
    ``reader[i]`` is frame ``i`` as ``(H, W, C)``; ``reader[a:b]``, ``reader[[i, j]]``,
    ``reader[mask]`` give ``(n, H, W, C)``; negative indices count from the end; a tuple
    indexes frames first, then the other axes (``reader[5, :, :, 0]``). Out-of-range integers
    raise ``IndexError``; slices are clipped like numpy's.
    """

    buffer_size: int = 500
    bin_size: int = 1
    current_frame: int = 0
    height: int | None = None
    width: int | None = None
    n_channels: int | None = None
    frame_count: int | None = None
    dtype: np.dtype | None = None
    _initialized: bool = False
    _closed: bool = False

    def __init__(self, buffer_size: int = 500, bin_size: int = 1) -> None:
        self.buffer_size = positive_int("buffer_size", buffer_size, where=type(self).__name__)
        self.bin_size = positive_int("bin_size", bin_size, where=type(self).__name__)
        self.current_frame = 0

    # -- subclass interface ----------------------------------------------------------------
    def _initialize(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _initialize()")

    def _read_raw_frames(self, frame_indices: slice | list[int]) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} must implement _read_raw_frames()")

    def close(self) -> None:
        """Release the file; the reader cannot be used afterwards. Calling it again is a no-op."""
        self._closed = True

    # -- state -----------------------------------------------------------------------------
    def _ensure_ready(self) -> None:
        if self._closed:
            msg = f"{self._where()} was used after close(); create a new reader to read again"
            raise ClosedError(msg)
        if self._initialized:
            return
        self._initialize()
        missing = [
            name
            for name in ("height", "width", "n_channels", "frame_count", "dtype")
            if getattr(self, name, None) is None
        ]
        if missing:
            msg = f"{type(self).__name__}._initialize() did not set {', '.join(missing)}"
            raise NotImplementedError(msg)
        self.dtype = np.dtype(self.dtype)
        self._initialized = True

    def _where(self) -> str:
        return type(self).__name__

    def _frame_shape(self) -> tuple[int, int, int]:
        return (int(self.height), int(self.width), int(self.n_channels))  # type: ignore[arg-type]

    # -- sizes -----------------------------------------------------------------------------
    def __len__(self) -> int:
        """Number of binned frames, ``ceil(frame_count / bin_size)``."""
        self._ensure_ready()
        return -(-int(self.frame_count) // self.bin_size)  # type: ignore[arg-type]

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(T, H, W, C)`` of the binned recording."""
        return (len(self), *self._frame_shape())

    @property
    def unbinned_shape(self) -> tuple[int, int, int, int]:
        """``(frame_count, H, W, C)``: the raw recording."""
        self._ensure_ready()
        return (int(self.frame_count), *self._frame_shape())  # type: ignore[arg-type]

    # -- reading ---------------------------------------------------------------------------
    def _empty(self) -> np.ndarray:
        return np.empty((0, *self._frame_shape()), dtype=self.dtype)

    def _read_raw(self, indices: np.ndarray) -> np.ndarray:
        """Raw frames at non-negative ``indices`` (any order) as ``(n, H, W, C)``."""
        if indices.size == 0:
            return self._empty()
        out = np.asarray(self._read_raw_frames(_frame_index_array(indices)))
        h, w, c = self._frame_shape()
        if out.ndim == 3 and c == 1:
            out = out[..., np.newaxis]
        if out.shape != (indices.size, h, w, c):
            msg = (
                f"{type(self).__name__}._read_raw_frames returned shape {out.shape} for "
                f"{indices.size} frame(s); expected {(indices.size, h, w, c)}"
            )
            raise InvalidInputError(msg)
        return out

    def _read_bins(self, bins: np.ndarray) -> np.ndarray:
        """Binned frames at non-negative, in-range ``bins`` (any order) as ``(n, H, W, C)``."""
        b, n = self.bin_size, int(self.frame_count)  # type: ignore[arg-type]
        if b == 1 or bins.size == 0:
            return self._read_raw(bins)
        starts = bins * b
        stops = np.minimum(starts + b, n)
        if np.all(np.diff(bins) == 1):  # one run: the last bin of it alone may be partial
            raw = self._read_raw(np.arange(starts[0], stops[-1]))
            return bin_frames(raw, b, self.dtype)
        raw = self._read_raw(
            np.concatenate([np.arange(a, z) for a, z in zip(starts, stops, strict=True)])
        )
        counts = stops - starts
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        sums = np.add.reduceat(raw, offsets, axis=0, dtype=np.float64)
        return cast_to_dtype(sums / counts[:, None, None, None], self.dtype)

    def _bin_indices(self, key: Any) -> tuple[np.ndarray, bool]:
        """``(bin indices, scalar?)`` for a frame key."""
        n = len(self)
        if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
            i = int(key)
            if not -n <= i < n:
                msg = f"frame index {i} is out of range for {type(self).__name__} with {n} frames"
                raise IndexError(msg)
            return np.array([i % n], dtype=np.int64), True
        if isinstance(key, slice):
            return np.arange(n, dtype=np.int64)[key], False
        idx = np.asarray(key)
        if idx.dtype == bool:
            if idx.shape != (n,):
                msg = f"boolean frame mask has shape {idx.shape}; the reader has {n} frames"
                raise IndexError(msg)
            return np.flatnonzero(idx).astype(np.int64), False
        if idx.size == 0:
            return np.empty(0, dtype=np.int64), False
        if idx.ndim != 1 or idx.dtype.kind not in "iu":
            msg = (
                f"frame index {key!r} is not valid: use an int, a slice, a 1-D list/array of "
                "ints or a boolean mask"
            )
            raise TypeError(msg)
        idx = idx.astype(np.int64)
        bad = idx[(idx < -n) | (idx >= n)]
        if bad.size:
            msg = (
                f"frame index {int(bad[0])} is out of range for {type(self).__name__} with {n} "
                "frames"
            )
            raise IndexError(msg)
        return np.where(idx < 0, idx + n, idx), False

    def __getitem__(self, key: Any) -> np.ndarray:
        """Binned frames: int -> ``(H, W, C)``; slice, list, array, mask -> ``(n, H, W, C)``."""
        self._ensure_ready()
        rest: tuple[Any, ...] = ()
        if isinstance(key, tuple):
            if not key:
                key = slice(None)
            elif key[0] is Ellipsis:
                return self[:][key]
            else:
                key, rest = key[0], key[1:]
        bins, scalar = self._bin_indices(key)
        data = self._read_bins(bins)
        if scalar:
            data = data[0]
            return data[rest] if rest else data
        return data[(slice(None), *rest)] if rest else data

    def read_batch(self) -> np.ndarray:
        """The next ``buffer_size`` binned frames ``(n, H, W, C)`` from ``current_frame``.

        Reads ``buffer_size * bin_size`` raw frames (fewer at the end) and advances
        ``current_frame`` past them; returns an empty ``(0, H, W, C)`` array when the recording
        is exhausted.
        """
        self._ensure_ready()
        n = int(self.frame_count)  # type: ignore[arg-type]
        start = int(self.current_frame)
        if start >= n:
            return self._empty()
        stop = min(start + self.buffer_size * self.bin_size, n)
        raw = self._read_raw(np.arange(start, stop))
        self.current_frame = stop
        return bin_frames(raw, self.bin_size, self.dtype)

    def has_batch(self) -> bool:
        """Whether :meth:`read_batch` has frames left to read."""
        self._ensure_ready()
        return int(self.current_frame) < int(self.frame_count)  # type: ignore[arg-type]

    def reset(self) -> None:
        """Start reading batches from the first frame again."""
        self.current_frame = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        """Iterate over the batches from the start (``for batch in reader``)."""
        self._ensure_ready()
        self.reset()
        return self

    def __next__(self) -> np.ndarray:
        if not self.has_batch():
            raise StopIteration
        return self.read_batch()

    def to_pytorch(self, *args: Any, **kwargs: Any) -> Any:
        """Not provided: flowreg_dask does not depend on PyTorch.

        Use ``torch.from_numpy(np.ascontiguousarray(reader[:].transpose(0, 3, 1, 2)))`` for the
        ``(T, C, H, W)`` tensor pyflowreg returns.
        """
        msg = (
            "to_pytorch() is not provided by flowreg_dask (no PyTorch dependency). Use "
            "torch.from_numpy(np.ascontiguousarray(reader[:].transpose(0, 3, 1, 2))) for the "
            "(T, C, H, W) tensor."
        )
        raise NotSupportedError(msg)

    # -- context manager -------------------------------------------------------------------
    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.frame_count} frames"
        return f"<{type(self).__name__} {state}>"


class _DaskFrames:
    """``read``/``read_indices`` over an in-memory dask array ``(T, H, W, C)``."""

    __slots__ = ("data", "shape", "dtype")

    def __init__(self, data: Any) -> None:
        self.data = data
        self.shape = tuple(int(s) for s in data.shape)
        self.dtype = np.dtype(data.dtype)

    def read(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.data[start:stop].compute())

    def read_indices(self, indices: np.ndarray) -> np.ndarray:
        return np.asarray(self.data[np.asarray(indices, dtype=np.int64)].compute())


def _owned(arr: np.ndarray) -> np.ndarray:
    """``arr``, or a copy if it is read-only or a view of a memory-mapped file: batches belong
    to the caller, who may change them in place."""
    if not arr.flags.writeable:
        return np.array(arr)
    base: Any = arr
    while isinstance(base, np.ndarray):
        if isinstance(base, np.memmap):
            return np.array(arr)
        base = base.base
    return np.array(arr) if isinstance(base, mmap.mmap) else arr


def _stem(path: Any) -> str:
    return Path(os.fspath(path)).stem


class RecordingReader(VideoReader):
    """A :class:`VideoReader` over anything :func:`~flowreg_dask.io.open_recording` opens.

    Any supported file (TIFF, HDF5, MAT, zarr/OME-Zarr, npy, raw), a folder of TIFF files, a
    glob pattern, a list of per-channel files, or a dask/xarray array. Only the header is read
    here; each read loads just the frames it returns.

    Parameters
    ----------
    source : str, path, list of paths, or array
        What :func:`~flowreg_dask.io.open_recording` accepts.
    buffer_size : int
        Binned frames per :meth:`read_batch` (default 500).
    bin_size : int
        Raw frames per binned frame (default 1).
    **open_kwargs
        Options of :func:`~flowreg_dask.io.open_recording`: ``format``, ``dataset``,
        ``deinterleave``, ``frames``, ``axes`` and the reader's own options.

    Attributes
    ----------
    file_path : str or None
        The file (None for arrays and lists).
    input_file_name : str or None
        Stem of the file, or of each file joined by ``"_"`` for a list (for output names).
    """

    def __init__(
        self, source: Any, buffer_size: int = 500, bin_size: int = 1, **open_kwargs: Any
    ) -> None:
        super().__init__(buffer_size, bin_size)
        for name in ("bin_size", "buffer_size"):
            if name in open_kwargs:  # pragma: no cover - Python passes them to our parameters
                raise TypeError(f"{name} given twice")
        self.file_path: str | None = None
        self.input_file_name: str | None = None
        if isinstance(source, (str, os.PathLike)):
            self.file_path = os.fspath(source)
            self.input_file_name = _stem(source)
        elif isinstance(source, (list, tuple)) and all(
            isinstance(s, (str, os.PathLike)) for s in source
        ):
            self.input_file_name = "_".join(_stem(s) for s in source)
        self._source = source
        self._open_kwargs = dict(open_kwargs)
        self._frames: Any = None
        self._files: list[str] = []
        self._metadata: dict[str, Any] = {}
        self._ensure_ready()

    def _initialize(self) -> None:
        rec = open_recording(self._source, buffer_size=self.buffer_size, **self._open_kwargs)
        frames = rec.encoding.get("frames")
        self._frames = frames if frames is not None else _DaskFrames(rec.data)
        self._files = [str(f) for f in rec.attrs.get("files") or []]
        self._metadata = dict(rec.attrs)
        self.frame_count, self.height, self.width, self.n_channels = self._frames.shape
        self.dtype = np.dtype(self._frames.dtype)

    def _read_raw_frames(self, frame_indices: slice | list[int]) -> np.ndarray:
        frames = self._frames
        if isinstance(frame_indices, slice):
            start, stop, step = frame_indices.indices(frames.shape[0])
            if step == 1:
                out = frames.read(start, stop)
            else:
                out = frames.read_indices(np.arange(start, stop, step))
        else:
            out = frames.read_indices(np.asarray(frame_indices, dtype=np.int64))
        return _owned(out)

    def _where(self) -> str:
        src = self.file_path or self._metadata.get("source") or "<array>"
        return f"{type(self).__name__}({src!r})"

    def get_metadata(self) -> dict[str, Any]:
        """What the file says about the recording (no pixels read).

        Keys of :func:`~flowreg_dask.io.open_recording`'s ``attrs`` (``source``, ``format``,
        ``files``, ``frame_rate``, ``pixel_size``, ``channel_names``, ``dataset``, ...) plus
        ``shape``, ``unbinned_shape``, ``bin_size``, ``frame_count`` and ``dtype``.
        """
        meta = dict(self._metadata)
        meta.update(
            {
                "shape": self.shape,
                "unbinned_shape": self.unbinned_shape,
                "bin_size": self.bin_size,
                "frame_count": int(self.frame_count),  # type: ignore[arg-type]
                "dtype": str(self.dtype),
            }
        )
        return meta

    def close(self) -> None:
        """Close the file handles this reader opened (in this thread); idempotent."""
        if not self._closed:
            release_handles(self._files)
            self._frames = None
        super().close()

    def __repr__(self) -> str:
        src = self.file_path or self._metadata.get("source") or "<array>"
        if self._closed:
            return f"<{type(self).__name__} {src!r} closed>"
        t, h, w, c = self.unbinned_shape
        return (
            f"<{type(self).__name__} {src!r} {t} frames {h}x{w}x{c} {self.dtype}, "
            f"bin_size={self.bin_size}, buffer_size={self.buffer_size}>"
        )


def _dataset(names: str | Sequence[str] | None) -> str | list[str] | None:
    if names is None or isinstance(names, str):
        return names
    return [str(n) for n in names]


class TIFFFileReader(RecordingReader):
    """TIFF / BigTIFF / ImageJ / OME-TIFF / ScanImage files (see :mod:`flowreg_dask.io.tiff_`).

    Parameters
    ----------
    file_path : str or path
        The TIFF file.
    buffer_size, bin_size : int
        As :class:`VideoReader` (defaults 500, 1).
    deinterleave : int
        ``N > 1``: N consecutive single-channel pages form one N-channel frame (suite2p TIFFs,
        interleaved ScanImage files without metadata). ScanImage files and ImageJ hyperstacks
        are split into channels from their metadata without it.
    use_memmap : bool
        Accepted for pyflowreg compatibility and ignored: uncompressed contiguous data are
        always memory-mapped, everything else is read page by page.
    axes, series, scanimage, plain
        Options of the TIFF reader (keyword only): axis letters overriding the file's labels,
        the image series to read, whether to use ScanImage metadata, whether to ignore the
        format metadata.
    """

    def __init__(
        self,
        file_path: str | os.PathLike[str],
        buffer_size: int = 500,
        bin_size: int = 1,
        deinterleave: int = 1,
        use_memmap: bool = True,
        *,
        axes: str | None = None,
        series: int | None = None,
        scanimage: bool = True,
        plain: bool = False,
    ) -> None:
        self.use_memmap = bool(use_memmap)
        self.deinterleave = positive_int("deinterleave", deinterleave, where="TIFFFileReader")
        super().__init__(
            file_path,
            buffer_size,
            bin_size,
            format="tiff",
            deinterleave=self.deinterleave,
            axes=axes,
            series=series,
            scanimage=scanimage,
            plain=plain,
        )


def _written_hdf5_axes(path: str, dataset_names: Any) -> str | None:
    """Axes of datasets whose ``dimension_ordering`` attribute (written by pyflowreg's and our
    HDF5 writers) is a permutation of (0, 1, 2) other than the default (T, H, W) storage."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            names = dataset_names
            if names is None:
                names = f.attrs.get("dataset_names")
            if names is None:
                return None
            first = names if isinstance(names, (str, bytes)) else np.ravel(names)[0]
            first = first.decode() if isinstance(first, bytes) else str(first)
            obj = f.get(first)
            order = None if obj is None else obj.attrs.get("dimension_ordering")
            if order is None or np.asarray(order).dtype.kind not in "iu":
                return None
            order = np.asarray(order).reshape(-1)
            if order.size != 3 or obj.ndim != 3:
                return None
            axes = ordering_axes(order, "yxt", name="dimension_ordering", where=path)
    except (OSError, KeyError, ValueError, TypeError, InvalidOptionError):
        return None
    return None if axes == "tyx" else axes


class HDF5FileReader(RecordingReader):
    """HDF5 files: one ``(T, H, W)`` dataset per channel or one ``(T, H, W, C)`` dataset.

    Parameters
    ----------
    file_path : str or path
        The HDF5 file.
    buffer_size, bin_size : int
        As :class:`VideoReader` (defaults 500, 1).
    dataset_names : str or list of str, optional
        The dataset, or one dataset per channel. When omitted, the datasets the file lists in
        its ``dataset_names`` attribute (written by :class:`HDF5FileWriter` and by pyflowreg),
        else the only movie-shaped dataset (channel-numbered ones ``ch1``, ``ch2`` ... counting
        as one); several candidates are an error that lists them (see
        :mod:`flowreg_dask.io.hdf5`), never a silent choice.
    axes : str, optional
        Stored order of the dimensions (keyword only), e.g. ``"yxt"``; by default ``"tyx"`` /
        ``"tyxc"``, or what a ``dimension_ordering`` attribute of the datasets says.
    """

    def __init__(
        self,
        file_path: str | os.PathLike[str],
        buffer_size: int = 500,
        bin_size: int = 1,
        dataset_names: str | Sequence[str] | None = None,
        *,
        axes: str | None = None,
    ) -> None:
        self.dataset_names = _dataset(dataset_names)
        if axes is None and os.path.isfile(os.fspath(file_path)):
            axes = _written_hdf5_axes(os.fspath(file_path), self.dataset_names)
        super().__init__(
            file_path, buffer_size, bin_size, format="hdf5", dataset=self.dataset_names, axes=axes
        )


class MATFileReader(RecordingReader):
    """MATLAB MAT-files: v5/v7 (scipy) and v7.3 (HDF5, read lazily), one variable per channel.

    Parameters
    ----------
    file_path : str or path
        The MAT-file.
    buffer_size, bin_size : int
        As :class:`VideoReader` (defaults 500, 1).
    dataset_names : str or list of str, optional
        The variable, or one variable per channel; discovered as for HDF5 when omitted.
    dimension_ordering : sequence of int, optional
        Permutation ``p`` with ``variable.transpose(p)`` = ``(H, W, T)`` in MATLAB's order;
        default ``(0, 1, 2)``: the variables are ``H x W x T`` as MATLAB shows them.
    axes : str, optional
        The same as letters in MATLAB's order (keyword only), e.g. ``"yxct"`` for 4-D.

    Notes
    -----
    v7.3 files are read with the right axes (pyflowreg swapped H and W on them). v5/v7 files
    are loaded whole on the first read (the format stores each variable in one piece).
    """

    def __init__(
        self,
        file_path: str | os.PathLike[str],
        buffer_size: int = 500,
        bin_size: int = 1,
        dataset_names: str | Sequence[str] | None = None,
        dimension_ordering: Sequence[int] | None = None,
        *,
        axes: str | None = None,
    ) -> None:
        self.dataset_names = _dataset(dataset_names)
        if dimension_ordering is not None:
            ordered = ordering_axes(
                dimension_ordering, "yxt", name="dimension_ordering", where=os.fspath(file_path)
            )
            if axes is not None and axes != ordered:
                msg = (
                    f"MATFileReader got dimension_ordering={dimension_ordering!r} and "
                    f"axes={axes!r}; give one of them"
                )
                raise InvalidOptionError(msg)
            axes = ordered
        self.dimension_ordering = dimension_ordering
        super().__init__(
            file_path, buffer_size, bin_size, format="mat", dataset=self.dataset_names, axes=axes
        )


_PYFLOWREG_KWARGS = ("dataset_names", "dimension_ordering", "use_memmap")


def pyflowreg_open_kwargs(paths: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """pyflowreg's reader keyword arguments as :func:`open_recording` options."""
    out = {k: v for k, v in kwargs.items() if k not in _PYFLOWREG_KWARGS}
    if kwargs.get("dataset_names") is not None:
        if "dataset" in out:
            raise InvalidOptionError("give dataset_names or dataset, not both")
        out["dataset"] = _dataset(kwargs["dataset_names"])
    if kwargs.get("dimension_ordering") is not None:
        if out.get("axes") is not None:
            raise InvalidOptionError("give dimension_ordering or axes, not both")
        # the same permutation for MAT (variables in MATLAB's order) and HDF5 (h5py's order)
        out["axes"] = ordering_axes(
            kwargs["dimension_ordering"],
            "yxt",
            name="dimension_ordering",
            where=", ".join(os.fspath(p) for p in paths),
        )
    return out


class MULTICHANNELFileReader(RecordingReader):
    """Several files read as the channels of one recording (one file per channel, in order).

    The files need the same frame count, height and width; different data types are promoted
    to the widest one, with a warning. Each file may hold several channels itself.

    Parameters
    ----------
    list_of_paths : list of str or path
        The files, one per channel group.
    buffer_size, bin_size : int
        As :class:`VideoReader` (defaults 500, 1).
    **kwargs
        Options applied to every file: pyflowreg's ``dataset_names``, ``dimension_ordering``,
        ``deinterleave`` (``use_memmap`` is ignored) or any option of
        :func:`~flowreg_dask.io.open_recording`.

    Attributes
    ----------
    input_file_name : str
        The files' stems joined by ``"_"`` (``ch1_ch2`` for ``ch1.tif``, ``ch2.tif``).
    """

    def __init__(
        self,
        list_of_paths: Sequence[str | os.PathLike[str]],
        buffer_size: int = 500,
        bin_size: int = 1,
        **kwargs: Any,
    ) -> None:
        if isinstance(list_of_paths, (str, os.PathLike)) or not list(list_of_paths):
            msg = (
                f"MULTICHANNELFileReader needs a non-empty list of files (one per channel), got "
                f"{list_of_paths!r}"
            )
            raise InvalidInputError(msg)
        paths = [os.fspath(p) for p in list_of_paths]
        self.file_paths = paths
        super().__init__(paths, buffer_size, bin_size, **pyflowreg_open_kwargs(paths, kwargs))


class SUBSETFileReader(VideoReader):
    """Selected raw frames of another reader, as a reader of their own.

    Frame ``i`` of this reader is raw (unbinned) frame ``indices[i]`` of ``reader``, whatever
    that reader's ``bin_size``. Closing the subset leaves ``reader`` open.

    Parameters
    ----------
    reader : VideoReader
        The reader to take frames from.
    indices : sequence of int
        Raw frame indices of ``reader`` (negative ones count from its end; repeats allowed).
    buffer_size : int, optional
        Frames per :meth:`read_batch` (keyword only; default: ``reader.buffer_size``).
    bin_size : int
        Binning applied to the selected frames (keyword only; default 1).
    """

    def __init__(
        self,
        reader: VideoReader,
        indices: Sequence[int] | np.ndarray,
        *,
        buffer_size: int | None = None,
        bin_size: int = 1,
    ) -> None:
        if not isinstance(reader, VideoReader):
            msg = f"SUBSETFileReader needs a VideoReader, got {type(reader).__name__}"
            raise InvalidInputError(msg)
        super().__init__(reader.buffer_size if buffer_size is None else buffer_size, bin_size)
        reader._ensure_ready()
        n = int(reader.frame_count)  # type: ignore[arg-type]
        idx = np.asarray(indices)
        if idx.size and (idx.ndim != 1 or idx.dtype.kind not in "iu"):
            msg = f"SUBSETFileReader indices must be a 1-D list of integers, got {indices!r}"
            raise InvalidOptionError(msg)
        idx = idx.astype(np.int64).reshape(-1)
        bad = idx[(idx < -n) | (idx >= n)]
        if bad.size:
            msg = (
                f"SUBSETFileReader index {int(bad[0])} is out of range for a reader with {n} raw "
                f"frames (valid: 0..{n - 1}, or negative from the end)"
            )
            raise IndexError(msg)
        if idx.size == 0:
            raise InvalidOptionError("SUBSETFileReader got no frame indices; select at least one")
        self.reader = reader
        self.indices = np.where(idx < 0, idx + n, idx)
        self._initialize()
        self._initialized = True

    def _initialize(self) -> None:
        r = self.reader
        self.height, self.width, self.n_channels = r.height, r.width, r.n_channels
        self.dtype = r.dtype
        self.frame_count = int(self.indices.size)

    def _read_raw_frames(self, frame_indices: slice | list[int]) -> np.ndarray:
        chosen = self.indices[frame_indices]
        return self.reader._read_raw(np.asarray(chosen, dtype=np.int64).reshape(-1))


class ArrayReader(VideoReader):
    """A numpy array read as a video, with pyflowreg's shape rules.

    * 2-D ``(H, W)``: one frame, one channel, ``(1, H, W, 1)``;
    * 3-D: ``(1, H, W, C)`` (one multi-channel frame) when the last dimension is at most 4,
      otherwise ``(T, H, W, 1)`` (a single-channel movie). A ``(T, H, W)`` movie narrower
      than 5 pixels is therefore taken as one frame: pass it 4-D, ``array[..., None]``;
    * 4-D ``(T, H, W, C)`` as is.

    (:func:`~flowreg_dask.io.open_recording` reads every 3-D array as ``(T, H, W)``.)

    Parameters
    ----------
    array : numpy.ndarray
        The frames (integer or floating point).
    buffer_size : int
        Binned frames per :meth:`read_batch` (default 100).
    bin_size : int
        Raw frames per binned frame (default 1).
    inplace : bool
        False (default): every read returns a copy, so changing it leaves ``array`` alone.
        True: unbinned reads of consecutive frames return views of ``array``.
    """

    def __init__(
        self, array: Any, buffer_size: int = 100, bin_size: int = 1, inplace: bool = False
    ) -> None:
        super().__init__(buffer_size, bin_size)
        arr = np.asarray(array)
        check_numeric(arr.dtype, where="ArrayReader")
        if arr.ndim == 2:
            arr = arr[np.newaxis, :, :, np.newaxis]
        elif arr.ndim == 3:
            arr = arr[np.newaxis] if arr.shape[2] <= 4 else arr[..., np.newaxis]
        elif arr.ndim != 4:
            msg = (
                f"ArrayReader got an array of shape {arr.shape}; expected (H, W), (H, W, C), "
                "(T, H, W) or (T, H, W, C)"
            )
            raise InvalidInputError(msg)
        if 0 in arr.shape:
            raise InvalidInputError(f"ArrayReader got an empty array of shape {arr.shape}")
        self.array = arr
        self.inplace = bool(inplace)
        self._initialize()
        self._initialized = True

    def _initialize(self) -> None:
        self.frame_count, self.height, self.width, self.n_channels = self.array.shape
        self.dtype = self.array.dtype

    def _read_raw_frames(self, frame_indices: slice | list[int]) -> np.ndarray:
        out = self.array[frame_indices]
        if isinstance(frame_indices, slice) and not self.inplace:
            out = out.copy()
        return out

    def close(self) -> None:
        """Drop the reference to the array; idempotent."""
        if not self._closed:
            self.array = None  # type: ignore[assignment]
        super().close()
