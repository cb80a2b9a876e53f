"""Run the stages of a session in order, on one scheduler."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from ..errors import InvalidOptionError
from ._files import array_task_index
from .config import SessionConfig

__all__ = ["run_session"]

log = logging.getLogger("flowreg_dask.session")


def run_session(
    config: SessionConfig,
    *,
    stages: Iterable[int] = (1, 2, 3),
    task_index: int | None = None,
    of_params: dict[str, Any] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run stages 1-3 of a multi-session alignment (or some of them).

    Parameters
    ----------
    config : SessionConfig
        The session.
    stages : iterable of {1, 2, 3}
        Stages to run, in increasing order (each resumes what a previous run left).
    task_index : int, optional
        Array-job mode: the 0-based index of the one recording whose stage 1 runs. With
        ``config.scheduler == "array"`` it is read from the environment when not given
        (:func:`~flowreg_dask.session.array_task_index`). Stages 2 and 3 cannot run in this mode:
        run them once all tasks are done.
    of_params : dict, optional
        OFOptions overrides on top of ``config.flow_options``.
    progress : bool
        Progress bars of the registrations and warps.

    Returns
    -------
    dict
        ``{"stage1": [...], "stage2": SessionAlignment, "stage3": {...}, "seconds": {...}}``
        for the stages that ran.

    Raises
    ------
    InvalidOptionError
        Unknown stage, or stage 2/3 in array-job mode, or array mode without a task id.
    """
    from .cluster import registration_config, session_client
    from .stage1 import run_stage1
    from .stage2 import run_stage2
    from .stage3 import run_stage3

    wanted = sorted(set(int(s) for s in stages))
    if not wanted or any(s not in (1, 2, 3) for s in wanted):
        raise InvalidOptionError(f"stages: expected a selection of 1, 2, 3, got {list(stages)!r}")
    array_mode = task_index is not None or config.scheduler == "array"
    if array_mode:
        if wanted != [1]:
            raise InvalidOptionError(
                "array-job mode runs stage 1 of one recording per task; stages 2 and 3 need all "
                "recordings. Fix: run them afterwards in one job (--stage 2, then --stage 3, or "
                "both without --array)."
            )
        if task_index is None:
            task_index = array_task_index()
        if task_index is None:
            raise InvalidOptionError(
                "scheduler='array' but no array task id was found (SLURM_ARRAY_TASK_ID, "
                "SGE_TASK_ID, PBS_ARRAY_INDEX, PBS_ARRAYID or LSB_JOBINDEX). Fix: run inside an "
                "array job, or pass the recording index (--index N, 0-based)."
            )
    out: dict[str, Any] = {"seconds": {}}
    with session_client(config) as client:
        reg = registration_config(config, client, progress=progress)
        for stage in wanted:
            t0 = time.perf_counter()
            if stage == 1:
                out["stage1"] = run_stage1(
                    config, task_index=task_index, of_params=of_params, registration=reg
                )
            elif stage == 2:
                out["stage2"] = run_stage2(config, of_params=of_params)
            else:
                out["stage3"] = run_stage3(config, registration=reg, of_params=of_params)
            out["seconds"][f"stage{stage}"] = round(time.perf_counter() - t0, 3)
            log.info("stage %d done in %.1f s", stage, out["seconds"][f"stage{stage}"])
    return out
