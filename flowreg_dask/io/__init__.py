"""Lazy readers: any supported recording -> dask-backed ``xarray.DataArray`` ``(t, y, x, c)``.

``open_recording`` is the front end; one :class:`Reader` per file format (TIFF, HDF5, MAT,
zarr/OME-Zarr, npy, raw binary) is registered in :mod:`flowreg_dask.io._registry`, and each
returns a picklable :class:`LazyFrames` wrapper that reads frame ranges on demand.
"""

from ._api import describe, info, natural_sort_key, open_recording, with_time_chunks
from ._lazy import LazyFrames, clear_handle_cache
from ._registry import Reader, get_reader, guess_reader, list_readers

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
]
