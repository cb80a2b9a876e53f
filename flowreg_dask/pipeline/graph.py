"""The dask graph of a registration: a ``map_overlap`` over time on the recording's dask array.

Each time chunk of the recording is registered by one task that receives the chunk's raw frames
plus a halo of neighbouring frames from the chunks beside it (``boundary="none"``: no halo beyond
the recording's ends) and runs :func:`~flowreg_dask.pipeline.blocks.register_span`. The halo
covers what a frame's results depend on (the temporal pre-filter and the frames whose coarse
flows initialise it), so every frame is registered exactly as it would be in any other chunking.
Only the halo frames travel between tasks; no task computes anything itself.

The outputs of a task (corrected frames, flows, valid masks, statistics) are split lazily
(:func:`split_outputs`), so a frame's flow is computed once however many outputs are used. With a
store (:func:`chunk_writes`) the task writes its chunk and returns only a frame count.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import dask.array as da
import numpy as np

from .._constants import STAT_NAMES, bounds_from_chunks
from ..core.params import FlowParams
from ..preprocess.filters import smooth_image, temporal_depth
from ..preprocess.normalize import intensity_range, normalize
from ._heap import KEEP_FREE_BYTES, release_free_memory, tune_heap
from .blocks import preprocess_block, register_span
from .chunks import chunk_layout, halo_depth


@dataclasses.dataclass(frozen=True)
class ChunkWritten:
    """What a write task returns (inside a one-element object array): its chunk and frames."""

    index: int
    n_frames: int
    flow: np.ndarray | None = None  # the chunk's flows (T, H, W, 2), when asked for


def written_chunks(result: Any) -> list[ChunkWritten]:
    """The :class:`ChunkWritten` records in a task result (empty for any other result)."""
    if isinstance(result, np.ndarray) and result.dtype == object:
        return [r for r in result.ravel() if isinstance(r, ChunkWritten)]
    return []


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
    nonfinite: str = "error"  # OFOptions.nonfinite: "error" or "reference"
    flow_fn: Any = None  # a user's flow function (OFOptions.get_displacement_impl / _factory)
    flow_kwargs: dict = dataclasses.field(default_factory=dict)  # what flow_fn gets
    preproc: Any = None  # OFOptions.preproc_funct: applied to raw frames first


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
    nonfinite: str = "error",
    flow_fn: Any = None,
    flow_kwargs: dict | None = None,
    preproc: Any = None,
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
        nonfinite=str(nonfinite),
        flow_fn=flow_fn,
        flow_kwargs=dict(flow_kwargs or {}),
        preproc=preproc,
    )


def prepare_run(ref_raw: np.ndarray, options, params: FlowParams, out_dtype) -> Prepared:
    """:func:`prepare` with the run's options (the pre-processed reference and what tasks need)."""
    return prepare(
        ref_raw,
        params=params,
        sigma=options.sigma,
        channel_normalization=options.channel_normalization,
        interpolation=options.interpolation_method,
        out_dtype=out_dtype,
        update_init=options.update_initialization_w,
        backend=options.flow_backend,
        backend_params=options.backend_params,
        nonfinite=options.nonfinite,
        flow_fn=flow_function(options),
        flow_kwargs=options.to_dict(),
        preproc=options.preproc_funct,
    )


def flow_function(options) -> Any:
    """The user's flow function of ``options`` (``get_displacement_impl``, else
    ``get_displacement_factory(**backend_params)``, else a registered backend's factory called
    with ``backend_params``), or None for the built-in solvers."""
    from ..options.backends import get_backend, is_custom_backend

    if options.get_displacement_impl is not None:
        return options.get_displacement_impl
    if options.get_displacement_factory is not None:
        return options.get_displacement_factory(**options.backend_params)
    if is_custom_backend(options.flow_backend):
        return get_backend(options.flow_backend)(**options.backend_params)
    return None


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


def register_chunk(
    raw: np.ndarray,
    *,
    prep: Prepared,
    first: int,
    start: int,
    stop: int,
    n_frames: int,
    ref_proc: np.ndarray | None = None,
) -> dict:
    """:func:`register_span` with the prepared reference and options (``ref_proc`` overrides the
    pre-processed reference, for ``update_reference``)."""
    return register_span(
        raw,
        first=first,
        start=start,
        stop=stop,
        n_frames=n_frames,
        depth_t=temporal_depth(prep.sigma, raw.shape[-1]),
        vmin=prep.vmin,
        vmax=prep.vmax,
        sigma=prep.sigma,
        ref_proc=prep.ref_proc if ref_proc is None else ref_proc,
        ref_raw=prep.ref_raw,
        params=prep.params,
        interpolation=prep.interpolation,
        out_dtype=prep.out_dtype,
        update_init=prep.update_init,
        backend=prep.backend,
        backend_params=prep.backend_params,
        nonfinite=prep.nonfinite,
        flow_fn=prep.flow_fn,
        flow_kwargs=prep.flow_kwargs,
        preproc=prep.preproc,
    )


