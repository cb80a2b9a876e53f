"""flowreg_dask: out-of-core variational optical-flow motion correction for 2-photon microscopy.

The Flow-Registration method (Flotho et al., J. Biophotonics 2022) on dask: open a recording
lazily, register it chunk by chunk on a laptop or a cluster, write corrected OME-Zarr stores.

Public names are imported lazily (attribute access), so ``import flowreg_dask`` is cheap and has no
side effects.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

_LAZY = {
    "get_displacement": "flowreg_dask.core.solver",
    "get_displacements": "flowreg_dask.core.solver",
    "FlowEstimator": "flowreg_dask.core.solver",
    "warp": "flowreg_dask.core.warp",
    "valid_mask": "flowreg_dask.core.warp",
    "estimate_rigid_shift": "flowreg_dask.core.rigid",
    "OFOptions": "flowreg_dask.options",
    "RegistrationConfig": "flowreg_dask.options",
    "load_preset": "flowreg_dask.options",
    "open_recording": "flowreg_dask.io",
    "register": "flowreg_dask.pipeline.api",
    "compensate_recording": "flowreg_dask.pipeline.api",
    "compensate_arr": "flowreg_dask.pipeline.api",
    "open_result": "flowreg_dask.store.reader",
    "datasets": "flowreg_dask.datasets",
    "metrics": "flowreg_dask.metrics",
    "plot": "flowreg_dask.plot",
    "report": "flowreg_dask.report",
    "export_result": "flowreg_dask.store.export",
    "FlowRegLive": "flowreg_dask.live",
    "apply_flow": "flowreg_dask.pipeline.apply",
    "session": "flowreg_dask.session",
    "SessionConfig": "flowreg_dask.session",
    "run_session": "flowreg_dask.session",
}

__all__ = ["__version__", *sorted(_LAZY)]

if TYPE_CHECKING:  # pragma: no cover
    from . import datasets  # noqa: F401
    from .core.solver import get_displacement, get_displacements  # noqa: F401
    from .core.warp import valid_mask, warp  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flowreg_dask' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = mod if module == f"flowreg_dask.{name}" else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
