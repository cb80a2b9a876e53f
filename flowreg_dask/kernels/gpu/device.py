"""Array-module helpers: the lazy cupy import, host transfers and free-memory queries.

cupy is imported only inside :func:`require_cupy`, never when this package is imported, so a
CPU-only install never needs it.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from ...errors import BackendUnavailableError

CPU_HINT = "or use flow_backend='numba' (CPU)"
INSTALL_HINT = (
    "install the GPU extra with `pip install flowreg-dask[gpu]` (CuPy for CUDA 12, "
    "cupy-cuda12x) on a machine with an NVIDIA GPU and driver, " + CPU_HINT
)


def require_cupy() -> ModuleType:
    """The ``cupy`` module, after checking that a CUDA device can be used.

    Raises
    ------
    BackendUnavailableError
        When cupy cannot be imported or no CUDA device is visible; the message says what is
        missing and how to install it.
    """
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA library load inside cupy
        raise BackendUnavailableError(
            f"flow_backend='cupy' needs CuPy, which could not be imported ({exc!r}); "
            + INSTALL_HINT
        ) from exc
    try:
        n_devices = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # CUDARuntimeError: no driver / no device
        raise BackendUnavailableError(
            f"flow_backend='cupy': CuPy is installed but no CUDA device can be used ({exc!r}); "
            "check the NVIDIA driver and CUDA_VISIBLE_DEVICES, " + CPU_HINT
        ) from exc
    if n_devices < 1:
        raise BackendUnavailableError(
            "flow_backend='cupy': CuPy is installed but no CUDA device is visible; check the "
            "NVIDIA driver and CUDA_VISIBLE_DEVICES, " + CPU_HINT
        )
    return cupy


def cuda_device_count() -> int:
    """Number of usable CUDA devices (0 when cupy or a device is missing); never raises."""
    try:
        return int(require_cupy().cuda.runtime.getDeviceCount())
    except BackendUnavailableError:
        return 0


def is_cupy(xp: ModuleType) -> bool:
    """True when ``xp`` is the cupy module (checked by name, so cupy is not imported)."""
    return getattr(xp, "__name__", "") == "cupy"


def to_host(a: Any) -> np.ndarray:
    """A numpy copy of a numpy or cupy array."""
    get = getattr(a, "get", None)
    return np.asarray(get() if callable(get) else a)


def free_device_bytes(xp: ModuleType) -> int:
    """Free GPU memory in bytes: the driver's free memory plus what cupy's pool holds unused."""
    free, _total = xp.cuda.runtime.memGetInfo()
    pool = xp.get_default_memory_pool()
    return int(free) + int(pool.free_bytes())
