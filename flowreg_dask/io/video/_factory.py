"""pyflowreg's factories: ``get_video_file_reader`` and ``get_video_file_writer``."""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from ...errors import NotSupportedError, RecordingNotFoundError, UnsupportedFormatError
from .._registry import guess_reader, list_readers
from ..memory import is_array_source
from ._files import (
    HDF5FileReader,
    MATFileReader,
    MULTICHANNELFileReader,
    RecordingReader,
    TIFFFileReader,
    pyflowreg_open_kwargs,
)
from ._hdf5 import HDF5FileWriter
from ._mat import MATFileWriter
from ._multifile import MULTIFILEFileWriter
from ._npy import NPYFileWriter
from ._reader import ArrayReader, VideoReader
from ._tiff import TIFFFileWriter
from ._writer import ArrayWriter, NullVideoWriter, VideoWriter

__all__ = ["get_video_file_reader", "get_video_file_writer", "reader_recording"]

#: pyflowreg's reader by file extension.
_BY_EXTENSION: dict[str, type[RecordingReader]] = {
    ".tif": TIFFFileReader,
    ".tiff": TIFFFileReader,
    ".h5": HDF5FileReader,
    ".hdf5": HDF5FileReader,
    ".hdf": HDF5FileReader,
    ".mat": MATFileReader,
}
#: The same classes for the formats our registry recognises by content.
_BY_READER = {"tiff": TIFFFileReader, "hdf5": HDF5FileReader, "mat": MATFileReader}
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_GLOB_CHARS = re.compile(r"[*?\[]")


def _folder_reader(path: str, buffer_size: int, bin_size: int, kwargs: dict[str, Any]) -> Any:
    for name, reader in list_readers().items():
        if reader.sniff(path, b""):  # a zarr / OME-Zarr store is a folder
            return RecordingReader(
                path, buffer_size, bin_size, format=name, **pyflowreg_open_kwargs([path], kwargs)
            )
    entries = sorted(os.listdir(path))
    images = [n for n in entries if n.lower().endswith(_IMAGE_SUFFIXES)]
    if images:
        shown = ", ".join(images[:3]) + (", ..." if len(images) > 3 else "")
        msg = (
            f"'{path}' is a folder of {len(images)} image file(s) ({shown}); reading a folder "
            "of images as one video is not provided by get_video_file_reader (pyflowreg does "
            "not port MATLAB's image-folder reader either). For TIFF files read one after "
            "the other use flowreg_dask.io.video.RecordingReader(folder) or "
            "flowreg_dask.open_recording(folder); otherwise pass a single file."
        )
        raise NotSupportedError(msg)
    msg = (
        f"'{path}' is a folder without image files and not a zarr store; pass a video file "
        "(TIFF, HDF5, MAT, npy, zarr) or a list of per-channel files"
    )
    raise UnsupportedFormatError(msg)


