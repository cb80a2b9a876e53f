"""pyflowreg's video reader/writer API (``pyflowreg.util.io``) on flowreg_dask's readers.

Scripts written for pyflowreg run after replacing ``from pyflowreg.util.io import ...`` by
``from flowreg_dask.io import ...`` (or ``flowreg_dask.io.video``)::

    reader = get_video_file_reader("run1.tif", buffer_size=200, bin_size=2)
    with get_video_file_writer("out.h5", "HDF5") as writer:
        for batch in reader:              # (T, H, W, C) numpy arrays
            writer.write_frames(batch)

Readers
-------
:class:`VideoReader` (base), :class:`ArrayReader`, :class:`TIFFFileReader`,
:class:`HDF5FileReader`, :class:`MATFileReader`, :class:`MULTICHANNELFileReader`,
:class:`SUBSETFileReader`, and :class:`RecordingReader` for anything
:func:`flowreg_dask.io.open_recording` opens (zarr, npy, raw, TIFF folders, dask arrays). They
read through ``open_recording``'s lazy frames: only the frames asked for are read.

Writers
-------
:class:`VideoWriter` (base), :class:`HDF5FileWriter`, :class:`TIFFFileWriter`,
:class:`MATFileWriter`, :class:`MULTIFILEFileWriter`, :class:`NPYFileWriter`,
:class:`ArrayWriter`, :class:`NullVideoWriter`. Frames go to disk batch by batch (nothing is
buffered to the end); a file is written under a hidden temporary name and renamed into place
by ``close()``, so an interrupted or failed writer never leaves a file that looks complete.

Differences from pyflowreg (on purpose): binned integer frames are rounded, not truncated; the
last partial bin averages the frames it has instead of repeating the last one; MAT output is
v7.3 by default (written incrementally; ``use_v73=False`` for v5); MAT v7.3 input is read with
the right axes; the TIFF writer keeps its file open instead of reopening it per batch; a writer
used as a context manager discards its output when the block raises.
"""

from ._factory import get_video_file_reader, get_video_file_writer, reader_recording
from ._files import (
    HDF5FileReader,
    MATFileReader,
    MULTICHANNELFileReader,
    RecordingReader,
    TIFFFileReader,
)
from ._hdf5 import HDF5FileWriter
from ._mat import MATFileWriter
from ._multifile import MULTIFILEFileWriter
from ._npy import NPYFileWriter
from ._reader import ArrayReader, SUBSETFileReader, VideoReader
from ._tiff import TIFFFileWriter
from ._writer import ArrayWriter, FileVideoWriter, NullVideoWriter, VideoWriter

#: pyflowreg exports ``MDFFileReader`` as None where it is unavailable (off Windows); here
#: always (MDF files need MScan's Windows COM server; export them to TIFF).
MDFFileReader = None

__all__ = [
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
