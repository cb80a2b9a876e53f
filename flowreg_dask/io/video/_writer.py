"""pyflowreg's video writer base class, and the in-memory and null writers.

A :class:`VideoWriter` receives frames in batches of unknown total count
(:meth:`~VideoWriter.write_frames`) and finishes its output on :meth:`~VideoWriter.close`.
Files are written under a hidden temporary name (``.<name>.<random>.partial``) and renamed into
place by ``close()``: a writer that was not closed, or that failed, never leaves a file that
looks complete.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ...errors import ClosedError, InvalidInputError, warn_user
from .._arrays import check_numeric_dtype
from ._common import AtomicFile

__all__ = ["VideoWriter", "FileVideoWriter", "ArrayWriter", "NullVideoWriter"]


class VideoWriter:
    """Base class of the video writers.

    Subclasses implement ``_open()`` (called with the first frames, when ``height``, ``width``,
    ``n_channels`` and ``dtype`` are known), ``_write(frames)`` for each ``(T, H, W, C)`` batch,
    ``_finish()`` (close and commit) and ``_abort()`` (close and delete what was written).

    Attributes
    ----------
    height, width, n_channels : int or None
        Frame size and channels, set by the first :meth:`write_frames` call.
    dtype : numpy.dtype or None
        Data type of the output, set by the first call; later batches must cast to it safely.
    bit_depth : int or None
        Bits per sample of ``dtype``.
    initialized : bool
        Whether frames have been written.
    frames_written, batches_written : int
        Frames and (non-empty) batches written so far.
    """

    height: int | None = None
    width: int | None = None
    n_channels: int | None = None
    dtype: np.dtype | None = None
    bit_depth: int | None = None
    initialized: bool = False
    frames_written: int = 0
    batches_written: int = 0
    _closed: bool = False
    _failed: BaseException | None = None
    #: Whether only integer and floating-point frames are accepted (file formats).
    _numeric_only: bool = True

    def __init__(self) -> None:
        self.frames_written = 0
        self.batches_written = 0

    # -- subclass interface ----------------------------------------------------------------
    def _open(self) -> None:
        """Prepare the output for frames of the now known shape and dtype."""

    def _write(self, frames: np.ndarray) -> None:
        """Write one non-empty ``(T, H, W, C)`` batch of ``self.dtype``."""

    def _finish(self) -> None:
        """Complete the output (called by :meth:`close` once frames were written)."""

    def _abort(self) -> None:
        """Release everything and delete what was written (must not raise)."""

    def _close_empty(self) -> None:
        """Called by :meth:`close` when no frame was ever written."""

    # -- shapes ----------------------------------------------------------------------------
    def _where(self) -> str:
        return type(self).__name__

    def _as_thwc(self, arr: np.ndarray) -> np.ndarray:
        """pyflowreg's shape rules: ``(H, W)``, ``(H, W, C)`` / ``(T, H, W)``, ``(T, H, W, C)``."""
        if arr.ndim == 4:
            return arr
        if arr.ndim == 2:
            return arr[np.newaxis, :, :, np.newaxis]
        if arr.ndim == 3:
            if not self.initialized:
                # one multi-channel frame if the last axis is short, else single-channel frames
                return arr[np.newaxis] if arr.shape[2] <= 4 else arr[..., np.newaxis]
            hwc = (self.height, self.width, self.n_channels)
            if arr.shape == hwc:
                return arr[np.newaxis]
            if self.n_channels == 1 and arr.shape[1:] == hwc[:2]:
                return arr[..., np.newaxis]
            msg = (
                f"{self._where()} writes frames (H, W, C) = {hwc}; got a 3-D array of shape "
                f"{arr.shape}, which is neither one such frame nor a (T, H, W) stack of "
                "single-channel frames of that size. Pass (T, H, W, C) arrays."
            )
            raise InvalidInputError(msg)
        msg = (
            f"{self._where()} got frames of shape {arr.shape}; expected (H, W), (H, W, C), "
            "(T, H, W) or (T, H, W, C)"
        )
        raise InvalidInputError(msg)

    def _check_consistent(self, arr: np.ndarray) -> np.ndarray:
        hwc = (self.height, self.width, self.n_channels)
        if arr.shape[1:] != hwc:
            msg = (
                f"{self._where()} was started with frames (H, W, C) = {hwc}; got frames "
                f"{arr.shape[1:]} (batch shape {arr.shape}). One output holds one frame size "
                "and channel count: write the other frames to another writer."
            )
            raise InvalidInputError(msg)
        if arr.dtype != self.dtype:
            if not np.can_cast(arr.dtype, self.dtype, casting="safe"):  # type: ignore[arg-type]
                msg = (
                    f"{self._where()} writes {self.dtype} frames (the type of the first batch); "
                    f"got {arr.dtype}, which does not convert without loss. Cast the frames, "
                    f"e.g. frames.astype(np.{self.dtype}), or write them to another writer."
                )
                raise InvalidInputError(msg)
            arr = arr.astype(self.dtype)
        return arr

    # -- public API ------------------------------------------------------------------------
    def write_frames(self, frames: Any) -> None:
        """Append frames.

        Parameters
        ----------
        frames : array_like
            ``(T, H, W, C)``; or ``(H, W)`` (one single-channel frame); or 3-D: once the writer
            knows its frame size, ``(H, W, C)`` is one frame and ``(T, H, W)`` single-channel
            frames; for the first batch a 3-D array is one frame ``(H, W, C)`` when its last
            axis is at most 4 long, else ``(T, H, W)`` (pyflowreg's rule; pass 4-D arrays to
            avoid the guess).

        Raises
        ------
        InvalidInputError
            Frame size, channel count or dtype differ from the first batch (a dtype that
            converts without loss is converted), or the shape is not one of the above.
        ClosedError
            The writer was closed, or failed in an earlier call.
        """
        if self._closed:
            why = f" (it failed: {self._failed!r})" if self._failed is not None else ""
            msg = f"{self._where()} was used after close(){why}; create a new writer"
            raise ClosedError(msg)
        arr = self._as_thwc(np.asarray(frames))
        if not self.initialized:
            if self._numeric_only:
                check_numeric_dtype(arr.dtype, where=self._where())
            if 0 in arr.shape[1:]:
                raise InvalidInputError(f"{self._where()} got empty frames of shape {arr.shape}")
            self.height, self.width, self.n_channels = (int(s) for s in arr.shape[1:])
            self.dtype = arr.dtype.newbyteorder("=")  # native byte order
            self.bit_depth = self.dtype.itemsize * 8
            arr = arr.astype(self.dtype, copy=False)
            self._guarded(self._open)
            self.initialized = True
        else:
            arr = self._check_consistent(arr)
        if arr.shape[0] == 0:
            return
        self._guarded(self._write, arr)
        self.frames_written += int(arr.shape[0])
        self.batches_written += 1

    def _guarded(self, fn: Any, *args: Any) -> None:
        """Run ``fn``; on any error abort the output (nothing half-written survives)."""
        try:
            fn(*args)
        except BaseException as exc:
            self._failed = exc
            self._closed = True
            self._abort()
            raise

    def close(self) -> None:
        """Finish the output (rename files into place); calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        if not self.initialized:
            self._close_empty()
            return
        try:
            self._finish()
        except BaseException as exc:
            self._failed = exc
            self._abort()
            raise

    def discard(self) -> None:
        """Stop without finishing: delete what was written; no output file appears."""
        if self._closed:
            return
        self._closed = True
        self._abort()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        """Close on success; on an exception, :meth:`discard` (no partial file appears)."""
        if exc_type is None:
            self.close()
        else:
            self.discard()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {state}, {self.frames_written} frames written>"


class FileVideoWriter(VideoWriter):
    """A writer of one file, written under a temporary name and renamed by :meth:`close`.

    Attributes
    ----------
    file_path : str
        The final file name.
    """

    def __init__(self, file_path: str | os.PathLike[str]) -> None:
        super().__init__()
        if not isinstance(file_path, (str, os.PathLike)):
            msg = f"{type(self).__name__} needs a file path, got {file_path!r}"
            raise InvalidInputError(msg)
        self._target = AtomicFile(file_path)
        self.file_path = str(self._target.final)

    def _where(self) -> str:
        return f"{type(self).__name__}('{self.file_path}')"

    def _close_empty(self) -> None:
        warn_user(f"{self._where()} was closed without frames; no file was written")

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"<{type(self).__name__} '{self.file_path}' {state}, "
            f"{self.frames_written} frames written>"
        )


class ArrayWriter(VideoWriter):
    """Keeps copies of the written frames in memory; :meth:`get_array` returns them."""

    _numeric_only = False

    def __init__(self) -> None:
        super().__init__()
        self._batches: list[np.ndarray] = []

    def _write(self, frames: np.ndarray) -> None:
        self._batches.append(np.array(frames, copy=True))

    def get_array(self) -> np.ndarray | None:
        """All frames written so far, ``(T, H, W, C)``; None if none were written."""
        if not self._batches:
            return None
        if len(self._batches) > 1:
            self._batches = [np.concatenate(self._batches, axis=0)]
        return self._batches[0]


class NullVideoWriter(VideoWriter):
    """Discards the frames; counts them (``frames_written``) and the batches
    (``batches_written``). For runs whose results are taken from callbacks."""

    _numeric_only = False
