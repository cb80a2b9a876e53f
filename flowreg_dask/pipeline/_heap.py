"""Give the C heap's free memory back to the operating system between chunks.

A registration task allocates and frees some hundred MB of numpy arrays per chunk. glibc keeps
freed blocks in each thread's malloc arena, so the resident size grows with the peak of every
thread's arena, not with what is alive. ``malloc_trim(0)`` after each chunk is written returns
the free pages (256x256x1000, 2 threads, four alternating pairs of runs: peak RSS 10-45 MB
lower, frames/s unchanged within the run-to-run spread). On other C libraries it does
nothing; ``FLOWREG_MALLOC_TRIM=0`` turns it off (to compare).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

__all__ = ["release_free_memory"]


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    if os.environ.get("FLOWREG_MALLOC_TRIM", "1") == "0":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> None:
    """Return free heap pages to the OS (glibc ``malloc_trim``); a no-op elsewhere."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
