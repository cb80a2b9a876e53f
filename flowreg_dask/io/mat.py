"""MATLAB MAT-file reader: v5/v7 via scipy.io, v7.3 via h5py.

Each movie variable is stored as MATLAB sees it: ``(H, W, T)``, one variable per channel,
named with ``dataset=`` (CLI ``--dataset``) or discovered like HDF5 datasets (see
:mod:`flowreg_dask.io.hdf5`): the one numeric 3-D variable (``len(axes)``-D with ``axes=``),
channel-numbered variables ``ch1``, ``ch2``, ... counting as one and the ``u``, ``v``,
``valid``, ``reference`` arrays of flowreg exports not counting; several candidates (say
``raw`` and ``dff``) are refused with a list of them, never chosen silently. Unwritten parts of
v7.3 variables are refused as for HDF5. ``axes=`` gives the order of the dimensions as MATLAB's
``size()`` reports them (default ``"yxt"``; 4-D variables need ``axes``, e.g. ``"yxct"``).

* v5/v7 files are read with :func:`scipy.io.loadmat`. The header is read on open
  (``scipy.io.whosmat``), but the first frame that is computed loads the **whole variable**
  into memory (cached per worker thread): MAT v5 stores variables compressed in one piece, so
  they cannot be read frame by frame. Convert large files to HDF5 or v7.3.
* v7.3 files are HDF5: h5py shows MATLAB's column-major ``(H, W, T)`` array reversed as
  ``(T, W, H)``, so the axes are reversed before reading (pyflowreg read these files with H
  and W swapped). They are read lazily, frame range by frame range.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.io

from ..errors import InvalidInputError
from ._arrays import AxesArrayFrames, check_frames, check_members, parse_axes, select_members
from ._lazy import LazyFrames, cached_handle, check_unchanged, file_stamp
from ._registry import Reader
from .hdf5 import Hdf5Frames, find_unwritten, is_hdf5_header, open_h5

__all__ = ["MatReader", "MatV5Frames"]

_MATLAB_NUMERIC = {
    "double": "f8",
    "single": "f4",
    "int8": "i1",
    "uint8": "u1",
    "int16": "i2",
    "uint16": "u2",
    "int32": "i4",
    "uint32": "u4",
    "int64": "i8",
    "uint64": "u8",
}
_MATLAB_DEFAULT_AXES = {2: "yx", 3: "yxt"}


class _Loaded:
    """Variables of a v5 MAT file held in memory (what the handle cache keeps)."""

    __slots__ = ("arrays",)

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays

    def close(self) -> None:
        self.arrays = {}


class MatV5Frames(AxesArrayFrames):
    """Frames of MAT v5/v7 variables; each variable is loaded whole on first read."""

    __slots__ = ()

    def _arrays(self) -> list[Any]:
        check_unchanged(self.path, self.stamp)
        loaded = cached_handle(
            ("mat5", self.path, self.stamp, self.members),
            lambda: _Loaded(
                scipy.io.loadmat(self.path, variable_names=list(self.members), squeeze_me=False)
            ),
            per_thread=False,
        )
        return [loaded.arrays[name] for name in self.members]


def _mat_axes(axes: str | None, shape: tuple[int, ...], where: str) -> str:
    if axes is not None:
        return parse_axes(axes, len(shape), where=where)
    ax = _MATLAB_DEFAULT_AXES.get(len(shape))
    if ax is None:
        msg = (
            f"{where} has {len(shape)} dimensions {shape} (MATLAB order); pass axes='...' in "
            "MATLAB's order, e.g. axes='yxct' for height x width x channels x time"
        )
        raise InvalidInputError(msg)
    return ax


class MatReader(Reader):
    """MATLAB MAT files: v5/v7 (scipy.io, whole variables) and v7.3 (HDF5, lazy)."""

    name = "mat"
    description = "MATLAB MAT v5/v7 (scipy, loads whole variables) and v7.3 (h5py, lazy)"
    url = "https://www.mathworks.com/help/matlab/import_export/mat-file-versions.html"
    extensions = (".mat",)

    def sniff(self, path: str, header: bytes) -> bool:
        return header[:6] == b"MATLAB"

    def open(
        self,
        path: str,
        *,
        dataset: str | list[str] | None = None,
        axes: str | None = None,
    ) -> LazyFrames:
        """Open a MAT file.

        Parameters
        ----------
        path : str
            The file.
        dataset : str or list of str, optional
            Variable name, or one variable per channel; discovered when omitted.
        axes : str, optional
            Order of the variable's dimensions as MATLAB reports them (default ``"yxt"``).
        """
        stamp = file_stamp(path)
        with open(path, "rb") as fh:
            header = fh.read(2048)
        if header[:10] == b"MATLAB 7.3" or is_hdf5_header(header):
            return self._open_v73(path, stamp, dataset, axes)
        return self._open_v5(path, stamp, dataset, axes)

    def _ndims(self, axes: str | None) -> tuple[int, ...]:
        return (3,) if axes is None else (len(axes.strip()),)

    def _open_v5(
        self, path: str, stamp: tuple[int, int], dataset: Any, axes: str | None
    ) -> LazyFrames:
        try:
            variables = scipy.io.whosmat(path)
        except Exception as exc:
            msg = (
                f"MAT file '{path}' could not be read ({exc}). The file seems truncated, "
                "corrupted or not a MAT file."
            )
            raise InvalidInputError(msg) from exc
        available = {
            name: (tuple(shape), np.dtype(_MATLAB_NUMERIC[cls]) if cls in _MATLAB_NUMERIC else None)
            for name, shape, cls in variables
        }
        members, reason = select_members(
            available,
            dataset,
            kind="MAT",
            path=path,
            ndims=self._ndims(axes),
            member_word="variable",
        )
        shape, dtype = check_members(available, members, kind="MAT", path=path)
        where = f"variable '{members[0]}' of MAT file '{path}'"
        ax = _mat_axes(axes, shape, where)
        check_frames(shape, ax, where=where)
        meta = self._meta(path, members, ax, "v5", reason)
        return MatV5Frames(
            path=path,
            stamp=stamp,
            members=members,
            axes=ax,
            raw_shape=shape,
            dtype=dtype,
            metadata=meta,
        )

    def _open_v73(
        self, path: str, stamp: tuple[int, int], dataset: Any, axes: str | None
    ) -> LazyFrames:
        import h5py

        with open_h5(path, kind="MAT v7.3") as f:
            available: dict[str, tuple] = {}

            def visit(name: str, obj: Any) -> None:
                if name.startswith("#") or not isinstance(obj, h5py.Dataset):
                    return
                cls = obj.attrs.get("MATLAB_class", b"")
                cls = cls.decode() if isinstance(cls, bytes) else str(cls)
                numeric = cls in _MATLAB_NUMERIC or (not cls and obj.dtype.kind in "uif")
                dt = np.dtype(obj.dtype) if numeric and obj.dtype.kind in "uif" else None
                available[name] = (tuple(obj.shape)[::-1], dt)  # MATLAB order

            try:
                f.visititems(visit)
            except (OSError, RuntimeError, KeyError) as exc:
                msg = f"MAT v7.3 file '{path}' could not be read ({exc}); it seems corrupted"
                raise InvalidInputError(msg) from exc
            members, reason = select_members(
                available,
                dataset,
                kind="MAT v7.3",
                path=path,
                ndims=self._ndims(axes),
                member_word="variable",
            )
            shape, dtype = check_members(available, members, kind="MAT v7.3", path=path)
            where = f"variable '{members[0]}' of MAT v7.3 file '{path}'"
            ax = _mat_axes(axes, shape, where)
            check_frames(shape, ax, where=where)
            # h5py sees the column-major MATLAB array with its dimensions reversed
            unwritten = find_unwritten(f, members, ax[::-1])
        meta = self._meta(path, members, ax, "v7.3", reason)
        return Hdf5Frames(
            path=path,
            stamp=stamp,
            members=members,
            axes=ax[::-1],
            raw_shape=shape[::-1],
            dtype=dtype,
            metadata=meta,
            unwritten=unwritten,
            what="variable",
        )

    def _meta(
        self, path: str, members: list[str], ax: str, version: str, reason: str
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "source": path,
            "format": self.name,
            "files": [path],
            "dataset": members if len(members) > 1 else members[0],
            "dataset_reason": reason,
            "axes": ax,
            "mat_version": version,
        }
        if len(members) > 1 and "c" not in ax:
            meta["channel_names"] = list(members)
        return meta
