"""TIFF exports: ImageJ hyperstacks and suite2p-ordered pages (tifffile)."""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import numpy as np

from ._source import _Chunk
from ._staging import _wrap_os_error
from ._writer import _json, _provenance, _Writer

#: Data types ImageJ hyperstacks can hold (else the TIFF gets tifffile's shaped metadata).
_IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))


class _TiffWriter(_Writer):
    """TIFF (``tiff``, ``multifile_tiff``, ``suite2p_tiff``): one TiffWriter per file.

    The series (all pages, their IFDs and the ImageJ/shaped metadata with the final shape) is
    declared once with ``TiffWriter.write(None, shape, dtype, returnoffset=True)``, which reserves
    the image data as one contiguous block (the layout of ``tifffile.memmap``); each chunk's
    pages are then written into that block through the same, still open, TiffWriter.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._writers: list[Any] = []
        self._layout: list[tuple[int, int]] = []  # (data offset, end of file) per file
        self._dtype = self.src.dtype.newbyteorder("<")

    def open(self) -> None:
        import tifffile

        src = self.src
        t, h, w, _ = src.shape
        imagej = self.fmt.kind == "tiff" and src.dtype in _IMAGEJ_DTYPES
        for target in self.targets:
            k = len(target.channels)
            tmp = self.staging.temp(target.path)
            with warnings.catch_warnings():
                # ImageJ itself reads classic TIFF only; Fiji (Bio-Formats) and tifffile read these
                warnings.filterwarnings("ignore", message=".*nonconformant BigTIFF ImageJ")
                try:
                    tw = tifffile.TiffWriter(
                        tmp, bigtiff=True, byteorder="<", imagej=imagej, ome=False
                    )
                except OSError as exc:
                    raise _wrap_os_error(exc, target.path, "write the export file") from exc
            self._writers.append(tw)
            kwargs: dict[str, Any] = {"photometric": "minisblack", "software": "flowreg_dask"}
            if self.fmt.kind == "suite2p_tiff":
                shape: tuple[int, ...] = (t * k, h, w)  # frame0-ch1, frame0-ch2, frame1-ch1, ...
                kwargs["metadata"] = None
            elif imagej:
                shape = (t, k, h, w)
                meta: dict[str, Any] = {"axes": "TCYX"}
                if src.frame_rate:
                    meta["finterval"] = 1.0 / src.frame_rate
                    meta["fps"] = src.frame_rate
                if src.pixel_size:
                    meta["unit"] = "um"
                    kwargs["resolution"] = (1.0 / src.pixel_size, 1.0 / src.pixel_size)
                meta["Info"] = _json(_provenance(src, target.channels))
                kwargs["metadata"] = meta
            else:  # tifffile's shaped JSON description; resolution in the TIFF tags (cm)
                shape = (t, k, h, w)
                meta = {"axes": "TCYX", **_provenance(src, target.channels)}
                if src.pixel_size:
                    px_per_cm = 1e4 / src.pixel_size
                    kwargs["resolution"] = (px_per_cm, px_per_cm)
                    kwargs["resolutionunit"] = "CENTIMETER"
                kwargs["metadata"] = meta
            result = tw.write(None, shape=shape, dtype=self._dtype, returnoffset=True, **kwargs)
            if result is None:  # pragma: no cover - uncompressed strips are always contiguous
                raise RuntimeError(f"tifffile did not reserve contiguous data for {tmp}")
            self._layout.append((int(result[0]), int(tw.filehandle.tell())))

    def write(self, chunk: _Chunk) -> None:
        _, h, w, _ = self.src.shape
        for tw, (offset, _), target in zip(self._writers, self._layout, self.targets, strict=True):
            k = len(target.channels)
            frames = chunk.corrected[:, list(target.channels)]  # (n, k, H, W), T then C
            frames = np.ascontiguousarray(frames, dtype=self._dtype)
            fh = tw.filehandle
            fh.seek(offset + chunk.start * k * h * w * self._dtype.itemsize)
            fh.write_array(frames)

    def finish(self) -> None:
        writers, self._writers = self._writers, []
        for tw, (_, end) in zip(writers, self._layout, strict=True):
            tw.filehandle.seek(end)  # leave the file position where tifffile left it
            tw.close()

    def abort(self) -> None:
        writers, self._writers = self._writers, []
        for tw in writers:
            with contextlib.suppress(Exception):
                tw.close()
