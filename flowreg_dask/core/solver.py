"""Coarse-to-fine variational flow: pairwise ``get_displacement`` and the block API
``get_displacements`` (one reference, many frames) that the pipeline calls once per chunk.

Method: Flotho et al., "Flow-Registration", J. Biophotonics 2022, :DOI:`10.1002/jbio.202100330`;
behaviour as described in the method spec §1. Pure numpy-level functions: no dask, no I/O.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InvalidInputError, InvalidOptionError
from ..kernels.cpu import level as _level
from ..kernels.cpu import median as _median
from ..kernels.cpu import sor as _sor
from ..kernels.cpu import tensors as _tensors
from ..kernels.cpu import warp as _kwarp
from ..kernels.cpu.resample import resize, resize_plan
from ..options import FlowBackend, choice
from ._checks import as_hwc, check_finite
from .coarse_to_fine import LevelOps, LevelPlan, build_levels, rigid_initialised, variational
from .params import FlowParams, resolve_params

__all__ = ["get_displacement", "get_displacements", "FlowEstimator", "make_estimator"]

_TENSORS = {"gc": _tensors.tensor_gc, "gray": _tensors.tensor_gray, "cs": _tensors.tensor_cs}


class _NumbaLevelOps(LevelOps):
    """The numba kernels as the driver's per-level operations, one frame at a time: images
    (h, w, C), flow components (h, w). :meth:`level` runs the whole level as one compiled call
    (:func:`flowreg_dask.kernels.cpu.level.level_step`); :meth:`composed_level` is the
    driver's composition of the same kernels (the tests check that both agree)."""

    def __init__(self, plan: LevelPlan, params: FlowParams) -> None:
        self.levels = plan.levels
        self.params = params
        self.a_data = plan.a_data
        self.tensor = _TENSORS[params.constancy_assumption]
        self.term = _level.TERMS[params.constancy_assumption]
        h, w, nc = plan.shape
        self._ws_size = max(
            _sor.workspace_size(ld.level.height, ld.level.width, nc) for ld in plan.levels
        )
        self._dummy = np.zeros((1, 1), np.float32)
        self._fused = []
        prev = (h, w)
        for ld in plan.levels:
            lv = ld.level
            self._fused.append(
                (
                    resize_plan(h, w, lv.height, lv.width),
                    resize_plan(*prev, lv.height, lv.width),
                    np.float32(lv.hx),
                    np.float32(lv.hy),
                    np.float32(1.0 / lv.hx),
                    np.float32(1.0 / lv.hy),
                    np.float32(ld.alpha[0]),
                    np.float32(ld.alpha[1]),
                )
            )
            prev = (lv.height, lv.width)

    def level(self, k: int, moving, u, v, *, beta: float, gnc: bool, warping_steps: int):
        mplan, fplan, hx, hy, ihx, ihy, ax, ay = self._fused[k]
        has_flow = u is not None
        if not has_flow:
            u = v = self._dummy
        elif k == 0:  # an initial flow at full resolution: the moving frame's plan
            fplan = mplan
        ld = self.levels[k]
        p = self.params
        return _level.level_step(
            moving, mplan, u, v, fplan, has_flow, ld.ref, ld.weight, hx, hy, ihx, ihy, ax, ay,
            p.iterations, p.update_lag, self.a_data, np.float32(p.a_smooth), np.float32(beta),
            np.float32(p.omega), self.term, gnc, warping_steps, _sor.workspace(self._ws_size),
        )  # fmt: skip

    def composed_level(self, k: int, moving, u, v, **kw):
        """:meth:`LevelOps.level`: the same level composed from the separate kernels."""
        return LevelOps.level(self, k, moving, u, v, **kw)

    @staticmethod
    def resize(moving: np.ndarray, height: int, width: int) -> np.ndarray:
        return resize(moving, height, width)

    @staticmethod
    def resize_flow(u: np.ndarray, height: int, width: int, *, antialias: bool = True):
        return resize(u[:, :, None], height, width, antialias=antialias)[:, :, 0]

    @staticmethod
    def zeros_flow(height: int, width: int) -> np.ndarray:
        return np.zeros((height, width), np.float32)

    def warp(self, k: int, f2: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        ld = self.levels[k]
        lv = ld.level
        out = np.empty_like(f2)
        valid = np.empty(u.shape, np.uint8)
        _kwarp.warp_image(
            f2, u * np.float32(1.0 / lv.hx), v * np.float32(1.0 / lv.hy), ld.ref, out, 3, valid
        )
        return out

    def solve(self, k: int, f2w: np.ndarray, u, v, beta: float):
        ld = self.levels[k]
        lv = ld.level
        p = self.params
        J = np.empty((f2w.shape[2], 6, lv.height, lv.width), np.float32)
        self.tensor(ld.ref, f2w, np.float32(lv.hy), np.float32(lv.hx), J)
        du = np.empty((lv.height, lv.width), np.float32)
        dv = np.empty_like(du)
        _sor.solve_level(
            J,
            ld.weight,
            u,
            v,
            np.float32(ld.alpha[0]),
            np.float32(ld.alpha[1]),
            np.float32(lv.hx),
            np.float32(lv.hy),
            p.iterations,
            p.update_lag,
            self.a_data,
            np.float32(p.a_smooth),
            np.float32(beta),
            np.float32(p.omega),
            du,
            dv,
        )
        return du, dv

    @staticmethod
    def median(a: np.ndarray) -> np.ndarray:
        out = np.empty_like(a)
        _median.median5x5(a, out)
        return out


class FlowEstimator:
    """Flow estimation against one fixed reference with the numba kernels, one frame at a time;
    the reference pyramid is built once (:func:`~flowreg_dask.core.coarse_to_fine.build_levels`).

    Parameters
    ----------
    reference : ndarray
        (H, W) or (H, W, C) pre-processed reference image.
    params : FlowParams
        Validated parameters (see :func:`flowreg_dask.core.params.resolve_params`).
    """

    def __init__(self, reference: np.ndarray, params: FlowParams) -> None:
        ref = as_hwc(reference, "reference")
        check_finite(ref, "reference")
        self.params = params
        self.plan = build_levels(ref, params)
        self.shape = self.plan.shape
        self.reference = self.plan.reference
        self.levels = self.plan.levels
        self.min_level = self.plan.min_level
        self._ops = _NumbaLevelOps(self.plan, params)

    def _variational(self, moving: np.ndarray, init: np.ndarray | None) -> np.ndarray:
        u0 = None if init is None else np.ascontiguousarray(init[..., 0], np.float32)
        v0 = None if init is None else np.ascontiguousarray(init[..., 1], np.float32)
        u, v = variational(
            self._ops, self.levels, moving, u0, v0, params=self.params, out_hw=self.shape[:2]
        )
        return np.stack([u, v], axis=-1)

    def flow(
        self, moving: np.ndarray, init: np.ndarray | None = None, *, check: bool = True
    ) -> np.ndarray:
        """Flow (H, W, 2) float32 that registers ``moving`` (H, W[, C]) onto the reference.

        ``check=False`` skips the shape and finiteness checks, for callers that built both
        inputs themselves: ``moving`` a contiguous (H, W, C) float32 frame of the reference's
        shape, ``init`` None or an (H, W, 2) float32 flow (the live corrector, per frame).
        """
        if check:
            moving, init = self._checked(moving, init)
        if not self.params.cc_initialization:
            return self._variational(moving, init)
        return rigid_initialised(
            moving[None],
            init,
            plan=self.plan,
            params=self.params,
            solve=lambda aligned: self._variational(aligned[0], None)[None],
        )[0]

    def _checked(
        self, moving: np.ndarray, init: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``moving`` as a contiguous (H, W, C) float32 frame of the reference's shape and
        ``init`` as an (H, W, 2) float32 flow (or None), both finite; else InvalidInputError."""
        mov = as_hwc(moving, "moving")
        if mov.shape != self.shape:
            raise InvalidInputError(
                f"moving: expected shape {self.shape} (like the reference), got {mov.shape}"
            )
        check_finite(mov, "moving")
        mov = np.ascontiguousarray(mov, dtype=np.float32)
        if init is not None:
            init = np.asarray(init, dtype=np.float32)
            if init.shape != self.shape[:2] + (2,):
                raise InvalidInputError(
                    f"init: expected an initial flow of shape {self.shape[:2] + (2,)}, got "
                    f"{init.shape}"
                )
            check_finite(init, "init")
        return mov, init

    def flows(self, frames: np.ndarray, init: np.ndarray | None = None) -> np.ndarray:
        """Flows (T, H, W, 2) for a stack (T, H, W[, C]); ``init`` is (H, W, 2) or (T, H, W, 2)."""
        frames = np.asarray(frames)
        if frames.ndim == 3 and self.shape[2] == 1:
            frames = frames[..., None]
        if frames.ndim != 4:
            raise InvalidInputError(
                f"frames: expected a (T, H, W, C) stack, got an array of shape {frames.shape}"
            )
        if init is not None:
            init = np.asarray(init, dtype=np.float32)
            if init.ndim == 4 and init.shape[0] != frames.shape[0]:
                raise InvalidInputError(
                    f"init: {init.shape[0]} initial flows for {frames.shape[0]} frames"
                )
        out = np.empty(frames.shape[:3] + (2,), np.float32)
        for t in range(frames.shape[0]):
            it = None if init is None else (init[t] if init.ndim == 4 else init)
            out[t] = self.flow(frames[t], it)
        return out


def make_estimator(
    reference: np.ndarray, params: FlowParams, backend: str = "numba", **backend_params: Any
):
    """Flow estimator of a backend, all with ``.flows(frames, init)`` and ``.flow(moving, init)``.

    Parameters
    ----------
    reference : ndarray
        (H, W) or (H, W, C) pre-processed reference.
    params : FlowParams
        Validated parameters.
    backend : str
        ``"numba"`` (CPU, :class:`FlowEstimator`), ``"cupy"`` (CUDA GPU, batched) or ``"numpy"``
        (the batched code on the CPU; for tests and debugging). ``OFOptions.flow_backend``.
    **backend_params
        ``OFOptions.backend_params`` for the batched backends (``batch_size``, ``fused``,
        ``memory_fraction``, see :class:`flowreg_dask.core.batched.BatchedFlowEstimator`);
        ignored by ``"numba"``.

    Raises
    ------
    BackendUnavailableError
        ``"cupy"`` when CuPy cannot be imported or no CUDA device is usable (install with
        ``pip install flowreg-dask[gpu]``).
    """
    try:
        name = choice("flow_backend", backend, FlowBackend)
    except ValueError as exc:
        raise InvalidOptionError(str(exc)) from None
    if name is FlowBackend.NUMBA:
        return FlowEstimator(reference, params)
    from .batched import make_batched_estimator  # lazy: no cupy at import

    return make_batched_estimator(reference, params, name.value, **backend_params)


def _params_for(reference: np.ndarray, options: Any, params: dict) -> FlowParams:
    ref = np.asarray(reference)
    n_channels = ref.shape[2] if ref.ndim == 3 else 1
    return resolve_params(options, n_channels=n_channels, **params)


#: pyflowreg's ``get_displacement`` function defaults (they differ from OFOptions' defaults:
#: alpha 2 instead of 1.5, levels 50 instead of 100); used when no ``options`` are given.
FUNCTION_DEFAULTS: dict[str, Any] = {
    "alpha": (2.0, 2.0),
    "update_lag": 5,
    "iterations": 50,
    "min_level": 0,
    "levels": 50,
    "eta": 0.8,
    "a_smooth": 1.0,
    "a_data": 0.45,
    "const_assumption": "gc",
}


def _with_function_defaults(options: Any, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` completed with :data:`FUNCTION_DEFAULTS` when no ``options`` are given (a
    preset's ``quality_setting`` or ``constancy_assumption`` stands for ``min_level`` /
    ``const_assumption``)."""
    if options is not None:
        return params
    out = dict(params)
    stands_for = {"min_level": "quality_setting", "const_assumption": "constancy_assumption"}
    for name, value in FUNCTION_DEFAULTS.items():
        if name not in out and stands_for.get(name) not in out:
            out[name] = value
    return out


class _Unset:
    def __repr__(self) -> str:
        return "<default>"


_UNSET: Any = _Unset()


def get_displacement(
    fixed: np.ndarray,
    moving: np.ndarray,
    alpha: Any = _UNSET,
    update_lag: Any = _UNSET,
    iterations: Any = _UNSET,
    min_level: Any = _UNSET,
    levels: Any = _UNSET,
    eta: Any = _UNSET,
    a_smooth: Any = _UNSET,
    a_data: Any = _UNSET,
    const_assumption: Any = _UNSET,
    uv: np.ndarray | None = None,
    weight: Any = None,
    level_solver_backend: Any = None,
    gnc_schedule: Any = None,
    warping_steps: Any = None,
    *,
    options: Any = None,
    init: np.ndarray | None = None,
    **params: Any,
) -> np.ndarray:
    """Dense displacement that registers ``moving`` onto ``fixed`` (pyflowreg's signature).

    Parameters
    ----------
    fixed, moving : ndarray
        (H, W) or (H, W, C) images of equal shape, pre-processed (normalised to about [0, 1] and
        smoothed, see :mod:`flowreg_dask.preprocess`). All channels share one flow.
    alpha, update_lag, iterations, min_level, levels, eta, a_smooth, a_data, const_assumption
        The model's parameters, in pyflowreg's order. Without ``options`` their defaults are
        pyflowreg's function defaults (:data:`FUNCTION_DEFAULTS`: alpha (2, 2), levels 50, ...);
        with ``options`` only the ones given override the options.
    uv : ndarray, optional
        (H, W, 2) initial flow (``init=`` is the same).
    weight : sequence or ndarray, optional
        Channel weights (C,) or a weight map (H, W, C); default equal weights.
    level_solver_backend : None
        Accepted for pyflowreg scripts; the numba solver is always used here.
    gnc_schedule, warping_steps : optional
        The graduated non-convexity variant (see :class:`~flowreg_dask.options.OFOptions`).
    options : OFOptions, FlowParams or dict, optional
        Base options (for example a run's options); keyword ``params`` override single fields
        (``quality_setting``, ``constancy_assumption``, ``cc_initialization``, ...).
    init : ndarray, optional
        Same as ``uv``.

    Returns
    -------
    ndarray
        (H, W, 2) float32 flow (u, v) in full-resolution pixels, backward convention:
        ``registered(y, x) = moving(y + v, x + u)``.

    References
    ----------
    Flotho, P. et al. Flow-Registration: motion correction of 2-photon microscopy data with
    variational optical flow. J. Biophotonics 2022, :DOI:`10.1002/jbio.202100330`.

    Examples
    --------
    >>> import numpy as np
    >>> from flowreg_dask import get_displacement
    >>> ref = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    >>> get_displacement(ref, ref, quality_setting="fast").shape
    (64, 64, 2)
    """
    if uv is not None and init is not None:
        raise InvalidOptionError("pass the initial flow once: uv= or init=")
    if level_solver_backend not in (None, "numba"):
        raise InvalidOptionError(
            f"level_solver_backend={level_solver_backend!r}: only the numba solver exists here; "
            "pass None (use OFOptions.flow_backend='cupy' for the GPU)"
        )
    given = {
        "alpha": alpha,
        "update_lag": update_lag,
        "iterations": iterations,
        "min_level": min_level,
        "levels": levels,
        "eta": eta,
        "a_smooth": a_smooth,
        "a_data": a_data,
        "const_assumption": const_assumption,
        "weight": weight,
        "gnc_schedule": gnc_schedule,
        "warping_steps": warping_steps,
    }
    params = _with_function_defaults(
        options, {**{k: v for k, v in given.items() if v is not _UNSET and v is not None}, **params}
    )
    ref = as_hwc(fixed, "fixed")
    mov = as_hwc(moving, "moving")
    if ref.shape != mov.shape:
        raise InvalidInputError(
            f"moving: shape {np.shape(moving)} differs from fixed shape {np.shape(fixed)}; "
            "both images must have the same (H, W[, C])"
        )
    est = FlowEstimator(ref, _params_for(ref, options, params))
    return est.flow(mov, uv if init is None else init)


def pair_function(backend: str, **backend_params: Any):
    """A ``get_displacement``-like function ``f(fixed, moving, uv=None, **flow_kwargs)`` solved
    by ``backend`` (see :func:`make_estimator`); the factory behind
    ``flowreg_dask.options.backends.get_backend(backend)``."""
    choice("flow_backend", backend, FlowBackend)  # unknown names fail here, not at first call

    def flow(fixed: np.ndarray, moving: np.ndarray, uv: np.ndarray | None = None, **kw: Any):
        ref = as_hwc(fixed, "fixed")
        params = {**FUNCTION_DEFAULTS, **kw}
        est = make_estimator(ref, _params_for(ref, None, params), backend, **backend_params)
        return est.flow(as_hwc(moving, "moving"), uv)

    flow.__name__ = f"get_displacement_{backend}"
    return flow


def get_displacements(
    reference: np.ndarray,
    frames: np.ndarray,
    *,
    options: Any = None,
    init: np.ndarray | None = None,
    **params: Any,
) -> np.ndarray:
    """Flows of a stack of frames against one reference (the per-chunk block API).

    Parameters
    ----------
    reference : ndarray
        (H, W) or (H, W, C) pre-processed reference.
    frames : ndarray
        (T, H, W, C) (or (T, H, W) for one channel) pre-processed frames.
    options, params
        As in :func:`get_displacement`.
    init : ndarray, optional
        Initial flow (H, W, 2) shared by all frames, or (T, H, W, 2) per frame.

    Returns
    -------
    ndarray
        (T, H, W, 2) float32 flows.
    """
    ref = as_hwc(reference, "reference")
    frames = np.asarray(frames)
    if frames.ndim == 3 and ref.shape[2] == 1:
        frames = frames[..., None]
    if frames.ndim != 4 or frames.shape[1:] != ref.shape:
        raise InvalidInputError(
            f"frames: expected (T, {ref.shape[0]}, {ref.shape[1]}, {ref.shape[2]}) to match the "
            f"reference, got {frames.shape}"
        )
    params = _with_function_defaults(options, params)
    est = FlowEstimator(ref, _params_for(ref, options, params))
    return est.flows(frames, init)
