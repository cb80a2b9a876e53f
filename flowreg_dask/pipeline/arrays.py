"""pyflowreg's in-memory and class API: ``compensate_arr`` (a video in memory), ``compensate_pair``
(two frames), ``reference_frame`` (the reference a run would use) and ``BatchMotionCorrector``
(callbacks registered one by one, then a file-to-file run). They share the chunked graph, the
runner and the in-order delivery of :func:`flowreg_dask.pipeline.api.compensate_recording`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from .._constants import DIMS
from ..core.params import FlowParams
from ..errors import InvalidInputError, InvalidOptionError
from ..options import RegistrationConfig
from .api import RunResult, compensate_recording
from .chunks import as_options, output_dtype, reader_source, recording_for
from .execute import run_blocks_in_order, safe_call
from .graph import prepare_run, registration_blocks
from .reference import build_reference, check_reference_shape
from .run import config_for_backend, runner

__all__ = ["compensate_arr", "compensate_pair", "reference_frame", "BatchMotionCorrector"]


def reference_frame(options: Any, source: Any = None, *, config: Any = None) -> np.ndarray:
    """The raw reference (H, W, C) float32 a run of ``options`` uses (pyflowreg's
    ``OFOptions.get_reference_frame``): ``options.reference_frames`` as an array or image file,
    or those frames of ``source`` (default ``options.input_file``) pre-registered."""
    options = as_options(options)
    source = options.input_file if source is None else source
    if source is None:
        raise InvalidOptionError("input_file: no input given to build the reference from")
    cfg = config if isinstance(config, RegistrationConfig) else RegistrationConfig(progress=False)
    rec = recording_for(reader_source(source), options, cfg)
    with runner(cfg) as run:
        return build_reference(rec, options, FlowParams.from_options(options), None, run)


# --------------------------------------------------------------------------------- in memory
def compensate_arr(
    video: np.ndarray,
    reference: np.ndarray | None = None,
    options: Any = None,
    progress_callback: Callable[[int, int], None] | None = None,
    *,
    flow_backend: str | None = None,
    backend_params: dict | None = None,
    get_displacement: Callable[..., Any] | None = None,
    get_displacement_factory: Callable[..., Any] | None = None,
    w_callback: Callable[[np.ndarray, int, int], None] | None = None,
    registered_callback: Callable[[np.ndarray, int, int], None] | None = None,
    registration_config: RegistrationConfig | None = None,
    config: RegistrationConfig | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Register an in-memory video; returns ``(registered, flows)`` (pyflowreg's signature).

    Parameters
    ----------
    video : ndarray
        (T, H, W, C), (T, H, W) or one frame (H, W).
    reference : ndarray, optional
        (H, W[, C]) reference; None builds it from ``options.reference_frames``.
    options : OFOptions, dict or path, optional
        Options (never changed by the call).
    progress_callback : callable, optional
        ``cb(frames_done, total)`` after each chunk, in order.
    flow_backend, backend_params, get_displacement, get_displacement_factory : optional
        Override the options' solver (``get_displacement`` = ``get_displacement_impl``).
    w_callback, registered_callback : callable, optional
        ``cb(array, start, stop)`` with each chunk's flows / registered frames, in order.
    registration_config, config : RegistrationConfig, optional
        Run mode (pyflowreg's and flowreg_dask's names of the same thing).

    Returns
    -------
    registered : ndarray
        Same shape as ``video``, in ``options.output_typename``'s dtype (default: the input
        dtype, integers rounded and clipped; pyflowreg's default is float64).
    flows : ndarray
        (T, H, W, 2) float32 ((H, W, 2) for one frame).
    """
    options = as_options(options)
    updates: dict[str, Any] = {}
    if flow_backend is not None:
        updates["flow_backend"] = flow_backend
    if backend_params is not None:
        updates["backend_params"] = {**options.backend_params, **backend_params}
    if get_displacement is not None:
        updates["get_displacement_impl"] = get_displacement
    if get_displacement_factory is not None:
        updates["get_displacement_factory"] = get_displacement_factory
    if updates:
        options = options.copy(**updates)
    if registration_config is not None and config is not None:
        raise InvalidOptionError("pass the run settings once: registration_config= or config=")
    config = config_for_backend(config or registration_config, options.flow_backend)
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
    params = FlowParams.from_options(options)
    n = arr.shape[0]
    corrected = np.empty(arr.shape, output_dtype(options, rec))
    flows = np.empty(arr.shape[:3] + (2,), np.float32)
    done = [0]

    def deliver(out: dict) -> None:
        start, stop = out["start"], out["stop"]
        corrected[start:stop] = out["corrected"]
        flows[start:stop] = out["flow"]
        done[0] += stop - start
        view = out["corrected"][..., 0] if squeeze_c else out["corrected"]
        if registered_callback is not None:
            safe_call(registered_callback, view, start, stop)
        if w_callback is not None:
            safe_call(w_callback, out["flow"], start, stop)
        if progress_callback is not None:
            safe_call(progress_callback, done[0], n)

    cfg = config or RegistrationConfig(progress=False)
    with runner(cfg) as run:
        ref_raw = build_reference(rec, options, params, reference, run)
        prep = run.call(prepare_run, ref_raw, options, params, output_dtype(options, rec))
        run_blocks_in_order(registration_blocks(rec.data, prep), run, deliver)
    if squeeze_c:
        corrected = corrected[..., 0]
    if squeeze_t:
        return corrected[0], flows[0]
    return corrected, flows


