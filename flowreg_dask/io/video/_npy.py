"""NumPy ``.npy`` video writer: frames appended to the file, the header completed on close."""

from __future__ import annotations

import contextlib
import os
import struct
from typing import Any

import numpy as np

from ._writer import FileVideoWriter

__all__ = ["NPYFileWriter"]

_MAGIC = b"\x93NUMPY\x01\x00"
#: Frame count used to size the header before the real one is known (20 digits).
_PLACEHOLDER_T = 10**19


def _npy_header(dtype: np.dtype, shape: tuple[int, ...], length: int | None = None) -> bytes:
    """A version 1.0 ``.npy`` header; padded to ``length`` bytes, or to a multiple of 64."""
    text = (
        f"{{'descr': {np.lib.format.dtype_to_descr(dtype)!r}, 'fortran_order': False, "
        f"'shape': {tuple(int(s) for s in shape)!r}, }}"
    )
    body = text.encode("latin1")
    total = len(_MAGIC) + 2 + len(body) + 1
    if length is None:
        length = total + (-total % 64)
    if total > length:  # pragma: no cover - the placeholder is longer than any real count
        raise ValueError("npy header does not fit")
    body = body + b" " * (length - total) + b"\n"
    return _MAGIC + struct.pack("<H", len(body)) + body


class NPYFileWriter(FileVideoWriter):
    """A ``.npy`` file holding the video ``(T, H, W, C)``, appended batch by batch.

    The header is written with room for any frame count and completed on :meth:`close`;
    ``numpy.load(path, mmap_mode="r")`` and :func:`flowreg_dask.io.open_recording` read it.
    Not a pyflowreg format (``OutputFormat.NPY`` is flowreg_dask's).

    Parameters
    ----------
    file_path : str or path
        The output file; replaced on :meth:`close` if it exists.
    """

    def __init__(self, file_path: str | os.PathLike[str]) -> None:
        super().__init__(file_path)
        self._fh: Any = None
        self._header_len = 0

    def _shape(self, t: int) -> tuple[int, int, int, int]:
        return (t, int(self.height), int(self.width), int(self.n_channels))  # type: ignore[arg-type]

    def _open(self) -> None:
        tmp = self._target.prepare()
        self._fh = open(tmp, "wb")  # noqa: SIM115 - kept open until close()
        header = _npy_header(self.dtype, self._shape(_PLACEHOLDER_T))  # type: ignore[arg-type]
        self._header_len = len(header)
        self._fh.write(header)

    def _write(self, frames: np.ndarray) -> None:
        self._fh.write(memoryview(np.ascontiguousarray(frames)).cast("B"))

    def _finish(self) -> None:
        fh, self._fh = self._fh, None
        fh.seek(0)
        fh.write(_npy_header(self.dtype, self._shape(self.frames_written), self._header_len))  # type: ignore[arg-type]
        fh.close()
        self._target.commit()

    def _abort(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            with contextlib.suppress(Exception):
                fh.close()
        self._target.discard()
