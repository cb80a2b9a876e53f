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
    # one pair of images (pyflowreg.core)
    "get_displacement": "flowreg_dask.core.solver",
    "get_displacements": "flowreg_dask.core.solver",
    "FlowEstimator": "flowreg_dask.core.solver",
    "warp": "flowreg_dask.core.warp",
    "valid_mask": "flowreg_dask.core.warp",
    "imregister_wrapper": "flowreg_dask.core.warp",
    "backward_valid_mask": "flowreg_dask.core.warp",
    "compute_batch_valid_masks": "flowreg_dask.core.warp",
    "estimate_rigid_shift": "flowreg_dask.core.rigid",
    "register_backend": "flowreg_dask.options",
    "get_backend": "flowreg_dask.options",
    "list_backends": "flowreg_dask.options",
    "is_backend_available": "flowreg_dask.options",
    "get_backend_executors": "flowreg_dask.options",
    # options (pyflowreg.motion_correction.OF_options)
    "OFOptions": "flowreg_dask.options",
    "RegistrationConfig": "flowreg_dask.options",
    "load_preset": "flowreg_dask.options",
    "QualitySetting": "flowreg_dask.options",
    "OutputFormat": "flowreg_dask.options",
    "ChannelNormalization": "flowreg_dask.options",
    "InterpolationMethod": "flowreg_dask.options",
    "ConstancyAssumption": "flowreg_dask.options",
    "NamingConvention": "flowreg_dask.options",
    "FlowBackend": "flowreg_dask.options",
    "OptionsValidationError": "flowreg_dask.options",
    "get_mcp_schema": "flowreg_dask.options",
    # recordings, and pyflowreg's readers and writers (pyflowreg.util.io)
    "open_recording": "flowreg_dask.io",
    "VideoReader": "flowreg_dask.io",
    "RecordingReader": "flowreg_dask.io",
    "ArrayReader": "flowreg_dask.io",
    "TIFFFileReader": "flowreg_dask.io",
    "HDF5FileReader": "flowreg_dask.io",
    "MATFileReader": "flowreg_dask.io",
    "MULTICHANNELFileReader": "flowreg_dask.io",
    "SUBSETFileReader": "flowreg_dask.io",
    "MDFFileReader": "flowreg_dask.io",
    "VideoWriter": "flowreg_dask.io",
    "FileVideoWriter": "flowreg_dask.io",
    "ArrayWriter": "flowreg_dask.io",
    "NullVideoWriter": "flowreg_dask.io",
    "HDF5FileWriter": "flowreg_dask.io",
    "TIFFFileWriter": "flowreg_dask.io",
    "MATFileWriter": "flowreg_dask.io",
    "MULTIFILEFileWriter": "flowreg_dask.io",
    "NPYFileWriter": "flowreg_dask.io",
    "get_video_file_reader": "flowreg_dask.io",
    "get_video_file_writer": "flowreg_dask.io",
    # registration (pyflowreg.motion_correction)
    "register": "flowreg_dask.pipeline.api",
    "compensate_recording": "flowreg_dask.pipeline.api",
    "compensate_arr": "flowreg_dask.pipeline.arrays",
    "compensate_pair": "flowreg_dask.pipeline.arrays",
    "BatchMotionCorrector": "flowreg_dask.pipeline.arrays",
    "RunResult": "flowreg_dask.pipeline.api",
    "FlowRegLive": "flowreg_dask.live",
    "apply_flow": "flowreg_dask.pipeline.apply",
    # results
    "open_result": "flowreg_dask.store.reader",
    "export_result": "flowreg_dask.store.export",
    "datasets": "flowreg_dask.datasets",
    "metrics": "flowreg_dask.metrics",
    "plot": "flowreg_dask.plot",
    "flow_to_color": "flowreg_dask.plot",
    "report": "flowreg_dask.report",
    # several recordings
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
