"""pyflowreg's file readers over flowreg_dask's lazy readers.

Each reader is a thin facade over the lazy frames of :func:`flowreg_dask.io.open_recording`, so
every format, check and metadata of that front end applies, and a read touches only the frames
asked for (see :class:`~flowreg_dask.io.video.VideoReader` for indexing and binning).
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InvalidInputError, InvalidOptionError
from .._api import open_recording
from .._lazy import release_handles
from ._common import ordering_axes, positive_int
from ._reader import VideoReader

__all__ = [
    "RecordingReader",
    "TIFFFileReader",
    "HDF5FileReader",
    "MATFileReader",
    "MULTICHANNELFileReader",
    "pyflowreg_open_kwargs",
]


class _DaskFrames:
    """``read``/``read_indices`` over an in-memory dask array ``(T, H, W, C)``."""

    __slots__ = ("data", "shape", "dtype")

    def __init__(self, data: Any) -> None:
        self.data = data
        self.shape = tuple(int(s) for s in data.shape)
        self.dtype = np.dtype(data.dtype)

    def read(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.data[start:stop].compute())

    def read_indices(self, indices: np.ndarray) -> np.ndarray:
        return np.asarray(self.data[np.asarray(indices, dtype=np.int64)].compute())


def _owned(arr: np.ndarray) -> np.ndarray:
    """``arr``, or a copy if it is read-only or a view of a memory-mapped file: batches belong
    to the caller, who may change them in place."""
    if not arr.flags.writeable:
        return np.array(arr)
    base: Any = arr
    while isinstance(base, np.ndarray):
        if isinstance(base, np.memmap):
            return np.array(arr)
        base = base.base
    return np.array(arr) if isinstance(base, mmap.mmap) else arr


def _stem(path: Any) -> str:
    return Path(os.fspath(path)).stem


class RecordingReader(VideoReader):
    """A :class:`VideoReader` over anything :func:`~flowreg_dask.io.open_recording` opens.

    Any supported file (TIFF, HDF5, MAT, zarr/OME-Zarr, npy, raw), a folder of TIFF files, a
    glob pattern, a list of per-channel files, or a dask/xarray array. Only the header is read
    here; each read loads just the frames it returns.

    Parameters
    ----------
    source : str, path, list of paths, or array
        What :func:`~flowreg_dask.io.open_recording` accepts.
    buffer_size : int
        Binned frames per :meth:`read_batch` (default 500).
    bin_size : int
        Raw frames per binned frame (default 1).
    **open_kwargs
        Options of :func:`~flowreg_dask.io.open_recording`: ``format``, ``dataset``,
        ``deinterleave``, ``frames``, ``axes`` and the reader's own options.

    Attributes
    ----------
    file_path : str or None
        The file (None for arrays and lists).
    input_file_name : str or None
        Stem of the file, or of each file joined by ``"_"`` for a list (for output names).
    """

    def __init__(
        self, source: Any, buffer_size: int = 500, bin_size: int = 1, **open_kwargs: Any
    ) -> None:
        super().__init__(buffer_size, bin_size)
        for name in ("bin_size", "buffer_size"):
            if name in open_kwargs:  # pragma: no cover - Python passes them to our parameters
                raise TypeError(f"{name} given twice")
        self.file_path: str | None = None
        self.input_file_name: str | None = None
        if isinstance(source, (str, os.PathLike)):
            self.file_path = os.fspath(source)
            self.input_file_name = _stem(source)
        elif isinstance(source, (list, tuple)) and all(
            isinstance(s, (str, os.PathLike)) for s in source
        ):
            self.input_file_name = "_".join(_stem(s) for s in source)
        self._source = source
        self._open_kwargs = dict(open_kwargs)
        self._frames: Any = None
        self._files: list[str] = []
        self._metadata: dict[str, Any] = {}
        self._ensure_ready()

    def _initialize(self) -> None:
        rec = open_recording(self._source, buffer_size=self.buffer_size, **self._open_kwargs)
        frames = rec.encoding.get("frames")
        self._frames = frames if frames is not None else _DaskFrames(rec.data)
        self._files = [str(f) for f in rec.attrs.get("files") or []]
        self._metadata = dict(rec.attrs)
        self.frame_count, self.height, self.width, self.n_channels = self._frames.shape
        self.dtype = np.dtype(self._frames.dtype)

    def _read_raw_frames(self, frame_indices: slice | list[int]) -> np.ndarray:
        frames = self._frames
        if isinstance(frame_indices, slice):
            start, stop, step = frame_indices.indices(frames.shape[0])
            if step == 1:
                out = frames.read(start, stop)
            else:
                out = frames.read_indices(np.arange(start, stop, step))
        else:
            out = frames.read_indices(np.asarray(frame_indices, dtype=np.int64))
        return _owned(out)

    def _where(self) -> str:
        src = self.file_path or self._metadata.get("source") or "<array>"
        return f"{type(self).__name__}({src!r})"

    def get_metadata(self) -> dict[str, Any]:
        """What the file says about the recording (no pixels read).

        Keys of :func:`~flowreg_dask.io.open_recording`'s ``attrs`` (``source``, ``format``,
        ``files``, ``frame_rate``, ``pixel_size``, ``channel_names``, ``dataset``, ...) plus
        ``shape``, ``unbinned_shape``, ``bin_size``, ``frame_count`` and ``dtype``.
        """
        meta = dict(self._metadata)
        meta.update(
            {
                "shape": self.shape,
                "unbinned_shape": self.unbinned_shape,
                "bin_size": self.bin_size,
                "frame_count": int(self.frame_count),  # type: ignore[arg-type]
                "dtype": str(self.dtype),
            }
        )
        return meta

    def close(self) -> None:
        """Close the file handles this reader opened (in this thread); idempotent."""
        if not self._closed:
            release_handles(self._files)
            self._frames = None
        super().close()

    def __repr__(self) -> str:
        src = self.file_path or self._metadata.get("source") or "<array>"
        if self._closed:
            return f"<{type(self).__name__} {src!r} closed>"
        t, h, w, c = self.unbinned_shape
        return (
            f"<{type(self).__name__} {src!r} {t} frames {h}x{w}x{c} {self.dtype}, "
            f"bin_size={self.bin_size}, buffer_size={self.buffer_size}>"
        )


def _dataset(names: str | Sequence[str] | None) -> str | list[str] | None:
    if names is None or isinstance(names, str):
        return names
    return [str(n) for n in names]


class TIFFFileReader(RecordingReader):
    """TIFF / BigTIFF / ImageJ / OME-TIFF / ScanImage files (see :mod:`flowreg_dask.io.tiff_`).

    Parameters
    ----------
    file_path : str or path
        The TIFF file.
    buffer_size, bin_size : int
        As :class:`VideoReader` (defaults 500, 1).
    deinterleave : int
        ``N > 1``: N consecutive single-channel pages form one N-channel frame (suite2p TIFFs,
        interleaved ScanImage files without metadata). ScanImage files and ImageJ hyperstacks
        are split into channels from their metadata without it.
    use_memmap : bool
        Accepted for pyflowreg compatibility and ignored: uncompressed contiguous data are
        always memory-mapped, everything else is read page by page.
    axes, series, scanimage, plain
        Options of the TIFF reader (keyword only): axis letters overriding the file's labels,
        the image series to read, whether to use ScanImage metadata, whether to ignore the
        format metadata.
    """

    def __init__(
        self,
        file_path: str | os.PathLike[str],
        buffer_size: int = 500,
        bin_size: int = 1,
        deinterleave: int = 1,
        use_memmap: bool = True,
        *,
        axes: str | None = None,
        series: int | None = None,
        scanimage: bool = True,
        plain: bool = False,
    ) -> None:
        self.use_memmap = bool(use_memmap)
        self.deinterleave = positive_int("deinterleave", deinterleave, where="TIFFFileReader")
        super().__init__(
            file_path,
            buffer_size,
            bin_size,
            format="tiff",
            deinterleave=self.deinterleave,
            axes=axes,
            series=series,
            scanimage=scanimage,
            plain=plain,
        )


def _written_hdf5_axes(path: str, dataset_names: Any) -> str | None:
    """Axes of datasets whose ``dimension_ordering`` attribute (written by pyflowreg's and our
    HDF5 writers) is a permutation of (0, 1, 2) other than the default (T, H, W) storage."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            names = dataset_names
            if names is None:
                names = f.attrs.get("dataset_names")
            if names is None:
                return None
            first = names if isinstance(names, (str, bytes)) else np.ravel(names)[0]
            first = first.decode() if isinstance(first, bytes) else str(first)
            obj = f.get(first)
            order = None if obj is None else obj.attrs.get("dimension_ordering")
            if order is None or np.asarray(order).dtype.kind not in "iu":
                return None
            order = np.asarray(order).reshape(-1)
            if order.size != 3 or obj.ndim != 3:
                return None
            axes = ordering_axes(order, "yxt", name="dimension_ordering", where=path)
    except (OSError, KeyError, ValueError, TypeError, InvalidOptionError):
        return None
    return None if axes == "tyx" else axes


