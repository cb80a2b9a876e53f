"""Constants, random streams and argument checks shared by the generator."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidOptionError

if TYPE_CHECKING:
    from ._spec import SyntheticSpec

#: Output dtypes that :class:`SyntheticSpec` accepts.
SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "float32")

# Detector defaults (gain [ADU / photon], read noise [ADU], baseline offset [ADU]) per dtype.
_DETECTOR_DEFAULTS: dict[str, tuple[float, float, float]] = {
    "uint16": (80.0, 20.0, 100.0),
    "int16": (80.0, 20.0, 100.0),
    "float32": (80.0, 20.0, 100.0),
    "uint8": (1.0, 1.5, 4.0),
}

# Independent random streams (all seeded with ``[seed, stream, ...]``).
_S_SCENE = 11
_S_MOTION = 23
_S_ACTIVITY = 37
_S_NOISE = 41

_PSF_SIGMA = 0.75  # lateral PSF blur (px)
_N_WAVES = 4  # number of plane waves of the non-rigid deformation
_MAX_GRADIENT = 0.5  # cap on |grad g| of the non-rigid part (keeps the warp invertible)
_CAP_MARGIN = 0.97  # |g| on the coarse grid is kept below this fraction of max_displacement
_FP_TOL = 1e-5  # fixed-point tolerance (px)
_FP_MAX_ITER = 60
_SPLINE_MODE = "reflect"
_CELL_RADIUS = (4.0, 8.0)
_CELL_DENSITY = 1.0 / 600.0  # somata per px^2
_TAU_DECAY_S = (0.5, 1.0)
_TAU_RISE_S = 0.05
_DFF_MAX = 4.0


def _fail(name: str, expected: str, value: Any) -> InvalidOptionError:
    return InvalidOptionError(f"SyntheticSpec: {name} must be {expected}, got {value!r}")


def _as_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise _fail(name, f"an integer >= {minimum}", value)
    if int(value) < minimum:
        raise _fail(name, f"an integer >= {minimum}", value)
    return int(value)


def _as_float(name: str, value: Any, minimum: float | None = None, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise _fail(name, "a finite number", value)
    out = float(value)
    if not math.isfinite(out):
        raise _fail(name, "a finite number", value)
    if minimum is not None and (out < minimum or (strict and out == minimum)):
        op = ">" if strict else ">="
        raise _fail(name, f"a finite number {op} {minimum}", value)
    return out


def _clip_to_dtype(x: np.ndarray, dtype: str) -> np.ndarray:
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return np.clip(x, info.min, info.max)
    return x


def _has_activity(spec: SyntheticSpec) -> bool:
    # there is always at least one functional channel
    return spec.activity


def _functional_channels(n_channels: int) -> range:
    return range(0, 1) if n_channels == 1 else range(1, n_channels)
