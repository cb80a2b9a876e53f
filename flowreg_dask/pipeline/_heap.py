"""Heap settings for registration processes (glibc; a no-op on other C libraries).

Measured on 256x256x1000, fast preset, 2 threads:

* ``tune_heap``, once per process that registers (threads, process pools, dask workers): fixed
  thresholds, mmap above 32 MiB and trim above 64 MiB (the most glibc's dynamic thresholds reach
  on 64-bit, set from the start). Where dask's nanny started a worker with
  ``MALLOC_TRIM_THRESHOLD_=65536`` this matters most: setting any glibc threshold turns off the
  dynamic mmap threshold, so every array above 128 KiB (a 256x256 float32 plane is 256 KiB)
  became a fresh ``mmap`` whose pages faulted in on first touch and went back on ``free``. One
  single-threaded distributed worker spent 8-9 s of system time per run instead of 3.4-4 s.
  LocalClusters started here also leave that variable out (``WORKER_ENV``). A user's own
  thresholds are respected.
* ``release_free_memory(keep=KEEP_FREE_BYTES)`` after each chunk: glibc keeps freed blocks in
  each thread's malloc arena, so the resident size follows the peak of every arena, not what is
  alive. ``malloc_trim(0)`` returns those pages, but the next chunk then faults them in again:
  trimming after every chunk cost 330-380 thousand page faults per run (2.5-3 s of system time,
  a sixth of the CPU time). Trimming only when the arenas hold more than 128 MiB of free memory
  cut them to 60-90 thousand (with the TIFF reader's ``readinto``): six alternating pairs of runs
  against trimming every chunk, wall time x0.91, CPU time x0.91, peak RSS 445 instead of 398
  MiB. ``FLOWREG_MALLOC_TRIM=0`` turns trimming off (to compare).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

__all__ = [
    "KEEP_FREE_BYTES",
    "WORKER_ENV",
    "free_heap_bytes",
    "local_cluster_config",
    "release_free_memory",
    "tune_heap",
]

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
#: arrays above this are mmap'ed (the most glibc's dynamic threshold reaches on 64-bit)
MMAP_THRESHOLD = 32 << 20
#: free memory at the top of a heap above this goes back to the OS (2 x the mmap threshold)
TRIM_THRESHOLD = 64 << 20
#: free heap memory a registration process keeps between chunks (:func:`release_free_memory`)
KEEP_FREE_BYTES = 128 << 20


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


@functools.lru_cache(maxsize=1)
def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
        if hasattr(libc, "mallinfo2"):  # glibc >= 2.33
            libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):  # not glibc
        return None
    return libc


def free_heap_bytes() -> int | None:
    """Bytes of freed memory the malloc arenas hold (glibc >= 2.33 ``mallinfo2``), else None."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None
    # fordblks: every free chunk, fastbins and the top of each heap included
    return int(libc.mallinfo2().fordblks)


def release_free_memory(keep: int = 0) -> None:
    """Return free heap pages to the OS (glibc ``malloc_trim``); a no-op elsewhere.

    With ``keep`` > 0 only when the arenas hold more than ``keep`` bytes of free memory (where
    that can be asked; else always): the pages of a trimmed heap fault in again when the next
    chunk allocates its arrays.
    """
    libc = _libc()
    if libc is None or os.environ.get("FLOWREG_MALLOC_TRIM", "1") == "0":
        return
    if keep > 0:
        free = free_heap_bytes()
        if free is not None and free <= keep:
            return
    libc.malloc_trim(0)


@functools.lru_cache(maxsize=1)
def tune_heap() -> bool:
    """Once per process that registers: fixed glibc thresholds, mmap above
    :data:`MMAP_THRESHOLD`, trim above :data:`TRIM_THRESHOLD` (see the module docstring).

    Returns True where it changed the settings. A threshold of the user's
    (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TOP_PAD_``, a ``MALLOC_TRIM_THRESHOLD_`` other than the
    nanny's default, or malloc settings in ``GLIBC_TUNABLES``) is respected: nothing changes.
    """
    libc = _libc()
    if libc is None:
        return False
    if os.environ.get("MALLOC_TRIM_THRESHOLD_", _DASK_TRIM_THRESHOLD) != _DASK_TRIM_THRESHOLD:
        return False
    if any(name in os.environ for name in _USER_THRESHOLDS):
        return False
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
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