def _overlap_task(
    block: np.ndarray,
    *,
    block_id: tuple[int, ...],
    bounds: tuple[tuple[int, int], ...],
    before: int,
    prep: Prepared,
    store=None,
    return_flow: bool = False,
) -> Any:
    """Register time chunk ``block_id[0]`` from its map_overlap block (chunk plus halos)."""
    tune_heap()
    i = block_id[0]
    start, stop = bounds[i]
    first = start - before if i > 0 else 0
    out = register_chunk(
        block, prep=prep, first=first, start=start, stop=stop, n_frames=bounds[-1][1]
    )
    if store is None:
        out["start"], out["stop"] = start, stop
        return out
    store.write_chunk(
        i,
        corrected=out["corrected"],
        flow=out["flow"],
        valid=out["valid"],
        stats={k: out[k] for k in STAT_NAMES},
    )
    done = np.empty((1, 1, 1, 1), object)
    done[0, 0, 0, 0] = ChunkWritten(i, stop - start, out["flow"] if return_flow else None)
    del out
    release_free_memory(keep=KEEP_FREE_BYTES)
    return done


def _map_chunks(
    data: da.Array, prep: Prepared, *, store, chunks, meta, return_flow: bool = False
) -> da.Array:
    before, after = halo_depth(
        sigma=prep.sigma, n_channels=data.shape[-1], update_init=prep.update_init
    )
    chunks_t = data.chunks[0]
    if chunk_layout(chunks_t, (before, after)) != tuple(chunks_t):
        raise ValueError(
            f"registration: time chunks {chunks_t} are shorter than the halo of "
            f"{max(before, after)} frames; rechunk with chunk_layout() first"
        )
    if len(chunks_t) == 1:
        before = after = 0  # one chunk: the recording's ends are the only borders
    depth = {0: (before, after) if before != after else before, 1: 0, 2: 0, 3: 0}
    return da.map_overlap(
        _overlap_task,
        data,
        depth=depth,
        boundary="none",
        trim=False,
        allow_rechunk=False,
        chunks=chunks,
        meta=meta,
        bounds=tuple(bounds_from_chunks(chunks_t)),
        before=before,
        prep=prep,
        store=store,
        return_flow=return_flow,
    )


def registration_blocks(data: da.Array, prep: Prepared) -> da.Array:
    """A dask array chunked along ``t`` like ``data`` (one element across y, x, c) whose blocks
    are dicts of the chunk's outputs.

    Only use the result through :func:`split_outputs` or a ``map_blocks`` that reads the dicts.
    The array keeps the input's four dimensions: dropping axes would make dask concatenate (copy)
    every input block first.
    """
    return _map_chunks(
        data,
        prep,
        store=None,
        chunks=(data.chunks[0], (1,), (1,), (1,)),
        meta=np.empty((0, 0, 0, 0), dtype=object),
    )


def chunk_writes(data: da.Array, prep: Prepared, store, *, return_flow: bool = False) -> da.Array:
    """One task per time chunk that registers it and writes it to ``store`` (a
    :class:`~flowreg_dask.store.writer.CorrectedStore`); each returns a one-element
    (1, 1, 1, 1) object array holding a :class:`ChunkWritten`.

    Registration and writing share a task, so only that record leaves the worker (with the
    chunk's flows when ``return_flow``, for a flow callback of a run that does not save them).
    """
    return _map_chunks(
        data,
        prep,
        store=store,
        chunks=((1,) * len(data.chunks[0]), (1,), (1,), (1,)),
        meta=np.empty((0, 0, 0, 0), dtype=object),
        return_flow=return_flow,
    )


def _take(block: dict, key: str) -> np.ndarray:
    """One output of a chunk's dict; ``<name>_4d`` gives it as a 4-D block (trailing axes 1)."""
    if key.endswith("_4d"):
        value = block[key[:-3]]
        return value.reshape(value.shape + (1,) * (4 - value.ndim))
    return block[key]


def split_outputs(blocks: da.Array, shape: tuple[int, int, int, int], out_dtype) -> dict:
    """Lazy per-output arrays from :func:`registration_blocks`."""
    _, h, w, c = shape
    ct = blocks.chunks[0]

    def take(key: str, chunks: tuple, dtype) -> da.Array:
        return blocks.map_blocks(_take, key, chunks=chunks, meta=np.empty((0, 0, 0, 0), dtype))

    out = {
        "corrected": take("corrected", (ct, (h,), (w,), (c,)), out_dtype),
        "flow": take("flow", (ct, (h,), (w,), (2,)), np.float32),
        "valid": take("valid_4d", (ct, (h,), (w,), (1,)), bool)[..., 0],
    }
    for name in STAT_NAMES:
        out[name] = take(f"{name}_4d", (ct, (1,), (1,), (1,)), np.float64)[:, 0, 0, 0]
    return out
