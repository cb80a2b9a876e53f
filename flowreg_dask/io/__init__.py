"""Lazy readers: any supported recording -> dask-backed ``xarray.DataArray`` ``(t, y, x, c)``.

``open_recording`` is the front end; one :class:`Reader` per file format (TIFF, HDF5, MAT,
zarr/OME-Zarr, npy, raw binary) is registered in :mod:`flowreg_dask.io._registry`, and each
returns a picklable :class:`LazyFrames` wrapper that reads frame ranges on demand.

pyflowreg's video reader/writer API (``VideoReader``, ``get_video_file_reader``,
``HDF5FileWriter``, ...) is in :mod:`flowreg_dask.io.video`, re-exported here.
"""

from ._api import describe, info, natural_sort_key, open_recording, with_time_chunks
from ._lazy import LazyFrames, clear_handle_cache
from ._registry import Reader, get_reader, guess_reader, list_readers
from .video import (
    ArrayReader,
    ArrayWriter,
    FileVideoWriter,
    HDF5FileReader,
    HDF5FileWriter,
    MATFileReader,
    MATFileWriter,
    MDFFileReader,
    MULTICHANNELFileReader,
    MULTIFILEFileWriter,
    NPYFileWriter,
    NullVideoWriter,
    RecordingReader,
    SUBSETFileReader,
    TIFFFileReader,
    TIFFFileWriter,
    VideoReader,
    VideoWriter,
    get_video_file_reader,
    get_video_file_writer,
    reader_recording,
)

__all__ = [
    "open_recording",
    "with_time_chunks",
    "info",
    "describe",
    "list_readers",
    "get_reader",
    "guess_reader",
    "Reader",
    "LazyFrames",
    "clear_handle_cache",
    "natural_sort_key",
    # pyflowreg's video reader/writer API (flowreg_dask.io.video)
    "VideoReader",
    "RecordingReader",
    "ArrayReader",
    "TIFFFileReader",
    "HDF5FileReader",
    "MATFileReader",
    "MULTICHANNELFileReader",
    "SUBSETFileReader",
    "MDFFileReader",
    "VideoWriter",
    "FileVideoWriter",
    "ArrayWriter",
    "NullVideoWriter",
    "HDF5FileWriter",
    "TIFFFileWriter",
    "MATFileWriter",
    "MULTIFILEFileWriter",
    "NPYFileWriter",
    "get_video_file_reader",
    "get_video_file_writer",
    "reader_recording",
]
