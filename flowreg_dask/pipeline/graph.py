"""The dask graph of a registration: pre-processing ``map_overlap`` and one registration task per
time chunk, whose outputs (corrected frames, flows, valid masks, statistics) are split lazily, so a
frame's flow is computed once however many of the outputs are used."""

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


def prepare(
    ref_raw: np.ndarray,
    *,
    params: FlowParams,
    sigma,
    channel_normalization: str,
    interpolation: str,
    out_dtype,
    update_init: bool,
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
    )


def registration_blocks(data: da.Array, prep: Prepared) -> da.Array:
    """A 1-D dask array over ``t`` whose blocks are dicts of the chunk's outputs.

    Only use it through :func:`split_outputs` or a ``map_blocks`` that reads the dicts.
    """
    proc = preprocessed(data, prep)
    chunks_t = data.chunks[0]
    halo = min(INIT_HALO, min(chunks_t)) if prep.update_init and len(chunks_t) > 1 else 0
    if halo > 0:
        proc = da.overlap.overlap(
            proc,
            depth={0: (halo, 0), 1: 0, 2: 0, 3: 0},
            boundary={0: "none", 1: "none", 2: "none", 3: "none"},
        )
    return da.blockwise(
        _register_task,
        "t",
        proc,
        "tyxc",
        data,
        "tyxc",
        prep=prep,
        align_arrays=False,
        concatenate=True,
        adjust_chunks={"t": chunks_t},
        meta=np.empty((0,), dtype=object),
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
