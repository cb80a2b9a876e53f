"""Quality report of a corrected store: one pass of metrics, PNG figures, ``summary.json`` and a
self-contained ``report.html`` (figures embedded as base64 data URIs, no external resources).

>>> from flowreg_dask.report import write_report           # doctest: +SKIP
>>> write_report("corrected.zarr")                          # doctest: +SKIP
PosixPath('corrected_report/report.html')

Command line: ``flowreg-dask report OUT.zarr [--out DIR] [--raw INPUT]``.
"""

from ._build import FIGURES, default_report_dir, write_report

__all__ = ["FIGURES", "default_report_dir", "write_report"]
