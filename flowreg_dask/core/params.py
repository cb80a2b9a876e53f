"""Flow-estimation parameters: one frozen, validated set resolved from options or keywords.

The engine takes plain values; :class:`FlowParams` gathers them, checks them once and states the
defaults (those of ``OFOptions``, method spec Appendix A).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import FlowRegWarning, InvalidOptionError

PRESET_MIN_LEVEL = {"quality": 0, "balanced": 4, "fast": 6}
DATA_TERMS = {
    "gc": "gc",
    "gradient": "gc",
    "gray": "gray",
    "brightness": "gray",
    "cs": "cs",
    "census": "cs",
}
MIN_FRAME_SIZE = 8


@dataclasses.dataclass(frozen=True)
class FlowParams:
    """Validated parameters of the variational flow (symbols of Flotho et al. 2022).

    Attributes
    ----------
    alpha : tuple of float
        Smoothness weights (alpha_x, alpha_y) of the regulariser.
    levels : int
        Maximum number of pyramid levels.
    min_level : int
        Finest pyramid level solved (0 = full resolution); presets quality 0, balanced 4, fast 6.
    eta : float
        Downsampling factor between pyramid levels, 0 < eta <= 1.
    iterations : int
        SOR sweeps per level (per warping step with GNC).
    update_lag : int
        Sweeps between updates of the lagged robust weights psi.
    a_data : float or tuple of float
        Exponent of the generalised Charbonnier data penalty (per channel allowed), 0 < a <= 1.
    a_smooth : float
        Exponent of the smoothness penalty (1 = quadratic).
    constancy_assumption : str
        Data term: ``"gc"`` gradient constancy, ``"gray"`` brightness, ``"cs"`` census.
    weight : None, sequence or ndarray
        Channel weights: None (equal), a vector of length C, an (H, W) or (H, W, C) map.
    gnc_schedule : tuple of float or None
        Graduated non-convexity blend factors, 0 -> 1.
    warping_steps : int
        Warp/relinearise steps per level in GNC mode.
    cc_initialization : bool
        Rigid phase-correlation pre-alignment before the variational solve.
    cc_hw : tuple of int
        Working size cap of the phase correlation.
    cc_up : int
        Sub-pixel upsampling factor of the phase correlation.
    omega : float
        SOR relaxation factor.
    """

    alpha: tuple[float, float] = (1.5, 1.5)
    levels: int = 100
    min_level: int = 0
    eta: float = 0.8
    iterations: int = 50
    update_lag: int = 5
    a_data: float | tuple[float, ...] = 0.45
    a_smooth: float = 1.0
    constancy_assumption: str = "gc"
    weight: Any = None
    gnc_schedule: tuple[float, ...] | None = None
    warping_steps: int = 10
    cc_initialization: bool = False
    cc_hw: tuple[int, int] = (256, 256)
    cc_up: int = 1
    omega: float = 1.95

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        alpha = np.atleast_1d(np.asarray(self.alpha, dtype=np.float64))
        if alpha.size == 1:
            alpha = np.repeat(alpha, 2)
        if alpha.size != 2 or not np.all(np.isfinite(alpha)) or np.any(alpha <= 0):
            raise InvalidOptionError(
                "alpha: expected one or two positive numbers (alpha_x, alpha_y), got "
                f"{self.alpha!r}"
            )
        set_(self, "alpha", (float(alpha[0]), float(alpha[1])))
        for name, low in (("levels", 1), ("iterations", 1), ("update_lag", 1), ("cc_up", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < low:
                raise InvalidOptionError(f"{name}: expected an integer >= {low}, got {value!r}")
            set_(self, name, int(value))
        if int(self.min_level) != self.min_level or self.min_level < 0:
            raise InvalidOptionError(
                f"min_level: expected an integer >= 0 (0 = full resolution), got {self.min_level!r}"
            )
        set_(self, "min_level", int(self.min_level))
        if not (0 < self.eta <= 1):
            raise InvalidOptionError(f"eta: expected 0 < eta <= 1, got {self.eta!r}")
        a_data = np.atleast_1d(np.asarray(self.a_data, dtype=np.float64))
        if a_data.ndim != 1 or np.any(a_data <= 0) or np.any(a_data > 1):
            raise InvalidOptionError(
                "a_data: expected values in (0, 1] (scalar or one per channel), got "
                f"{self.a_data!r}"
            )
        set_(self, "a_data", float(a_data[0]) if a_data.size == 1 else tuple(map(float, a_data)))
        if not (self.a_smooth > 0):
            raise InvalidOptionError(f"a_smooth: expected a value > 0, got {self.a_smooth!r}")
        term = DATA_TERMS.get(str(self.constancy_assumption).lower())
        if term is None:
            raise InvalidOptionError(
                f"constancy_assumption: unknown data term {self.constancy_assumption!r}; "
                f"use one of {sorted(DATA_TERMS)}"
            )
        set_(self, "constancy_assumption", term)
        if self.gnc_schedule is not None:
            sched = tuple(float(b) for b in np.atleast_1d(self.gnc_schedule))
            ok = (
                len(sched) >= 2
                and all(0.0 <= b <= 1.0 for b in sched)
                and all(b1 <= b2 for b1, b2 in zip(sched, sched[1:], strict=False))
                and math.isclose(sched[0], 0.0, abs_tol=1e-9)
                and math.isclose(sched[-1], 1.0, abs_tol=1e-9)
            )
            if not ok:
                raise InvalidOptionError(
                    "gnc_schedule: expected >= 2 non-decreasing values in [0, 1] starting at 0 and "
                    f"ending at 1, e.g. (0.0, 0.5, 1.0); got {self.gnc_schedule!r}"
                )
            set_(self, "gnc_schedule", sched)
        if int(self.warping_steps) != self.warping_steps or self.warping_steps < 1:
            raise InvalidOptionError(
                f"warping_steps: expected an integer >= 1, got {self.warping_steps!r}"
            )
        cc_hw = np.atleast_1d(np.asarray(self.cc_hw))
        if cc_hw.size == 1:
            cc_hw = np.repeat(cc_hw, 2)
        if cc_hw.size != 2 or np.any(cc_hw < 8):
            raise InvalidOptionError(
                f"cc_hw: expected one or two integers >= 8, got {self.cc_hw!r}"
            )
        set_(self, "cc_hw", (int(cc_hw[0]), int(cc_hw[1])))
        if not (0 < self.omega < 2):
            raise InvalidOptionError(f"omega: expected 0 < omega < 2, got {self.omega!r}")

    def a_data_vector(self, n_channels: int) -> np.ndarray:
        """Per-channel data exponents, (C,) float32."""
        a = np.atleast_1d(np.asarray(self.a_data, dtype=np.float32))
        if a.size == 1:
            return np.full(n_channels, a[0], np.float32)
        if a.size != n_channels:
            raise InvalidOptionError(
                f"a_data: got {a.size} values for {n_channels} channels; give one value per "
                "channel or a single value"
            )
        return a

    def weight_array(self, height: int, width: int, n_channels: int) -> np.ndarray:
        """Channel weights as a (C,) vector (summing to 1) or an (H, W, C) float32 map."""
        wt = self.weight
        if wt is None:
            return np.full(n_channels, 1.0 / n_channels, np.float32)
        arr = np.asarray(wt, dtype=np.float32)
        if arr.ndim == 0 or arr.ndim == 1:
            arr = np.atleast_1d(arr)
            if arr.size != n_channels:
                raise InvalidOptionError(
                    f"weight: got {arr.size} channel weights for {n_channels} channels; pass one "
                    "weight per channel (or None for equal weights)"
                )
            if np.any(arr < 0) or arr.sum() <= 0:
                raise InvalidOptionError(f"weight: expected non-negative weights, got {wt!r}")
            return (arr / arr.sum()).astype(np.float32)
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], n_channels, axis=2)
        if arr.ndim != 3 or arr.shape != (height, width, n_channels):
            raise InvalidOptionError(
                f"weight: a weight map must be (H, W) or (H, W, C) = ({height}, {width}, "
                f"{n_channels}); got shape {np.asarray(wt).shape}"
            )
        return np.ascontiguousarray(arr)


_FIELDS = {f.name for f in dataclasses.fields(FlowParams)}


def resolve_params(options: Any = None, n_channels: int | None = None, **params: Any) -> FlowParams:
    """Build :class:`FlowParams` from an ``OFOptions``-like object and/or keyword overrides.

    ``options`` may be None, a :class:`FlowParams`, a mapping, or any object with a
    ``to_flow_kwargs()`` method (``OFOptions``). Keywords override it. ``quality_setting`` (a preset
    name) is accepted as a keyword and sets ``min_level`` unless ``min_level`` is given too.
    """
    if isinstance(options, FlowParams) and not params:
        return options
    base: dict[str, Any] = {}
    if isinstance(options, FlowParams):
        base = dataclasses.asdict(options)
    elif isinstance(options, Mapping):
        base = dict(options)
    elif options is not None:
        if not hasattr(options, "to_flow_kwargs"):
            raise InvalidOptionError(
                "options: expected an OFOptions, a FlowParams or a dict, got "
                f"{type(options).__name__}"
            )
        base = dict(options.to_flow_kwargs())
        wt = base.get("weight")
        if (
            n_channels is not None
            and isinstance(wt, Sequence)
            and not isinstance(wt, (str, np.ndarray))
            and len(wt) != n_channels
            and np.allclose(list(wt), [0.5, 0.5])
        ):
            base["weight"] = None  # the options' default (two equal weights) means "equal weights"
    base.update(params)
    preset = base.pop("quality_setting", None)
    if preset is not None and "min_level" not in params:
        preset = str(getattr(preset, "value", preset)).lower()
        if preset in PRESET_MIN_LEVEL:
            base["min_level"] = PRESET_MIN_LEVEL[preset]
        elif preset != "custom":
            raise InvalidOptionError(
                f"quality_setting: expected one of {sorted(PRESET_MIN_LEVEL) + ['custom']}, "
                f"got {preset!r}"
            )
    if "const_assumption" in base:  # pyflowreg's keyword name
        base["constancy_assumption"] = base.pop("const_assumption")
    if base.get("warping_steps") is None:
        base.pop("warping_steps", None)
    if base.get("min_level") is not None and base["min_level"] < 0:
        base["min_level"] = 0
    unknown = set(base) - _FIELDS
    if unknown:
        raise InvalidOptionError(
            f"unknown flow parameter(s) {sorted(unknown)}; known: {sorted(_FIELDS)}"
        )
    return FlowParams(**base)


def warn_user(message: str, stacklevel: int = 3) -> None:
    """Emit a :class:`FlowRegWarning`."""
    warnings.warn(message, FlowRegWarning, stacklevel=stacklevel)
