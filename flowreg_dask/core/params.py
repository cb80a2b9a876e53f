"""Flow-estimation parameters (:class:`FlowParams`), resolved from :class:`OFOptions` only.

The engine takes plain values. :class:`FlowParams` holds them, built by :meth:`from_options` from
a validated :class:`~flowreg_dask.options.OFOptions`, so the options model is the one place that
validates values, states defaults and knows the presets and aliases.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import InvalidOptionError
from ..options import ConstancyAssumption, OFOptions, channel_weights

MIN_FRAME_SIZE = 8
#: SOR relaxation factor of the method (not an option in pyflowreg either).
OMEGA = 1.95


@dataclasses.dataclass(frozen=True)
class FlowParams:
    """Parameters of the variational flow (symbols of Flotho et al. 2022).

    Build it with :meth:`from_options` (or :func:`resolve_params`); the values are those of a
    validated :class:`~flowreg_dask.options.OFOptions`.

    Attributes
    ----------
    alpha : tuple of float
        Smoothness weights (alpha_x, alpha_y) of the regulariser.
    levels : int
        Maximum number of pyramid levels.
    min_level : int
        Finest pyramid level solved (0 = full resolution).
    eta : float
        Downsampling factor between pyramid levels, 0 < eta <= 1.
    iterations : int
        SOR sweeps per level (per warping step with GNC).
    update_lag : int
        Sweeps between updates of the lagged robust weights psi.
    a_data : float or tuple of float
        Exponent of the generalised Charbonnier data penalty (one per channel allowed).
    a_smooth : float
        Exponent of the smoothness penalty (1 = quadratic).
    constancy_assumption : ConstancyAssumption
        Data term: gradient constancy, brightness or census.
    weight : None, list or ndarray
        ``OFOptions.weight``; resolved per recording by :meth:`weight_array`.
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
    constancy_assumption: ConstancyAssumption = ConstancyAssumption.GC
    weight: Any = None
    gnc_schedule: tuple[float, ...] | None = None
    warping_steps: int = 10
    cc_initialization: bool = False
    cc_hw: tuple[int, int] = (256, 256)
    cc_up: int = 1
    omega: float = OMEGA

    @classmethod
    def from_options(cls, options: OFOptions) -> FlowParams:
        """The engine parameters of ``options`` (its effective finest level, GNC steps, ...)."""
        cc_hw = options.cc_hw
        return cls(
            alpha=tuple(options.alpha),
            levels=options.levels,
            min_level=options.effective_min_level,
            eta=options.eta,
            iterations=options.iterations,
            update_lag=options.update_lag,
            a_data=options.a_data,
            a_smooth=options.a_smooth,
            constancy_assumption=ConstancyAssumption(options.constancy_assumption),
            weight=options.weight,
            gnc_schedule=options.gnc_schedule,
            warping_steps=10 if options.warping_steps is None else options.warping_steps,
            cc_initialization=options.cc_initialization,
            cc_hw=(cc_hw, cc_hw) if isinstance(cc_hw, int) else tuple(cc_hw),
            cc_up=options.cc_up,
        )

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
        """Channel weights as a (C,) vector (summing to 1) or an (H, W, C) float32 map
        (:func:`flowreg_dask.options.channel_weights`)."""
        return channel_weights(self.weight, n_channels, height, width)


_PYFLOWREG_KEYWORDS = {"const_assumption": "constancy_assumption"}


def resolve_params(options: Any = None, **params: Any) -> FlowParams:
    """:class:`FlowParams` from options and/or keyword overrides, always through
    :class:`~flowreg_dask.options.OFOptions` (so keywords are validated like options).

    Parameters
    ----------
    options : OFOptions, mapping, FlowParams or None
        Base options. A :class:`FlowParams` is returned as is when no keyword is given.
    **params
        Fields of :class:`~flowreg_dask.options.OFOptions` (``alpha``, ``quality_setting``,
        ``min_level``, ``constancy_assumption`` or pyflowreg's ``const_assumption``, ...).
        ``n_channels`` is accepted and ignored (channels are resolved per recording).
    """
    params.pop("n_channels", None)
    for old, new in _PYFLOWREG_KEYWORDS.items():
        if old in params:
            params[new] = params.pop(old)
    if isinstance(options, FlowParams):
        if not params:
            return options
        raise InvalidOptionError(
            "resolve_params: keyword overrides need OFOptions, not FlowParams; pass the options"
        )
    if options is None:
        base = OFOptions(**params)
    elif isinstance(options, OFOptions):
        base = options.copy(**params) if params else options
    elif isinstance(options, Mapping):
        base = OFOptions(**{**options, **params})
    else:
        raise InvalidOptionError(
            f"options: expected an OFOptions, a dict or None, got {type(options).__name__}"
        )
    return FlowParams.from_options(base)
