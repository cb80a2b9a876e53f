"""The dask scheduler a session runs on: local modes, a distributed client, or a batch-system
cluster through dask-jobqueue (SLURM, PBS, SGE, LSF).

dask-jobqueue is optional (``pip install dask-jobqueue``, or the ``session`` extra); it is imported
only when ``scheduler`` names a batch system.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from typing import Any

from ..options import RegistrationConfig
from .config import JOBQUEUE_SCHEDULERS, SessionConfig

__all__ = ["make_jobqueue_cluster", "session_client", "registration_config"]

#: dask-jobqueue class per ``scheduler`` value.
JOBQUEUE_CLASSES = {
    "slurm": "SLURMCluster",
    "pbs": "PBSCluster",
    "sge": "SGECluster",
    "lsf": "LSFCluster",
}
#: Defaults of the cluster keyword arguments (pyflowreg's ``session dask`` CLI defaults).
CLUSTER_DEFAULTS: dict[str, Any] = {"cores": 4, "memory": "8GB", "walltime": "02:00:00"}


def make_jobqueue_cluster(scheduler: str, **options: Any) -> Any:
    """Start a dask-jobqueue cluster and request its jobs.

    Parameters
    ----------
    scheduler : {"slurm", "pbs", "sge", "lsf"}
        Batch system.
    **options
        Keyword arguments of the cluster class (``cores``, ``memory``, ``walltime``, ``queue``,
        ``account``, ``processes``, ``job_extra_directives``, ...; defaults
        :data:`CLUSTER_DEFAULTS`), plus ``jobs``: how many jobs to request (default 1).

    Returns
    -------
    dask_jobqueue.JobQueueCluster
        The cluster, scaled to ``jobs`` jobs. Close it when done.

    Raises
    ------
    ImportError
        dask-jobqueue is not installed.
    InvalidOptionError
        Unknown ``scheduler``.
    """
    from ..errors import InvalidOptionError

    key = str(scheduler).lower()
    if key not in JOBQUEUE_CLASSES:
        raise InvalidOptionError(
            f"scheduler={scheduler!r}: expected one of {sorted(JOBQUEUE_CLASSES)} for a "
            "dask-jobqueue cluster."
        )
    try:
        jobqueue = importlib.import_module("dask_jobqueue")
    except ImportError as exc:
        raise ImportError(
            f"scheduler={key!r} needs the dask-jobqueue package, which is not installed. Fix: "
            "pip install dask-jobqueue (or pip install 'flowreg-dask[session]'), or use "
            "scheduler='array' with an array job, or 'dask' with a running scheduler."
        ) from exc
    kwargs = {**CLUSTER_DEFAULTS, **options}
    jobs = int(kwargs.pop("jobs", 1))
    cluster = getattr(jobqueue, JOBQUEUE_CLASSES[key])(**kwargs)
    cluster.scale(jobs=jobs)
    return cluster


@contextlib.contextmanager
def session_client(config: SessionConfig) -> Iterator[Any]:
    """The ``distributed.Client`` a session's stages share (None for the local run modes).

    * ``scheduler="local"`` or ``"array"``: no client, unless ``parallelization="distributed"``,
      which starts one LocalCluster of ``n_workers`` for the whole session;
    * ``"dask"``: a client of ``scheduler_address``, else the active client, else a LocalCluster;
    * ``"slurm"``, ``"pbs"``, ``"sge"``, ``"lsf"``: a dask-jobqueue cluster
      (:func:`make_jobqueue_cluster` with ``config.cluster``).

    Clusters and clients started here are closed on exit; an active client is left alone.
    """
    mode = config.scheduler
    wants_client = mode in ("dask", *JOBQUEUE_SCHEDULERS) or config.parallelization == "distributed"
    if not wants_client:
        yield None
        return
    from distributed import Client, default_client

    if mode in JOBQUEUE_SCHEDULERS:
        cluster = make_jobqueue_cluster(mode, **config.cluster)
        try:
            with Client(cluster) as client:
                yield client
        finally:
            cluster.close()
        return
    if config.scheduler_address:
        with Client(config.scheduler_address) as client:
            yield client
        return
    try:
        active = default_client()
    except ValueError:
        active = None  # no active client: start a local cluster
    if active is not None:
        yield active
        return
    n = RegistrationConfig(n_jobs=config.n_workers).resolved_n_jobs()
    from ..pipeline.run import start_local_cluster

    cluster = start_local_cluster(n)
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def registration_config(
    config: SessionConfig, client: Any = None, *, progress: bool = False
) -> RegistrationConfig:
    """The run configuration of each registration / warp of a session.

    With a client (see :func:`session_client`) the work goes to it (``distributed``); otherwise
    ``parallelization`` with ``n_workers``.
    """
    if client is not None:
        return RegistrationConfig(
            parallelization="distributed", n_jobs=config.n_workers, progress=progress
        )
    return RegistrationConfig(
        parallelization=config.parallelization, n_jobs=config.n_workers, progress=progress
    )
