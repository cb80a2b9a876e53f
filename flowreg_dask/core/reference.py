"""Parameters of the reference pre-registration (method spec §2.2).

The frames are smoothed more strongly (sigma + [1, 1, 0.5]), normalised, registered to their own
temporal mean with a stiffer regulariser (alpha + 2), and the reference is the mean of the *raw*
frames warped by those flows (see :func:`flowreg_dask.pipeline.reference.preregistered_reference`).
Unlike the reference implementation the frames are filtered once (no second normalisation and
filtering pass) and averaged in float (no integer truncation), and the pre-registration solves the
pyramid down to level :data:`PREREG_MIN_LEVEL` at most (about 34 px across a 256 px frame): the
reference is a mean of hundreds of frames, so the fine levels only fit each frame's noise.
Measured on the synthetic 256x256x1000 benchmark recordings (reference frames 50..499, mean
endpoint error of all final flows, 2 threads), against stopping at level 6:

========  ============================  ============================
preset    1 channel, level 6 -> 9       2 channels, level 6 -> 9
========  ============================  ============================
fast      0.374 -> 0.368 px             0.224 -> 0.214 px
balanced  0.354 -> 0.335 px             0.219 -> 0.196 px
quality   0.377 -> 0.359 px
========  ============================  ============================

(levels 8, 10 and 11 at fast, 1 channel: 0.369, 0.365, 0.368 px), and the reference is built in
1.1-1.3 s instead of 1.6-2.5 s (2 threads). An earlier step, from each preset's own finest level
to level 6, had made the quality reference 9x faster (51 -> 6 s).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .params import FlowParams
from .pyramid import pyramid_plan

PREREG_EXTRA_SIGMA = np.array([1.0, 1.0, 0.5])
PREREG_EXTRA_ALPHA = 2.0
#: finest pyramid level of the pre-registration (0 = full resolution); coarser presets keep theirs
PREREG_MIN_LEVEL = 9


def prereg_params(
    params: FlowParams, *, height: int | None = None, width: int | None = None
) -> FlowParams:
    """Parameters of the pre-registration: alpha + 2, pyramid down to level
    ``max(min_level, PREREG_MIN_LEVEL)``, no rigid pre-alignment, no GNC.

    Given the frame size, a level deeper than that frame's pyramid is replaced by its deepest
    level without a warning (the user did not ask for it; a too deep ``min_level`` of the user's
    own is reported by the registration itself).
    """
    level = max(params.min_level, PREREG_MIN_LEVEL)
    if height is not None and width is not None:
        plan = pyramid_plan(height, width, eta=params.eta, levels=params.levels, min_level=level)
        level = min(level, plan[-1].i)
    return dataclasses.replace(
        params,
        min_level=level,
        alpha=(params.alpha[0] + PREREG_EXTRA_ALPHA, params.alpha[1] + PREREG_EXTRA_ALPHA),
        cc_initialization=False,
        gnc_schedule=None,
    )
