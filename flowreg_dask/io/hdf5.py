"""HDF5 reader (h5py).

Which datasets hold the movie
-----------------------------
* ``dataset="name"``: that dataset; ``dataset=["ch1", "ch2"]``: those datasets as channels.
* otherwise, in this order (see :func:`flowreg_dask.io._arrays.discover_datasets`):
  channel-numbered names (``ch1``, ``ch2``, ``channel_1``, ...; grouped by prefix, sorted by
  number), a dataset named ``mov``, ``data`` or ``dataset``, the largest 3-D/4-D dataset.

A 3-D dataset is (T, H, W), one per channel; a 4-D one is (T, H, W, C). ``axes="yxt"``,
``axes="tcyx"`` etc. state another order (``z`` is flattened into frames with a warning).

Frame rate and pixel size are taken from attributes of the dataset or the file root when
present: ``frame_rate``/``fps``/``fs`` (Hz) and ``pixel_size``/``pixel_size_um`` (µm).
"""

from __future__ import annotations

import os
from typing import Any

import h5py
import numpy as np

from ..errors import InvalidInputError, RecordingNotFoundError
from ._arrays import (
    AxesArrayFrames,
    check_numeric_dtype,
    default_axes,
    discover_datasets,
    format_datasets,
    frames_layout,
    parse_axes,
    warn_z_flattened,
)
from ._lazy import cached_handle, check_unchanged, file_stamp
from ._registry import Reader
from ._util import positive_float

__all__ = ["Hdf5Reader", "Hdf5Frames", "HDF5_MAGIC", "is_hdf5_header", "open_h5"]

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def is_hdf5_header(header: bytes) -> bool:
    """HDF5 signature at offset 0 or after a user block (512, 1024, ... bytes)."""
    if header[:8] == HDF5_MAGIC:
        return True
    offset = 512
    while offset + 8 <= len(header):
        if header[offset : offset + 8] == HDF5_MAGIC:
            return True
        offset *= 2
    return False


def open_h5(path: str, kind: str = "HDF5") -> h5py.File:
    """``h5py.File(path, "r")`` with a clear error for unreadable files."""
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        msg = (
            f"{kind} file '{path}' could not be opened ({exc}). The file seems truncated, "
            f"corrupted or not an {kind} file; check that it was copied completely."
        )
        raise InvalidInputError(msg) from exc


def list_h5_datasets(group: h5py.Group, skip: tuple[str, ...] = ()) -> dict[str, tuple]:
    """``name -> (shape, dtype or None)`` of all datasets below ``group``."""
    found: dict[str, tuple] = {}

    def visit(name: str, obj: Any) -> None:
        if any(name == s or name.startswith(s + "/") for s in skip):
            return
        if isinstance(obj, h5py.Dataset):
            try:
                dt = np.dtype(obj.dtype) if obj.dtype.kind in "uifb" else None
            except TypeError:
                dt = None
            found[name] = (tuple(obj.shape), dt)

    group.visititems(visit)
    return found


def _attr_float(objs: list[Any], keys: tuple[str, ...]) -> float | None:
    for obj in objs:
        for key in keys:
            if key in obj.attrs:
                value = obj.attrs[key]
                try:
                    value = np.asarray(value).reshape(-1)[0]
                except (IndexError, ValueError):
                    continue
                result = positive_float(value)
                if result is not None:
                    return result
    return None


def select_members(
    available: dict[str, tuple],
    dataset: str | list[str] | tuple[str, ...] | None,
    *,
    kind: str,
    path: str,
    ndims: tuple[int, ...] = (3, 4),
) -> list[str]:
    """Dataset names to read: the requested ones (checked) or the discovered ones."""
    where = f"{kind} file '{path}'"
    if dataset is None:
        return discover_datasets(available, ndims=ndims, where=where)
    names = [dataset] if isinstance(dataset, str) else list(dataset)
    if not names:
        msg = f"dataset=[] for {where}: give at least one dataset name"
        raise InvalidInputError(msg)
    out = []
    for name in names:
        key = str(name).strip("/")
        if key not in available:
            msg = (
                f"Dataset {name!r} not found in {where}. Datasets in the file: "
                f"{format_datasets(available)}"
            )
            raise RecordingNotFoundError(msg)
        out.append(key)
    return out


