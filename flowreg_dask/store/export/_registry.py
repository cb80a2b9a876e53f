"""The export formats: one table, parsed with the options' OutputFormat enum."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...errors import (
    UnsupportedFormatError,
)
from ...options import OutputFormat, choice


@dataclass(frozen=True)
class _Format:
    name: str
    description: str
    suffix: str
    kind: str  # writer family: hdf5, caiman, mat, tiff, suite2p_tiff, suite2p, npy
    per_channel: bool = False  # always one file per channel
    compressions: tuple[str, ...] = ()

    @property
    def writer(self) -> str:
        """``"module:Class"`` of the writer of this format's family (imported when used)."""
        return _WRITERS[self.kind]


_FORMAT_LIST = (
    _Format(
        "hdf5",
        "HDF5 file (.h5): one (T, H, W) dataset per channel ch1, ch2, ... with chunks (1, H, W); "
        "flow u, v (T, H, W) float32, valid (T, H, W) uint8 0/255, reference (H, W, C) float32, "
        "per-frame statistics (T,) and metadata attributes; compression 'gzip' or 'lzf'",
        ".h5",
        "hdf5",
        compressions=("gzip", "lzf"),
    ),
    _Format(
        "caiman_hdf5",
        "CaImAn HDF5 (.h5): dataset 'mov' (T, H, W); with several channels one file per channel "
        "<stem>_ch<N>.h5 (CaImAn reads one channel per file); compression 'gzip' or 'lzf'",
        ".h5",
        "caiman",
        compressions=("gzip", "lzf"),
    ),
    _Format(
        "tiff",
        "BigTIFF (.tif), one page per frame and channel in the order T then C; an ImageJ "
        "hyperstack (axes TCYX, frame interval, pixel size) for uint8, uint16 and float32, "
        "tifffile's shaped metadata (axes TCYX) for other data types",
        ".tif",
        "tiff",
    ),
    _Format(
        "suite2p_tiff",
        "BigTIFF (.tif) in suite2p's channel order: single-channel pages interleaved frame0-ch1, "
        "frame0-ch2, frame1-ch1, ... (no ImageJ metadata; read with nchannels = C)",
        ".tif",
        "suite2p_tiff",
    ),
    _Format(
        "suite2p",
        "suite2p registered binary: <output>/plane0/data.bin (channel 1) and data_chan2.bin "
        "(channel 2) as int16 (T, H, W), values rounded and clipped to int16, plus ops.npy; for "
        "suite2p's cell detection on already registered data (at most 2 channels)",
        "",
        "suite2p",
    ),
    _Format(
        "mat",
        "MATLAB v7.3 MAT-file (.mat, HDF5-based): one H x W x T variable per channel ch1, "
        "ch2, ... plus u, v (single), valid (logical), reference (H x W x C), per-frame "
        "statistics (T x 1), frame_rate, pixel_size and metadata_json; compression 'gzip'",
        ".mat",
        "mat",
        compressions=("gzip",),
    ),
    _Format(
        "npy",
        "NumPy .npy file holding the movie (T, H, W, C) in the store's data type",
        ".npy",
        "npy",
    ),
    _Format(
        "multifile_tiff",
        "one TIFF per channel, <stem>_ch<N>.tif (ImageJ hyperstack TYX where the dtype allows)",
        ".tif",
        "tiff",
        per_channel=True,
    ),
    _Format(
        "multifile_hdf5",
        "one HDF5 file per channel, <stem>_ch<N>.h5 with dataset ch<N> (T, H, W); flow and mask "
        "go into the file of channel 1; compression 'gzip' or 'lzf'",
        ".h5",
        "hdf5",
        per_channel=True,
        compressions=("gzip", "lzf"),
    ),
    _Format(
        "multifile_mat",
        "one MATLAB v7.3 file per channel, <stem>_ch<N>.mat with variable ch<N> (H x W x T); "
        "flow and mask go into the file of channel 1; compression 'gzip'",
        ".mat",
        "mat",
        per_channel=True,
        compressions=("gzip",),
    ),
)
_FORMATS = {OutputFormat(f.name): f for f in _FORMAT_LIST}


#: The writer of each format family, as ``"module:Class"`` (imported only when used), like the
#: reader table of :mod:`flowreg_dask.io._registry`.
_WRITERS: dict[str, str] = {
    "hdf5": "flowreg_dask.store.export.hdf5:_H5Writer",
    "caiman": "flowreg_dask.store.export.hdf5:_H5Writer",
    "mat": "flowreg_dask.store.export.hdf5:_H5Writer",
    "tiff": "flowreg_dask.store.export.tiff:_TiffWriter",
    "suite2p_tiff": "flowreg_dask.store.export.tiff:_TiffWriter",
    "npy": "flowreg_dask.store.export.npy:_NpyWriter",
    "suite2p": "flowreg_dask.store.export.suite2p:_Suite2pWriter",
}


def writer_class(fmt: _Format) -> type:
    """The writer class of ``fmt`` (imports its module)."""
    import importlib

    module, _, name = fmt.writer.partition(":")
    return getattr(importlib.import_module(module), name)


def export_formats() -> dict[str, str]:
    """Return the export formats of :func:`export_result`.

    Returns
    -------
    dict of str to str
        Format name -> one-line description. Names are matched case-insensitively, so
        pyflowreg's ``OutputFormat`` names (``"HDF5"``, ``"TIFF"``, ``"MAT"``, ``"CAIMAN_HDF5"``,
        ``"SUITE2P_TIFF"``, ``"MULTIFILE_TIFF"``, ``"MULTIFILE_HDF5"``, ``"MULTIFILE_MAT"``) are
        accepted too.
    """
    return {f.name: f.description for f in _FORMAT_LIST}


def _resolve_format(format: Any) -> _Format:
    try:
        fmt = choice("format", format, OutputFormat)
    except ValueError:
        fmt = None
    if fmt not in _FORMATS:
        listing = "; ".join(f"'{f.name}'" for f in _FORMAT_LIST)
        raise UnsupportedFormatError(
            f"unknown export format {format!r}. Known formats (case-insensitive): {listing}. "
            "See flowreg_dask.store.export_formats() for what each one writes."
        )
    return _FORMATS[fmt]
