"""NumPy ``.npy`` export (a memory-mapped file filled chunk by chunk)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._source import _Chunk
from ._staging import _wrap_os_error
from ._writer import _Writer


class _NpyWriter(_Writer):
    """``.npy`` (T, H, W, C) through :func:`numpy.lib.format.open_memmap`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._mm: np.memmap | None = None

    def open(self) -> None:
        target = self.targets[0]
        tmp = self.staging.temp(target.path)
        try:
            self._mm = np.lib.format.open_memmap(
                tmp, mode="w+", dtype=self.src.dtype, shape=self.src.shape
            )
        except OSError as exc:
            raise _wrap_os_error(exc, target.path, "write the export file") from exc

    def write(self, chunk: _Chunk) -> None:
        assert self._mm is not None
        self._mm[chunk.start : chunk.stop] = chunk.corrected.transpose(0, 2, 3, 1)
        self._mm.flush()  # written pages go to the file, not kept dirty in memory

    def finish(self) -> None:
        if self._mm is not None:
            self._mm.flush()
        self._mm = None  # the last reference: unmaps and closes the file

    def abort(self) -> None:
        self._mm = None
