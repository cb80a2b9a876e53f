"""Lazy frame wrappers: what a reader returns and what ``open_recording`` turns into dask.

A :class:`LazyFrames` describes a recording as ``(T, H, W, C)`` frames without holding any pixel
data. ``read(start, stop)`` returns frames ``start:stop`` as a numpy array of shape
``(stop - start, H, W, C)``; nothing else in the object touches the file.

Wrappers are small, picklable and hold no open file handle: the dask multiprocessing and
distributed schedulers ship them to other processes. Readers open their file inside ``_read``
through :func:`cached_handle`, a per-thread, per-process cache, so a worker opens a file once and a
copy that arrives in another process (or a forked child) opens its own handle.

The composable wrappers in this module (:class:`SubsetFrames`, :class:`BinnedFrames`,
:class:`DeinterleavedFrames`, :class:`ChannelStackFrames`, :class:`ConcatFrames`) implement the
options of ``open_recording`` that act on frames, on top of any reader.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import InvalidInputError

__all__ = [
    "LazyFrames",
    "SubsetFrames",
    "BinnedFrames",
    "DeinterleavedFrames",
    "ChannelStackFrames",
    "ConcatFrames",
    "bin_frames",
    "cast_to_dtype",
    "cached_handle",
    "clear_handle_cache",
    "release_handles",
    "file_stamp",
    "check_unchanged",
]

#: Metadata keys every wrapper carries (values may be None).
METADATA_KEYS = ("source", "format", "files", "frame_rate", "pixel_size", "channel_names")


# --------------------------------------------------------------------------------------------
# file handles
# --------------------------------------------------------------------------------------------

#: Most handles one cache (a thread's, or the shared one) keeps open; the least recently
#: used one is closed beyond this.
MAX_HANDLES_PER_THREAD = 16

_local = threading.local()
_all_caches_lock = threading.Lock()
_all_caches: list[OrderedDict] = []


def file_stamp(path: str) -> tuple[int, int]:
    """``(mtime_ns, size)`` of a file: identifies one version of it."""
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size)


def check_unchanged(path: str, stamp: tuple[int, int] | None) -> None:
    """Raise :class:`InvalidInputError` if ``path`` changed since ``stamp`` was taken."""
    if stamp is None:
        return
    try:
        now = file_stamp(path)
    except OSError as exc:
        msg = (
            f"Recording file '{path}' disappeared after it was opened ({exc}). "
            "Keep the input in place until the computation has finished."
        )
        raise InvalidInputError(msg) from exc
    if now != tuple(stamp):
        msg = (
            f"Recording file '{path}' changed on disk after it was opened "
            f"(modification time/size {tuple(stamp)} -> {now}). Reopen it with open_recording()."
        )
        raise InvalidInputError(msg)


def _close(handle: Any) -> None:
    close = getattr(handle, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # noqa: BLE001 - closing a read-only handle must never fail a read
            pass


def _thread_cache() -> OrderedDict:
    pid = os.getpid()
    if getattr(_local, "pid", None) != pid:
        # first use in this thread, or a forked child that inherited the parent's handles:
        # forget them (never close a parent's handle from a child) and start afresh
        _local.pid = pid
        _local.cache = OrderedDict()
        with _all_caches_lock:
            _all_caches.append(_local.cache)
    return _local.cache


_shared_lock = threading.Lock()
_shared: dict[str, Any] = {"pid": None, "cache": OrderedDict()}


def _shared_cache() -> OrderedDict:
    pid = os.getpid()
    if _shared["pid"] != pid:  # first use, or a forked child: forget the parent's handles
        _shared["pid"] = pid
        _shared["cache"] = OrderedDict()
    return _shared["cache"]


def cached_handle(key: tuple, opener: Callable[[], Any], *, per_thread: bool = True) -> Any:
    """Return the handle cached under ``key``, opening it with ``opener()`` on first use.

    ``key`` should contain the reader kind, the path and the file stamp, so that a file rewritten
    under the same name is opened anew. With ``per_thread=True`` (for handles that are not
    thread-safe, such as ``tifffile.TiffFile``) each thread keeps its own handle; otherwise one
    handle is shared by the threads of a process (memory maps, zarr arrays, h5py files, data
    loaded in full). Handles are never shared between processes: a copy of a wrapper that
    arrives in another process, or a forked child, opens its own.
    """
    if not per_thread:
        with _shared_lock:
            cache = _shared_cache()
            handle = cache.pop(key, None)
            if handle is None:
                handle = opener()
                while len(cache) >= MAX_HANDLES_PER_THREAD:
                    _, old = cache.popitem(last=False)
                    _close(old)
            cache[key] = handle
            return handle
    cache = _thread_cache()
    try:
        handle = cache.pop(key)
    except KeyError:
        handle = opener()
        while len(cache) >= MAX_HANDLES_PER_THREAD:
            _, old = cache.popitem(last=False)
            _close(old)
    cache[key] = handle
    return handle


def release_handles(paths: Sequence[str]) -> None:
    """Close the cached handles of ``paths`` held by this thread and shared by this process.

    Handles of other threads' caches are left alone (they may be in use); a later read opens
    the file again. For a reader that reads in the calling thread (the video readers of
    :mod:`flowreg_dask.io.video`) this releases every handle it opened.
    """
    wanted = {os.fspath(p) for p in paths}
    if not wanted:
        return

    def evict(cache: OrderedDict) -> None:
        for key in [k for k in cache if any(isinstance(v, str) and v in wanted for v in k)]:
            _close(cache.pop(key))

    if getattr(_local, "pid", None) == os.getpid():
        evict(_local.cache)
    with _shared_lock:
        if _shared["pid"] == os.getpid():
            evict(_shared["cache"])


def clear_handle_cache() -> None:
    """Close every file handle the readers of this process keep open."""
    pid = os.getpid()
    with _all_caches_lock:
        caches = list(_all_caches)
        _all_caches.clear()
    if getattr(_local, "pid", None) == pid:
        _local.pid = None
    with _shared_lock:
        if _shared["pid"] == pid:
            caches.append(_shared["cache"])
        _shared["pid"] = None
        _shared["cache"] = OrderedDict()
    for cache in caches:
        while cache:
            _, handle = cache.popitem()
            _close(handle)


# --------------------------------------------------------------------------------------------
# dtype helpers
# --------------------------------------------------------------------------------------------


def cast_to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast float results back to ``dtype``: rounded and clipped for integer types."""
    dtype = np.dtype(dtype)
    if values.dtype == dtype:
        return values
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    elif dtype.kind == "b":
        values = np.rint(values)
    return values.astype(dtype, copy=False)