class HDF5FileReader(RecordingReader):
    """HDF5 files: one ``(T, H, W)`` dataset per channel or one ``(T, H, W, C)`` dataset.

    Parameters
    ----------
    file_path : str or path
        The HDF5 file.
    buffer_size, bin_size : int
        As :class:`VideoReader` (defaults 500, 1).
    dataset_names : str or list of str, optional
        The dataset, or one dataset per channel. When omitted, the datasets the file lists in
        its ``dataset_names`` attribute (written by :class:`HDF5FileWriter` and by pyflowreg),
        else the only movie-shaped dataset (channel-numbered ones ``ch1``, ``ch2`` ... counting
        as one); several candidates are an error that lists them (see
        :mod:`flowreg_dask.io.hdf5`), never a silent choice.
    axes : str, optional
        Stored order of the dimensions (keyword only), e.g. ``"yxt"``; by default ``"tyx"`` /
        ``"tyxc"``, or what a ``dimension_ordering`` attribute of the datasets says.
    """

    def __init__(
        self,
        file_path: str | os.PathLike[str],
        buffer_size: int = 500,
        bin_size: int = 1,
        dataset_names: str | Sequence[str] | None = None,
        *,
        axes: str | None = None,
    ) -> None:
        self.dataset_names = _dataset(dataset_names)
        if axes is None and os.path.isfile(os.fspath(file_path)):
            axes = _written_hdf5_axes(os.fspath(file_path), self.dataset_names)
        super().__init__(
            file_path, buffer_size, bin_size, format="hdf5", dataset=self.dataset_names, axes=axes
        )


