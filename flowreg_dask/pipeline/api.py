"""Public entry points: lazy ``register``, file-to-file ``compensate_recording`` and in-memory
``compensate_arr``. Thin: they resolve options, then hand over to the graph, the runner and the
output store."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from .._constants import DIMS, STAT_NAMES
from .._version import __version__
from ..core.params import FlowParams
from ..errors import InvalidInputError, InvalidOptionError
from ..options import OFOptions, OutputFormat, RegistrationConfig
from .chunks import output_dtype, recording_for
from .execute import checked_store, kept_error, register_into, safe_call
from .graph import prepare_run, registration_blocks, split_outputs
from .progress import note_first_compile
from .reference import build_reference, check_reference_shape, check_reference_source
from .run import config_for_backend, runner

__all__ = ["register", "compensate_recording", "compensate_arr"]


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


def _out_dtype(options: OFOptions, rec: xr.DataArray) -> np.dtype:
    dt = options.resolved_output_dtype()
    return np.dtype(rec.dtype) if dt is None else dt


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
    rec = recording_for(source, options, config)
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
                callbacks=(progress_callback, w_callback, registered_callback),
            )
        except OSError as exc:
            raise kept_error(exc, store) from exc
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
    rec = recording_for(rec, options, config)
    if reference is not None:
        reference = check_reference_shape(np.asarray(reference), *arr.shape[1:])
    ds = register(rec, options, reference=reference, config=config)
    with runner(config) as run:
        corrected, flow = run.compute(ds["corrected"].data, ds["flow"].data)
    if progress_callback is not None:
        safe_call(progress_callback, arr.shape[0], arr.shape[0])
    if squeeze_c:
        corrected = corrected[..., 0]
    if squeeze_t:
        return corrected[0], flow[0]
    return corrected, flow