def check_members(
    available: dict[str, tuple], names: list[str], *, kind: str, path: str
) -> tuple[tuple[int, ...], np.dtype]:
    """Common shape and promoted dtype of the chosen datasets."""
    where = f"{kind} file '{path}'"
    shapes = {n: available[n][0] for n in names}
    if len(set(shapes.values())) > 1:
        msg = (
            f"Channel datasets of {where} differ in shape: "
            + ", ".join(f"'{n}' {s}" for n, s in shapes.items())
            + ". Pass dataset=[...] with datasets of one shape."
        )
        raise InvalidInputError(msg)
    dtypes = []
    for n in names:
        dt = available[n][1]
        if dt is None:
            msg = f"Dataset '{n}' of {where} is not numeric; pass dataset='NAME' of a movie"
            raise InvalidInputError(msg)
        dtypes.append(check_numeric_dtype(dt, where=f"dataset '{n}' of {where}"))
    return shapes[names[0]], np.result_type(*dtypes)


def resolve_axes(axes: str | None, shape: tuple[int, ...], *, where: str) -> str:
    if axes is not None:
        return parse_axes(axes, len(shape), where=where)
    ax = default_axes(len(shape))
    if ax is None:
        msg = (
            f"{where} has {len(shape)} dimensions {shape}; expected (T, H, W) or (T, H, W, C). "
            "Pass axes='...' (letters t, z, y, x, c in stored order), e.g. axes='tzcyx'"
        )
        raise InvalidInputError(msg)
    return ax


def check_frames(shape: tuple[int, ...], axes: str, *, where: str) -> None:
    t, h, w, c, z = frames_layout(shape, axes)
    if t == 0 or h == 0 or w == 0 or c == 0:
        msg = f"{where} has shape {shape} (axes {axes!r}): zero frames or an empty frame"
        raise InvalidInputError(msg)
    warn_z_flattened(z, where)


class Hdf5Frames(AxesArrayFrames):
    """Frames of one or more same-shaped HDF5 datasets (stacked as channels)."""

    __slots__ = ()

    def _arrays(self) -> list[Any]:
        check_unchanged(self.path, self.stamp)
        f = cached_handle(
            ("hdf5", self.path, self.stamp), lambda: open_h5(self.path), per_thread=False
        )
        return [f[name] for name in self.members]


class Hdf5Reader(Reader):
    """HDF5 files (h5py): one dataset per channel or one 4-D dataset."""

    name = "hdf5"
    description = "HDF5 datasets (h5py): (T,H,W) per channel or (T,H,W,C); axes= for others"
    url = "https://www.h5py.org"
    extensions = (".h5", ".hdf5", ".hdf", ".he5", ".nwb")

    def sniff(self, path: str, header: bytes) -> bool:
        return is_hdf5_header(header)

    def open(
        self,
        path: str,
        *,
        dataset: str | list[str] | None = None,
        axes: str | None = None,
    ) -> Hdf5Frames:
        """Open an HDF5 file.

        Parameters
        ----------
        path : str
            The file.
        dataset : str or list of str, optional
            Dataset name, or one dataset per channel; discovered when omitted.
        axes : str, optional
            Stored order of each dataset's dimensions (letters t, z, y, x, c); default
            ``"tyx"`` for 3-D and ``"tyxc"`` for 4-D datasets.
        """
        stamp = file_stamp(path)
        with open_h5(path) as f:
            try:
                available = list_h5_datasets(f)
            except (OSError, RuntimeError, KeyError) as exc:
                msg = f"HDF5 file '{path}' could not be read ({exc}); it seems corrupted"
                raise InvalidInputError(msg) from exc
            members = select_members(available, dataset, kind="HDF5", path=path)
            shape, dtype = check_members(available, members, kind="HDF5", path=path)
            where = f"dataset '{members[0]}' of HDF5 file '{path}'"
            ax = resolve_axes(axes, shape, where=where)
            check_frames(shape, ax, where=where)
            objs = [f[members[0]], f]
            meta = {
                "source": path,
                "format": self.name,
                "files": [path],
                "dataset": members if len(members) > 1 else members[0],
                "axes": ax,
                "frame_rate": _attr_float(objs, ("frame_rate", "fps", "fs", "frameRate")),
                "pixel_size": _attr_float(objs, ("pixel_size", "pixel_size_um", "pixelSize")),
            }
            if len(members) > 1 and "c" not in ax:
                meta["channel_names"] = [os.path.basename(m) for m in members]
        return Hdf5Frames(
            path=path,
            stamp=stamp,
            members=members,
            axes=ax,
            raw_shape=shape,
            dtype=dtype,
            metadata=meta,
        )