def bin_frames(block: np.ndarray, bin_size: int, dtype: np.dtype | None = None) -> np.ndarray:
    """Mean of each ``bin_size`` consecutive frames of ``block`` (axis 0).

    The last bin may be partial; it is averaged over the frames it has. The mean is taken in
    float64 and cast back to ``dtype`` (default: the block's dtype), rounding for integer types.
    """
    dtype = block.dtype if dtype is None else np.dtype(dtype)
    if bin_size == 1:
        return block.astype(dtype, copy=False)
    n = block.shape[0]
    full, rest = divmod(n, bin_size)
    out = np.empty((full + (rest > 0), *block.shape[1:]), dtype=np.float64)
    if full:
        grouped = block[: full * bin_size].reshape(full, bin_size, *block.shape[1:])
        np.mean(grouped, axis=1, dtype=np.float64, out=out[:full])
    if rest:
        np.mean(block[full * bin_size :], axis=0, dtype=np.float64, out=out[full])
    return cast_to_dtype(out, dtype)


# --------------------------------------------------------------------------------------------
# base class
# --------------------------------------------------------------------------------------------


def _slots(cls: type) -> list[str]:
    names: list[str] = []
    for klass in reversed(cls.__mro__):
        slots = klass.__dict__.get("__slots__", ())
        if isinstance(slots, str):
            slots = (slots,)
        names.extend(s for s in slots if s not in names)
    return names


