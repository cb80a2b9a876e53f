"""The source of an export: a complete store read one chunk at a time."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import (
    IncompleteStoreError,
    InvalidInputError,
    InvalidOptionError,
)

#: Frames per chunk when the source is not chunked along time (an in-memory Dataset).
_DEFAULT_CHUNK_FRAMES = 64


# --------------------------------------------------------------------------------------------------
@dataclass
class _Source:
    corrected: Any  # xarray.DataArray (t, c, y, x)
    flow: Any  # (t, component, y, x) or None
    valid: Any  # (t, y, x) or None
    stats: dict[str, Any]  # name -> (t,)
    reference: np.ndarray | None  # (C, H, W) float32
    shape: tuple[int, int, int, int]  # T, H, W, C
    dtype: np.dtype[Any]
    bounds: list[tuple[int, int]]
    channel_names: list[str] | None
    frame_rate: float | None
    pixel_size: float | None
    metadata: dict[str, Any]
    attrs: dict[str, Any]
    store: str | None


@dataclass
class _Chunk:
    start: int
    stop: int
    corrected: np.ndarray  # (n, C, H, W) in the store dtype
    flow: np.ndarray | None  # (n, 2, H, W) float32
    valid: np.ndarray | None  # (n, H, W) bool
    stats: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (n,) float64


def _positive_or_none(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def _transposed(var: Any, dims: tuple[str, ...], name: str) -> Any:
    if tuple(var.dims) == dims:
        return var
    if set(var.dims) != set(dims):
        raise InvalidInputError(
            f"variable {name!r} of the result has dims {tuple(var.dims)}; expected {dims} (the "
            "layout of flowreg_dask.store.open_result)."
        )
    return var.transpose(*dims)


def _chunk_bounds(corrected: Any, n_frames: int, chunk_frames: int | None) -> list[tuple[int, int]]:
    if chunk_frames is None:
        chunks = getattr(corrected, "chunks", None)
        if chunks:  # dask-backed: one dask chunk (= one storage object of the store) at a time
            sizes = [int(s) for s in chunks[0]]
        else:
            step = _DEFAULT_CHUNK_FRAMES
            sizes = [min(step, n_frames - a) for a in range(0, n_frames, step)]
    else:
        sizes = [min(chunk_frames, n_frames - a) for a in range(0, n_frames, chunk_frames)]
    bounds, start = [], 0
    for s in sizes:
        if s > 0:
            bounds.append((start, start + s))
            start += s
    return bounds


def _load_source(result: Any, chunk_frames: int | None) -> _Source:
    import xarray as xr

    if chunk_frames is not None and (
        isinstance(chunk_frames, bool)
        or not isinstance(chunk_frames, int | np.integer)
        or chunk_frames < 1
    ):
        raise InvalidOptionError(
            f"chunk_frames must be a positive integer or None; got {chunk_frames!r}."
        )

    from flowreg_dask.store.reader import open_result

    if isinstance(result, xr.Dataset):
        ds = result
        status = ds.attrs.get("status")
        if status is not None and status != "complete":
            missing = ds.attrs.get("missing_chunks")
            raise IncompleteStoreError(
                f"the result {ds.attrs.get('store', '(in-memory Dataset)')!r} is {status!r} "
                f"(missing chunks: {missing}); only a complete store can be exported. Rerun the "
                "registration to finish it."
            )
    elif isinstance(result, str | os.PathLike):
        ds = open_result(result)  # IncompleteStoreError / RecordingNotFoundError / ...
    else:
        raise InvalidInputError(
            "result must be the path of an output store or the xarray.Dataset of "
            f"flowreg_dask.store.open_result; got {type(result).__name__}."
        )
    if "corrected" not in ds.data_vars:
        raise InvalidInputError(
            "the result has no variable 'corrected'; expected the Dataset of "
            "flowreg_dask.store.open_result."
        )
    corrected = _transposed(ds["corrected"], ("t", "c", "y", "x"), "corrected")
    n, c, h, w = (int(s) for s in corrected.shape)
    dtype = np.dtype(corrected.dtype).newbyteorder("=")
    if dtype.kind not in "iuf":
        raise InvalidInputError(f"'corrected' has dtype {dtype}; expected an integer or float.")
    if n < 1:
        raise InvalidInputError("the result holds no frames; nothing to export.")

    flow = None
    if "flow" in ds.data_vars:
        flow = _transposed(ds["flow"], ("t", "component", "y", "x"), "flow")
        if tuple(flow.shape) != (n, 2, h, w):
            raise InvalidInputError(f"'flow' has shape {flow.shape}; expected {(n, 2, h, w)}.")
    valid = None
    if "valid" in ds.data_vars:
        valid = _transposed(ds["valid"], ("t", "y", "x"), "valid")
    stats = {
        str(name): var
        for name, var in ds.data_vars.items()
        if tuple(var.dims) == ("t",) and np.dtype(var.dtype).kind in "biuf"
    }
    reference = None
    if "reference" in ds.data_vars:
        ref = _transposed(ds["reference"], ("c", "y", "x"), "reference")
        reference = np.asarray(ref.values, dtype=np.float32)

    names = None
    if "c" in ds.coords:
        vals = [v.item() if hasattr(v, "item") else v for v in ds["c"].values]
        if all(isinstance(v, str) for v in vals):
            names = [str(v) for v in vals]

    bounds = _chunk_bounds(corrected.data, n, None if chunk_frames is None else int(chunk_frames))
    metadata = ds.attrs.get("metadata")
    return _Source(
        corrected=corrected,
        flow=flow,
        valid=valid,
        stats=stats,
        reference=reference,
        shape=(n, h, w, c),
        dtype=dtype,
        bounds=bounds,
        channel_names=names,
        frame_rate=_positive_or_none(ds.attrs.get("frame_rate")),
        pixel_size=_positive_or_none(ds.attrs.get("pixel_size")),
        metadata=dict(metadata) if isinstance(metadata, Mapping) else {},
        attrs=dict(ds.attrs),
        store=ds.attrs.get("store"),
    )


def _read_chunk(src: _Source, start: int, stop: int, *, flow: bool, valid: bool) -> _Chunk:
    """Compute one time chunk of the source (and nothing else) into numpy arrays."""
    import dask

    sel = {"t": slice(start, stop)}
    lazy: dict[str, Any] = {"corrected": src.corrected.isel(sel).data}
    if flow and src.flow is not None:
        lazy["flow"] = src.flow.isel(sel).data
    if valid and src.valid is not None:
        lazy["valid"] = src.valid.isel(sel).data
    for name, var in src.stats.items():
        lazy[f"stat:{name}"] = var.isel(sel).data
    keys = list(lazy)
    values = dask.compute(*[lazy[k] for k in keys])
    got = dict(zip(keys, values, strict=True))
    corrected = np.asarray(got["corrected"])
    if corrected.dtype != src.dtype:
        corrected = corrected.astype(src.dtype)
    return _Chunk(
        start=start,
        stop=stop,
        corrected=corrected,
        flow=None if "flow" not in got else np.asarray(got["flow"], dtype=np.float32),
        valid=None if "valid" not in got else np.asarray(got["valid"], dtype=bool),
        stats={
            k[len("stat:") :]: np.asarray(v, dtype=np.float64)
            for k, v in got.items()
            if k.startswith("stat:")
        },
    )


# --------------------------------------------------------------------------------------------------
# output paths, temporary names, commit
