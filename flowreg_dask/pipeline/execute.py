"""Running a registration's graph: the write tasks' records, progress, callbacks, the
``update_reference`` chain, and what a failed write says.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import dask
import dask.array as da
import numpy as np

from .._constants import STAT_NAMES, bounds_from_chunks
from .._version import __version__
from ..errors import warn_user
from ..store.writer import CorrectedStore, StoreSpec
from ._heap import release_free_memory
from .chunks import halo_depth, output_dtype
from .graph import ChunkWritten, Prepared, chunk_writes, prepare_run, written_chunks
from .progress import FrameProgress
from .reference import build_reference
from .run import Runner

__all__ = [
    "run_chunks",
    "run_blocks_in_order",
    "checked_store",
    "register_into",
    "kept_error",
    "safe_call",
]


class ChunkCounter(dask.callbacks.Callback):
    """Calls ``on_chunk(record)`` for every chunk a write task reports (local schedulers; task
    results come back to this process)."""

    def __init__(self, on_chunk: Callable[[ChunkWritten], None]) -> None:
        super().__init__()
        self._on_chunk = on_chunk
        self._lock = threading.Lock()
        self._seen: set[int] = set()

    def _posttask(self, key, result, dsk, state, worker_id):
        for done in written_chunks(result):
            with self._lock:
                if done.index in self._seen:
                    continue
                self._seen.add(done.index)
            self._on_chunk(done)


def checked_store(
    rec, options, run, *, fingerprint: str, out_path, overwrite: bool, resume: bool
) -> CorrectedStore:
    """The output store, created or resumed once the recording passed the value checks."""
    from .checks import format_frames, nonfinite_frames, refuse_nonfinite

    bad = nonfinite_frames(rec.data, run)
    if options.nonfinite == "error":
        refuse_nonfinite(bad, str(rec.attrs.get("source", "recording")))
    elif bad.size:
        warn_user(
            f"recording: frames {format_frames(bad)} hold NaN/Inf values; those pixels are "
            "replaced by the reference's (nonfinite='reference') and the frames are left out of "
            "the reference"
        )
    n_frames, h, w, c = rec.shape
    return CorrectedStore.create(
        out_path,
        StoreSpec(
            n_frames=n_frames,
            height=h,
            width=w,
            n_channels=c,
            dtype=output_dtype(options, rec),
            chunk_bounds=bounds_from_chunks(rec.data.chunks[0]),
            save_flow=options.save_w,
            save_valid=options.save_valid_idx,
            fingerprint=fingerprint,
            metadata={
                "options": options.to_json_dict(),
                "software": f"flowreg_dask {__version__}",
                "input": str(rec.attrs.get("source", "<array>")),
                "nonfinite_frames": bad.tolist(),
            },
            channel_names=rec.attrs.get("channel_names"),
            frame_rate=rec.attrs.get("frame_rate"),
            pixel_size=rec.attrs.get("pixel_size"),
            reference_states=options.update_reference,
        ),
        overwrite=overwrite,
        resume=resume,
    )


def register_into(
    store: CorrectedStore,
    rec,
    options,
    params,
    config,
    run: Runner,
    reference: Any,
    *,
    callbacks: tuple,
) -> FrameProgress:
    """Build (or reload) the reference, then register the chunks the store is missing."""
    progress_callback, w_callback, registered_callback = callbacks
    ref_raw = store.load_reference()
    if ref_raw is None:
        skip = store.metadata.get("nonfinite_frames") or []
        ref_raw = build_reference(
            rec, options, params, reference, run, show=config.progress, skip=skip
        )
        store.save_reference(ref_raw)
        release_free_memory()  # the reference's frames and passes are freed
    prep = run.call(prepare_run, ref_raw, options, params, output_dtype(options, rec))
    bounds = store.chunk_bounds
    done = store.done_chunks()
    todo = [i for i in range(len(bounds)) if i not in done]
    progress = FrameProgress(
        rec.shape[0],
        initial=sum(bounds[i][1] - bounds[i][0] for i in done),
        show=config.progress,
        callbacks=[progress_callback] if progress_callback else None,
    )

    ordered = w_callback is not None or registered_callback is not None
    return_flow = w_callback is not None and not options.save_w

    def on_chunk(done: ChunkWritten) -> None:
        progress.advance(done.n_frames)
        if not ordered:
            return
        corrected, flow = store.read_chunk(done.index)
        flow = done.flow if done.flow is not None else flow
        start, stop = bounds[done.index]
        if registered_callback is not None:
            safe_call(registered_callback, corrected, start, stop)
        if w_callback is not None and flow is not None:
            safe_call(w_callback, flow, start, stop)

    try:
        if options.update_reference:
            run_update_reference(rec, prep, store, todo, bounds, run, on_chunk)
        elif todo:
            writes = chunk_writes(rec.data, prep, store, return_flow=return_flow)
            run_chunks(writes, todo, run, on_chunk, ordered=ordered)
    finally:
        progress.close()
    return progress


def kept_error(exc: OSError, store: CorrectedStore) -> OSError:
    """The OSError of a failed write, naming the store, what was kept and how to resume."""
    import errno

    done, total = len(store.done_chunks()), store.n_chunks
    what = "no space left on the device" if exc.errno == errno.ENOSPC else str(exc)
    msg = (
        f"writing {str(store.path)!r} failed: {what}. {done} of {total} chunks are kept; free "
        "the cause and rerun the same command to resume."
    )
    return OSError(exc.errno, msg) if exc.errno is not None else OSError(msg)


def safe_call(cb, *args) -> None:
    import warnings

    from ..errors import FlowRegWarning

    try:
        cb(*args)
    except Exception as exc:
        warnings.warn(f"callback {cb!r} raised {exc!r}", FlowRegWarning, stacklevel=2)


def run_chunks(
    writes: da.Array,
    todo: list[int],
    run: Runner,
    on_chunk: Callable[[ChunkWritten], None],
    *,
    ordered: bool = False,
) -> None:
    """Compute the write tasks of the chunks in ``todo``, reporting each finished chunk's
    :class:`~flowreg_dask.pipeline.graph.ChunkWritten` to ``on_chunk``.

    Each chunk is its own collection, so no graph optimisation fuses chunks into one task. With
    ``ordered``, chunks are reported in chunk order (for callbacks that expect it): locally they
    run a window of two per worker at a time, on a cluster they are collected in order.
    """
    parts = [writes.blocks[i] for i in todo]
    if run.mode == "distributed":
        from distributed import as_completed

        futures = run.client.compute(parts)
        for fut in futures if ordered else as_completed(futures):
            for done in written_chunks(fut.result()):
                on_chunk(done)
        return
    if not ordered:
        with ChunkCounter(on_chunk):
            dask.compute(*parts, **run.compute_kwargs())
        return
    window = max(1, 2 * run.n_workers)
    for lo in range(0, len(parts), window):
        for result in dask.compute(*parts[lo : lo + window], **run.compute_kwargs()):
            for done in written_chunks(result):
                on_chunk(done)


def run_blocks_in_order(blocks: da.Array, run: Runner, deliver: Callable[[dict], None]) -> None:
    """Compute :func:`~flowreg_dask.pipeline.graph.registration_blocks` chunk by chunk and hand
    each chunk's outputs (a dict with ``start`` and ``stop``) to ``deliver``, in chunk order.

    Chunks run a window at a time (two per worker), so at most a window of chunks is held in
    memory besides what ``deliver`` keeps; on a distributed client all chunks are submitted and
    collected in order.
    """
    parts = list(blocks.to_delayed().ravel())
    if run.mode == "distributed":
        futures = run.client.compute(parts)
        try:
            for fut in futures:
                deliver(fut.result())
        finally:
            run.client.cancel(futures)
        return
    window = max(1, 2 * run.n_workers)
    for lo in range(0, len(parts), window):
        for out in dask.compute(*parts[lo : lo + window], **run.compute_kwargs()):
            deliver(out)


def run_update_reference(rec, prep: Prepared, store, todo, bounds, run, on_chunk) -> None:
    """``update_reference=True``: chunks run in order, each against the reference updated from
    the previous chunk (mean of its last <= 100 pre-processed frames warped by their flows).

    This is a sequential chain by construction, so its result depends on the chunk layout
    (``buffer_size``), as in the reference implementation. The reference after each chunk is
    saved in the store before the chunk is marked done, so a killed run resumes from the first
    missing chunk with the right reference.
    """
    from ..core.warp import warp
    from ..preprocess.filters import temporal_depth
    from .blocks import _finite, preprocess_block
    from .graph import register_chunk

    n_frames = rec.shape[0]
    before, after = halo_depth(
        sigma=prep.sigma, n_channels=rec.shape[-1], update_init=prep.update_init
    )
    depth_t = temporal_depth(prep.sigma, rec.shape[-1])
    ref_proc = prep.ref_proc
    for i, (start, stop) in enumerate(bounds):
        if i not in todo:
            state = store.load_state(i)
            if state is not None:
                ref_proc = state
            continue
        lo, hi = max(0, start - before), min(n_frames, stop + after)
        (raw,) = run.compute(rec.data[lo:hi])
        raw = _finite(np.asarray(raw), lo, prep.ref_raw, prep.nonfinite)
        out = register_chunk(
            raw, prep=prep, first=lo, start=start, stop=stop, n_frames=n_frames, ref_proc=ref_proc
        )
        last = max(start, stop - 100)
        a = max(lo, last - depth_t)
        proc = preprocess_block(
            raw[a - lo :], vmin=prep.vmin, vmax=prep.vmax, sigma=prep.sigma, temporal=depth_t > 0
        )[last - a : stop - a]
        ref_proc = warp(
            proc, out["flow"][last - start :], fill=ref_proc, interpolation=prep.interpolation
        ).mean(axis=0)
        store.save_state(i, ref_proc)
        store.write_chunk(
            i,
            corrected=out["corrected"],
            flow=out["flow"],
            valid=out["valid"],
            stats={k: out[k] for k in STAT_NAMES},
        )
        on_chunk(ChunkWritten(i, stop - start, out["flow"]))
