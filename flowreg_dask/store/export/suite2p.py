"""suite2p binary export (``plane0/data.bin``, ``ops.npy``)."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import (
    FlowRegWarning,
)
from ._source import _Chunk
from ._staging import _wrap_os_error
from ._writer import _provenance, _Writer

_INT16 = np.iinfo(np.int16)


class _Suite2pWriter(_Writer):
    """suite2p registered binary: ``plane0/data.bin`` (+ ``data_chan2.bin``) and ``ops.npy``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bins: list[tuple[int, Any]] = []  # (channel, open file)
        self._ops_tmp: Path | None = None
        self._sums: dict[int, np.ndarray] = {}
        self._clipped = 0

    def open(self) -> None:
        _, h, w, _ = self.src.shape
        for target in self.targets:
            tmp = self.staging.temp(target.path)
            if not target.channels:
                self._ops_tmp = tmp
                continue
            try:
                fh = open(tmp, "wb")  # noqa: SIM115 - kept open for the whole export
            except OSError as exc:
                raise _wrap_os_error(exc, target.path, "write the export file") from exc
            c = target.channels[0]
            self._bins.append((c, fh))
            self._sums[c] = np.zeros((h, w), dtype=np.float64)

    def _to_int16(self, frames: np.ndarray) -> np.ndarray:
        if frames.dtype == np.int16:
            return frames
        if frames.dtype.kind == "f":
            out = np.rint(frames)
            out[np.isnan(out)] = 0
        else:
            out = frames
        over = (out < _INT16.min) | (out > _INT16.max)
        self._clipped += int(np.count_nonzero(over))
        return np.clip(out, _INT16.min, _INT16.max).astype(np.int16)

    def write(self, chunk: _Chunk) -> None:
        for c, fh in self._bins:
            data = np.ascontiguousarray(self._to_int16(chunk.corrected[:, c]), dtype="<i2")
            self._sums[c] += data.sum(axis=0, dtype=np.float64)
            fh.write(data.tobytes())

    def finish(self) -> None:
        bins, self._bins = self._bins, []
        for _, fh in bins:
            fh.close()
        t, h, w, c = self.src.shape
        folder = self.targets[0].path.parent
        ops: dict[str, Any] = {
            "Ly": h,
            "Lx": w,
            "nframes": t,
            "nchannels": c,
            "nplanes": 1,
            "functional_chan": 1,
            "align_by_chan": 1,
            "fs": float(self.src.frame_rate) if self.src.frame_rate else 10.0,
            "do_registration": 0,
            "reg_file": str(folder / "data.bin"),
            "save_path": str(folder),
            "ops_path": str(folder / "ops.npy"),
            "yrange": [0, h],
            "xrange": [0, w],
            "meanImg": (self._sums.get(0, np.zeros((h, w))) / t).astype(np.float32),
            "flowreg_dask": _provenance(self.src, list(range(c))),
        }
        if c == 2:
            ops["reg_file_chan2"] = str(folder / "data_chan2.bin")
            ops["meanImg_chan2"] = (self._sums[1] / t).astype(np.float32)
        assert self._ops_tmp is not None
        with open(self._ops_tmp, "wb") as fh:
            np.save(fh, np.array(ops, dtype=object), allow_pickle=True)
        if self._clipped:
            warnings.warn(
                f"{self._clipped} pixel values of the movie lie outside the int16 range of "
                "suite2p's binary and were clipped to [-32768, 32767]. Scale the data first "
                "(suite2p itself halves uint16 TIFF data) if that matters.",
                FlowRegWarning,
                stacklevel=3,
            )

    def abort(self) -> None:
        bins, self._bins = self._bins, []
        for _, fh in bins:
            with contextlib.suppress(Exception):
                fh.close()
