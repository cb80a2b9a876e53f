"""Public entry points: lazy ``register`` and file-to-file ``compensate_recording`` (in-memory
``compensate_arr`` and pyflowreg's class API are in :mod:`flowreg_dask.pipeline.arrays`). Thin:
they resolve options, then hand over to the graph, the runner and the output store."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
import numpy as np
import xarray as xr

from .._constants import DIMS, STAT_NAMES
from .._version import __version__
from ..core.params import FlowParams
from ..errors import InvalidOptionError
from ..options import OFOptions, OutputFormat, RegistrationConfig
from .chunks import as_options, output_dtype, reader_source, recording_for
from .execute import checked_store, kept_error, register_into, run_blocks_in_order, safe_call
from .graph import prepare_run, registration_blocks, split_outputs
from .progress import FrameProgress, note_first_compile
from .reference import build_reference, check_reference_source
from .run import config_for_backend, runner

__all__ = ["register", "compensate_recording", "RunResult"]


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
    options = as_options(options)
    if options.update_reference:
        raise InvalidOptionError(
            "update_reference: a reference that changes from chunk to chunk makes chunks depend on "
            "each other; it is offered by compensate_recording (sequential chain), not by the lazy "
            "register()"
        )
    config = config_for_backend(config, options.flow_backend)
    rec = recording_for(recording, options, config)
    params = FlowParams.from_options(options)
    with runner(config) as run:
        ref_raw = build_reference(rec, options, params, reference, run)
    prep = prepare_run(ref_raw, options, params, output_dtype(options, rec))
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
    opts = options.to_json_dict()
    for key in ("verbose", "output_path", "output_file_name", "input_file", "save_meta_info"):
        opts.pop(key, None)
    ref_token = None if reference is None else dask.base.tokenize(np.asarray(reference))
    functions = [
        dask.base.tokenize(f)
        for f in (
            options.preproc_funct,
            options.get_displacement_impl,
            options.get_displacement_factory,
        )
    ]
    payload = json.dumps(
        {
            "options": opts,
            "functions": functions,
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


#: Output formats that write no file: the results reach the caller through the callbacks.
HEADLESS = (OutputFormat.NULL, OutputFormat.ARRAY)


def _output_paths(options: OFOptions, output: Any) -> tuple[Path, Path | None]:
    """(zarr store, export target or None).

    The registration always writes the resumable OME-Zarr store; another ``output_format`` is
    exported from it once it is complete (streamed, under a temporary name until finished). With
    no ``output``, the names are pyflowreg's: ``output_path/compensated.<FORMAT>`` (e.g.
    ``compensated.HDF5``) next to the store ``output_path/compensated.zarr``.
    """
    fmt = options.output_format
    if output is not None:
        target = Path(output)
        if fmt is OutputFormat.ZARR:
            return (target if target.suffix == ".zarr" else target.with_suffix(".zarr")), None
        from ..store.export import export_suffix

        suffix = export_suffix(fmt)
        if not target.suffix and suffix is not None:
            target = target.with_suffix(suffix)
        return target.with_suffix(".zarr"), target
    target = options.output_file()
    store = target.with_suffix(".zarr")
    return store, None if fmt is OutputFormat.ZARR else target


def compensate_recording(
    options: Any = None,
    reference_frame: Any = None,
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
) -> RunResult:
    """Register a recording chunk by chunk into a corrected OME-Zarr store (resumably), and export
    it to ``options.output_format``; pyflowreg's ``compensate_recording``.

    Parameters
    ----------
    options : OFOptions, dict or path
        Algorithm options; ``options.input_file`` is the input unless ``recording`` is given.
    reference_frame : ndarray, path or frame indices, optional
        The reference (pyflowreg's second argument); overrides ``options.reference_frames``.
        ``reference=`` is the same. (A :class:`RegistrationConfig` given here is taken as
        ``config``, the order of earlier flowreg_dask versions.)
    config : RegistrationConfig, optional
        Run mode (``sequential``, ``threading``, ``multiprocessing``, ``distributed``),
        ``n_jobs``, ``scheduler_address``, progress bar. With ``options.flow_backend="cupy"``
        threading and multiprocessing fall back to sequential (see :func:`config_for_backend`).
    recording : path, array or DataArray, optional
        Input overriding ``options.input_file``.
    output : path, optional
        Output store, or export file for another ``output_format`` (default: pyflowreg's names in
        ``options.output_path``: ``compensated.zarr``, ``compensated.HDF5``, ...).
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
        (T, H, W, C), in chunk order, as in pyflowreg.

    Returns
    -------
    RunResult
        The raw reference (H, W, C) float32, as pyflowreg returns it: an ndarray whose ``output``
        attribute is the written store or export (it is path-like too:
        ``flowreg_dask.open_result(result)`` opens the store).

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
    ``output_format`` NULL (or ARRAY) writes nothing: each chunk's results go to the callbacks
    (pyflowreg's headless mode). Other pyflowreg formats also get pyflowreg's side files in the
    export's folder: ``w.h5`` (``u``, ``v``) with ``save_w``, ``idx.hdf`` with ``save_valid_idx``,
    ``reference_frame.npy`` and ``statistics.npz`` with ``save_meta_info``. A
    ``KeyboardInterrupt`` (Ctrl-C) stops the workers and keeps every finished chunk; rerunning
    the same call resumes. The output store is locked (``<store>.lock``) while the run writes it.
    """
    from ..store.lock import store_lock
    from .checks import check_distinct, input_paths

    if isinstance(reference_frame, RegistrationConfig) and config is None:
        reference_frame, config = None, reference_frame
    if reference_frame is not None and reference is not None:
        raise InvalidOptionError("pass the reference once: reference_frame= or reference=")
    reference = reference_frame if reference is None else reference
    options = as_options(options)
    config = config_for_backend(config or RegistrationConfig(), options.flow_backend)
    source = recording if recording is not None else options.input_file
    if source is None:
        raise InvalidOptionError(
            "input_file: no input given; set options.input_file or pass recording="
        )
    source = reader_source(source)
    rec = recording_for(source, options, config)
    check_reference_source(
        options.reference_frames if reference is None else reference, rec.shape[0]
    )
    callbacks = (progress_callback, w_callback, registered_callback)
    if options.output_format in HEADLESS:
        return _headless(rec, options, config, reference, callbacks)
    out_path, export_target = _output_paths(options, output)
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
    note_first_compile(config.progress)
    with store_lock(out_path), runner(config) as run:
        store = checked_store(
            rec,
            options,
            run,
            fingerprint=_fingerprint(options, rec, reference),
            out_path=out_path,
            overwrite=overwrite,
            resume=resume,
        )
        try:
            progress = register_into(
                store,
                rec,
                options,
                FlowParams.from_options(options),
                config,
                run,
                reference,
                callbacks=callbacks,
            )
        except OSError as exc:
            raise kept_error(exc, store) from exc
        store.finalize(extra_attrs={"frames_per_second": progress.frames_per_second})
        ref = store.load_reference()
        if export_target is None:
            return RunResult.of(ref, store.path)
        from ..store.export import export_pyflowreg_files, export_result

        exported = export_result(
            store.path,
            export_target,
            format=options.output_format,
            overwrite=overwrite,
            include_flow=False if output is None else (options.save_w or options.save_valid_idx),
        )
        if output is None:  # pyflowreg's side files next to pyflowreg's output file
            export_pyflowreg_files(
                store.path,
                Path(options.output_path),
                save_w=options.save_w,
                save_valid=options.save_valid_idx,
                save_meta=options.save_meta_info,
                overwrite=True,
            )
        return RunResult.of(ref, exported)


class RunResult(np.ndarray):
    """The reference (H, W, C) of a run, as pyflowreg's ``compensate_recording`` returns it, with
    the run's output: ``result.output`` (a :class:`~pathlib.Path`, or None for a headless run)
    and ``os.fspath(result)`` (so ``open_result(result)`` opens the store)."""

    output: Path | None

    @classmethod
    def of(cls, reference: np.ndarray, output: Path | None) -> RunResult:
        out = np.asarray(reference, np.float32).view(cls)
        out.output = None if output is None else Path(output)
        return out

    def __array_finalize__(self, obj: Any) -> None:
        self.output = getattr(obj, "output", None)

    def __fspath__(self) -> str:
        if self.output is None:
            raise TypeError("this run wrote no file (output_format NULL)")
        return str(self.output)

    def __reduce__(self):  # pickles as a plain array plus the path
        return (RunResult.of, (np.asarray(self), self.output))


def _headless(rec, options, config, reference, callbacks) -> RunResult:
    """output_format NULL/ARRAY: register chunk by chunk, hand each chunk to the callbacks (in
    order), write nothing."""
    progress_callback, w_callback, registered_callback = callbacks
    params = FlowParams.from_options(options)
    note_first_compile(config.progress)
    with runner(config) as run:
        ref_raw = build_reference(rec, options, params, reference, run, show=config.progress)
        prep = run.call(prepare_run, ref_raw, options, params, output_dtype(options, rec))
        blocks = registration_blocks(rec.data, prep)
        n = rec.shape[0]
        progress = FrameProgress(n, show=config.progress, callbacks=None)
        done = [0]

        def deliver(out: dict) -> None:
            start, stop = out["start"], out["stop"]
            progress.advance(stop - start)
            done[0] += stop - start
            if registered_callback is not None:
                safe_call(registered_callback, out["corrected"], start, stop)
            if w_callback is not None:
                safe_call(w_callback, out["flow"], start, stop)
            if progress_callback is not None:
                safe_call(progress_callback, done[0], n)

        try:
            run_blocks_in_order(blocks, run, deliver)
        finally:
            progress.close()
    return RunResult.of(ref_raw, None)
