"""Rendering frames from scene, motion and activity, and the detector model."""

from __future__ import annotations

import functools
from concurrent.futures import Future
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage as ndi

from ._activity import _Activity
from ._common import _S_NOISE, _SPLINE_MODE, _clip_to_dtype
from ._scene import _Scene

if TYPE_CHECKING:
    from ._spec import SyntheticSpec


class _Inline:
    """Executor-like object running submitted calls at once (no thread for tiny jobs)."""

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, fn, *args) -> Future:
        fut: Future = Future()
        fut.set_result(fn(*args))
        return fut


@functools.lru_cache(maxsize=6)
def _base_coords(H: int, W: int, pad: int) -> np.ndarray:
    return np.mgrid[pad : pad + H, pad : pad + W].astype(np.float64)


def _render(
    spec: SyntheticSpec, scene: _Scene, g: np.ndarray, act: _Activity | None, t: int
) -> np.ndarray:
    """Clean frame in expected photons, (H, W, C) float32."""
    H, W, C = spec.height, spec.width, spec.n_channels
    coords = _base_coords(H, W, spec.pad) + g
    out = np.empty((H, W, C), dtype=np.float32)
    Hc, Wc = scene.canvas.shape[1:]
    for c in range(C):
        coef = scene.coef[c]
        if act is not None and c in act.dff:
            coef = coef + scene.neuropil_coef[c] * act.neuropil[c][t]
            if scene.n_cells:
                coef += (scene.footprints[c] @ act.dff[c][t]).reshape(Hc, Wc)
        ndi.map_coordinates(
            coef, coords, output=out[..., c], order=3, prefilter=False, mode=_SPLINE_MODE
        )
    np.maximum(out, 0.0, out=out)
    out *= np.float32(spec.photons_per_unit)
    return out


def _detect(spec: SyntheticSpec, photons: np.ndarray, t: int) -> np.ndarray:
    """Detector model: Poisson photons x gain + baseline + Gaussian read noise, into dtype."""
    gain, read, base = spec.detector
    if spec.noise:
        rng = np.random.default_rng([spec.seed, _S_NOISE, t])
        adu = rng.poisson(photons).astype(np.float32)
        adu *= np.float32(gain)
        if read > 0:
            adu += rng.standard_normal(photons.shape, dtype=np.float32) * np.float32(read)
        adu += np.float32(base)
    else:
        adu = photons * np.float32(gain) + np.float32(base)
    return _quantize(adu, spec.dtype)


def _quantize(x: np.ndarray, dtype: str) -> np.ndarray:
    """Round and clip float32 ``x`` (in place) into ``dtype``: saturation, never wrap-around."""
    if np.dtype(dtype).kind in "iu":
        np.rint(x, out=x)
        x = _clip_to_dtype(x, dtype)
    return x.astype(dtype, copy=False)
