"""One file per channel: ``<folder>/<stem>_ch<N>.<FILE_TYPE>``, each by its own writer."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InvalidOptionError
from ._hdf5 import HDF5FileWriter
from ._mat import MATFileWriter
from ._tiff import TIFFFileWriter
from ._writer import FileVideoWriter, VideoWriter

__all__ = ["MULTIFILEFileWriter", "DEFAULT_STEM"]

#: Stem of the files when the output names a folder (as in pyflowreg).
DEFAULT_STEM = "compensated"
_WRITERS: dict[str, type[FileVideoWriter]] = {
    "TIFF": TIFFFileWriter,
    "HDF5": HDF5FileWriter,
    "MAT": MATFileWriter,
}


class MULTIFILEFileWriter(VideoWriter):
    """Writes each channel to its own file, ``<folder>/<stem>_ch<N>.<file_type>``.

    Parameters
    ----------
    filename : str or path
        ``folder/name.ext`` writes ``folder/name_ch1.<file_type>``, ...; a name without a
        suffix (or an existing folder) is the folder, with the stem ``"compensated"``.
    file_type : {"TIFF", "HDF5", "MAT"}
        Format of each file (case-insensitive; ``"tif"``, ``"h5"`` accepted); the file
        suffix is its canonical name, e.g. ``.TIFF`` (pyflowreg's naming).
    **writer_kwargs
        Options of the per-file writer (:class:`TIFFFileWriter`, :class:`HDF5FileWriter`,
        :class:`MATFileWriter`). A ``dataset_names`` pattern with ``*`` (default ``"ch*"``)
        gets the file's channel number: ``name_ch2.HDF5`` holds dataset ``ch2``.

    Attributes
    ----------
    file_paths : list of str
        The files, once the channel count is known (after the first write).

    Notes
    -----
    Each file is renamed into place when it is complete, one after the other, on
    :meth:`close`.
    """

    def __init__(
        self, filename: str | os.PathLike[str], file_type: str = "TIFF", **writer_kwargs: Any
    ) -> None:
        from ...options import OutputFormat, choice  # imported when used: pydantic is slow

        super().__init__()
        try:
            fmt: str | None = choice("file_type", file_type, OutputFormat).value
        except ValueError:
            fmt = None
        if fmt not in _WRITERS:
            msg = (
                f"file_type={file_type!r} for MULTIFILEFileWriter is not one of 'TIFF', 'HDF5', "
                "'MAT' (case-insensitive)"
            )
            raise InvalidOptionError(msg)
        path = Path(os.fspath(filename)).expanduser().absolute()
        if path.is_dir() or not path.suffix:
            self.folder, self.stem = path, DEFAULT_STEM
        else:
            self.folder, self.stem = path.parent, path.stem
        self.file_type = fmt
        self._cls = _WRITERS[fmt]
        self.writer_kwargs = dict(writer_kwargs)
        self.file_paths: list[str] = []
        # built now so that wrong options fail here, not at the first frames
        self._writers: list[FileVideoWriter] = [self._channel_writer(0)]

    def _where(self) -> str:
        return f"MULTIFILEFileWriter('{self.folder / self.stem}_ch*.{self.file_type}')"

    def channel_path(self, channel: int) -> Path:
        """The file of 0-based ``channel``."""
        return self.folder / f"{self.stem}_ch{channel + 1}.{self.file_type}"

    def _channel_writer(self, channel: int) -> FileVideoWriter:
        kwargs = dict(self.writer_kwargs)
        names = kwargs.get("dataset_names", "ch*" if self._cls is not TIFFFileWriter else None)
        if isinstance(names, str) and "*" in names:
            kwargs["dataset_names"] = names.replace("*", str(channel + 1))
        return self._cls(self.channel_path(channel), **kwargs)

    def _open(self) -> None:
        n = int(self.n_channels)  # type: ignore[arg-type]
        self._writers += [self._channel_writer(c) for c in range(1, n)]
        self.file_paths = [w.file_path for w in self._writers]

    def _write(self, frames: np.ndarray) -> None:
        for c, writer in enumerate(self._writers):
            writer.write_frames(frames[..., c : c + 1])

    def _finish(self) -> None:
        first: BaseException | None = None
        for writer in self._writers:
            try:
                writer.close()
            except BaseException as exc:  # noqa: BLE001 - close the others, then re-raise
                first = first or exc
        if first is not None:
            raise first

    def _abort(self) -> None:
        for writer in self._writers:
            writer.discard()

    def _close_empty(self) -> None:
        for writer in self._writers:
            writer.close()  # warns that nothing was written
