"""HDF5 reader (h5py).

Which datasets hold the movie
-----------------------------
* ``dataset="name"``: that dataset; ``dataset=["ch1", "ch2"]``: those datasets as channels
  (CLI: ``--dataset name`` / ``--dataset ch1,ch2``).
* otherwise only an unambiguous choice is made (see
  :func:`flowreg_dask.io._arrays.discover_datasets`):

  1. the datasets the file lists in its root attribute ``dataset_names`` (written by
     flowreg_dask's and pyflowreg's HDF5 writers);
  2. else the one *movie-shaped* dataset: numeric, 3-D or 4-D (or as many dimensions as
     ``axes=`` has). Datasets named ``u``, ``v``, ``w``, ``valid`` or ``reference`` (the flow,
     mask and reference arrays of registration outputs) do not count when another one exists,
     and channel-numbered datasets of one prefix and shape (``ch1``, ``ch2``, ...;
     ``channel_1``, ...) count as one, read as channels in numeric order;
  3. several movie-shaped datasets (e.g. ``imaging/raw`` and ``imaging/dff``; ``mov`` and
     ``dff``): :class:`~flowreg_dask.errors.InvalidInputError` listing them (name, shape,
     dtype) and how to choose. A conventional name (``mov``, ``data``) is no reason to pick one
     of them silently. 1-D and 2-D arrays (timestamps, mean images) never compete.

  The chosen name is in ``DataArray.attrs["dataset"]`` and printed by ``flowreg-dask info``.

Frames that were never written
------------------------------
A dataset created with its final length whose tail was never written (an interrupted
acquisition) reads as zeros (the fill value) there. Opening checks this from metadata only,
without reading pixels: the chunks a chunked dataset has allocated (one call to the HDF5
library when all are allocated), or whether a contiguous dataset has storage at all.
``open_recording`` refuses such a recording with
:class:`~flowreg_dask.errors.InvalidInputError` naming the file, the dataset and the
unwritten frames, unless ``frames=`` selects written frames only. A chunk that was allocated
but only partly written cannot be detected.

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

from ..errors import InvalidInputError
from ._arrays import (
    AxesArrayFrames,
    check_frames,
    check_members,
    resolve_axes,
    select_members,
)
from ._lazy import cached_handle, check_unchanged, file_stamp
from ._registry import Reader
from ._util import format_frame_ranges, frame_runs, positive_float

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


def declared_datasets(f: h5py.File) -> list[str] | None:
    """Movie datasets a file lists in its root attribute ``dataset_names`` (None if absent).

    flowreg_dask's and pyflowreg's HDF5 writers store the names of the movie datasets there.
    """
    value = f.attrs.get("dataset_names")
    if value is None:
        return None
    items = [value] if isinstance(value, (str, bytes)) else list(np.ravel(value))
    names = [v.decode() if isinstance(v, bytes) else str(v) for v in items]
    return names or None


def _chunk_offsets(dset: h5py.Dataset, n: int) -> np.ndarray:
    """Offsets (in elements) of the allocated chunks of a chunked dataset, ``(n, ndim)``."""
    offsets: list[tuple[int, ...]] = []
    chunk_iter = getattr(dset.id, "chunk_iter", None)
    if chunk_iter is not None:  # HDF5 >= 1.14: one pass over the chunk index
        chunk_iter(lambda info: offsets.append(info.chunk_offset))
    else:
        offsets = [dset.id.get_chunk_info(i).chunk_offset for i in range(n)]
    return np.asarray(offsets, dtype=np.int64).reshape(-1, dset.ndim)


def unwritten_frames(dset: h5py.Dataset, axes: str) -> tuple[tuple[int, int], ...]:
    """Frames of ``dset`` that never received data, as ``(start, stop)`` frame ranges.

    Reads metadata only. A chunked dataset allocates a chunk when data are first written to
    it, so a frame is unwritten when any chunk it lies in was never allocated (for example the
    tail of a dataset created with its final length by an acquisition that was interrupted).
    A contiguous or compact dataset without allocated storage was never written at all.
    Frames are numbered as the reader numbers them (``t`` major, ``z`` minor; ``axes`` are
    the dataset's axes in h5py's order). Returns ``()`` when every frame has storage, for
    virtual and external datasets, and when the HDF5 library cannot list chunks.

    A chunk that was allocated but only partly written cannot be told apart from a complete
    one: frames ``50-59`` of a chunk of 10 frames of which 5 were written read as fill value.
    """
    shape = tuple(int(s) for s in dset.shape)
    sizes = dict(zip(axes, shape, strict=True))
    nt, nz = sizes.get("t", 1), sizes.get("z", 1)
    if nt * nz == 0 or dset.size == 0:
        return ()
    try:
        plist = dset.id.get_create_plist()
        layout = plist.get_layout()
        if plist.get_external_count() > 0 or layout == h5py.h5d.VIRTUAL:
            return ()
        if layout != h5py.h5d.CHUNKED:
            return ((0, nt * nz),) if dset.id.get_storage_size() == 0 else ()
        chunks = tuple(int(c) for c in dset.chunks)
        grid = [-(-s // c) for s, c in zip(shape, chunks, strict=True)]
        n_alloc = int(dset.id.get_num_chunks())
        if n_alloc >= int(np.prod(grid)):
            return ()
        offsets = _chunk_offsets(dset, n_alloc)
    except (AttributeError, NotImplementedError, RuntimeError, OSError, ValueError):
        return ()  # an HDF5 library that cannot query chunks: nothing can be said
    it, iz = axes.find("t"), axes.find("z")
    ct, cz = (chunks[it] if it >= 0 else 1), (chunks[iz] if iz >= 0 else 1)
    gt, gz = (grid[it] if it >= 0 else 1), (grid[iz] if iz >= 0 else 1)
    per_cell = int(np.prod(grid)) // (gt * gz)  # chunks covering one (t, z) chunk cell
    ti = offsets[:, it] // ct if it >= 0 else np.zeros(len(offsets), np.int64)
    zi = offsets[:, iz] // cz if iz >= 0 else np.zeros(len(offsets), np.int64)
    counts = np.bincount(ti * gz + zi, minlength=gt * gz).reshape(gt, gz)
    complete = counts >= per_cell
    written = np.repeat(np.repeat(complete, ct, axis=0)[:nt], cz, axis=1)[:, :nz]
    return frame_runs(~written.reshape(-1))


class Hdf5Frames(AxesArrayFrames):
    """Frames of one or more same-shaped HDF5 datasets (stacked as channels)."""

    __slots__ = ("unwritten", "what")

    def __init__(
        self,
        *,
        unwritten: tuple[tuple[int, int], ...] = (),
        what: str = "dataset",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.unwritten = tuple((int(a), int(b)) for a, b in unwritten)
        self.what = what

    def _arrays(self) -> list[Any]:
        check_unchanged(self.path, self.stamp)
        f = cached_handle(
            ("hdf5", self.path, self.stamp), lambda: open_h5(self.path), per_thread=False
        )
        return [f[name] for name in self.members]

    def unwritten_ranges(self) -> tuple[tuple[int, int], ...]:
        return self.unwritten

    def unwritten_message(self) -> str | None:
        if not self.unwritten:
            return None
        names = ", ".join(f"'{m}'" for m in self.members)
        kind = "HDF5" if self.what == "dataset" else "MAT v7.3"
        return (
            f"{kind} file '{self.path}', {self.what} {names}: frames "
            f"{format_frame_ranges(self.unwritten)} of {self.shape[0]} were never written (no "
            "data chunks allocated)"
        )


def find_unwritten(f: h5py.File, members: list[str], axes: str) -> tuple[tuple[int, int], ...]:
    """Union of :func:`unwritten_frames` over the channel datasets ``members``."""
    runs = [unwritten_frames(f[m], axes) for m in members]
    if not any(runs):
        return ()
    sizes = dict(zip(axes, f[members[0]].shape, strict=True))
    mask = np.zeros(sizes.get("t", 1) * sizes.get("z", 1), dtype=bool)
    for ranges in runs:
        for a, b in ranges:
            mask[a:b] = True
    return frame_runs(mask)


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
            members, reason = select_members(
                available,
                dataset,
                kind="HDF5",
                path=path,
                ndims=(3, 4) if axes is None else (len(str(axes).strip()),),
                declared=declared_datasets(f),
            )
            shape, dtype = check_members(available, members, kind="HDF5", path=path)
            where = f"dataset '{members[0]}' of HDF5 file '{path}'"
            ax = resolve_axes(axes, shape, where=where)
            check_frames(shape, ax, where=where)
            unwritten = find_unwritten(f, members, ax)
            objs = [f[members[0]], f]
            meta = {
                "source": path,
                "format": self.name,
                "files": [path],
                "dataset": members if len(members) > 1 else members[0],
                "dataset_reason": reason,
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
            unwritten=unwritten,
        )
