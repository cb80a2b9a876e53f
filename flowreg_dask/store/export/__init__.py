"""Export a finished corrected store to the file formats of other tools, streaming chunk by chunk.

:func:`export_result` reads a complete output store (see :func:`~flowreg_dask.store.open_result`)
one time chunk at a time and writes it as HDF5, CaImAn HDF5, TIFF (ImageJ hyperstack), suite2p
TIFF or binary, MATLAB v7.3, ``.npy`` or one file per channel. :func:`export_formats` lists the
formats.

Guarantees
----------
* **Bounded memory.** Each chunk (by default one storage object of the store along time, i.e.
  one pipeline chunk) is computed, written and dropped before the next one is read, so at most one
  chunk of the movie (plus its flow and mask when they are exported) is held in memory. Nothing is
  buffered until the end (pyflowreg's MAT writer kept the whole video in RAM), and each output file
  is opened once for the whole export (pyflowreg's TIFF writer reopened the file for every batch).
* **Nothing that looks complete before it is.** Every file is written under a hidden temporary
  name ``.<name>.<random>.partial`` in its destination folder and renamed into place only after all
  frames and metadata are written and the file is closed. An export that fails is cleaned up (its
  ``.partial`` files are deleted); one that is killed leaves only ``.partial`` files behind, which
  are safe to delete.
* **Safe overwrite.** An existing output is never touched without ``overwrite=True``; with it, the
  old file is replaced (atomically, :func:`os.replace`) only once the new one is complete. Formats
  writing several files rename them one after another at the very end; each renamed file is
  complete. Folders are never replaced.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from ...errors import InvalidOptionError
from ._registry import _resolve_format, export_formats, writer_class
from ._source import _load_source, _read_chunk
from ._staging import _check_destination, _make_folders, _plan, _Staging
from ._writer import _write_chunk
from .pyflowreg import PYFLOWREG_FILES, export_pyflowreg_files

__all__ = [
    "export_result",
    "export_formats",
    "check_export",
    "export_suffix",
    "export_pyflowreg_files",
    "PYFLOWREG_FILES",
]

_PathLike = str | os.PathLike[str]


def check_export(
    store: str | os.PathLike,
    output: str | os.PathLike,
    *,
    format: str,
    n_channels: int,
    overwrite: bool = False,
) -> list[Path]:
    """Check, before a run, that :func:`export_result` could write ``output`` from ``store``.

    Returns
    -------
    list of pathlib.Path
        The files the export would write.

    Raises
    ------
    UnsupportedFormatError, InvalidOptionError, InvalidInputError, OutputExistsError
        As :func:`export_result` would, before any registration work is done.
    """
    fmt = _resolve_format(format)
    out = Path(os.fspath(output)).expanduser().absolute()
    _, targets, _ = _plan(fmt, out, n_channels)
    _check_destination(targets, store, overwrite)
    return [t.path for t in targets]


def export_suffix(format: str) -> str | None:
    """The file suffix of a one-file export format (None for per-channel / folder formats)."""
    fmt = _resolve_format(format)
    return None if fmt.per_channel or fmt.kind == "suite2p" else fmt.suffix


def export_result(
    result: Any,
    output: _PathLike,
    *,
    format: str,
    overwrite: bool = False,
    chunk_frames: int | None = None,
    include_flow: bool = True,
    compression: str | None = None,
) -> Path:
    """Convert a complete corrected store into another file format, streaming chunk by chunk.

    Parameters
    ----------
    result : str, os.PathLike or xarray.Dataset
        The output store of a registration run, or the Dataset of
        :func:`~flowreg_dask.store.open_result` (a selection of it, e.g. ``ds.isel(c=[0])`` or a
        time range, is exported as it is).
    output : str or os.PathLike
        Where to write. Single-file formats: the file (an existing folder gets
        ``compensated.<ext>`` inside it); the name is used as given. Formats with one file per
        channel (``multifile_*``, ``caiman_hdf5`` with several channels): ``<folder>/<stem>.<ext>``
        gives ``<folder>/<stem>_ch<N>.<ext>``; a name without suffix (or an existing folder) is a
        folder with stem ``compensated``. ``suite2p``: the suite2p folder; the files go to
        ``<output>/plane0/``. Missing parent folders are created.
    format : str
        One of :func:`export_formats` (case-insensitive; pyflowreg's ``OutputFormat`` names work):

        * ``hdf5``: datasets ``ch1``, ``ch2``, ... (T, H, W), chunks (1, H, W); with
          ``include_flow`` also ``u``, ``v`` (T, H, W) float32 and ``valid`` (T, H, W) uint8
          0/255 (when the store has them); ``reference`` (H, W, C) float32; each per-frame
          statistic as a (T,) float64 dataset; file attributes ``frame_rate``, ``pixel_size``
          (µm; only when known), ``options`` and ``metadata`` (JSON), ``software_version``,
          ``dimension_ordering`` = "THW", ``n_channels``, ``frame_count``, ``height``,
          ``width``, ``dataset_names``, ``channel_names``.
        * ``caiman_hdf5``: the same with the movie as dataset ``mov`` (T, H, W); with C > 1, one
          file per channel ``<stem>_ch<N>.h5``.
        * ``tiff``: BigTIFF, one page per frame and channel, T then C. uint8, uint16 and float32
          movies are ImageJ hyperstacks (axes TCYX, ``finterval``, pixel size in µm); other
          dtypes keep their type with tifffile's shaped metadata (axes TCYX) and the pixel size
          in the resolution tags.
        * ``suite2p_tiff``: plain BigTIFF of single-channel pages interleaved frame0-ch1,
          frame0-ch2, frame1-ch1, ... (suite2p's order, ``nchannels`` = C).
        * ``suite2p``: suite2p's registered binary ``plane0/data.bin`` (channel 1) and
          ``plane0/data_chan2.bin`` (channel 2), int16 (T, H, W) C-order, values rounded and
          clipped to int16 (a warning tells how many were clipped), and ``plane0/ops.npy`` with
          ``Ly``, ``Lx``, ``nframes``, ``nchannels``, ``fs`` (10.0 when the frame rate is
          unknown), ``reg_file``, ``reg_file_chan2``, ``save_path``, ``ops_path``,
          ``do_registration`` = 0, ``yrange``, ``xrange``, ``meanImg`` (``meanImg_chan2``). It
          is meant as input for suite2p's detection/extraction on already registered data.
          Verified here: file sizes, int16 values and channel files, the ops dict; *not* verified:
          running suite2p itself on it (suite2p is not installed in this project's test setup).
        * ``mat``: MATLAB v7.3 MAT-file (HDF5 with a 512-byte MATLAB userblock header): per
          channel a variable ``ch<N>`` that MATLAB sees as H x W x T (stored transposed, h5py
          shows (T, W, H)) with its ``MATLAB_class``; ``u``, ``v`` (single), ``valid``
          (logical), ``reference`` (H x W x C single), each statistic as T x 1 double,
          ``frame_rate``/``pixel_size`` (1 x 1 double, when known) and ``metadata_json`` (char).
        * ``npy``: the movie as (T, H, W, C).
        * ``multifile_tiff`` / ``multifile_hdf5`` / ``multifile_mat``: one file per channel
          ``<stem>_ch<N>.<ext>`` in the layout of the single-file format; flow and mask go into
          the file of channel 1.

        TIFF, suite2p and npy exports hold the movie only (no flow).
    overwrite : bool, default False
        Replace existing output files, once the new ones are complete. Folders are never
        replaced.
    chunk_frames : int, optional
        Frames per chunk (the unit read and written at once). Default: the store's own time
        chunks (one storage object, i.e. one pipeline chunk).
    include_flow : bool, default True
        Export the displacement field and the valid mask (HDF5 and MAT formats) when the store
        has them.
    compression : str, optional
        ``"gzip"`` or ``"lzf"`` for the HDF5 formats, ``"gzip"`` for MAT; other formats are
        written uncompressed (anything else raises :class:`InvalidOptionError`).

    Returns
    -------
    pathlib.Path
        The written file; for formats writing several files, the folder holding them (for
        ``suite2p`` the ``plane0`` folder).

    Raises
    ------
    UnsupportedFormatError
        ``format`` is unknown; the message lists the formats.
    IncompleteStoreError
        The store (or the Dataset's ``status``) is not complete.
    OutputExistsError
        An output file exists and ``overwrite`` is False, or an output path is a folder.
    InvalidOptionError
        ``chunk_frames`` or ``compression`` is invalid, or the output lies inside the store.
    InvalidInputError
        ``result`` is not a store / open_result Dataset, or the data do not fit the format
        (suite2p with more than 2 channels).
    OSError
        The destination is not writable; the message names the path.

    Notes
    -----
    Integer movies keep their dtype and values (the store already holds rounded, clipped values);
    float32 movies are exported as float32. Only suite2p's binary converts (to int16).

    Examples
    --------
    >>> export_result("run.zarr", "run.h5", format="hdf5")  # doctest: +SKIP
    PosixPath('/data/run.h5')
    """
    fmt = _resolve_format(format)
    if compression is not None:
        key = str(compression).strip().lower()
        if key not in fmt.compressions:
            allowed = ", ".join(repr(c) for c in fmt.compressions) or "none"
            raise InvalidOptionError(
                f"compression={compression!r} is not available for the {fmt.name!r} format "
                f"(allowed: {allowed}, or None)."
            )
        compression = key
    if not isinstance(output, str | os.PathLike):
        raise InvalidOptionError(f"output must be a path; got {type(output).__name__}.")
    src = _load_source(result, chunk_frames)
    out = Path(os.fspath(output)).expanduser().absolute()
    returned, targets, stale = _plan(fmt, out, src.shape[3])
    _check_destination(targets, src.store, overwrite)
    created = _make_folders(sorted({t.path.parent for t in targets}))

    staging = _Staging()
    writer = writer_class(fmt)(
        fmt, src, targets, staging, include_flow=include_flow, compression=compression
    )
    try:
        writer.open()
        for start, stop in src.bounds:
            chunk = _read_chunk(src, start, stop, flow=writer.needs_flow, valid=writer.needs_valid)
            _write_chunk(writer, chunk)
            del chunk
        writer.finish()
        staging.commit(overwrite)
    except BaseException:
        writer.abort()
        staging.discard()
        for folder in reversed(created):  # folders this export created, if still empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    if overwrite:
        for path in stale:
            with contextlib.suppress(OSError):
                path.unlink()
    return returned
