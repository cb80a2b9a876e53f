"""Batched flow kernels written once against an array module ``xp`` (numpy or cupy).

All frames of a batch are solved together: every array carries a leading batch axis and every
operation is vectorised over the batch and the pixels (Python loops only over pyramid levels and
solver iterations). With ``xp=cupy`` everything between one upload of the frames and one download
of the flows runs on the GPU; with ``xp=numpy`` the same code runs on the CPU (tests, debugging).

Modules
-------
``device``
    Lazy cupy import (:func:`~flowreg_dask.kernels.gpu.device.require_cupy`), memory queries.
``ops``
    The array logic: resampling matrices, cubic warp, motion tensors, 5x5 median, red-black SOR.
``cuda``
    Fused CuPy ``RawKernel`` variants of the red-black half-sweep and the median (used only when
    ``xp`` is cupy; not exercised without a GPU).
The coarse-to-fine driver that calls them is :mod:`flowreg_dask.core.coarse_to_fine` (shared
with the numba backend), through :class:`~flowreg_dask.core.batched.BatchedFlowEstimator`.

Nothing here imports cupy at import time.
"""
