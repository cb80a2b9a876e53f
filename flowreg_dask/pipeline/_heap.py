"""Heap settings for registration processes (glibc; a no-op on other C libraries).

Two things, both measured on 256x256x1000, fast preset:

* ``release_free_memory``: a registration task allocates and frees some hundred MB of numpy arrays
  per chunk. glibc keeps freed blocks in each thread's malloc arena, so the resident size grows
  with the peak of every thread's arena, not with what is alive. ``malloc_trim(0)`` after each
  chunk is written returns the free pages (2 threads, four alternating pairs of runs: peak RSS
  10-45 MB lower, frames/s unchanged within the run-to-run spread). ``FLOWREG_MALLOC_TRIM=0``
  turns it off (to compare).
* ``WORKER_ENV`` / ``tune_heap``: dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``.
  Setting any glibc threshold turns off its dynamic mmap threshold, so every array above 128 KiB
  (a 256x256 float32 plane is 256 KiB) is a fresh ``mmap`` whose pages fault in on first touch
  and go back on ``free``. One single-threaded distributed worker spent 8-9 s of system time per
  run instead of 3.4-4 s, and ran 24-29 s instead of 21-22 s. LocalClusters started here leave
  the variable out (``WORKER_ENV``; the trim after each chunk keeps memory in check); in a worker
  of somebody else's cluster that has it, ``tune_heap`` sets fixed thresholds instead (mmap above
  32 MiB, trim above 64 MiB: 3.8-4 s of system time in the same run).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

__all__ = ["WORKER_ENV", "local_cluster_config", "release_free_memory", "tune_heap"]

#: Environment of worker processes started by flowreg_dask: single-threaded numeric libraries and
#: no ``MALLOC_TRIM_THRESHOLD_`` (see the module docstring).
WORKER_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_DASK_TRIM_THRESHOLD = "65536"  # distributed.nanny.pre-spawn-environ's default
_USER_THRESHOLDS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")  # left alone if set


@functools.lru_cache(maxsize=1)
def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):  # not glibc
        return None
    return libc


def release_free_memory() -> None:
    """Return free heap pages to the OS (glibc ``malloc_trim``); a no-op elsewhere."""
    libc = _libc()
    if libc is not None and os.environ.get("FLOWREG_MALLOC_TRIM", "1") != "0":
        libc.malloc_trim(0)


@functools.lru_cache(maxsize=1)
def tune_heap() -> bool:
    """Once per process: in a dask worker started with the nanny's default
    ``MALLOC_TRIM_THRESHOLD_=65536`` (which turns off glibc's dynamic mmap threshold), set mmap
    above 32 MiB and trim above 64 MiB instead.

    Returns True where it changed the settings. Any other value of that variable, or a
    ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TOP_PAD_`` of the user's, is respected.
    """
    libc = _libc()
    if libc is None or os.environ.get("MALLOC_TRIM_THRESHOLD_") != _DASK_TRIM_THRESHOLD:
        return False
    if any(name in os.environ for name in _USER_THRESHOLDS):
        return False
    libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    libc.mallopt(_M_TRIM_THRESHOLD, 64 << 20)
    return True


def local_cluster_config() -> dict:
    """dask config for starting a LocalCluster: the nanny's pre-spawn environment without dask's
    default ``MALLOC_TRIM_THRESHOLD_`` (for ``dask.config.set``, after importing ``distributed``,
    whose defaults would otherwise be merged back in)."""
    import dask

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    if str(env.get("MALLOC_TRIM_THRESHOLD_")) == _DASK_TRIM_THRESHOLD:
        del env["MALLOC_TRIM_THRESHOLD_"]
    return {"distributed.nanny.pre-spawn-environ": env}
