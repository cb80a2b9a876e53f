"""TIFF video writer: one tifffile.TiffWriter kept open, one page (group) per frame."""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from typing import Any

import numpy as np

from ...errors import InvalidInputError, InvalidOptionError
from ._writer import FileVideoWriter

__all__ = ["TIFFFileWriter"]

#: pyflowreg's compression names -> tifffile's; ``None`` = uncompressed.
_COMPRESSIONS: dict[str, str | None] = {
    "none": None,
    "": None,
    "zlib": "zlib",
    "deflate": "zlib",
    "lzw": "lzw",
    "jpeg": "jpeg",
}
#: Codecs that tifffile can encode only with the optional package imagecodecs.
_NEEDS_IMAGECODECS = ("lzw", "jpeg")
_IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
#: ImageJ description entries computed from the final shape (never taken from ``metadata``).
_IMAGEJ_SHAPE_KEYS = ("axes", "shape", "images", "channels", "slices", "frames", "hyperstack")


def _imagecodecs_available() -> bool:
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        return False
    return True


class TIFFFileWriter(FileVideoWriter):
    """BigTIFF with one page per frame, written frame by frame through one open file.

    Layouts:

    * ``format="default"``: one page per frame; a multi-channel frame is one page with ``C``
      contiguous samples (``(H, W, C)``). Uncompressed files are one image series whose
      shape is in tifffile's JSON description (``{"shape": [T, H, W, C], ...metadata}``), so
      ``tifffile.imread`` returns ``(T, H, W[, C])``.
    * ``format="suite2p"``: single-channel pages with the channels interleaved, frame 0
      channel 1, frame 0 channel 2, frame 1 channel 1, ... (suite2p's ``nchannels``); read back
      with ``TIFFFileReader(path, deinterleave=C)``.
    * ``imagej=True``: an ImageJ hyperstack ``TCYX`` (uint8, uint16 or float32; uncompressed),
      whose description gets the final frame and channel counts on :meth:`close`.

    Parameters
    ----------
    file_path : str or path
        The output file; replaced on :meth:`close` if it exists.
    format : {"default", "suite2p"}
        Page layout (see above).
    compression : {None, "none", "zlib", "deflate", "lzw", "jpeg"}
        Page compression; "lzw" and "jpeg" need the package ``imagecodecs``.
    compression_level : int
        zlib level 0-9 or JPEG quality (default 6).
    bigtiff : bool
        Write BigTIFF (default True; classic TIFF files end at 4 GiB).
    imagej : bool
        Write an ImageJ hyperstack (default False).
    metadata : dict, optional
        Stored with the file: in the JSON description (default format), as ImageJ description
        entries (``imagej=True``: e.g. ``finterval``, ``unit``, ``spacing``), not at all for
        ``format="suite2p"`` (suite2p reads plain pages).
    """

    def __init__(
        self,
        file_path: str | os.PathLike[str],
        format: str = "default",
        compression: str | None = None,
        compression_level: int = 6,
        bigtiff: bool = True,
        imagej: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(file_path)
        where = self._where()
        fmt = str(format).strip().lower()
        if fmt not in ("default", "suite2p"):
            msg = f"format={format!r} for {where} is not one of 'default', 'suite2p'"
            raise InvalidOptionError(msg)
        key = "none" if compression is None else str(compression).strip().lower()
        if key not in _COMPRESSIONS:
            msg = (
                f"compression={compression!r} for {where} is not one of None, 'none', 'zlib', "
                "'deflate', 'lzw', 'jpeg'"
            )
            raise InvalidOptionError(msg)
        codec = _COMPRESSIONS[key]
        if codec in _NEEDS_IMAGECODECS and not _imagecodecs_available():
            msg = (
                f"compression={compression!r} for {where} needs the package imagecodecs, which "
                "is not installed: pip install imagecodecs, or use compression='zlib'"
            )
            raise InvalidOptionError(msg)
        if imagej and fmt == "suite2p":
            msg = f"imagej=True does not apply to format='suite2p' ({where}); choose one"
            raise InvalidOptionError(msg)
        if imagej and codec is not None:
            msg = (
                f"imagej=True with compression={compression!r} ({where}): ImageJ hyperstacks "
                "written frame by frame are uncompressed; drop one of the two"
            )
            raise InvalidOptionError(msg)
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidOptionError(f"metadata for {where} must be a dict, got {metadata!r}")
        self.format = fmt
        self.compression = codec
        self.compression_level = int(compression_level)
        self.bigtiff = bool(bigtiff)
        self.imagej = bool(imagej)
        self.metadata = dict(metadata or {})
        self._tw: Any = None

    # -- writing ---------------------------------------------------------------------------
    def _open(self) -> None:
        import tifffile

        if self.imagej and self.dtype not in _IMAGEJ_DTYPES:
            msg = (
                f"{self._where()}: ImageJ hyperstacks hold uint8, uint16 or float32 frames, got "
                f"{self.dtype}; cast the frames or use imagej=False"
            )
            raise InvalidInputError(msg)
        tmp = self._target.prepare()
        with warnings.catch_warnings():
            # ImageJ itself reads classic TIFF only; Fiji (Bio-Formats) and tifffile read these
            warnings.filterwarnings("ignore", message=".*nonconformant BigTIFF ImageJ")
            self._tw = tifffile.TiffWriter(
                tmp, bigtiff=self.bigtiff, byteorder="<", imagej=self.imagej
            )

    def _page_kwargs(self, first: bool, samples: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"photometric": "minisblack", "software": "flowreg_dask"}
        if samples > 1:
            kwargs["planarconfig"] = "contig"
        if self.compression is None:
            kwargs["contiguous"] = True
        else:
            kwargs["compression"] = self.compression
            if self.compression in ("zlib", "jpeg"):
                kwargs["compressionargs"] = {"level": self.compression_level}
        if self.format == "suite2p":
            kwargs["metadata"] = None
        elif self.imagej:
            meta = {k: v for k, v in self.metadata.items() if k not in _IMAGEJ_SHAPE_KEYS}
            kwargs["metadata"] = meta if first else None
        elif self.compression is None:
            kwargs["metadata"] = dict(self.metadata) if first else None
        else:  # compressed pages: no shaped series (one series per page); plain generic pages
            kwargs["metadata"] = None
            if first and self.metadata:
                kwargs["description"] = json.dumps(self.metadata, default=str)
        return kwargs

    def _write(self, frames: np.ndarray) -> None:
        tw = self._tw
        c = int(self.n_channels)  # type: ignore[arg-type]
        frames = frames.astype(frames.dtype.newbyteorder("<"), copy=False)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*nonconformant BigTIFF ImageJ")
            for i, frame in enumerate(frames):
                first = self.frames_written == 0 and i == 0
                if self.format == "suite2p":
                    for k in range(c):
                        tw.write(frame[..., k], **self._page_kwargs(first and k == 0, 1))
                elif self.imagej:
                    tw.write(np.moveaxis(frame, -1, 0), **self._page_kwargs(first, 1))
                elif c == 1:
                    tw.write(frame[..., 0], **self._page_kwargs(first, 1))
                else:
                    tw.write(frame, **self._page_kwargs(first, c))

    def _finish(self) -> None:
        import tifffile

        tw, self._tw = self._tw, None
        tw.close()
        if self.imagej:
            meta = {
                k: v
                for k, v in self.metadata.items()
                if k not in _IMAGEJ_SHAPE_KEYS and isinstance(v, (str, int, float, bool))
            }
            shape = (self.frames_written, 1, self.n_channels, self.height, self.width, 1)
            description = tifffile.imagej_description(shape, rgb=False, **meta)
            tifffile.tiffcomment(self._target.tmp, comment=description.encode("ascii"))
        self._target.commit()

    def _abort(self) -> None:
        tw, self._tw = self._tw, None
        if tw is not None:
            with contextlib.suppress(Exception), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tw.close()
        self._target.discard()
