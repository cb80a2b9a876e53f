"""Public entry points: lazy ``register``, file-to-file ``compensate_recording`` and in-memory
``compensate_arr``. Thin: they resolve options, then hand over to the graph, the runner and the
output store."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from .._version import __version__
from ..core.params import resolve_params
from ..errors import InvalidInputError, InvalidOptionError, warn_user
from ..options import OFOptions, OutputFormat, RegistrationConfig
from ..store.writer import CorrectedStore, StoreSpec
from .blocks import STAT_NAMES
from .graph import (
    Prepared,
    bounds_from_chunks,
    chunk_layout,
    chunk_writes,
    halo_depth,
    prepare,
    registration_blocks,
    split_outputs,
    written_chunks,
)
from .progress import FrameProgress, note_first_compile
from .reference import check_reference_shape, check_reference_source, resolve_reference
from .run import Runner, runner

__all__ = ["register", "compensate_recording", "compensate_arr"]

DIMS = ("t", "y", "x", "c")


# ---------------------------------------------------------------------------------------- inputs
def _as_options(options: Any) -> OFOptions:
    if options is None:
        return OFOptions()
    if isinstance(options, OFOptions):
        return options
    if isinstance(options, dict):
        return OFOptions.from_dict(options)
    if isinstance(options, (str, Path)):
        return OFOptions.load(options)
    raise InvalidOptionError(
        f"options: expected an OFOptions, a dict or a path to an options file, got "
        f"{type(options).__name__}"
    )


def chunk_frames(shape: tuple[int, ...], dtype, out_dtype, buffer_size: int, budget: int) -> int:
    """Frames per time chunk: ``buffer_size``, shortened to keep one chunk's working set (raw,
    pre-processed, corrected frames, flows, masks) within ``budget`` bytes."""
    _, h, w, c = shape
    # bytes per pixel and frame alive while a chunk is registered and written (measured): raw,
    # normalised, smoothed and halo-joined float32 copies, corrected frames and their transposed
    # copy for the store, flows (float32 u, v) and their transposed copy, valid masks
    per_px = c * (2 * np.dtype(dtype).itemsize + 12 + 2 * np.dtype(out_dtype).itemsize) + 18
    return int(max(1, min(buffer_size, budget // (h * w * per_px))))


def _as_recording(
    source: Any, options: OFOptions, config: RegistrationConfig | None = None
) -> xr.DataArray:
    """A (t, y, x, c) dask-backed DataArray in the time chunks the registration runs in.

    Chunks are ``buffer_size`` frames, fewer when the frames are so large that a chunk would
    exceed ``config.chunk_memory``, and never shorter than the registration halo
    (:func:`~flowreg_dask.pipeline.graph.chunk_layout`). The layout changes how the work is cut
    into tasks, never the result.
    """
    budget = (config or RegistrationConfig()).chunk_memory
    if isinstance(source, xr.DataArray) and tuple(source.dims) == DIMS:
        rec = source
    else:
        from ..io import open_recording

        rec = open_recording(source, buffer_size=options.buffer_size, bin_size=options.bin_size)
    if rec.shape[0] == 0:
        raise InvalidInputError("recording: has zero frames; nothing to register")
    size = chunk_frames(rec.shape, rec.dtype, _out_dtype(options, rec), options.buffer_size, budget)
    if rec.chunks is None or rec.data.chunks[0][0] != size or len(rec.data.chunks[1]) > 1:
        if isinstance(source, xr.DataArray) or not isinstance(source, (str, Path, list)):
            rec = rec.chunk({"t": size, "y": -1, "x": -1, "c": -1})
        else:  # re-open, so every chunk reads only its own frames
            from ..io import open_recording

            rec = open_recording(source, buffer_size=size, bin_size=options.bin_size)
    depth = halo_depth(
        sigma=options.sigma,
        n_channels=rec.shape[-1],
        update_init=options.update_initialization_w,
    )
    layout = chunk_layout(tuple(rec.data.chunks[0]), depth)
    if layout != tuple(rec.data.chunks[0]):
        rec = rec.chunk({"t": layout})
    return rec


def _out_dtype(options: OFOptions, rec: xr.DataArray) -> np.dtype:
    dt = options.resolved_output_dtype()
    return np.dtype(rec.dtype) if dt is None else dt


def _reference_for(
    rec: xr.DataArray,
    options: OFOptions,
    reference: Any,
    run: Runner | None,
    *,
    show: bool = False,
    skip: Any = (),
):
    """The raw reference: ``reference`` if given, else built from ``options.reference_frames``
    (leaving out the frames ``skip``), with a progress bar when ``show``."""
    source = options.reference_frames if reference is None else reference
    if skip and isinstance(source, (list, tuple, range)):
        source = [i for i in source if i not in set(skip)]
    bar = FrameProgress(0, show=show, desc="reference (2 passes)")
    try:
        return resolve_reference(
            rec,
            source,
            params=resolve_params(options, n_channels=rec.shape[-1]),
            sigma=options.sigma,
            channel_normalization=options.channel_normalization,
            interpolation=options.interpolation_method,
            runner=run,
            on_frames=bar.advance,
            on_start=bar.set_total,
        )
    finally:
        bar.close()


def _prepared(rec: xr.DataArray, options: OFOptions, ref_raw: np.ndarray) -> Prepared:
    """What every chunk task needs: the pre-processed reference and the resolved parameters."""
    return prepare(
        ref_raw,
        params=resolve_params(options, n_channels=rec.shape[-1]),
        sigma=options.sigma,
        channel_normalization=options.channel_normalization,
        interpolation=options.interpolation_method,
        out_dtype=_out_dtype(options, rec),
        update_init=options.update_initialization_w,
        backend=options.flow_backend,
        backend_params=options.backend_params,
        nonfinite=options.nonfinite,
    )


def config_for_backend(
    config: RegistrationConfig | None, backend: str
) -> RegistrationConfig | None:
    """The run configuration adjusted to the flow backend (the one place that does this).

    With ``"cupy"`` a process drives its GPU through one CUDA context, and each chunk's frames are
    already solved together on the device: ``threading`` and ``multiprocessing`` would make
    several threads/processes share one GPU's context and memory, so they fall back to
    ``sequential`` with a :class:`~flowreg_dask.errors.FlowRegWarning` (the automatic mode picks
    ``sequential``, or ``distributed`` with a scheduler address). ``distributed`` is kept: one
    worker per GPU. A LocalCluster started here gets one worker (its workers would all share the
    first GPU); for several GPUs make a ``Client`` of a ``dask_cuda.LocalCUDACluster`` first.
    In the local modes CuPy and a CUDA device are checked here, so a missing GPU is reported
    before any work starts (:class:`~flowreg_dask.errors.BackendUnavailableError`).
    Other backends: ``config`` unchanged.
    """
    if backend != "cupy":
        return config
    cfg = config if config is not None else RegistrationConfig()
    mode = cfg.parallelization
    update: dict[str, Any] = {}
    if mode is None:
        mode = update["parallelization"] = "distributed" if cfg.scheduler_address else "sequential"
    elif mode in ("threading", "multiprocessing"):
        warn_user(
            f"parallelization={mode!r} with flow_backend='cupy': several threads/processes would "
            "share one GPU context and its memory; running 'sequential' instead (each chunk's "
            "frames are batched on the GPU). For several GPUs use parallelization='distributed' "
            "with one worker per GPU (e.g. a dask_cuda.LocalCUDACluster client)."
        )
        mode = update["parallelization"] = "sequential"
    if mode == "distributed" and not cfg.scheduler_address and cfg.n_jobs != 1:
        from distributed import default_client

        try:
            default_client()  # an active client (e.g. LocalCUDACluster) is used as it is
        except ValueError:
            if cfg.n_jobs > 1:
                warn_user(
                    f"n_jobs={cfg.n_jobs} with flow_backend='cupy': the local cluster gets one "
                    "worker, since its workers would all share the first GPU; for one worker per "
                    "GPU create a Client of a dask_cuda.LocalCUDACluster before the call"
                )
            update["n_jobs"] = 1
    if mode != "distributed":
        # the GPU is used in this process: fail now, before a reference is built or a file
        # written (distributed workers may have GPUs that this machine lacks)
        from ..kernels.gpu.device import require_cupy

        require_cupy()
    return cfg.model_copy(update=update) if update else cfg


# -------------------------------------------------------------------------------------- register
def register(
    recording: Any,
    options: Any = None,
    *,
    reference: Any = None,
    config: RegistrationConfig | None = None,
) -> xr.Dataset:
    """Lazily registered recording: nothing is registered until a variable is computed.

    Parameters
    ----------
    recording : path, array or xarray.DataArray
        Anything :func:`flowreg_dask.open_recording` accepts, or a (t, y, x, c) DataArray.
    options : OFOptions, dict or path, optional
        Algorithm options (defaults: ``OFOptions()``).
    reference : ndarray, path or frame indices, optional
        Overrides ``options.reference_frames``. The reference is built immediately (pre-registering
        the reference frames when indices are given).
    config : RegistrationConfig, optional
        Runtime settings used to build the reference.

    Returns
    -------
    xarray.Dataset
        ``corrected`` (t, y, x, c), ``flow`` (t, y, x, component), ``valid`` (t, y, x), per-frame
        statistics (t,) and the ``reference`` (y, x, c). Slicing ``t`` and computing registers only
        the chunks touched (plus the read-only halo of the previous chunk).
    """
    options = _as_options(options)
    if options.update_reference:
        raise InvalidOptionError(
            "update_reference: a reference that changes from chunk to chunk makes chunks depend on "
            "each other; it is offered by compensate_recording (sequential chain), not by the lazy "
            "register()"
        )
    config = config_for_backend(config, options.flow_backend)
    rec = _as_recording(recording, options, config)
    with runner(config) as run:
        prep = _prepared(rec, options, _reference_for(rec, options, reference, run))
    blocks = registration_blocks(rec.data, prep)
    parts = split_outputs(blocks, rec.shape, prep.out_dtype)
    coords = {k: v for k, v in rec.coords.items() if k in ("t", "frame", "y", "x", "c")}
    data_vars = {
        "corrected": (DIMS, parts["corrected"]),
        "flow": (("t", "y", "x", "component"), parts["flow"]),
        "valid": (("t", "y", "x"), parts["valid"]),
        "reference": (("y", "x", "c"), prep.ref_raw),
    }
    for name in STAT_NAMES:
        data_vars[name] = (("t",), parts[name])
    ds = xr.Dataset(data_vars, coords={**coords, "component": ["u", "v"]})
    ds.attrs.update({"flowreg_dask_version": __version__, "options": options.to_json()})
    return ds


# ------------------------------------------------------------------------------ file to file
def _fingerprint(options: OFOptions, rec: xr.DataArray, reference: Any) -> str:
    opts = options.to_dict()
    for key in ("verbose", "output_path", "output_file_name", "input_file", "save_meta_info"):
        opts.pop(key, None)
    ref_token = None if reference is None else dask.base.tokenize(np.asarray(reference))
    payload = json.dumps(
        {
            "options": opts,
            "input": rec.data.name,
            "shape": list(rec.shape),
            "dtype": str(rec.dtype),
            "reference": ref_token,
            "version": __version__,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _output_paths(options: OFOptions, output: Any) -> tuple[Path, Path | None]:
    """(zarr store, export target or None).

    The registration always writes the resumable OME-Zarr store; another ``output_format`` is
    exported from it once it is complete (streamed, under a temporary name until finished).
    """
    fmt = options.output_format
    if fmt is OutputFormat.ARRAY:
        raise InvalidOptionError(
            "output_format: 'array' returns the result in memory; use compensate_arr() for that, "
            "or choose a file format"
        )
    if output is not None:
        target = Path(output)
    else:
        if options.output_file_name:
            name = options.output_file_name
        elif options.naming_convention == "batch" and options.input_file is not None:
            name = f"{Path(options.input_file).stem}_compensated"
        else:
            name = "compensated"
        target = Path(options.output_path) / name
    if fmt in (OutputFormat.ZARR, OutputFormat.NULL):
        return (target if target.suffix == ".zarr" else target.with_suffix(".zarr")), None
    from ..store.export import export_suffix

    suffix = export_suffix(fmt)
    if not target.suffix and suffix is not None:
        target = target.with_suffix(suffix)
    return target.with_suffix(".zarr"), target


class _LocalCounter(dask.callbacks.Callback):
    """Calls ``on_chunk(index, n_frames)`` for every chunk a write task reports (local
    schedulers; task results come back to this process)."""

    def __init__(self, on_chunk: Callable[[int, int], None]) -> None:
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
            self._on_chunk(done.index, done.n_frames)


def compensate_recording(
    options: Any = None,
    config: RegistrationConfig | None = None,
    *,
    recording: Any = None,
    reference: Any = None,
    output: Any = None,
    overwrite: bool = False,
    resume: bool = True,
    progress_callback: Callable[[int, int], None] | None = None,
    w_callback: Callable[[np.ndarray, int, int], None] | None = None,
    registered_callback: Callable[[np.ndarray, int, int], None] | None = None,
) -> Path:
    """Register a recording file to a corrected OME-Zarr store, chunk by chunk, resumably.

    Parameters
    ----------
    options : OFOptions, dict or path
        Algorithm options; ``options.input_file`` is the input unless ``recording`` is given.
    config : RegistrationConfig, optional
        Run mode (``sequential``, ``threading``, ``multiprocessing``, ``distributed``), ``n_jobs``,
        ``scheduler_address``, progress bar. With ``options.flow_backend="cupy"`` threading and
        multiprocessing fall back to sequential (see :func:`config_for_backend`).
    recording : path, array or DataArray, optional
        Input overriding ``options.input_file``.
    reference : ndarray, path or indices, optional
        Overrides ``options.reference_frames``.
    output : path, optional
        Output store (default ``<output_path>/compensated.zarr``).
    overwrite : bool
        Replace an existing complete output (the old one is removed only once the new one is
        complete).
    resume : bool
        Continue an unfinished run of the same input and options (default), registering only the
        chunks that are missing.
    progress_callback : callable, optional
        ``progress_callback(frames_done, total)`` after each chunk.
    w_callback, registered_callback : callable, optional
        ``cb(array, start, stop)`` with each finished chunk's flows (T, H, W, 2) / corrected frames
        (T, H, W, C), as in the reference implementation.

    Returns
    -------
    pathlib.Path
        The complete output store (open it with :func:`flowreg_dask.open_result`), or, when
        ``options.output_format`` is another format (``hdf5``, ``tiff``, ``mat``, ``caiman_hdf5``,
        ``suite2p``, ``suite2p_tiff``, ``npy``, ``multifile_*``), the exported file or folder; the
        OME-Zarr store it was exported from stays next to it (``<name>.zarr``).

    Raises
    ------
    InvalidOptionError
        Before anything is written: an output that is (or lies in) the input, reference frames
        outside the recording, an export target that exists (without ``overwrite``).
    InvalidInputError
        Before anything is written: NaN/Inf in a float recording (``options.nonfinite="error"``).
    StoreLockedError
        Another run is writing the same output store.
    OSError
        The output cannot be written (e.g. a full disk); the message names the store and says
        what was kept. Rerunning the same call resumes.

    Notes
    -----
    A ``KeyboardInterrupt`` (Ctrl-C) stops the workers and keeps every finished chunk; rerunning
    the same call resumes. The output store is locked (``<store>.lock``) while the run writes it.
    """
    from ..store.lock import store_lock
    from .checks import check_distinct, input_paths

    options = _as_options(options)
    config = config_for_backend(config or RegistrationConfig(), options.flow_backend)
    source = recording if recording is not None else options.input_file
    if source is None:
        raise InvalidOptionError(
            "input_file: no input given; set options.input_file or pass recording="
        )
    out_path, export_target = _output_paths(options, output)
    rec = _as_recording(source, options, config)
    export_files: list[Path] = []
    if export_target is not None:
        from ..store.export import check_export

        export_files = check_export(
            out_path,
            export_target,
            format=options.output_format,
            n_channels=rec.shape[-1],
            overwrite=overwrite,
        )
    check_distinct(input_paths(rec, source), [out_path, *export_files])
    check_reference_source(
        options.reference_frames if reference is None else reference, rec.shape[0]
    )
    note_first_compile(config.progress)
    with store_lock(out_path), runner(config) as run:
        store = _checked_store(rec, options, run, reference, out_path, overwrite, resume)
        try:
            progress = _register_into(
                store,
                rec,
                options,
                config,
                run,
                reference,
                callbacks=(progress_callback, w_callback, registered_callback),
            )
        except OSError as exc:
            raise _kept_error(exc, store) from exc
        store.finalize(extra_attrs={"frames_per_second": progress.frames_per_second})
        if export_target is None:
            return store.path
        from ..store.export import export_result

        return export_result(
            store.path,
            export_target,
            format=options.output_format,
            overwrite=overwrite,
            include_flow=options.save_w or options.save_valid_idx,
        )


def _checked_store(rec, options, run, reference, out_path, overwrite, resume) -> CorrectedStore:
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
            dtype=_out_dtype(options, rec),
            chunk_bounds=bounds_from_chunks(rec.data.chunks[0]),
            save_flow=options.save_w,
            save_valid=options.save_valid_idx,
            fingerprint=_fingerprint(options, rec, reference),
            metadata={
                "options": options.to_dict(),
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


def _register_into(store, rec, options, config, run, reference, *, callbacks) -> FrameProgress:
    """Build (or reload) the reference, then register the chunks the store is missing."""
    progress_callback, w_callback, registered_callback = callbacks
    ref_raw = store.load_reference()
    if ref_raw is None:
        skip = store.metadata.get("nonfinite_frames") or []
        ref_raw = _reference_for(rec, options, reference, run, show=config.progress, skip=skip)
        store.save_reference(ref_raw)
    prep = _prepared(rec, options, ref_raw)
    bounds = store.chunk_bounds
    done = store.done_chunks()
    todo = [i for i in range(len(bounds)) if i not in done]
    progress = FrameProgress(
        rec.shape[0],
        initial=sum(bounds[i][1] - bounds[i][0] for i in done),
        show=config.progress,
        callbacks=[progress_callback] if progress_callback else None,
    )

    def on_chunk(index: int, n: int) -> None:
        progress.advance(n)
        if w_callback is not None or registered_callback is not None:
            corrected, flow = store.read_chunk(index)
            start, stop = bounds[index]
            if registered_callback is not None:
                _safe_call(registered_callback, corrected, start, stop)
            if w_callback is not None and flow is not None:
                _safe_call(w_callback, flow, start, stop)

    try:
        if options.update_reference:
            _run_update_reference(rec, prep, store, todo, bounds, run, on_chunk)
        elif todo:
            _run_writes(chunk_writes(rec.data, prep, store), todo, run, on_chunk)
    finally:
        progress.close()
    return progress


def _kept_error(exc: OSError, store: CorrectedStore) -> OSError:
    """The OSError of a failed write, naming the store, what was kept and how to resume."""
    import errno

    done, total = len(store.done_chunks()), store.n_chunks
    what = "no space left on the device" if exc.errno == errno.ENOSPC else str(exc)
    msg = (
        f"writing {str(store.path)!r} failed: {what}. {done} of {total} chunks are kept; free "
        "the cause and rerun the same command to resume."
    )
    return OSError(exc.errno, msg) if exc.errno is not None else OSError(msg)


def _safe_call(cb, *args) -> None:
    import warnings

    from ..errors import FlowRegWarning

    try:
        cb(*args)
    except Exception as exc:
        warnings.warn(f"callback {cb!r} raised {exc!r}", FlowRegWarning, stacklevel=2)


def _run_writes(writes: da.Array, todo: list[int], run: Runner, on_chunk) -> None:
    """Compute the write tasks of the chunks in ``todo``, reporting each finished chunk.

    Each chunk is its own collection, so no graph optimisation fuses chunks into one task.
    """
    parts = [writes.blocks[i] for i in todo]
    if run.mode == "distributed":
        from distributed import as_completed

        for fut in as_completed(run.client.compute(parts)):
            for done in written_chunks(fut.result()):
                on_chunk(done.index, done.n_frames)
        return
    with _LocalCounter(on_chunk):
        dask.compute(*parts, **run.compute_kwargs())


def _run_update_reference(rec, prep: Prepared, store, todo, bounds, run, on_chunk) -> None:
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
        on_chunk(i, stop - start)


# --------------------------------------------------------------------------------- in memory
def compensate_arr(
    video: np.ndarray,
    reference: np.ndarray | None = None,
    options: Any = None,
    *,
    config: RegistrationConfig | None = None,
    progress_callback: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Register an in-memory video; returns ``(registered, flows)``.

    Shapes: (T, H, W, C) -> (T, H, W, C); (T, H, W) -> (T, H, W); (H, W) -> one frame (H, W).
    The registered frames have ``options.output_typename``'s dtype (default: the input dtype,
    integers rounded and clipped); flows are float32 (T, H, W, 2) ((H, W, 2) for one frame).
    """
    options = _as_options(options)
    config = config_for_backend(config, options.flow_backend)
    video = np.asarray(video)
    if video.size == 0:
        raise InvalidInputError("video: is empty")
    squeeze_t = video.ndim == 2
    squeeze_c = video.ndim == 3 or video.ndim == 2
    if video.ndim == 2:
        arr = video[None, :, :, None]
    elif video.ndim == 3:
        arr = video[..., None]
    elif video.ndim == 4:
        arr = video
    else:
        raise InvalidInputError(
            f"video: expected (T, H, W[, C]) or (H, W), got shape {video.shape}"
        )
    rec = xr.DataArray(da.from_array(arr, chunks=(options.buffer_size, -1, -1, -1)), dims=DIMS)
    rec = _as_recording(rec, options, config)
    if reference is not None:
        reference = check_reference_shape(np.asarray(reference), *arr.shape[1:])
    ds = register(rec, options, reference=reference, config=config)
    with runner(config) as run:
        corrected, flow = run.compute(ds["corrected"].data, ds["flow"].data)
    if progress_callback is not None:
        _safe_call(progress_callback, arr.shape[0], arr.shape[0])
    if squeeze_c:
        corrected = corrected[..., 0]
    if squeeze_t:
        return corrected[0], flow[0]
    return corrected, flow
