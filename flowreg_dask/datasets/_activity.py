"""Calcium activity of the somata (GCaMP-like transients)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ._common import _DFF_MAX, _S_ACTIVITY, _TAU_DECAY_S, _TAU_RISE_S, _functional_channels
from ._motion import _smooth_process

if TYPE_CHECKING:
    from ._spec import SyntheticSpec


@dataclass(frozen=True, eq=False)
class _Activity:
    dff: dict  # channel -> (T, N) float32 dF/F
    neuropil: dict  # channel -> (T,) float32 relative neuropil fluctuation


def _activity_key(spec: SyntheticSpec, n_cells: int) -> tuple:
    return (spec.seed, spec.n_frames, spec.n_channels, n_cells, spec.frame_rate)


@functools.lru_cache(maxsize=6)
def _activity(key: tuple) -> _Activity:
    seed, T, C, N, fps = key
    dff = {}
    neuropil = {}
    for c in _functional_channels(C):
        rng = np.random.default_rng([seed, _S_ACTIVITY, c])
        active = rng.random(N) < 0.75
        rate = np.clip(rng.lognormal(math.log(0.3), 0.8, N), 0.02, 3.0) * active  # Hz
        amp = rng.uniform(0.4, 1.0, N)
        tau_d = rng.uniform(*_TAU_DECAY_S, N) * fps
        tau_r = max(_TAU_RISE_S * fps, 0.3)
        spikes = rng.poisson(np.broadcast_to(rate / fps, (T, N))).astype(np.float64)
        spikes *= amp[None] * rng.lognormal(0.0, 0.25, (T, N))
        a_d = np.exp(-1.0 / tau_d)
        a_r = math.exp(-1.0 / tau_r)
        # peak of exp(-t/td) - exp(-t/tr), to normalise the kernel to unit height
        t_pk = np.log(tau_d / tau_r) * tau_d * tau_r / (tau_d - tau_r)
        norm = 1.0 / (np.exp(-t_pk / tau_d) - np.exp(-t_pk / tau_r))
        cd = np.zeros(N)
        cr = np.zeros(N)
        trace = np.empty((T, N))
        for k in range(T):
            cd = a_d * cd + spikes[k]
            cr = a_r * cr + spikes[k]
            trace[k] = cd - cr
        trace *= norm[None]
        dff[c] = (_DFF_MAX * np.tanh(trace / _DFF_MAX)).astype(np.float32)
        slow = _smooth_process(rng, T, (), 2.0 * fps)
        neuropil[c] = (0.03 * slow).astype(np.float32)
    return _Activity(dff=dff, neuropil=neuropil)
