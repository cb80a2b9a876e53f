"""Run modes: map ``RegistrationConfig.parallelization`` onto a dask scheduler.

``sequential`` -> synchronous, ``threading`` -> threaded scheduler (the numba kernels release the
GIL), ``multiprocessing`` -> process pool, ``distributed`` -> a ``dask.distributed`` Client (the one
already active, one at ``scheduler_address``, or a LocalCluster sized by ``n_jobs``). SLURM: start a
``dask_jobqueue.SLURMCluster``, make a Client for it, and pass ``parallelization="distributed"``
(the active client is used).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import warn_user
from ..options import RegistrationConfig
from ._heap import WORKER_ENV, local_cluster_config


@dataclass
class Runner:
    """How to compute: the mode, worker count, and (for ``distributed``) the client."""

    mode: str
    n_workers: int
    client: Any = None
    pool: Any = None  # multiprocessing: one process pool for every compute of the run

    def compute_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``dask.compute`` in local modes.

        The scheduler is passed as its function, not its name: for a name dask first imports
        ``distributed`` to look for an active client (about 0.2 s, on one core, in every run).
        """
        if self.mode == "sequential":
            from dask.local import get_sync

            return {"scheduler": get_sync}
        if self.mode == "threading":
            from dask.threaded import get

            return {"scheduler": get, "num_workers": self.n_workers}
        if self.mode == "multiprocessing":
            from dask.multiprocessing import get as get_processes

            # chunksize 1: every task is a whole chunk, so dask's default batching of 6 ready
            # tasks per submission would leave workers idle while one works through a batch
            kwargs = {"scheduler": get_processes, "num_workers": self.n_workers, "chunksize": 1}
            if self.pool is not None:
                kwargs["pool"] = self.pool
            return kwargs
        return {}

    def compute(self, *collections: Any) -> tuple:
        """Compute dask collections with this runner (blocking)."""
        import dask

        if self.mode == "distributed":
            futures = self.client.compute(list(collections))
            return tuple(self.client.gather(futures))
        return dask.compute(*collections, **self.compute_kwargs())

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` where the run's work runs: in this process for the local thread modes,
        as one task on a worker process for ``multiprocessing`` and ``distributed``.

        For small steps between the run's phases that call kernels (the pre-processed reference):
        a main process that has run no kernel yet would spend numba's start-up (about 0.5 s, on
        one core) there while every worker waits.
        """
        if self.mode in ("sequential", "threading"):
            return fn(*args)
        import dask

        (out,) = self.compute(dask.delayed(fn, pure=False)(*args))
        return out

    def reduce(
        self,
        parts: list[Any],
        combine: Callable[[Any, Any], Any],
        on_part: Callable[[int], None] | None = None,
    ) -> Any:
        """Compute ``dask.delayed`` ``parts`` and reduce them with ``combine`` in a fixed binary
        tree (the same floating-point result whatever the scheduler); ``on_part(i)`` is called as
        part ``i`` finishes."""
        if self.mode == "distributed":
            from distributed import as_completed

            futures = self.client.compute(parts)
            if on_part is not None:
                index = {f.key: i for i, f in enumerate(futures)}
                for fut in as_completed(futures):
                    on_part(index[fut.key])
            return self.client.compute(_tree(futures, combine)).result()
        import dask
        from dask.callbacks import Callback

        keys = {p.key: i for i, p in enumerate(parts)}

        class _Parts(Callback):
            def _posttask(self, key, result, dsk, state, worker_id):
                if on_part is not None and key in keys:
                    on_part(keys[key])

        with _Parts():
            (out,) = dask.compute(_tree(list(parts), combine), **self.compute_kwargs())
        return out


def _identity(x: Any) -> Any:
    return x


def _tree(parts: list[Any], combine: Callable[[Any, Any], Any]) -> Any:
    """A fixed binary tree of ``dask.delayed(combine)`` over ``parts`` (delayed or futures)."""
    import dask

    parts = list(parts)
    if len(parts) == 1:
        return dask.delayed(_identity)(parts[0])
    while len(parts) > 1:
        parts = [
            dask.delayed(combine)(parts[k], parts[k + 1]) if k + 1 < len(parts) else parts[k]
            for k in range(0, len(parts), 2)
        ]
    return parts[0]


def resolve_mode(config: RegistrationConfig | None) -> tuple[str, int]:
    """(mode, n_workers) of a ``RegistrationConfig`` (None = threading on all cores)."""
    cfg = config if config is not None else RegistrationConfig()
    mode = str(cfg.resolved_parallelization())
    return mode, 1 if mode == "sequential" else cfg.resolved_n_jobs()


def _exit_with_parent(parent: int) -> None:
    """End this worker process when ``parent`` dies, however it dies (even SIGKILL)."""
    import signal
    import sys
    import threading

    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before the call
                    os._exit(1)
                return
        except (OSError, AttributeError):  # pragma: no cover - no prctl: poll below
            pass

    def watch() -> None:  # pragma: no cover - other platforms
        import time

        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="flowreg-parent-watch", daemon=True).start()


def _init_worker(parent: int) -> None:
    """Process-pool worker start: ends with its parent, dask's own initialisation,
    single-threaded numeric libraries."""
    from dask.multiprocessing import initialize_worker_process

    _exit_with_parent(parent)
    os.environ.update(WORKER_ENV)
    initialize_worker_process()


@contextlib.contextmanager
def _process_pool(n_workers: int) -> Iterator[Any]:
    """One spawn-context process pool for all computes of a run (the reference passes and the
    registration), so workers start and load the compiled kernels once, not once per compute."""
    from concurrent.futures import ProcessPoolExecutor

    from dask.multiprocessing import get_context

    if os.environ.get("PYTHONHASHSEED") in (None, "0"):
        # consistent hashing in the workers, as dask's own pool does
        os.environ["PYTHONHASHSEED"] = "6640"
    pool = ProcessPoolExecutor(
        n_workers, mp_context=get_context(), initializer=_init_worker, initargs=(os.getpid(),)
    )
    try:
        yield pool
    except BaseException:
        # a failed or interrupted run: do not wait for the chunks under way
        processes = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in processes:
            proc.terminate()
        raise
    else:
        pool.shutdown()


def start_local_cluster(n_workers: int) -> Any:
    """A ``distributed.LocalCluster`` of ``n_workers`` single-threaded worker processes.

    Workers get single-threaded numeric libraries and not the nanny's ``MALLOC_TRIM_THRESHOLD_``
    (their tasks set the heap thresholds, see :mod:`._heap`: with the nanny's value one worker
    spent 8-9 s of system time on 1000 frames at 256x256 instead of 3.4-4 s).
    """
    import dask
    from distributed import LocalCluster

    with dask.config.set(local_cluster_config()):
        return LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env=dict(WORKER_ENV),
        )


@contextlib.contextmanager
def runner(config: Any = None) -> Iterator[Runner]:
    """Context manager yielding a :class:`Runner`; creates and closes a LocalCluster if needed."""
    mode, n_workers = resolve_mode(config)
    if mode == "multiprocessing":
        with _process_pool(n_workers) as pool:
            yield Runner(mode, n_workers, pool=pool)
        return
    if mode != "distributed":
        yield Runner(mode, n_workers)
        return
    from distributed import Client, default_client

    address = getattr(config, "scheduler_address", None)
    if address:
        client = Client(address)
        try:
            yield Runner(mode, n_workers, client)
        finally:
            client.close()
        return
    try:
        active = default_client()
    except ValueError:
        active = None  # no active client: start a local cluster
    if active is not None:
        yield Runner(mode, n_workers, active)
        return
    cluster = start_local_cluster(n_workers)
    client = Client(cluster)
    try:
        yield Runner(mode, n_workers, client)
    finally:
        client.close()
        cluster.close()


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
    A registered backend that does not support the run mode (``register_backend(...,
    supported_executors=)``) runs ``sequential``, with a warning. Other backends: ``config``
    unchanged.
    """
    from ..options.backends import is_custom_backend, supports_mode

    if is_custom_backend(backend):
        cfg = config if config is not None else RegistrationConfig()
        mode = cfg.resolved_parallelization()
        if supports_mode(backend, mode):
            return config
        warn_user(
            f"flow_backend={backend!r} was registered without the run mode {str(mode)!r}; "
            "running 'sequential' instead"
        )
        return cfg.model_copy(update={"parallelization": "sequential"})
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
