"""Input handling shared by the metrics: (t, y, x, c) dask arrays, border crops, store results.

Every metric works on frames in ``(t, y, x, c)`` order (time, rows, columns, channels), the order
of :func:`flowreg_dask.open_recording` and :func:`flowreg_dask.register`. ``(t, y, x)`` movies are
read as one channel. :func:`flowreg_dask.open_result` gives stores in that order too;
:func:`from_result` puts any result with named dims in it (lazily).
"""

from __future__ import annotations

import os
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from ..errors import InvalidInputError

#: Target size of one time chunk when a numpy movie is wrapped into dask (bytes).
CHUNK_BYTES = 32 * 2**20

_TYXC = ("t", "y", "x", "c")


def is_lazy(*arrays: Any) -> bool:
    """True when any argument is (or wraps) a dask array."""
    for a in arrays:
        if isinstance(a, xr.DataArray):
            a = a.data
        if isinstance(a, da.Array):
            return True
    return False


def _frames_per_chunk(shape: tuple[int, ...], itemsize: int) -> int:
    frame = int(np.prod(shape[1:], dtype=np.int64)) * max(int(itemsize), 1)
    return int(max(1, min(shape[0], CHUNK_BYTES // max(frame, 1))))


def as_movie(x: Any, name: str, *, channels: int | None = None) -> da.Array:
    """A ``(t, y, x, c)`` dask array with whole frames per chunk.

    Parameters
    ----------
    x : ndarray, dask array or xarray.DataArray
        ``(t, y, x, c)`` or ``(t, y, x)`` frames. A DataArray whose dims are named ``t, y, x, c``
        (in any order) is transposed to that order first.
    name : str
        Argument name for error messages.
    channels : int, optional
        Expected number of channels.
    """
    if isinstance(x, xr.DataArray):
        if set(x.dims) == set(_TYXC):
            x = x.transpose(*_TYXC)
        elif set(x.dims) == {"t", "y", "x"}:
            x = x.transpose("t", "y", "x")
        x = x.data
    if not isinstance(x, da.Array):
        x = np.asarray(x)
        if x.ndim in (3, 4):
            chunk = _frames_per_chunk(x.shape, x.dtype.itemsize)
            x = da.from_array(x, chunks=(chunk,) + (-1,) * (x.ndim - 1))
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise InvalidInputError(
            f"{name}: expected frames of shape (t, y, x, c) or (t, y, x), got shape {x.shape}"
        )
    if x.shape[0] == 0:
        raise InvalidInputError(f"{name}: has zero frames")
    if channels is not None and x.shape[3] != channels:
        raise InvalidInputError(
            f"{name}: expected {channels} channel(s) on the last axis (t, y, x, c), got shape "
            f"{x.shape}; pass DataArrays with named dims, or flowreg_dask.metrics.from_result()"
        )
    if any(len(c) != 1 for c in x.chunks[1:]):
        x = x.rechunk({1: -1, 2: -1, 3: -1})
    return x


def as_flow(x: Any, name: str) -> da.Array:
    """A ``(t, y, x, 2)`` dask array (a DataArray with a ``component`` dim is transposed)."""
    if isinstance(x, xr.DataArray):
        if "component" in x.dims and set(x.dims) == {"t", "y", "x", "component"}:
            x = x.transpose("t", "y", "x", "component")
        x = x.data
    if not isinstance(x, da.Array):
        x = np.asarray(x)
        if x.ndim == 3:
            x = x[None]
        if x.ndim == 4:
            chunk = _frames_per_chunk(x.shape, x.dtype.itemsize)
            x = da.from_array(x, chunks=(chunk, -1, -1, -1))
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 2:
        raise InvalidInputError(
            f"{name}: expected a flow field of shape (t, y, x, 2) or (y, x, 2) with (u, v) on the "
            f"last axis, got shape {x.shape}"
        )
    if any(len(c) != 1 for c in x.chunks[1:]):
        x = x.rechunk({1: -1, 2: -1, 3: -1})
    return x


def as_image(x: Any, name: str) -> np.ndarray:
    """A ``(y, x, c)`` float64 numpy image (``(y, x)`` gets one channel; ``(c, y, x)``
    DataArrays with named dims are transposed). A dask reference is computed here: it is one
    small image."""
    if isinstance(x, xr.DataArray):
        if set(x.dims) == {"y", "x", "c"}:
            x = x.transpose("y", "x", "c")
        x = x.data
    x = np.asarray(x.compute() if isinstance(x, da.Array) else x, dtype=np.float64)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3:
        raise InvalidInputError(f"{name}: expected an image (y, x, c) or (y, x), got {x.shape}")
    return x


def check_border(border: int, shape: tuple[int, ...], name: str = "border") -> int:
    """Validate a border width against a frame shape ``(..., y, x, c)``."""
    if isinstance(border, bool) or not isinstance(border, (int, np.integer)) or border < 0:
        raise InvalidInputError(f"{name}: expected an integer >= 0, got {border!r}")
    h, w = shape[-3], shape[-2]
    if 2 * int(border) >= min(h, w):
        raise InvalidInputError(
            f"{name}: {border} px on each side leaves nothing of a {h} x {w} frame; use "
            f"{name} < {min(h, w) // 2}"
        )
    return int(border)


def crop(x: Any, border: int) -> Any:
    """``x[..., b:-b, b:-b, :]`` over the (y, x) axes of ``(..., y, x, c)`` arrays."""
    if border == 0:
        return x
    return x[..., border:-border, border:-border, :]


def check_same_shape(a: da.Array, b: da.Array, names: tuple[str, str]) -> None:
    if a.shape != b.shape:
        raise InvalidInputError(
            f"{names[1]}: shape {b.shape} differs from {names[0]} shape {a.shape}; both must be "
            "(t, y, x, c) of the same recording"
        )


def check_reference(ref: np.ndarray, movie: da.Array, name: str = "reference") -> np.ndarray:
    if ref.shape[:2] != movie.shape[1:3] or ref.shape[2] not in (1, movie.shape[3]):
        raise InvalidInputError(
            f"{name}: expected shape {movie.shape[1:]} (y, x, c) to match the frames, got "
            f"{ref.shape}"
        )
    return np.ascontiguousarray(np.broadcast_to(ref, movie.shape[1:]))


def from_result(result: Any) -> xr.Dataset:
    """A corrected store's variables in the metrics' axis order, lazily.

    Parameters
    ----------
    result : xarray.Dataset or path
        What :func:`flowreg_dask.open_result` returns (``corrected``, ``flow``
        (t, component, y, x), ``reference`` (c, y, x)), or the store path to open.

    Returns
    -------
    xarray.Dataset
        The same variables (still dask-backed), transposed to ``corrected`` (t, y, x, c),
        ``flow`` (t, y, x, component), ``valid`` (t, y, x), ``reference`` (y, x, c); statistics
        and attrs unchanged. Datasets of :func:`flowreg_dask.register` are already in this order
        and come back unchanged.
    """
    if isinstance(result, (str, os.PathLike)):
        from ..store.reader import open_result

        result = open_result(result)
    if not isinstance(result, xr.Dataset):
        raise InvalidInputError(
            f"result: expected the xarray.Dataset of flowreg_dask.open_result() or a store path, "
            f"got {type(result).__name__}"
        )
    order = [d for d in ("t", "y", "x", "c", "component") if d in result.dims]
    return result.transpose(*order, ...)
