"""In-memory sources: numpy arrays, dask arrays and xarray DataArrays.

* numpy / array-likes: (H, W) is one frame, (T, H, W) one channel, (T, H, W, C); ``axes=``
  states another order (letters t, z, y, x, c).
* dask arrays: the same, kept lazy.
* xarray DataArray: dimensions named ``t``/``time``/``frame``, ``z``, ``y``, ``x``,
  ``c``/``channel`` (and common aliases) are transposed to ``(t, y, x, c)``; unnamed ones
  (``dim_0``...) are read positionally. ``frame_rate``, ``pixel_size`` and ``channel_names``
  attributes and a coordinate on the channel dimension are kept.

A ``z`` axis larger than 1 is flattened into frames (t major) with a warning.
"""

from __future__ import annotations

import os
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from ..errors import InvalidInputError
from ._arrays import (
    AXIS_LETTERS,
    axis_letter,
    check_numeric_dtype,
    default_axes,
    parse_axes,
    warn_z_flattened,
)

__all__ = ["is_array_source", "array_to_dask"]

ARRAY_SOURCE = "<array>"


def is_array_source(obj: Any) -> bool:
    """True for numpy/dask/xarray arrays and other array-likes (not paths or lists)."""
    if isinstance(obj, (str, bytes, os.PathLike, list, tuple)):
        return False
    if isinstance(obj, (np.ndarray, da.Array, xr.DataArray)):
        return True
    return hasattr(obj, "shape") and hasattr(obj, "dtype") and hasattr(obj, "__array__")


def _ndim_error(shape: tuple[int, ...]) -> InvalidInputError:
    return InvalidInputError(
        f"{ARRAY_SOURCE} has {len(shape)} dimension(s) {shape}; expected (H, W), (T, H, W) or "
        "(T, H, W, C). Pass axes='...' (letters t, z, y, x, c) for other layouts."
    )


def _xarray_axes(arr: xr.DataArray, axes: str | None) -> str:
    if axes is None and default_axes(arr.ndim) is None and arr.ndim != 5:
        raise _ndim_error(tuple(arr.shape))
    if axes is not None:
        return parse_axes(axes, arr.ndim, where=f"{ARRAY_SOURCE} with dims {arr.dims}")
    letters = [axis_letter(d) for d in arr.dims]
    if all(letter is None for letter in letters):
        ax = default_axes(arr.ndim)
    elif any(letter is None for letter in letters):
        ax = None
    else:
        ax = "".join(letters)  # type: ignore[arg-type]
    if ax is None or len(set(ax)) != len(ax) or "y" not in ax or "x" not in ax:
        msg = (
            f"{ARRAY_SOURCE}: cannot tell the meaning of the DataArray dims {arr.dims}; name "
            "them t, y, x (and c for channels, z for planes) or pass axes='...'"
        )
        raise InvalidInputError(msg)
    return ax


def array_to_dask(
    obj: Any, *, axes: str | None, chunk_frames: int
) -> tuple[da.Array, dict[str, Any]]:
    """``(dask array (T, H, W, C), metadata)`` for an in-memory source."""
    meta: dict[str, Any] = {"source": ARRAY_SOURCE, "format": "array", "files": []}
    if isinstance(obj, xr.DataArray):
        ax = _xarray_axes(obj, axes)
        attrs = obj.attrs
        for key in ("frame_rate", "pixel_size", "channel_names"):
            if attrs.get(key) is not None:
                meta[key] = attrs[key]
        if "c" in ax:
            cdim = obj.dims[ax.index("c")]
            if cdim in obj.coords:
                meta["channel_names"] = [str(v) for v in np.asarray(obj.coords[cdim].values)]
        data = obj.data
    else:
        data = obj
        ndim = len(getattr(obj, "shape", ()))
        if axes is not None:
            ax = parse_axes(axes, ndim, where=f"{ARRAY_SOURCE} of shape {tuple(obj.shape)}")
        else:
            found = default_axes(ndim)
            if found is None:
                raise _ndim_error(tuple(obj.shape))
            ax = found
    shape = tuple(int(s) for s in data.shape)
    check_numeric_dtype(data.dtype, where=f"{ARRAY_SOURCE} of shape {shape}")
    if not isinstance(data, da.Array):
        data = np.asarray(data)
        t_axis = ax.index("t") if "t" in ax else None
        chunks = tuple(
            (min(chunk_frames, max(s, 1)) if i == t_axis else -1) for i, s in enumerate(shape)
        )
        data = da.from_array(data, chunks=chunks)
    order = [a for a in AXIS_LETTERS if a in ax]
    data = data.transpose([ax.index(a) for a in order])
    for i, a in enumerate(AXIS_LETTERS):
        if a not in ax:
            data = da.expand_dims(data, axis=i)
    t, z, h, w, c = data.shape
    if 0 in (t, z, h, w, c):
        msg = f"{ARRAY_SOURCE} of shape {shape} (axes {ax!r}) has zero frames or an empty frame"
        raise InvalidInputError(msg)
    if z > 1:
        warn_z_flattened(z, f"{ARRAY_SOURCE} of shape {shape}")
        data = data.rechunk({1: -1}).reshape(t * z, h, w, c)
    else:
        data = data[:, 0]
    meta["axes"] = ax
    return data, meta
