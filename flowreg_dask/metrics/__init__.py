"""Quality metrics of a motion correction (numpy / dask; no plotting).

Axis order: frames are ``(t, y, x, c)`` (``(t, y, x)`` = one channel), reference images
``(y, x, c)``, flows ``(t, y, x, 2)`` with ``(u, v)`` in pixels: the order of
:func:`flowreg_dask.open_recording`, :func:`flowreg_dask.register` and
:func:`flowreg_dask.open_result` (:func:`from_result` puts any result with named dims in it).

numpy inputs give numpy / float results; dask inputs give lazy dask arrays (feed several to one
``dask.compute``). :func:`compute_metrics` evaluates everything in one pass with a progress bar.

Functions:

* :func:`correlation_with_reference`: Pearson r of each frame with the reference (NoRMCorre).
* :func:`crispness`: Frobenius norm of the gradient magnitude of a mean image.
* :func:`mse_factor`, :func:`std_factor`: Flow-Registration performance factors (raw / corrected,
  > 1 is an improvement), with :func:`lowpass`, :func:`mse`, :func:`temporal_std` underneath.
* :func:`residual_motion`: mean ``|w|`` of the flow from each frame to the reference.
* :func:`displacement_stats`: per-frame mean/max displacement, divergence, translation.
* :func:`endpoint_error`: mean ``||w - w_true||`` against ground truth.
* :func:`compute_metrics`: all of the above at once, as an ``xarray.Dataset``;
  :func:`summarize` flattens it to a dict of floats.
"""

from .._constants import STAT_NAMES
from ._arrays import from_result
from .compute import compute_metrics, summarize
from .flow import displacement_stats, endpoint_error, residual_motion
from .quality import (
    correlation_with_reference,
    crispness,
    lowpass,
    mse,
    mse_factor,
    std_factor,
    temporal_std,
)

__all__ = [
    "STAT_NAMES",
    "compute_metrics",
    "correlation_with_reference",
    "crispness",
    "displacement_stats",
    "endpoint_error",
    "from_result",
    "lowpass",
    "mse",
    "mse_factor",
    "residual_motion",
    "std_factor",
    "summarize",
    "temporal_std",
]