def compensate_pair(frame1: np.ndarray, frame2: np.ndarray, options: Any = None) -> np.ndarray:
    """Flow (H, W, 2) of ``frame2`` registered onto ``frame1`` with the options' pipeline
    (pre-processing included), as pyflowreg's ``compensate_pair``."""
    f1, f2 = np.asarray(frame1), np.asarray(frame2)
    if f1.shape != f2.shape:
        raise InvalidInputError(f"frame2: shape {f2.shape} differs from frame1's {f1.shape}")
    options = as_options(options).copy(update_initialization_w=False)
    _, flows = compensate_arr(np.stack([f1, f2]), f1, options)
    return flows[1]


class BatchMotionCorrector:
    """pyflowreg's class behind :func:`compensate_recording`: callbacks registered one by one,
    then :meth:`run`.

    Parameters
    ----------
    options : OFOptions, dict or path
        As for :func:`compensate_recording`.
    config : RegistrationConfig, optional
        Run settings.

    Examples
    --------
    >>> bmc = BatchMotionCorrector(options)  # doctest: +SKIP
    >>> bmc.register_progress_callback(lambda done, total: print(done, total))  # doctest: +SKIP
    >>> reference = bmc.run()  # doctest: +SKIP
    """

    def __init__(self, options: Any = None, config: RegistrationConfig | None = None) -> None:
        self.options = as_options(options)
        self.config = config
        self._progress: list[Callable[[int, int], None]] = []
        self._w: list[Callable[[np.ndarray, int, int], None]] = []
        self._registered: list[Callable[[np.ndarray, int, int], None]] = []

    def register_progress_callback(self, callback: Callable[[int, int], None]) -> None:
        """``callback(frames_done, total)`` after each chunk."""
        self._progress.append(callback)

    def register_w_callback(self, callback: Callable[[np.ndarray, int, int], None]) -> None:
        """``callback(flows, start, stop)`` with each chunk's flows (T, H, W, 2), in order."""
        self._w.append(callback)

    def register_registered_callback(
        self, callback: Callable[[np.ndarray, int, int], None]
    ) -> None:
        """``callback(frames, start, stop)`` with each chunk's corrected frames, in order."""
        self._registered.append(callback)

    def run(self, reference_frame: Any = None) -> RunResult:
        """Register ``options.input_file``; returns the reference (see
        :func:`compensate_recording`)."""
        return compensate_recording(
            self.options,
            reference_frame,
            self.config,
            progress_callback=_fan_out(self._progress),
            w_callback=_fan_out(self._w),
            registered_callback=_fan_out(self._registered),
        )


def _fan_out(callbacks: list[Callable[..., None]]) -> Callable[..., None] | None:
    """One callback calling each of ``callbacks`` (each guarded), or None."""
    if not callbacks:
        return None

    def call_all(*args: Any) -> None:
        for cb in callbacks:
            safe_call(cb, *args)

    return call_all