class MATFileReader(RecordingReader):
    """MATLAB MAT-files: v5/v7 (scipy) and v7.3 (HDF5, read lazily), one variable per channel.

    Parameters
    ----------
    file_path : str or path
        The MAT-file.
    buffer_size, bin_size : int
        As :class:`VideoReader` (defaults 500, 1).
    dataset_names : str or list of str, optional
        The variable, or one variable per channel; discovered as for HDF5 when omitted.
    dimension_ordering : sequence of int, optional
        Permutation ``p`` with ``variable.transpose(p)`` = ``(H, W, T)`` in MATLAB's order;
        default ``(0, 1, 2)``: the variables are ``H x W x T`` as MATLAB shows them.
    axes : str, optional
        The same as letters in MATLAB's order (keyword only), e.g. ``"yxct"`` for 4-D.

    Notes
    -----
    v7.3 files are read with the right axes (pyflowreg swapped H and W on them). v5/v7 files
    are loaded whole on the first read (the format stores each variable in one piece).
    """

    def __init__(
        self,
        file_path: str | os.PathLike[str],
        buffer_size: int = 500,
        bin_size: int = 1,
        dataset_names: str | Sequence[str] | None = None,
        dimension_ordering: Sequence[int] | None = None,
        *,
        axes: str | None = None,
    ) -> None:
        self.dataset_names = _dataset(dataset_names)
        if dimension_ordering is not None:
            ordered = ordering_axes(
                dimension_ordering, "yxt", name="dimension_ordering", where=os.fspath(file_path)
            )
            if axes is not None and axes != ordered:
                msg = (
                    f"MATFileReader got dimension_ordering={dimension_ordering!r} and "
                    f"axes={axes!r}; give one of them"
                )
                raise InvalidOptionError(msg)
            axes = ordered
        self.dimension_ordering = dimension_ordering
        super().__init__(
            file_path, buffer_size, bin_size, format="mat", dataset=self.dataset_names, axes=axes
        )


_PYFLOWREG_KWARGS = ("dataset_names", "dimension_ordering", "use_memmap")


def pyflowreg_open_kwargs(paths: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """pyflowreg's reader keyword arguments as :func:`open_recording` options."""
    out = {k: v for k, v in kwargs.items() if k not in _PYFLOWREG_KWARGS}
    if kwargs.get("dataset_names") is not None:
        if "dataset" in out:
            raise InvalidOptionError("give dataset_names or dataset, not both")
        out["dataset"] = _dataset(kwargs["dataset_names"])
    if kwargs.get("dimension_ordering") is not None:
        if out.get("axes") is not None:
            raise InvalidOptionError("give dimension_ordering or axes, not both")
        # the same permutation for MAT (variables in MATLAB's order) and HDF5 (h5py's order)
        out["axes"] = ordering_axes(
            kwargs["dimension_ordering"],
            "yxt",
            name="dimension_ordering",
            where=", ".join(os.fspath(p) for p in paths),
        )
    return out


class MULTICHANNELFileReader(RecordingReader):
    """Several files read as the channels of one recording (one file per channel, in order).

    The files need the same frame count, height and width; different data types are promoted
    to the widest one, with a warning. Each file may hold several channels itself.

    Parameters
    ----------
    list_of_paths : list of str or path
        The files, one per channel group.
    buffer_size, bin_size : int
        As :class:`VideoReader` (defaults 500, 1).
    **kwargs
        Options applied to every file: pyflowreg's ``dataset_names``, ``dimension_ordering``,
        ``deinterleave`` (``use_memmap`` is ignored) or any option of
        :func:`~flowreg_dask.io.open_recording`.

    Attributes
    ----------
    input_file_name : str
        The files' stems joined by ``"_"`` (``ch1_ch2`` for ``ch1.tif``, ``ch2.tif``).
    """

    def __init__(
        self,
        list_of_paths: Sequence[str | os.PathLike[str]],
        buffer_size: int = 500,
        bin_size: int = 1,
        **kwargs: Any,
    ) -> None:
        if isinstance(list_of_paths, (str, os.PathLike)) or not list(list_of_paths):
            msg = (
                f"MULTICHANNELFileReader needs a non-empty list of files (one per channel), got "
                f"{list_of_paths!r}"
            )
            raise InvalidInputError(msg)
        paths = [os.fspath(p) for p in list_of_paths]
        self.file_paths = paths
        super().__init__(paths, buffer_size, bin_size, **pyflowreg_open_kwargs(paths, kwargs))
