"""Raw binary reader (suite2p ``data.bin`` and similar headerless files), memory-mapped.

A raw file has no header, so its layout must be given::

    open_recording("suite2p/plane0/data.bin", format="raw",
                   shape=(ops["nframes"], ops["Ly"], ops["Lx"]), dtype="int16")

``shape`` is (T, H, W) or (T, H, W, C) in C order (or as stated by ``axes``); ``T = -1`` infers
the frame count from the file size. ``offset`` skips a leading header of that many bytes.

A suite2p binary next to its ``ops.npy`` (``plane0/data.bin``, ``data_chan2.bin``) needs neither:
the frame size comes from ``ops["Ly"]``, ``ops["Lx"]`` (and ``nframes``), the dtype is suite2p's
int16 and ``ops["fs"]`` becomes the frame rate.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ._arrays import AxesArrayFrames, check_frames, check_numeric_dtype, resolve_axes
from ._lazy import check_unchanged, file_stamp
from ._registry import Reader
from ._util import warn_user

__all__ = ["RawReader", "RawFrames"]


class RawFrames(AxesArrayFrames):
    """Frames of a memory-mapped headerless binary file."""

    __slots__ = ("offset", "order", "file_dtype")

    def __init__(self, *, offset: int, order: str, file_dtype: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.offset = int(offset)
        self.order = order
        self.file_dtype = file_dtype

    def _arrays(self) -> list[Any]:
        check_unchanged(self.path, self.stamp)
        # a fresh map per read: pages of a long-lived map would accumulate in the resident set
        mm = np.memmap(
            self.path,
            dtype=self.file_dtype,
            mode="r",
            offset=self.offset,
            shape=self.raw_shape,
            order=self.order,
        )
        return [mm]


class RawReader(Reader):
    """Headerless binary files (suite2p data.bin): needs ``shape`` and ``dtype``."""

    name = "raw"
    description = "raw binary, e.g. suite2p data.bin (needs shape=(T,H,W) and dtype=)"
    url = "https://suite2p.readthedocs.io/en/latest/outputs.html"
    extensions = (".bin", ".raw")

    def open(
        self,
        path: str,
        *,
        shape: Sequence[int] | None = None,
        dtype: Any = None,
        offset: int = 0,
        order: str = "C",
        axes: str | None = None,
    ) -> RawFrames:
        """Open a raw binary file.

        Parameters
        ----------
        path : str
            The file.
        shape : sequence of int
            (T, H, W) or (T, H, W, C) (or the order given by ``axes``); T may be -1.
        dtype : numpy dtype
            Element type, e.g. ``"int16"`` for suite2p; ``"<u2"`` states the byte order.
        offset : int
            Bytes to skip at the start of the file.
        order : {"C", "F"}
            Memory order of the stored array.
        axes : str, optional
            Order of the dimensions in ``shape`` (letters t, z, y, x, c).
        """
        frame_rate = None
        if shape is None and dtype is None:
            ops = _suite2p_ops(path)
            if ops is not None:
                shape = (int(ops.get("nframes", -1)), int(ops["Ly"]), int(ops["Lx"]))
                dtype = "int16"
                try:
                    frame_rate = float(ops.get("fs"))
                except (TypeError, ValueError):
                    frame_rate = None  # no usable rate in ops: leave it unknown
        if shape is None or dtype is None:
            msg = (
                f"Raw binary file '{path}' has no header: pass shape=(T, H, W) and dtype=..., "
                "e.g. open_recording(path, format='raw', shape=(ops['nframes'], ops['Ly'], "
                "ops['Lx']), dtype='int16') for a suite2p data.bin (found automatically when "
                "its ops.npy lies next to it)"
            )
            raise InvalidInputError(msg)
        stamp = file_stamp(path)
        where = f"raw binary file '{path}'"
        try:
            dt = np.dtype(dtype)
        except TypeError as exc:
            msg = f"dtype={dtype!r} for {where} is not a numpy data type"
            raise InvalidInputError(msg) from exc
        check_numeric_dtype(dt, where=where)
        if order not in ("C", "F"):
            msg = f"order={order!r} for {where}: use 'C' or 'F'"
            raise InvalidInputError(msg)
        try:
            shape = tuple(int(s) for s in shape)
        except (TypeError, ValueError) as exc:
            msg = f"shape={shape!r} for {where} must be a sequence of integers"
            raise InvalidInputError(msg) from exc
        offset = int(offset)
        available = os.path.getsize(path) - offset
        ax = resolve_axes(axes, shape, where=where)
        t_pos = ax.index("t") if "t" in ax else None
        if shape.count(-1) > 1 or (-1 in shape and shape.index(-1) != t_pos):
            msg = f"shape={shape} for {where}: only the number of frames (t) may be -1"
            raise InvalidInputError(msg)
        if any(s < -1 for s in shape):
            msg = f"shape={shape} for {where} has negative sizes"
            raise InvalidInputError(msg)
        per_frame = int(np.prod([s for i, s in enumerate(shape) if i != t_pos])) * dt.itemsize
        if -1 in shape:
            if per_frame == 0:
                msg = f"shape={shape} for {where} has an empty frame"
                raise InvalidInputError(msg)
            shape = tuple(available // per_frame if s == -1 else s for s in shape)
        need = int(np.prod(shape)) * dt.itemsize
        if need > available:
            msg = (
                f"{where} holds {available} bytes after offset {offset} but shape={shape} with "
                f"dtype={dt} needs {need}: the file is truncated or shape/dtype are wrong"
            )
            raise InvalidInputError(msg)
        if need < available:
            warn_user(
                f"{where} holds {available} bytes but shape={shape} with dtype={dt} uses {need}; "
                "the remaining bytes are ignored (check shape and dtype)"
            )
        check_frames(shape, ax, where=where)
        meta = {"source": path, "format": self.name, "files": [path], "axes": ax}
        if frame_rate is not None and np.isfinite(frame_rate) and frame_rate > 0:
            meta["frame_rate"] = frame_rate
        return RawFrames(
            path=path,
            stamp=stamp,
            members=[""],
            axes=ax,
            raw_shape=shape,
            dtype=dt.newbyteorder("="),
            metadata=meta,
            offset=offset,
            order=order,
            file_dtype=dt.str,
        )


def _suite2p_ops(path: str) -> dict | None:
    """suite2p's ``ops.npy`` beside ``path`` as a dict, or None when there is none (or it does
    not describe a frame size). It is a pickled dict, so it is loaded with ``allow_pickle``: open
    only ops files you trust, as with suite2p itself."""
    ops_path = os.path.join(os.path.dirname(os.path.abspath(path)), "ops.npy")
    if not os.path.isfile(ops_path):
        return None
    try:
        ops = np.load(ops_path, allow_pickle=True)
        ops = ops.item() if isinstance(ops, np.ndarray) and ops.dtype == object else ops
    except Exception as exc:  # noqa: BLE001 - any unreadable ops file gets the same advice
        msg = (
            f"suite2p ops file '{ops_path}' next to '{path}' cannot be read ({exc!r}); pass "
            "shape=(T, H, W) and dtype='int16' to read the binary without it"
        )
        raise InvalidInputError(msg) from exc
    if not isinstance(ops, dict) or "Ly" not in ops or "Lx" not in ops:
        return None
    return ops
