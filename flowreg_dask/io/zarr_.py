"""Zarr reader (zarr v2 and v3 stores, OME-Zarr 0.4 and 0.5).

What is read
------------
* **OME-Zarr** group (0.4: ``multiscales`` in the group attributes; 0.5: under
  ``attributes["ome"]``): the first multiscale's level ``level`` (default 0, full resolution),
  transposed from its axes names to ``(t, y, x, c)``. This includes flowreg_dask's own
  corrected stores (level ``"0"`` with dims ``(t, c, y, x)``). Pixel size and frame interval
  come from the ``scale`` transformations when the axes carry units; channel names from
  ``omero`` channel labels.
* A plain **array** uses its ``dimension_names`` (v3) or ``_ARRAY_DIMENSIONS`` attribute
  (xarray's v2 convention) when they are recognised names (``t``/``time``, ``z``, ``y``, ``x``,
  ``c``/``channel``), else ``axes=``, else (T, H, W[, C]).
* A plain **group**: ``dataset="path/in/group"`` (CLI ``--dataset``), or the unambiguous
  discovery of the HDF5 reader (see :mod:`flowreg_dask.io.hdf5`): the one numeric 3-D/4-D
  array, channel-numbered arrays ``ch1``, ``ch2``, ... counting as one; several candidates are
  refused with a list of them, never chosen silently.

A ``z`` axis of size 1 is dropped; a larger one is flattened into frames (t major, z minor)
with a :class:`~flowreg_dask.errors.FlowRegWarning`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import zarr

from ..errors import InvalidInputError, RecordingNotFoundError
from ._arrays import (
    AxesArrayFrames,
    axes_from_names,
    axis_letter,
    check_frames,
    check_members,
    parse_axes,
    resolve_axes,
    select_members,
)
from ._lazy import cached_handle
from ._registry import Reader
from ._util import interval_to_rate, length_to_um

__all__ = ["ZarrReader", "ZarrFrames"]

_ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup", ".zattrs")


class ZarrFrames(AxesArrayFrames):
    """Frames of one or more same-shaped zarr arrays inside one store."""

    __slots__ = ()

    def _arrays(self) -> list[Any]:
        def opener(member: str) -> Any:
            return lambda: zarr.open_array(self.path, path=member, mode="r")

        return [
            cached_handle(("zarr", self.path, member), opener(member), per_thread=False)
            for member in self.members
        ]


def _open_store(path: str) -> Any:
    try:
        return zarr.open(path, mode="r")
    except Exception as exc:
        msg = (
            f"Zarr store '{path}' could not be opened ({exc}); it seems corrupted or is not a "
            "zarr v2/v3 array or group"
        )
        raise InvalidInputError(msg) from exc


def _array_dim_names(arr: Any) -> list[Any] | None:
    names = getattr(arr.metadata, "dimension_names", None)
    if names:
        return list(names)
    names = arr.attrs.get("_ARRAY_DIMENSIONS")
    return list(names) if names else None


def _ome_attrs(group: Any) -> tuple[dict[str, Any] | None, str | None]:
    attrs = group.attrs.asdict()
    ome = attrs.get("ome")
    if isinstance(ome, dict) and ome.get("multiscales"):
        return ome, str(ome.get("version", "0.5"))
    if attrs.get("multiscales"):
        ms = attrs["multiscales"]
        version = ms[0].get("version", "0.4") if isinstance(ms, list) and ms else "0.4"
        return attrs, str(version)
    return None, None


def _bioformats2raw_image(group: Any, path: str) -> Any | None:
    """Image ``0`` of an OME-Zarr ``bioformats2raw.layout`` container (None for other groups).

    Only a container with a single image is opened without asking; with several, the error lists
    them (``dataset="1/0"`` picks the level-0 array of image 1)."""
    ome = group.attrs.asdict().get("ome")
    layout = ome.get("bioformats2raw.layout") if isinstance(ome, dict) else None
    if layout is None:
        layout = group.attrs.asdict().get("bioformats2raw.layout")
    if layout is None:
        return None
    images = sorted(k for k in group.group_keys() if k.isdigit())
    if len(images) != 1:
        msg = (
            f"OME-Zarr container '{path}' holds {len(images)} images ({', '.join(images)}); "
            "choose one with dataset='<image>/0' (CLI --dataset)"
        )
        raise InvalidInputError(msg)
    image = group[images[0]]
    return image if _ome_attrs(image)[0] is not None else None


def _scale_of(multiscale: dict[str, Any], dataset: dict[str, Any], ndim: int) -> np.ndarray:
    scale = np.ones(ndim)
    for transforms in (
        dataset.get("coordinateTransformations"),
        multiscale.get("coordinateTransformations"),
    ):
        for tr in transforms or []:
            if tr.get("type") == "scale" and len(tr.get("scale", [])) == ndim:
                scale = scale * np.asarray(tr["scale"], dtype=float)
    return scale


def _ome_axes(axes_meta: list[Any], where: str) -> str:
    letters = []
    for ax in axes_meta:
        if isinstance(ax, str):
            name, kind = ax, None
        else:
            name, kind = ax.get("name"), ax.get("type")
        letter = axis_letter(name)
        if letter is None and kind in ("time", "channel"):
            letter = {"time": "t", "channel": "c"}[kind]
        if letter is None:
            msg = (
                f"{where}: OME-Zarr axis {name!r} (type {kind!r}) is not one of t, c, z, y, x; "
                "pass axes='...' to label the dimensions"
            )
            raise InvalidInputError(msg)
        letters.append(letter)
    return "".join(letters)


class ZarrReader(Reader):
    """Zarr v2/v3 arrays and groups, OME-Zarr 0.4/0.5 (incl. flowreg_dask output stores)."""

    name = "zarr"
    description = "Zarr v2/v3 arrays and groups, OME-Zarr 0.4/0.5 (level 0)"
    url = "https://zarr.dev"
    extensions = (".zarr", ".ome.zarr", ".zarr/")

    def sniff(self, path: str, header: bytes) -> bool:
        return os.path.isdir(path) and any(
            os.path.exists(os.path.join(path, m)) for m in _ZARR_MARKERS
        )

    def open(
        self,
        path: str,
        *,
        dataset: str | list[str] | None = None,
        axes: str | None = None,
        level: int = 0,
    ) -> ZarrFrames:
        """Open a zarr store.

        Parameters
        ----------
        path : str
            Folder of the store (array or group).
        dataset : str or list of str, optional
            Path of the array(s) inside a group; one per channel when a list.
        axes : str, optional
            Stored order of the dimensions (letters t, z, y, x, c), overriding names in the
            metadata.
        level : int
            OME-Zarr resolution level (default 0, full resolution).
        """
        path = os.fspath(path)
        node = _open_store(path)
        meta: dict[str, Any] = {"source": path, "format": self.name, "files": [path]}
        if isinstance(node, zarr.Array):
            if dataset is not None:
                msg = f"Zarr store '{path}' is a single array; dataset={dataset!r} is not used"
                raise InvalidInputError(msg)
            return self._from_arrays(path, [""], {"": node}, axes, meta)

        ome, version = _ome_attrs(node)
        if ome is None and dataset is None:
            image = _bioformats2raw_image(node, path)
            if image is not None:  # a container: its image 0 (flowreg_dask stores too)
                ome, version = _ome_attrs(image)
                return self._open_ome(path, image, ome, version, axes, level, meta, prefix="0/")
        if ome is not None and dataset is None:
            return self._open_ome(path, node, ome, version, axes, level, meta)

        arrays = {
            name: arr for name, arr in node.members(max_depth=None) if isinstance(arr, zarr.Array)
        }
        available = {
            name: (tuple(arr.shape), arr.dtype if np.dtype(arr.dtype).kind in "uif" else None)
            for name, arr in arrays.items()
        }
        members, reason = select_members(
            available,
            dataset,
            kind="Zarr",
            path=path,
            ndims=(3, 4) if axes is None else (len(str(axes).strip()),),
            member_word="array",
        )
        meta["dataset_reason"] = reason
        return self._from_arrays(path, members, arrays, axes, meta)

    def _from_arrays(
        self,
        path: str,
        members: list[str],
        arrays: dict[str, Any],
        axes: str | None,
        meta: dict[str, Any],
    ) -> ZarrFrames:
        available = {
            name: (tuple(arrays[name].shape), np.dtype(arrays[name].dtype)) for name in members
        }
        shape, dtype = check_members(available, members, kind="Zarr", path=path)
        where = f"zarr array '{members[0] or '/'}' of '{path}'"
        ax = axes_from_names(_array_dim_names(arrays[members[0]])) if axes is None else None
        if ax is None or len(ax) != len(shape):
            ax = resolve_axes(axes, shape, where=where)
        check_frames(shape, ax, where=where)
        meta.update({"axes": ax})
        if members != [""]:
            meta["dataset"] = members if len(members) > 1 else members[0]
        if len(members) > 1 and "c" not in ax:
            meta["channel_names"] = [m.rpartition("/")[2] for m in members]
        return ZarrFrames(
            path=path,
            stamp=None,
            members=members,
            axes=ax,
            raw_shape=shape,
            dtype=dtype,
            metadata=meta,
        )

    def _open_ome(
        self,
        path: str,
        group: Any,
        ome: dict[str, Any],
        version: str | None,
        axes: str | None,
        level: int,
        meta: dict[str, Any],
        prefix: str = "",
    ) -> ZarrFrames:
        multiscale = ome["multiscales"][0]
        datasets = multiscale.get("datasets") or []
        if not 0 <= level < len(datasets):
            msg = (
                f"OME-Zarr store '{path}' has {len(datasets)} resolution level(s); level={level} "
                "does not exist"
            )
            raise InvalidInputError(msg)
        member = str(datasets[level]["path"]).strip("/")
        try:
            arr = group[member]
        except KeyError as exc:
            msg = (
                f"OME-Zarr store '{path}' lists resolution level '{member}' but it is missing; "
                "the store seems incomplete"
            )
            raise RecordingNotFoundError(msg) from exc
        shape = tuple(arr.shape)
        where = f"OME-Zarr store '{path}' (level '{member}', shape {shape})"
        axes_meta = multiscale.get("axes")
        if axes is not None:
            ax = parse_axes(axes, len(shape), where=where)
        elif axes_meta:
            ax = _ome_axes(axes_meta, where)
        else:  # OME-Zarr 0.1-0.3 had no axes: they were always (t, c, z, y, x)
            ax = "tczyx"[-len(shape) :]
        if len(ax) != len(shape):
            msg = f"{where}: {len(ax)} axes in the metadata for a {len(shape)}-D array"
            raise InvalidInputError(msg)
        meta["ome_version"] = version
        member = prefix + member
        meta["dataset"] = member
        meta["dataset_reason"] = f"OME-Zarr resolution level {level}" + (
            " (full resolution)" if level == 0 else ""
        )
        if axes_meta and not isinstance(axes_meta[0], str):
            scale = _scale_of(multiscale, datasets[level], len(shape))
            for i, a in enumerate(axes_meta):
                unit = a.get("unit")
                if ax[i] == "x" and unit:
                    meta["pixel_size"] = length_to_um(scale[i], unit)
                elif ax[i] == "t" and unit:
                    meta["frame_rate"] = interval_to_rate(scale[i], unit)
        omero = ome.get("omero") or group.attrs.get("omero") or {}
        labels = [ch.get("label") for ch in omero.get("channels", []) if isinstance(ch, dict)]
        n_c = shape[ax.index("c")] if "c" in ax else 1
        if labels and len(labels) == n_c and all(labels):
            meta["channel_names"] = [str(v) for v in labels]
        check_frames(shape, ax, where=where)
        meta["axes"] = ax
        return ZarrFrames(
            path=path,
            stamp=None,
            members=[member],
            axes=ax,
            raw_shape=shape,
            dtype=np.dtype(arr.dtype),
            metadata=meta,
        )