class LazyFrames:
    """A recording as ``(T, H, W, C)`` frames, read on demand.

    Attributes
    ----------
    shape : tuple of int
        ``(T, H, W, C)``.
    dtype : numpy.dtype
        Data type of the frames ``read`` returns.
    metadata : dict
        ``source``, ``format``, ``files``, ``frame_rate`` (Hz), ``pixel_size`` (µm),
        ``channel_names`` and reader-specific extras; values may be None.

    Subclasses implement ``_read(start, stop)`` for ``0 <= start < stop <= T`` and keep every
    attribute in ``__slots__`` picklable (paths, not open files).
    """

    __slots__ = ("shape", "dtype", "metadata")

    def __init__(
        self, shape: Sequence[int], dtype: Any, metadata: dict[str, Any] | None = None
    ) -> None:
        shape = tuple(int(s) for s in shape)
        if len(shape) != 4:
            msg = f"LazyFrames needs a (T, H, W, C) shape, got {shape}"
            raise ValueError(msg)
        self.shape = shape
        self.dtype = np.dtype(dtype)
        meta = {key: None for key in METADATA_KEYS}
        meta.update(metadata or {})
        self.metadata = meta

    # -- array-like protocol used by dask.array.from_array --------------------------------
    @property
    def ndim(self) -> int:
        return 4

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start:stop`` (clipped to the recording) as ``(n, H, W, C)``."""
        start, stop, _ = slice(int(start), int(stop)).indices(self.shape[0])
        if stop <= start:
            return np.empty((0, *self.shape[1:]), dtype=self.dtype)
        out = self._read(start, stop)
        expected = (stop - start, *self.shape[1:])
        if out.shape != expected:
            msg = (
                f"{type(self).__name__} returned frames of shape {out.shape} for "
                f"{start}:{stop}, expected {expected} (source {self.metadata.get('source')!r})"
            )
            raise InvalidInputError(msg)
        return out.astype(self.dtype, copy=False)

    def read_indices(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Frames at the given (non-negative) indices, in the given order."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            return np.empty((0, *self.shape[1:]), dtype=self.dtype)
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= self.shape[0]:
            msg = f"frame index out of range 0..{self.shape[0] - 1}: {lo if lo < 0 else hi}"
            raise IndexError(msg)
        span = hi - lo + 1
        if span <= 2 * idx.size:
            # dense enough: one read of the covering range
            return self.read(lo, hi + 1)[idx - lo]
        breaks = np.flatnonzero(np.diff(idx) != 1) + 1
        parts = [self.read(int(run[0]), int(run[-1]) + 1) for run in np.split(idx, breaks)]
        return np.concatenate(parts, axis=0)

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            i = next(i for i, k in enumerate(key) if k is Ellipsis)
            fill = (slice(None),) * (4 - (len(key) - 1))
            key = key[:i] + fill + key[i + 1 :]
        tkey, rest = (key[0], key[1:]) if key else (slice(None), ())
        if isinstance(tkey, (int, np.integer)):
            i = int(tkey)
            if i < 0:
                i += self.shape[0]
            if not 0 <= i < self.shape[0]:
                msg = f"frame index {int(tkey)} out of range for {self.shape[0]} frames"
                raise IndexError(msg)
            return self.read(i, i + 1)[(0, *rest)]
        if isinstance(tkey, slice):
            start, stop, step = tkey.indices(self.shape[0])
            if step == 1:
                data = self.read(start, stop)
            else:
                data = self.read_indices(np.arange(start, stop, step))
        else:
            idx = np.asarray(tkey)
            if idx.dtype == bool:
                idx = np.flatnonzero(idx)
            idx = np.where(idx < 0, idx + self.shape[0], idx)
            data = self.read_indices(idx)
        return data[(slice(None), *rest)] if rest else data

    def _read(self, start: int, stop: int) -> np.ndarray:
        raise NotImplementedError

    # -- frames the file declares but never received -------------------------------------
    def unwritten_ranges(self) -> tuple[tuple[int, int], ...]:
        """``(start, stop)`` ranges of frames that were never written to the file.

        Readers that can tell from metadata alone (HDF5: chunks never allocated) override it;
        reading such frames would return the fill value (usually 0) as if it were data.
        Empty when every frame was written or when the format cannot tell.
        """
        return ()

    def unwritten_message(self) -> str | None:
        """One sentence naming the file, the dataset and the unwritten frames (leaves only)."""
        return None

    def unwritten_mask(self) -> np.ndarray | None:
        """Boolean ``(T,)`` mask of the frames that read unwritten data, or None if none do.

        Wrappers map their inner recordings' masks through their frame selection.
        """
        ranges = self.unwritten_ranges()
        if not ranges:
            return None
        mask = np.zeros(self.shape[0], dtype=bool)
        for a, b in ranges:
            mask[a:b] = True
        return mask

    def sources(self) -> tuple[LazyFrames, ...]:
        """The recordings this one reads from (empty for a reader's own wrapper)."""
        return ()

    # -- pickling: slots only, nothing cached ----------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _slots(type(self)) if hasattr(self, name)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)

    def __dask_tokenize__(self) -> object:
        from dask.base import tokenize

        return (type(self).__qualname__, tokenize(self.__getstate__()))

    def __repr__(self) -> str:
        t, h, w, c = self.shape
        src = self.metadata.get("source")
        return f"<{type(self).__name__} {t}x{h}x{w}x{c} {self.dtype} from {src!r}>"

    # -- helpers for subclasses ------------------------------------------------------------
    def _derived_metadata(self, **changes: Any) -> dict[str, Any]:
        meta = dict(self.metadata)
        meta.update(changes)
        return meta


# --------------------------------------------------------------------------------------------
# composable wrappers
# --------------------------------------------------------------------------------------------


class SubsetFrames(LazyFrames):
    """Selected frames of another recording (``frames=`` of ``open_recording``)."""

    __slots__ = ("inner", "indices")

    def __init__(self, inner: LazyFrames, indices: Sequence[int] | np.ndarray) -> None:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        frame_rate = inner.metadata.get("frame_rate")
        if frame_rate is not None and idx.size > 1:
            steps = np.unique(np.diff(idx))
            frame_rate = frame_rate / float(steps[0]) if steps.size == 1 and steps[0] > 0 else None
        super().__init__(
            (idx.size, *inner.shape[1:]),
            inner.dtype,
            inner._derived_metadata(frame_rate=frame_rate),
        )
        self.inner = inner
        self.indices = idx

    def _read(self, start: int, stop: int) -> np.ndarray:
        return self.inner.read_indices(self.indices[start:stop])

    def sources(self) -> tuple[LazyFrames, ...]:
        return (self.inner,)

    def unwritten_mask(self) -> np.ndarray | None:
        inner = self.inner.unwritten_mask()
        if inner is None:
            return None
        mask = inner[self.indices]
        return mask if mask.any() else None


class BinnedFrames(LazyFrames):
    """Temporal binning: frame ``i`` is the mean of inner frames ``i*b .. i*b + b - 1``.

    The last bin may be partial and is averaged over the frames it has; values are cast back
    to the input dtype (rounded for integers).
    """

    __slots__ = ("inner", "bin_size")

    def __init__(self, inner: LazyFrames, bin_size: int) -> None:
        n = -(-inner.shape[0] // bin_size)
        frame_rate = inner.metadata.get("frame_rate")
        super().__init__(
            (n, *inner.shape[1:]),
            inner.dtype,
            inner._derived_metadata(
                frame_rate=None if frame_rate is None else frame_rate / bin_size
            ),
        )
        self.inner = inner
        self.bin_size = int(bin_size)

    def _read(self, start: int, stop: int) -> np.ndarray:
        b = self.bin_size
        raw = self.inner.read(start * b, min(stop * b, self.inner.shape[0]))
        return bin_frames(raw, b, self.dtype)

    def sources(self) -> tuple[LazyFrames, ...]:
        return (self.inner,)

    def unwritten_mask(self) -> np.ndarray | None:
        inner = self.inner.unwritten_mask()
        if inner is None:
            return None
        padded = np.zeros(self.shape[0] * self.bin_size, dtype=bool)
        padded[: inner.size] = inner
        return padded.reshape(self.shape[0], self.bin_size).any(axis=1)


class DeinterleavedFrames(LazyFrames):
    """``n`` consecutive frames of the inner recording form the channels of one frame.

    Channel ``j * C + c`` of frame ``i`` is channel ``c`` of inner frame ``i * n + j``. Trailing
    inner frames that do not fill a whole frame are dropped (the caller warns).
    """

    __slots__ = ("inner", "n")

    def __init__(self, inner: LazyFrames, n: int, channel_names: list[str] | None = None) -> None:
        t, h, w, c = inner.shape
        super().__init__(
            (t // n, h, w, c * n),
            inner.dtype,
            inner._derived_metadata(channel_names=channel_names),
        )
        self.inner = inner
        self.n = int(n)

    def _read(self, start: int, stop: int) -> np.ndarray:
        n = self.n
        raw = self.inner.read(start * n, stop * n)
        k, (_, h, w, c) = stop - start, self.inner.shape
        return raw.reshape(k, n, h, w, c).transpose(0, 2, 3, 1, 4).reshape(k, h, w, n * c)

    def sources(self) -> tuple[LazyFrames, ...]:
        return (self.inner,)

    def unwritten_mask(self) -> np.ndarray | None:
        inner = self.inner.unwritten_mask()
        if inner is None:
            return None
        t = self.shape[0]
        mask = inner[: t * self.n].reshape(t, self.n).any(axis=1)
        return mask if mask.any() else None


def _promoted_dtype(parts: Sequence[LazyFrames]) -> np.dtype:
    return np.result_type(*[p.dtype for p in parts])


class ChannelStackFrames(LazyFrames):
    """Several recordings of equal T, H, W read as the channels of one recording."""

    __slots__ = ("parts",)

    def __init__(self, parts: Sequence[LazyFrames], metadata: dict[str, Any]) -> None:
        parts = tuple(parts)
        t, h, w, _ = parts[0].shape
        c = sum(p.shape[3] for p in parts)
        super().__init__((t, h, w, c), _promoted_dtype(parts), metadata)
        self.parts = parts

    def _read(self, start: int, stop: int) -> np.ndarray:
        return np.concatenate(
            [p.read(start, stop).astype(self.dtype, copy=False) for p in self.parts], axis=3
        )

    def sources(self) -> tuple[LazyFrames, ...]:
        return self.parts

    def unwritten_mask(self) -> np.ndarray | None:
        masks = [m for m in (p.unwritten_mask() for p in self.parts) if m is not None]
        return np.logical_or.reduce(masks) if masks else None


class ConcatFrames(LazyFrames):
    """Several recordings of equal H, W, C read one after the other in time."""

    __slots__ = ("parts", "offsets")

    def __init__(self, parts: Sequence[LazyFrames], metadata: dict[str, Any]) -> None:
        parts = tuple(parts)
        offsets = np.concatenate([[0], np.cumsum([p.shape[0] for p in parts])]).astype(np.int64)
        super().__init__((int(offsets[-1]), *parts[0].shape[1:]), _promoted_dtype(parts), metadata)
        self.parts = parts
        self.offsets = offsets

    def _read(self, start: int, stop: int) -> np.ndarray:
        out = []
        first = int(np.searchsorted(self.offsets, start, side="right")) - 1
        for i in range(first, len(self.parts)):
            lo = int(self.offsets[i])
            if lo >= stop:
                break
            a, b = max(start, lo) - lo, min(stop, int(self.offsets[i + 1])) - lo
            if b > a:
                out.append(self.parts[i].read(a, b).astype(self.dtype, copy=False))
        return np.concatenate(out, axis=0)

    def sources(self) -> tuple[LazyFrames, ...]:
        return self.parts

    def unwritten_mask(self) -> np.ndarray | None:
        masks = [p.unwritten_mask() for p in self.parts]
        if all(m is None for m in masks):
            return None
        return np.concatenate(
            [
                np.zeros(p.shape[0], bool) if m is None else m
                for p, m in zip(self.parts, masks, strict=True)
            ]
        )
