"""pyflowreg's video reader base class (``pyflowreg.util.io.VideoReader``), the array reader
and the frame-subset reader.

A :class:`VideoReader` hands out frames as numpy arrays ``(T, H, W, C)``, eagerly, batch by batch
or by index. Indices address **binned** frames: with ``bin_size = b`` frame ``i`` is the mean of
raw frames ``i*b .. i*b + b - 1``. Differences from pyflowreg, kept on purpose:

* the mean is cast back to the input dtype **rounded** (and clipped) for integer types, where
  pyflowreg truncates toward zero (which biases every binned value down by half a unit);
* the last, partial bin is the mean of the frames it has, where pyflowreg pads it by repeating
  the last frame (which weights that frame more than the others). This is also how
  ``open_recording(..., bin_size=b)`` and the registration bin, so a reader and a run see the
  same frames.

The file readers (:mod:`._files`) are facades over :func:`flowreg_dask.io.open_recording`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ...errors import ClosedError, InvalidInputError, InvalidOptionError, NotSupportedError
from .._arrays import check_numeric_dtype
from .._lazy import bin_frames, cast_to_dtype
from ._common import positive_int

__all__ = ["VideoReader", "SUBSETFileReader", "ArrayReader"]


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
        check_numeric_dtype(arr.dtype, where="ArrayReader")
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
