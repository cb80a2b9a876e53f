"""MATLAB MAT-file v7.3 conventions shared by the writers (imports nothing else from the package).

A v7.3 MAT-file is an HDF5 file with a 512-byte user block that starts with a MAT-file header,
and one HDF5 dataset per MATLAB variable. MATLAB stores arrays column-major, so h5py shows a
MATLAB ``H x W x T`` array with its dimensions reversed, as ``(T, W, H)``; each variable carries
an attribute ``MATLAB_class`` (``"double"``, ``"uint16"``, ``"logical"``, ...).

Used by the finished-store exports (:mod:`flowreg_dask.store.export.hdf5`) and by the incremental
video writers (:mod:`flowreg_dask.io.video`).
"""

from __future__ import annotations

import datetime as _dt
import os
from typing import Any

import numpy as np

from ._version import __version__

__all__ = ["MATLAB_CLASSES", "MAT_USERBLOCK", "set_matlab_class", "write_mat73_header"]

#: MATLAB class of each numeric numpy dtype.
MATLAB_CLASSES: dict[np.dtype, str] = {
    np.dtype(np.float64): "double",
    np.dtype(np.float32): "single",
    np.dtype(np.int8): "int8",
    np.dtype(np.uint8): "uint8",
    np.dtype(np.int16): "int16",
    np.dtype(np.uint16): "uint16",
    np.dtype(np.int32): "int32",
    np.dtype(np.uint32): "uint32",
    np.dtype(np.int64): "int64",
    np.dtype(np.uint64): "uint64",
}
#: Size of the user block holding the MAT-file header (``h5py.File(..., userblock_size=)``).
MAT_USERBLOCK = 512


def set_matlab_class(obj: Any, cls: str, int_decode: int | None = None) -> None:
    """Label an h5py dataset as a MATLAB variable of class ``cls`` (``"logical"``: decode 1)."""
    obj.attrs.create("MATLAB_class", np.bytes_(cls))
    if int_decode is not None:
        obj.attrs.create("MATLAB_int_decode", np.int32(int_decode))


def write_mat73_header(path: str | os.PathLike[str]) -> None:
    """Fill the 512-byte user block of a closed HDF5 file with the MAT v7.3 header.

    The header is 116 bytes of text, 8 bytes of subsystem offset, the version ``0x0200`` and
    the endian indicator ``"IM"``; MATLAB and ``flowreg_dask.io`` recognise the file by it.
    """
    now = _dt.datetime.now().strftime("%a %b %d %H:%M:%S %Y")
    text = (
        f"MATLAB 7.3 MAT-file, Platform: flowreg_dask {__version__}, Created on: {now} "
        "HDF5 schema 1.00 ."
    ).encode("ascii")[:116]
    header = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as fh:
        fh.seek(0)
        fh.write(header.ljust(MAT_USERBLOCK, b"\x00"))
