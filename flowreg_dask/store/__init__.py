"""Output stores: OME-Zarr 0.5 corrected movie, flow, mask and statistics, written atomically."""

from flowreg_dask.store.export import export_formats, export_result
from flowreg_dask.store.zarr_store import CorrectedStore, open_result, store_status

__all__ = ["CorrectedStore", "open_result", "store_status", "export_result", "export_formats"]
