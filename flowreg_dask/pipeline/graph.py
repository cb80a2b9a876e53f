"""The dask graph of a registration: one independent task per time chunk (read its frames and
halos, pre-process, register, warp), whose outputs (corrected frames, flows, valid masks,
statistics) are split lazily, so a frame's flow is computed once however many outputs are used."""

from __future__ import annotations

import dataclasses
from typing import Any

import dask.array as da
import numpy as np

from ..core.params import FlowParams
from ..preprocess.filters import smooth_image, temporal_depth
from ..preprocess.normalize import intensity_range, normalize
from .blocks import STAT_NAMES, preprocess_block, register_block

INIT_HALO = 20  # frames of the previous chunk whose mean flow initialises a chunk


@dataclasses.dataclass(frozen=True)
class Prepared:
    """Everything a chunk task needs besides its frames (small; broadcast to every task)."""

    ref_raw: np.ndarray
    ref_proc: np.ndarray
    vmin: np.ndarray
    vmax: np.ndarray
    sigma: Any
    params: FlowParams
    interpolation: str
    out_dtype: np.dtype
    update_init: bool
    backend: str = "numba"  # flow backend (OFOptions.flow_backend): "numba", "cupy" or "numpy"
    backend_params: dict = dataclasses.field(default_factory=dict)  # OFOptions.backend_params


def prepare(
    ref_raw: np.ndarray,
    *,
    params: FlowParams,
    sigma,
    channel_normalization: str,
    interpolation: str,
    out_dtype,
    update_init: bool,
    backend: str = "numba",
    backend_params: dict | None = None,
) -> Prepared:
    """Pre-process the reference (normalised by its own range, spatially smoothed)."""
    vmin, vmax = intensity_range(ref_raw, mode=channel_normalization)
    ref_proc = smooth_image(normalize(ref_raw, vmin=vmin, vmax=vmax), sigma)
    return Prepared(
        ref_raw=np.ascontiguousarray(ref_raw, np.float32),
        ref_proc=ref_proc,
        vmin=vmin,
        vmax=vmax,
        sigma=sigma,
        params=params,
        interpolation=interpolation,
        out_dtype=np.dtype(out_dtype),
        update_init=update_init,
        backend=str(backend),
        backend_params=dict(backend_params or {}),
    )


def preprocessed(data: da.Array, prep: Prepared) -> da.Array:
    """Lazily pre-processed frames (float32), exact across chunk borders (temporal halo)."""
    depth_t = temporal_depth(prep.sigma, data.shape[-1])
    kwargs = dict(vmin=prep.vmin, vmax=prep.vmax, sigma=prep.sigma)
    meta = np.empty((0, 0, 0, 0), np.float32)
    if depth_t == 0:
        return data.map_blocks(
            preprocess_block, temporal=False, dtype=np.float32, meta=meta, **kwargs
        )
    return data.map_overlap(
        preprocess_block,
        depth={0: depth_t, 1: 0, 2: 0, 3: 0},
        boundary="none",
        dtype=np.float32,
        meta=meta,
        **kwargs,
    )


def _register_task(proc: np.ndarray, raw: np.ndarray, prep: Prepared) -> dict:
    return register_block(
        proc,
        raw,
        ref_proc=prep.ref_proc,
        ref_raw=prep.ref_raw,
        params=prep.params,
        interpolation=prep.interpolation,
        out_dtype=prep.out_dtype,
        update_init=prep.update_init,
        backend=prep.backend,
        backend_params=prep.backend_params,
    )


class _Source:
    """Picklable handle on the recording's dask array, for tasks that read their own frames.

    A chunk task reads exactly the raw frames it needs (its chunk plus halos) with a small,
    synchronous compute inside the task, so no large intermediate ever travels between tasks:
    with the process-pool and distributed schedulers only the corrected outputs leave a worker.
    """

    def __init__(self, array: da.Array) -> None:
        self.array = array

    def __dask_tokenize__(self):
        return ("flowreg-source", self.array.name)

    def read(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.array[start:stop].compute(scheduler="synchronous"))


