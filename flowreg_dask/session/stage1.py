"""Stage 1: correct every recording of a session and average it over time.

Per recording, in ``output_root/<name>/``:

* ``compensated.zarr``: the corrected store (:func:`~flowreg_dask.compensate_recording`, with
  ``save_valid_idx=True``; resumable chunk by chunk);
* ``temporal_average.npy``: (H, W, C) float64 mean of the corrected movie, streamed from the store
  one chunk at a time;
* ``status.json``: ``{"stage1": {"state": "done", ...}}``.

A recording is skipped when its store is complete, was made with the same options, holds as many
frames as the recording has after binning (pyflowreg compared the unbinned length, so a binned
recording was never "complete"), and its average belongs to that store. Otherwise the store is
resumed (same options and input) or rebuilt (anything changed; the old store is replaced only
once the new one is complete).
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..errors import FlowRegWarning, InvalidInputError, InvalidOptionError
from ..options import OFOptions, RegistrationConfig
from ._files import Recording, atomic_save_npy, discover, now, read_json, update_status
from .config import ROUTING_KEYS, SessionConfig

__all__ = ["run_stage1", "stage1_options", "temporal_average"]

log = logging.getLogger("flowreg_dask.session")


def stage1_options(config: SessionConfig, overrides: dict[str, Any] | None = None) -> OFOptions:
    """The OFOptions every recording of stage 1 is registered with.

    ``flow_backend``, ``backend_params`` and ``stage1_quality_setting`` of the config, then the
    ``flow_options`` overrides, then ``overrides`` (e.g. the CLI's ``--of-params``); the session
    sets ``save_valid_idx=True`` and the output fields itself.
    """
    base: dict[str, Any] = {"flow_backend": config.flow_backend}
    if config.backend_params:
        base["backend_params"] = dict(config.backend_params)
    if config.stage1_quality_setting is not None:
        base["quality_setting"] = config.stage1_quality_setting
    user = {**config.flow_option_overrides(), **(overrides or {})}
    routing = sorted(k for k in user if k in ROUTING_KEYS)
    if routing and isinstance(config.flow_options, dict | type(None)):
        warnings.warn(
            f"flow_options: ignoring {', '.join(routing)}: a session chooses the input files and "
            "writes each recording to output_root/<name>/compensated.zarr.",
            FlowRegWarning,
            stacklevel=3,
        )
    for k in routing:
        user.pop(k)
    if user.get("save_valid_idx") is False:
        warnings.warn(
            "flow_options: save_valid_idx=False is ignored; stage 3 needs the valid masks.",
            FlowRegWarning,
            stacklevel=3,
        )
    base.update(user)
    base["save_valid_idx"] = True
    base["output_format"] = "zarr"
    return OFOptions.from_dict(base)


def temporal_average(store: Any) -> np.ndarray:
    """(H, W, C) float64 mean over time of a store's corrected movie, read chunk by chunk.

    Raises
    ------
    InvalidInputError
        The average is not finite (NaN or inf in the movie).
    """
    from ..store.reader import open_result

    ds = open_result(store)
    movie = ds["corrected"]
    n = movie.shape[0]
    total = np.zeros(movie.shape[1:], np.float64)
    for start, stop in ds.attrs["chunk_bounds"]:
        block = np.asarray(movie.data[start:stop].compute(scheduler="synchronous"))
        total += block.sum(axis=0, dtype=np.float64)
    avg = total / n
    if not np.all(np.isfinite(avg)):
        raise InvalidInputError(
            f"the temporal average of {str(store)!r} is not finite (NaN or inf in the corrected "
            "movie). Fix: check the recording for NaN frames."
        )
    return avg


def _json_norm(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _store_current(rec: Recording, options: OFOptions) -> dict[str, Any] | None:
    """The store's status when it is complete, made with ``options`` and holds as many frames as
    the recording has after binning; else None (it has to be registered, or resumed)."""
    from ..io import open_recording
    from ..store.reader import store_status

    if not rec.store.exists():
        return None
    try:
        st = store_status(rec.store)
    except (OSError, ValueError):
        return None
    if st["status"] != "complete":
        return None
    if (st.get("metadata") or {}).get("options") != _json_norm(options.to_json_dict()):
        log.info("stage 1: %s: the options changed since its store was written", rec.name)
        return None
    n = open_recording(rec.path, bin_size=options.bin_size).shape[0]
    if st["shape"]["t"] != n:
        log.info(
            "stage 1: %s: its store has %d frames, the recording %d", rec.name, st["shape"]["t"], n
        )
        return None
    return st


def _stage1_one(
    rec: Recording,
    *,
    options: OFOptions,
    reg: RegistrationConfig,
    resume: bool,
    progress_callback: Callable[[int, int], None] | None,
) -> dict[str, Any]:
    from ..pipeline.api import compensate_recording
    from ..store.reader import store_status

    st = _store_current(rec, options) if resume else None
    entry = read_json(rec.status).get("stage1") or {}
    if (
        st is not None
        and entry.get("state") == "done"
        and entry.get("store_completed_at") == st["completed_at"]
        and rec.average.exists()
    ):
        log.info("stage 1: %s is done, skipped", rec.name)
        return {"name": rec.name, "registered": False, "averaged": False}
    rec.folder.mkdir(parents=True, exist_ok=True)
    update_status(rec.status, "stage1", {"state": "running", "started_at": now()})
    t0 = time.perf_counter()
    registered = st is None
    if registered:
        log.info("stage 1: registering %s", rec.name)
        store = compensate_recording(
            options,
            reg,
            recording=rec.path,
            output=rec.store,
            overwrite=True,
            resume=resume,
            progress_callback=progress_callback,
        )
        st = store_status(store)
    else:
        log.info("stage 1: %s is registered; computing its temporal average", rec.name)
    t1 = time.perf_counter()
    atomic_save_npy(rec.average, temporal_average(rec.store))
    entry = {
        "state": "done",
        "input": str(rec.path),
        "store": str(rec.store),
        "store_completed_at": st["completed_at"],
        "n_frames": st["shape"]["t"],
        "temporal_average": str(rec.average),
        "seconds_registration": round(t1 - t0, 3),
        "seconds_average": round(time.perf_counter() - t1, 3),
        "finished_at": now(),
    }
    update_status(rec.status, "stage1", entry)
    return {"name": rec.name, "registered": registered, "averaged": True, **entry}


def run_stage1(
    config: SessionConfig,
    *,
    task_index: int | None = None,
    of_params: dict[str, Any] | None = None,
    registration: RegistrationConfig | None = None,
    progress_callback: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Correct every recording of the session (or one, in array-job mode).

    Parameters
    ----------
    config : SessionConfig
        The session.
    task_index : int, optional
        0-based index of the only recording to process (array jobs; see
        :func:`~flowreg_dask.session.array_task_index`).
    of_params : dict, optional
        OFOptions overrides on top of ``config.flow_options``.
    registration : RegistrationConfig, optional
        Run mode of the registrations (default: from the config, see
        :func:`~flowreg_dask.session.cluster.registration_config`).
    progress_callback : callable, optional
        ``callback(frames_done, total)`` of each recording's registration.

    Returns
    -------
    list of dict
        One record per recording: ``name``, ``registered`` (its store was computed or resumed
        now), ``averaged`` (its temporal average was computed now) and the status entry.

    Raises
    ------
    InvalidOptionError
        ``task_index`` is outside the recordings.
    """
    from .cluster import registration_config

    recs = discover(config)
    if task_index is not None:
        if isinstance(task_index, bool) or not 0 <= int(task_index) < len(recs):
            raise InvalidOptionError(
                f"task_index={task_index!r} is outside the {len(recs)} recordings (0-based; "
                f"array task ids 1..{len(recs)}). Fix: submit the array as 1-{len(recs)}."
            )
        recs = [recs[int(task_index)]]
    options = stage1_options(config, of_params)
    if registration is None:  # called on its own: the session's scheduler for this stage
        from .cluster import session_client

        with session_client(config) as client:
            reg = registration_config(config, client)
            return _run_all(recs, options, reg, config, progress_callback)
    return _run_all(recs, options, registration, config, progress_callback)


def _run_all(
    recs: list[Recording],
    options: OFOptions,
    reg: RegistrationConfig,
    config: SessionConfig,
    progress_callback: Callable[[int, int], None] | None,
) -> list[dict[str, Any]]:
    def one(rec: Recording) -> dict[str, Any]:
        return _stage1_one(
            rec,
            options=options,
            reg=reg,
            resume=config.resume,
            progress_callback=progress_callback,
        )

    k = config.parallel_recordings
    if k is None:
        k = len(recs) if reg.resolved_parallelization() == "distributed" else 1
    k = min(k, len(recs))
    if k <= 1:
        return [one(r) for r in recs]
    with ThreadPoolExecutor(k, thread_name_prefix="flowreg-stage1") as pool:
        return list(pool.map(one, recs))


def missing_stage1(recordings: Sequence[Recording]) -> list[str]:
    """Names of the recordings whose stage 1 is not done."""
    return [
        r.name
        for r in recordings
        if (read_json(r.status).get("stage1") or {}).get("state") != "done"
        or not r.average.exists()
    ]
