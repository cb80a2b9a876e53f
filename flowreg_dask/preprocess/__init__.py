"""Pre-processing: normalisation and Gaussian filtering (numpy-level, no dask)."""

from .filters import sigma_matrix, smooth_frames, smooth_image, temporal_depth
from .normalize import intensity_range, normalize

__all__ = [
    "intensity_range",
    "normalize",
    "sigma_matrix",
    "smooth_frames",
    "smooth_image",
    "temporal_depth",
]