def _chunk_task(
    *,
    block_id: tuple[int, ...],
    source: _Source,
    bounds: tuple[tuple[int, int], ...],
    prep: Prepared,
    halo: int,
    depth_t: int,
) -> dict:
    """Read, pre-process and register time chunk ``block_id[0]``.

    The chunk's initial flow comes from the ``halo`` frames before it; the temporal filter sees
    ``depth_t`` true neighbouring frames on each side, so the pre-processed frames equal those of
    the whole recording filtered at once (reflection only at the recording's ends).
    """
    start, stop = bounds[block_id[0]]
    first = max(0, start - halo)
    lo = max(0, first - depth_t)
    hi = min(source.array.shape[0], stop + depth_t)
    raw = source.read(lo, hi)
    proc = preprocess_block(
        raw, vmin=prep.vmin, vmax=prep.vmax, sigma=prep.sigma, temporal=depth_t > 0
    )
    return _register_task(proc[first - lo : stop - lo], raw[start - lo : stop - lo], prep)


def _chunk_kwargs(data: da.Array, prep: Prepared) -> dict:
    """The keyword arguments of :func:`_chunk_task` (besides ``block_id``)."""
    chunks_t = data.chunks[0]
    bounds, start = [], 0
    for n in chunks_t:
        bounds.append((start, start + n))
        start += n
    return {
        "source": _Source(data),
        "bounds": tuple(bounds),
        "prep": prep,
        "halo": INIT_HALO if prep.update_init and len(chunks_t) > 1 else 0,
        "depth_t": temporal_depth(prep.sigma, data.shape[-1]),
    }


def registration_blocks(data: da.Array, prep: Prepared) -> da.Array:
    """A 1-D dask array over ``t`` whose blocks are dicts of the chunk's outputs.

    One independent task per time chunk (it reads its own frames and halos). The tasks have no
    inputs in the graph, so a distributed scheduler spreads them over all workers (a tiny input
    task would pin every chunk to the worker that happened to hold it). Only use the result
    through :func:`split_outputs` or a ``map_blocks`` that reads the dicts.
    """
    return da.map_blocks(
        _chunk_task,
        chunks=(data.chunks[0],),
        meta=np.empty((0,), dtype=object),
        **_chunk_kwargs(data, prep),
    )


def _write_task(*, block_id: tuple[int, ...], store, **kwargs) -> np.ndarray:
    out = _chunk_task(block_id=block_id, **kwargs)
    store.write_chunk(
        block_id[0],
        corrected=out["corrected"],
        flow=out["flow"],
        valid=out["valid"],
        stats={k: out[k] for k in STAT_NAMES},
    )
    return np.array([out["corrected"].shape[0]], np.int64)


def chunk_writes(data: da.Array, prep: Prepared, store) -> da.Array:
    """One task per time chunk that registers it and writes it to ``store`` (a
    :class:`~flowreg_dask.store.zarr_store.CorrectedStore`); each returns its frame count.

    Registration and writing share a task, so only a frame count leaves the worker.
    """
    return da.map_blocks(
        _write_task,
        chunks=((1,) * len(data.chunks[0]),),
        dtype=np.int64,
        store=store,
        **_chunk_kwargs(data, prep),
    )


def _take(block: dict, key: str) -> np.ndarray:
    return block[key]


def split_outputs(blocks: da.Array, shape: tuple[int, int, int, int], out_dtype) -> dict:
    """Lazy per-output arrays from :func:`registration_blocks`."""
    _, h, w, c = shape
    ct = blocks.chunks[0]
    out = {
        "corrected": blocks.map_blocks(
            _take,
            "corrected",
            chunks=(ct, (h,), (w,), (c,)),
            new_axis=[1, 2, 3],
            meta=np.empty((0, 0, 0, 0), out_dtype),
        ),
        "flow": blocks.map_blocks(
            _take,
            "flow",
            chunks=(ct, (h,), (w,), (2,)),
            new_axis=[1, 2, 3],
            meta=np.empty((0, 0, 0, 0), np.float32),
        ),
        "valid": blocks.map_blocks(
            _take,
            "valid",
            chunks=(ct, (h,), (w,)),
            new_axis=[1, 2],
            meta=np.empty((0, 0, 0), bool),
        ),
    }
    for name in STAT_NAMES:
        out[name] = blocks.map_blocks(_take, name, meta=np.empty((0,), np.float64))
    return out