def get_video_file_reader(
    input_source: Any, buffer_size: int = 500, bin_size: int = 1, **kwargs: Any
) -> VideoReader:
    """The reader for a video file, array or list of per-channel files.

    Parameters
    ----------
    input_source : str, path, list of paths, numpy array, dask/xarray array, or VideoReader
        * a :class:`VideoReader`: returned as is (``buffer_size``, ``bin_size`` ignored);
        * a numpy array: :class:`ArrayReader` (pyflowreg's shape rules);
        * a dask or xarray array: :class:`RecordingReader` (``open_recording``'s rules);
        * a list of files: :class:`MULTICHANNELFileReader`, one file per channel;
        * ``.tif``/``.tiff``: :class:`TIFFFileReader`; ``.h5``/``.hdf5``/``.hdf``:
          :class:`HDF5FileReader`; ``.mat``: :class:`MATFileReader`;
        * any other file or a zarr folder: the reader that recognises its content
          (:func:`flowreg_dask.io.list_readers`: zarr/OME-Zarr, npy, ...); a glob pattern
          (``"run1_*.tif"``): its files one after the other.
    buffer_size : int
        Binned frames per :meth:`~VideoReader.read_batch` (default 500).
    bin_size : int
        Raw frames per binned frame (default 1).
    **kwargs
        Options of the chosen reader (``deinterleave``, ``dataset_names``,
        ``dimension_ordering``, ``inplace``, ...).

    Raises
    ------
    RecordingNotFoundError
        The file does not exist (a ``FileNotFoundError``).
    NotSupportedError
        A folder of images, or an MDF file (a ``NotImplementedError``).
    UnsupportedFormatError
        A file or folder no reader recognises (a ``ValueError``; the message lists the
        readers).
    """
    if isinstance(input_source, VideoReader):
        return input_source
    if isinstance(input_source, np.ndarray):
        return ArrayReader(input_source, buffer_size, bin_size, **kwargs)
    if is_array_source(input_source):
        return RecordingReader(input_source, buffer_size, bin_size, **kwargs)
    if isinstance(input_source, (list, tuple)):
        return MULTICHANNELFileReader(list(input_source), buffer_size, bin_size, **kwargs)
    if not isinstance(input_source, (str, os.PathLike)):
        msg = (
            f"get_video_file_reader cannot read a {type(input_source).__name__}; pass a file "
            "path, a list of per-channel files, an array or a VideoReader"
        )
        raise UnsupportedFormatError(msg)
    path = os.path.expanduser(os.fspath(input_source))
    if os.path.isdir(path):
        return _folder_reader(path, buffer_size, bin_size, kwargs)
    if not os.path.exists(path):
        if _GLOB_CHARS.search(path):
            return RecordingReader(
                path, buffer_size, bin_size, **pyflowreg_open_kwargs([path], kwargs)
            )
        parent = os.path.dirname(os.path.abspath(path))
        hint = "" if os.path.isdir(parent) else f" (the folder '{parent}' does not exist either)"
        msg = f"Video file not found: '{path}'{hint}. Check the path and the working directory."
        raise RecordingNotFoundError(msg)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".mdf":
        msg = (
            f"'{path}' is a Sutter MScan MDF file; reading it needs MScan's Windows COM server, "
            "which flowreg_dask does not use. Export the recording to TIFF in MScan."
        )
        raise NotSupportedError(msg)
    cls = _BY_EXTENSION.get(ext)
    if cls is not None:
        return cls(path, buffer_size, bin_size, **kwargs)
    reader = guess_reader(path)  # UnsupportedFormatError listing the readers if none fits
    cls = _BY_READER.get(reader.name)
    if cls is not None:
        return cls(path, buffer_size, bin_size, **kwargs)
    return RecordingReader(
        path, buffer_size, bin_size, format=reader.name, **pyflowreg_open_kwargs([path], kwargs)
    )


