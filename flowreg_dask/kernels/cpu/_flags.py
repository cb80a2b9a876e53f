"""Compile-time flags shared by every CPU kernel (one place, since numba bakes them in).

``nogil`` lets dask's threaded scheduler run kernels of different frames at the same time;
``cache`` keeps compiled code on disk between processes (dask worker processes reuse it);
the fast-math subset leaves NaN/Inf semantics intact (no ``nnan``/``ninf``) and keeps the
evaluation order (no ``reassoc``), which keeps the SOR recurrences short (measured 2x faster).
"""

from __future__ import annotations

FASTMATH = {"nsz", "arcp", "contract", "afn"}
JIT = {"nogil": True, "cache": True, "fastmath": FASTMATH, "error_model": "numpy"}
