"""Batched coarse-to-fine flow estimation: all frames of a batch solved together.

:class:`BatchedFlowEstimator` runs the same coarse-to-fine driver as the numba
:class:`flowreg_dask.core.solver.FlowEstimator` (:mod:`flowreg_dask.core.coarse_to_fine`: pyramid
plan, level references and weights, warps, median, GNC and cc-initialisation written once) with
the batched array operations of :mod:`flowreg_dask.kernels.gpu.ops`; it differs in two ways:

* the level solver is **red-black SOR** (two half-sweeps per iteration, each colour updated at
  once) instead of the CPU's lexicographic sweep, so the flows differ slightly (the pipeline tests
  bound the per-frame endpoint-error difference);
* every array operation has a batch axis, so one kernel launch serves all frames of the batch.

With ``xp=cupy`` a batch is uploaded once (frames and initial flows), stays on the GPU through all
levels and iterations, and its flows are downloaded once. With ``xp=numpy`` the same code runs on
the CPU (used by the tests and for debugging; slower than the numba backend).

Method: Flotho et al., "Flow-Registration", J. Biophotonics 2022, :DOI:`10.1002/jbio.202100330`.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, InvalidInputError, InvalidOptionError
from ..kernels.gpu import ops
from ..kernels.gpu.device import is_cupy, require_cupy, to_host
from ._checks import as_hwc, check_finite
from .coarse_to_fine import LevelData, LevelOps, build_levels, rigid_initialised, variational
from .params import FlowParams

__all__ = ["BatchedFlowEstimator", "make_batched_estimator", "BACKEND_PARAMS"]

F32 = np.float32
HOST_BATCH_BUDGET = 256 * 2**20  # bytes of working memory per batch with xp=numpy
BACKEND_PARAMS = ("batch_size", "fused", "memory_fraction")


class _BatchedLevelOps(LevelOps):
    """The batched array operations as the driver's per-level operations: images
    (B, C, h, w), flow components (B, h, w), on the array module ``xp``."""

    def __init__(self, est: BatchedFlowEstimator) -> None:
        self.est = est
        self.xp = est.xp
        self.levels = est.levels
        self.nb = 0  # frames of the batch in flight

    def resize(self, moving, height: int, width: int):
        return self.est._resampler.resize(moving, height, width)

    def resize_flow(self, u, height: int, width: int, *, antialias: bool = True):
        return self.est._resampler.resize(u, height, width, antialias=antialias)

    def zeros_flow(self, height: int, width: int):
        return self.xp.zeros((self.nb, height, width), self.xp.float32)

    def warp(self, k: int, f2, u, v):
        ld = self.levels[k]
        lv = ld.level
        out, _ = ops.warp_cubic(self.xp, f2, u * F32(1.0 / lv.hx), v * F32(1.0 / lv.hy), ld.ref)
        return out

    def solve(self, k: int, f2w, u, v, beta: float):
        est = self.est
        ld = self.levels[k]
        lv = ld.level
        p = est.params
        J = est._tensor(self.xp, ld.ref, f2w, lv.hy, lv.hx)
        return ops.solve_level(
            self.xp,
            J,
            ld.weight,
            u,
            v,
            alpha=ld.alpha,
            hx=lv.hx,
            hy=lv.hy,
            iterations=p.iterations,
            update_lag=p.update_lag,
            a_data=est._a_data,
            blend=est._blend,
            a_smooth=p.a_smooth,
            beta=beta,
            omega=p.omega,
            half_sweep=est._half_sweep,
        )

    def median(self, a):
        return self.est._median_fn(a)


class BatchedFlowEstimator:
    """Flow estimation of frame batches against one fixed reference, on an array module ``xp``.

    Parameters
    ----------
    reference : ndarray
        (H, W) or (H, W, C) pre-processed reference image (numpy).
    params : FlowParams
        Validated parameters (see :func:`flowreg_dask.core.params.resolve_params`).
    xp : module, optional
        ``numpy`` (default) or ``cupy``.
    batch_size : int, optional
        Frames solved together; default: as many as fit in ``memory_fraction`` of the free GPU
        memory (cupy) or in 256 MiB (numpy), at most the number of frames given.
    fused : bool, optional
        Use the fused CuPy kernels of :mod:`flowreg_dask.kernels.gpu.cuda` for the red-black
        half-sweep and the median (default: True with cupy; not available with numpy).
    memory_fraction : float
        Share of the free GPU memory a batch may use (cupy only), default 0.8.
    """

    def __init__(
        self,
        reference: np.ndarray,
        params: FlowParams,
        *,
        xp: ModuleType | None = None,
        batch_size: int | None = None,
        fused: bool | None = None,
        memory_fraction: float = 0.8,
    ) -> None:
        xp = np if xp is None else xp
        self.xp = xp
        self.on_gpu = is_cupy(xp)
        if fused is None:
            fused = self.on_gpu
        if fused and not self.on_gpu:
            raise InvalidOptionError(
                "fused: the fused kernels are CuPy RawKernels and need xp=cupy; pass fused=False "
                "(the default) with numpy"
            )
        if batch_size is not None and (
            isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1
        ):
            raise InvalidOptionError(
                f"batch_size: expected an integer >= 1 (or None = automatic), got {batch_size!r}"
            )
        if not (0 < float(memory_fraction) <= 1):
            raise InvalidOptionError(
                f"memory_fraction: expected a value in (0, 1], got {memory_fraction!r}"
            )
        self.fused = bool(fused)
        self.batch_size = None if batch_size is None else int(batch_size)
        self.memory_fraction = float(memory_fraction)
        # the pyramid, per-level references and weights are planned on the host once (shared
        # with the numba backend), then uploaded in the batched layout (1, C, h, w)
        ref = as_hwc(reference, "reference")
        check_finite(ref, "reference")
        self.plan = build_levels(ref, params)
        self.params = params
        self.shape = self.plan.shape
        self.reference = self.plan.reference
        self._resampler = ops.Resampler(xp)
        self._tensor = ops.TENSORS[params.constancy_assumption]
        self.levels = [
            LevelData(
                ld.level,
                xp.asarray(np.ascontiguousarray(ld.ref.transpose(2, 0, 1)[None])),
                xp.asarray(np.ascontiguousarray(ld.weight[None])),
                ld.alpha,
            )
            for ld in self.plan.levels
        ]
        a = np.asarray(self.plan.a_data, np.float32)
        self._a_data = xp.asarray(a.reshape(1, -1, 1, 1))
        self._blend = xp.asarray(((a > 0) & (a < 1)).reshape(1, -1, 1, 1))
        if self.fused:
            from ..kernels.gpu import cuda

            self._half_sweep = cuda.rb_half_sweep
            self._median_fn = lambda a: cuda.median5x5(xp, a)
        else:
            self._half_sweep = ops.rb_half_sweep
            self._median_fn = lambda a: ops.median5x5(xp, a)
        self.last_batch_size: int | None = None
        self._ops = _BatchedLevelOps(self)

    # ------------------------------------------------------------------------- memory / batches
    def bytes_per_frame(self) -> int:
        """Estimated peak working memory of one frame in a batch, in bytes (upper estimate)."""
        h, w, nc = self.shape
        finest = max(ld.level.height * ld.level.width for ld in self.levels)
        # float32 per pixel of the finest level: resized and warped frame, warp taps, tensor
        # temporaries and J (6 C), ~16 padded solver arrays, flow, increments and temporaries
        level_f32 = nc * 24 + 40 + (0 if self.fused else 30)  # + 25 median views, pads
        level_i64 = 9 + nc  # warp tap indices
        full_f32 = 2 * nc + 8  # uploaded frame (+ transposed copy), initial/final flow, stack
        per = 4 * level_f32 * finest + 8 * level_i64 * finest + 4 * full_f32 * h * w
        return int(1.25 * per)

    def batch_size_for(self, n_frames: int) -> int:
        """Frames per batch for a stack of ``n_frames`` (see ``batch_size``)."""
        if self.batch_size is not None:
            return max(1, min(n_frames, self.batch_size))
        per = self.bytes_per_frame()
        if self.on_gpu:
            from ..kernels.gpu.device import free_device_bytes

            free = free_device_bytes(self.xp)
            n = int(free * self.memory_fraction // per)
            if n < 1:
                h, w, nc = self.shape
                raise BackendUnavailableError(
                    f"flow_backend='cupy': one {h}x{w}x{nc} frame needs about {per / 2**20:.0f} "
                    f"MiB of GPU memory, but only {free / 2**20:.0f} MiB are free "
                    f"({self.memory_fraction:.0%} usable); free GPU memory (other processes), "
                    "solve fewer pyramid levels (a higher min_level / quality_setting 'balanced' "
                    "or 'fast'), or use flow_backend='numba'"
                )
        else:
            n = HOST_BATCH_BUDGET // per
        return max(1, min(n_frames, n))

    # -------------------------------------------------------------------------------- one batch
    def _variational_batch(self, frames: np.ndarray, init: np.ndarray | None) -> np.ndarray:
        """Flows (B, H, W, 2) of host frames (B, H, W, C) float32: one upload, one download."""
        xp = self.xp
        p = self.params
        moving = xp.ascontiguousarray(xp.asarray(frames).transpose(0, 3, 1, 2))
        u0 = v0 = None
        if init is not None:
            init_d = xp.asarray(init)
            u0 = xp.ascontiguousarray(init_d[..., 0])
            v0 = xp.ascontiguousarray(init_d[..., 1])
        self._ops.nb = moving.shape[0]
        u, v = variational(self._ops, self.levels, moving, u0, v0, params=p, out_hw=self.shape[:2])
        return to_host(xp.stack([u, v], axis=-1)).astype(np.float32, copy=False)

    def _variational(self, frames: np.ndarray, init: np.ndarray | None) -> np.ndarray:
        n = frames.shape[0]
        out = np.empty(frames.shape[:3] + (2,), np.float32)
        size = self.batch_size_for(n)
        self.last_batch_size = size
        for start in range(0, n, size):
            stop = min(n, start + size)
            it = None
            if init is not None:
                it = init[start:stop] if init.ndim == 4 else init
                it = np.ascontiguousarray(
                    np.broadcast_to(it, (stop - start,) + self.shape[:2] + (2,)), np.float32
                )
            out[start:stop] = self._variational_batch(frames[start:stop], it)
        return out

    # ---------------------------------------------------------------------------------- public
    def flows(self, frames: np.ndarray, init: np.ndarray | None = None) -> np.ndarray:
        """Flows (T, H, W, 2) float32 (numpy) for a stack (T, H, W[, C]).

        ``init`` is None, one (H, W, 2) initial flow for all frames, or (T, H, W, 2) per frame.
        """
        frames = np.asarray(frames)
        if frames.ndim == 3 and self.shape[2] == 1:
            frames = frames[..., None]
        if frames.ndim != 4 or frames.shape[1:] != self.shape:
            raise InvalidInputError(
                f"frames: expected a (T, {self.shape[0]}, {self.shape[1]}, {self.shape[2]}) stack "
                f"like the reference, got an array of shape {frames.shape}"
            )
        check_finite(frames, "frames")
        frames = np.ascontiguousarray(frames, dtype=np.float32)
        if init is not None:
            init = np.asarray(init, dtype=np.float32)
            hw2 = self.shape[:2] + (2,)
            if init.shape != hw2 and init.shape != (frames.shape[0],) + hw2:
                raise InvalidInputError(
                    f"init: expected an initial flow of shape {hw2} or "
                    f"{(frames.shape[0],) + hw2}, got {init.shape}"
                )
            check_finite(init, "init")
        if frames.shape[0] == 0:
            return np.empty((0,) + self.shape[:2] + (2,), np.float32)
        if self.params.cc_initialization:
            # rigid pre-alignment per frame on the host, the batched flow of the aligned frames
            return rigid_initialised(
                frames,
                init,
                plan=self.plan,
                params=self.params,
                solve=lambda aligned: self._variational(aligned, None),
            )
        return self._variational(frames, init)

    def flow(self, moving: np.ndarray, init: np.ndarray | None = None) -> np.ndarray:
        """Flow (H, W, 2) float32 of one frame (H, W[, C]) (a batch of one)."""
        mov = as_hwc(moving, "moving")
        return self.flows(mov[None], None if init is None else np.asarray(init)[None])[0]


def make_batched_estimator(
    reference: np.ndarray, params: FlowParams, backend: str, **backend_params: Any
) -> BatchedFlowEstimator:
    """The batched estimator of ``backend`` ``"cupy"`` (GPU) or ``"numpy"`` (CPU, for tests).

    ``backend_params`` (``OFOptions.backend_params``): ``batch_size``, ``fused``,
    ``memory_fraction`` (see :class:`BatchedFlowEstimator`).

    Raises
    ------
    BackendUnavailableError
        ``"cupy"`` without an importable cupy or without a CUDA device.
    """
    unknown = sorted(set(backend_params) - set(BACKEND_PARAMS))
    if unknown:
        raise InvalidOptionError(
            f"backend_params: unknown key(s) {unknown} for flow_backend={backend!r}; known: "
            f"{list(BACKEND_PARAMS)}"
        )
    if backend == "cupy":
        xp = require_cupy()
    elif backend == "numpy":
        xp = np
    else:
        raise InvalidOptionError(
            f"backend: expected 'cupy' or 'numpy' for the batched estimator, got {backend!r}"
        )
    return BatchedFlowEstimator(reference, params, xp=xp, **backend_params)