def get_video_file_writer(
    file_path: str | os.PathLike[str] | None, output_format: Any, **kwargs: Any
) -> VideoWriter:
    """The writer for an output format (pyflowreg's ``OutputFormat`` names).

    Parameters
    ----------
    file_path : str or path
        The output file (for ``MULTIFILE_*`` and ``CAIMAN_HDF5``: the name whose folder and
        stem name the per-channel files); ignored by ``ARRAY`` and ``NULL``.
    output_format : OutputFormat or str
        Case-insensitive:

        * ``TIFF``: :class:`TIFFFileWriter`; ``SUITE2P_TIFF``: the same with
          ``format="suite2p"`` (channels interleaved as pages);
        * ``HDF5``: :class:`HDF5FileWriter`; ``MAT``: :class:`MATFileWriter` (v7.3);
        * ``MULTIFILE_TIFF``, ``MULTIFILE_HDF5``, ``MULTIFILE_MAT``: :class:`MULTIFILEFileWriter`,
          one file per channel; ``CAIMAN_HDF5``: one HDF5 file per channel with dataset
          ``mov``;
        * ``NPY``: :class:`NPYFileWriter`; ``ARRAY``: :class:`ArrayWriter`; ``NULL``:
          :class:`NullVideoWriter`.
    **kwargs
        Options of the writer.

    Raises
    ------
    UnsupportedFormatError
        An unknown format, ``ZARR`` (the registration writes its OME-Zarr store itself) or
        ``SUITE2P`` (a binary made by the export from a finished store).
    NotSupportedError
        ``BEGONIA`` (not implemented, as in pyflowreg).
    """
    from ...options import OutputFormat, choice  # imported when used: pydantic is slow

    try:
        fmt = choice("output_format", output_format, OutputFormat)
    except ValueError as exc:
        raise UnsupportedFormatError(str(exc)) from exc
    F = OutputFormat
    if fmt in (F.ARRAY, F.NULL):
        return ArrayWriter(**kwargs) if fmt is F.ARRAY else NullVideoWriter(**kwargs)
    if fmt is F.BEGONIA:
        msg = (
            "output_format BEGONIA is not implemented (nor in pyflowreg); use HDF5, MAT, TIFF "
            "or MULTIFILE_HDF5"
        )
        raise NotSupportedError(msg)
    if fmt is F.ZARR:
        msg = (
            "output_format ZARR has no frame-by-frame VideoWriter: flowreg_dask's registration "
            "writes its OME-Zarr store itself (flowreg_dask.register(..., output='out.zarr')). "
            "For a video file choose HDF5, MAT, TIFF, NPY or a MULTIFILE format."
        )
        raise UnsupportedFormatError(msg)
    if fmt is F.SUITE2P:
        msg = (
            "output_format SUITE2P (suite2p's registered binary) is written from a finished "
            "registration store by flowreg_dask.store.export_result(store, folder, "
            "format='suite2p'); as a VideoWriter use SUITE2P_TIFF"
        )
        raise UnsupportedFormatError(msg)
    if file_path is None:
        raise UnsupportedFormatError(f"output_format {fmt.value} needs a file_path")
    if fmt is F.TIFF:
        return TIFFFileWriter(file_path, **kwargs)
    if fmt is F.SUITE2P_TIFF:
        return TIFFFileWriter(file_path, **{"format": "suite2p", **kwargs})
    if fmt is F.HDF5:
        return HDF5FileWriter(file_path, **kwargs)
    if fmt is F.MAT:
        return MATFileWriter(file_path, **kwargs)
    if fmt is F.NPY:
        return NPYFileWriter(file_path, **kwargs)
    if fmt is F.CAIMAN_HDF5:
        return MULTIFILEFileWriter(file_path, "HDF5", **{"dataset_names": "mov", **kwargs})
    multifile = {F.MULTIFILE_TIFF: "TIFF", F.MULTIFILE_HDF5: "HDF5", F.MULTIFILE_MAT: "MAT"}
    if fmt in multifile:
        return MULTIFILEFileWriter(file_path, multifile[fmt], **kwargs)
    raise UnsupportedFormatError(  # pragma: no cover - every OutputFormat is handled above
        f"output_format {fmt.value} has no video writer"
    )


class _ReaderFrames:
    """Array-like view of a reader's binned frames for :func:`dask.array.from_array`."""

    def __init__(self, reader: VideoReader) -> None:
        self.reader = reader
        self.shape = tuple(int(n) for n in reader.shape)
        self.dtype = np.dtype(reader.dtype)
        self.ndim = 4

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self.reader[key])


def reader_recording(reader: VideoReader) -> Any:
    """A reader's binned frames as a lazy ``(t, y, x, c)`` DataArray in chunks of its
    ``buffer_size`` (what the registration reads when it is given a reader).

    Readers of files (:class:`RecordingReader` and its subclasses) are reopened with
    :func:`~flowreg_dask.io.open_recording` (same file, options and binning), so every run mode
    can read them; any other reader (an :class:`ArrayReader`, a user's own subclass) is read
    through its ``__getitem__``, one chunk at a time, under a lock.
    """
    import dask.array as da
    import xarray as xr
    from dask.base import tokenize

    from ..._constants import DIMS
    from .._api import open_recording

    reader._ensure_ready()
    if (
        isinstance(reader, RecordingReader)
        and type(reader)._read_raw_frames is RecordingReader._read_raw_frames
    ):
        return open_recording(
            reader._source,
            buffer_size=reader.buffer_size,
            bin_size=reader.bin_size,
            **reader._open_kwargs,
        )
    chunks = (min(reader.buffer_size, len(reader)), -1, -1, -1)
    if isinstance(reader, ArrayReader) and reader.bin_size == 1:
        data = da.from_array(reader.array, chunks=chunks)
    else:
        frames = _ReaderFrames(reader)
        name = "video-reader-" + tokenize(
            type(reader).__qualname__, id(reader), frames.shape, str(frames.dtype)
        )
        data = da.from_array(frames, chunks=chunks, lock=True, name=name, asarray=True)
    path = getattr(reader, "file_path", None)
    attrs = {"source": path or repr(reader), "files": [path] if path else []}
    return xr.DataArray(data, dims=DIMS, attrs=attrs)
