"""``.npy`` reader: memory-mapped with ``np.load(mmap_mode="r")``.

A 2-D array is one frame (H, W), 3-D is (T, H, W), 4-D is (T, H, W, C); ``axes=`` states
another order. Only the requested frames are paged in from disk.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ._arrays import AxesArrayFrames, check_frames, check_numeric_dtype, resolve_axes
from ._lazy import check_unchanged, file_stamp
from ._registry import Reader

__all__ = ["NpyReader", "NpyFrames", "load_npy"]

NPY_MAGIC = b"\x93NUMPY"


def load_npy(path: str) -> np.ndarray:
    """Memory-map a ``.npy`` file read-only, with a clear error for damaged files."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        msg = (
            f"NumPy file '{path}' could not be memory-mapped ({exc}). The file seems truncated, "
            "corrupted or holds Python objects rather than a numeric array."
        )
        raise InvalidInputError(msg) from exc


class NpyFrames(AxesArrayFrames):
    """Frames of a memory-mapped ``.npy`` array."""

    __slots__ = ()

    def _arrays(self) -> list[Any]:
        check_unchanged(self.path, self.stamp)
        # a fresh map per read: pages of a long-lived map would accumulate in the resident set
        return [load_npy(self.path)]


class NpyReader(Reader):
    """NumPy ``.npy`` files, memory-mapped."""

    name = "npy"
    description = "NumPy .npy arrays (memory-mapped)"
    url = "https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html"
    extensions = (".npy",)

    def sniff(self, path: str, header: bytes) -> bool:
        return header[:6] == NPY_MAGIC

    def open(self, path: str, *, axes: str | None = None) -> NpyFrames:
        """Open a ``.npy`` file; ``axes`` gives the stored dimension order (default
        ``"yx"``/``"tyx"``/``"tyxc"`` by number of dimensions)."""
        stamp = file_stamp(path)
        arr = load_npy(path)
        shape = tuple(arr.shape)
        where = f"NumPy file '{path}' (shape {shape})"
        dtype = check_numeric_dtype(arr.dtype.newbyteorder("="), where=where)
        del arr
        ax = resolve_axes(axes, shape, where=where)
        check_frames(shape, ax, where=where)
        meta = {"source": path, "format": self.name, "files": [path], "axes": ax}
        return NpyFrames(
            path=path,
            stamp=stamp,
            members=[""],
            axes=ax,
            raw_shape=shape,
            dtype=dtype,
            metadata=meta,
        )
