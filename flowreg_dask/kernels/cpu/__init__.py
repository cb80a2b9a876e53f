"""numba CPU kernels (``nogil``, float32), compiled on first use and cached on disk."""

from __future__ import annotations

import importlib
import os

_MODULES = ("gaussian", "level", "median", "remap", "resample", "sor", "tensors", "warp")


def cache_is_warm() -> bool | None:
    """Whether every kernel has compiled code in numba's on-disk cache (so the first call in a
    new process loads it instead of compiling for tens of seconds); None if it cannot be told."""
    import numba.core.registry

    try:
        for name in _MODULES:
            module = importlib.import_module(f"{__name__}.{name}")
            for obj in vars(module).values():
                if isinstance(obj, numba.core.registry.CPUDispatcher) and obj._cache is not None:
                    index = obj._cache._cache_file._index_path
                    if not os.path.exists(index):
                        return False
    except (AttributeError, ImportError):  # numba internals moved: do not guess
        return None
    return True
