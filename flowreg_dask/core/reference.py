"""Parameters of the reference pre-registration (method spec §2.2).

The frames are smoothed more strongly (sigma + [1, 1, 0.5]), normalised, registered to their own
temporal mean with a stiffer regulariser (alpha + 2), and the reference is the mean of the *raw*
frames warped by those flows (see :func:`flowreg_dask.pipeline.reference.preregistered_reference`).
Unlike the reference implementation the frames are filtered once (no second normalisation and
filtering pass) and averaged in float (no integer truncation).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .params import FlowParams

PREREG_EXTRA_SIGMA = np.array([1.0, 1.0, 0.5])
PREREG_EXTRA_ALPHA = 2.0


def prereg_params(params: FlowParams) -> FlowParams:
    """Parameters of the pre-registration: alpha + 2, no rigid pre-alignment, no GNC."""
    return dataclasses.replace(
        params,
        alpha=(params.alpha[0] + PREREG_EXTRA_ALPHA, params.alpha[1] + PREREG_EXTRA_ALPHA),
        cc_initialization=False,
        gnc_schedule=None,
    )
