"""Stage 2: displacement of each recording's temporal average to the centre recording's.

For every recording, against the centre:

1. both temporal averages are smoothed per channel with a spatial Gaussian of ``sigma_smooth``
   (never across channels: pyflowreg applied a scalar sigma to the (H, W, C) array, which also
   blurred the channels into each other) and normalised with the centre's intensity range (per
   the stage-1 ``channel_normalization``);
2. a rigid shift is found by phase correlation (sub-pixel, ``cc_upsample``) of the averages
   smoothed with only ``min(sigma_smooth, 1)`` px: phase correlation whitens the spectrum, so it
   needs the detail that the flow's smoothing removes (pyflowreg correlated the sigma-6 images;
   on 64 px test averages that estimate was off by up to 11 px);
3. the unsmoothed average is shifted by it (content from outside the frame: the centre's
   average), then smoothed and normalised as in 1 (shifting a smoothed image would move its
   reflected border into the frame, which biased the flow by up to 0.07 px in tests);
4. the shifted average is registered to the centre's with the variational flow:
   ``alpha_between``, ``iterations_between``, ``stage2_constancy_assumption``, full resolution
   (``min_level=0``), and the other solver settings (weights, ``eta``, ``a_data``, ...) of the
   stage-1 options, not function defaults (pyflowreg's stage 2 silently used the latter);
5. the result is ``w = residual + rigid``, which is the exact composition here because the rigid
   part is constant.

The centre gets zeros. ``w`` is saved as ``w_to_reference.npz`` with ``u`` (x) and ``v`` (y),
(H, W) float32, in the backward convention ``aligned(y, x) = recording(y + v, x + u)``, plus
``rigid`` = (dx, dy).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ._files import (
    Recording,
    atomic_save_npz,
    center_index,
    discover,
    now,
    read_json,
    update_status,
)
from .config import SessionConfig
from .stage1 import missing_stage1, stage1_options

__all__ = ["SessionAlignment", "run_stage2", "align_average"]

log = logging.getLogger("flowreg_dask.session")

#: Gaussian sigma (px) of the averages for the rigid phase correlation (at most sigma_smooth).
RIGID_SIGMA = 1.0


@dataclasses.dataclass(frozen=True)
class SessionAlignment:
    """Result of stage 2.

    Attributes
    ----------
    recordings : list of Recording
        The session's recordings, sorted.
    center : int
        Index of the centre recording.
    flows : list of ndarray
        (H, W, 2) float32 displacement of each recording to the centre (zeros for the centre).
    averages : list of ndarray
        (H, W, C) float64 temporal averages.
    """

    recordings: list[Recording]
    center: int
    flows: list[np.ndarray]
    averages: list[np.ndarray]

    @property
    def center_name(self) -> str:
        """Name of the centre recording."""
        return self.recordings[self.center].name


def _prepare(avg: np.ndarray, sigma: float, vmin, vmax) -> np.ndarray:
    from ..preprocess import normalize, smooth_image

    c = avg.shape[-1]
    smoothed = smooth_image(avg.astype(np.float32), [[sigma, sigma, 0.0]] * c)
    return smoothed if vmin is None else normalize(smoothed, vmin=vmin, vmax=vmax)


def align_average(
    reference: np.ndarray,
    moving: np.ndarray,
    *,
    config: SessionConfig,
    options: Any = None,
) -> tuple[np.ndarray, tuple[float, float]]:
    """Displacement registering one temporal average onto another (steps 1-5 above).

    Parameters
    ----------
    reference, moving : ndarray
        (H, W, C) temporal averages (the centre's and another recording's).
    config : SessionConfig
        ``sigma_smooth``, ``cc_upsample``, ``alpha_between``, ``iterations_between``,
        ``stage2_constancy_assumption``.
    options : OFOptions, optional
        Stage-1 options (weights, normalisation, other solver settings; default OFOptions()).

    Returns
    -------
    flow : ndarray
        (H, W, 2) float32 backward displacement (u, v).
    rigid : tuple of float
        The rigid part (dx, dy).
    """
    from ..core.params import resolve_params
    from ..core.rigid import estimate_rigid_shift
    from ..core.solver import get_displacement
    from ..core.warp import warp
    from ..options import OFOptions
    from ..preprocess import intensity_range

    options = options if options is not None else OFOptions()
    ref = np.asarray(reference, np.float64)
    mov = np.asarray(moving, np.float64)
    if ref.ndim == 2:
        ref, mov = ref[..., None], mov[..., None]
    if ref.shape != mov.shape:
        raise InvalidInputError(
            f"temporal averages differ in shape: reference {ref.shape}, moving {mov.shape}"
        )
    h, w, c = ref.shape
    ref_s = _prepare(ref, config.sigma_smooth, None, None)
    vmin, vmax = intensity_range(ref_s, mode=options.channel_normalization)
    ref_n = _prepare(ref, config.sigma_smooth, vmin, vmax)
    weight = resolve_params(options).weight_array(h, w, c)
    # phase correlation whitens the spectrum, so it wants the detail that sigma_smooth removes
    # (on the sigma-6 averages of a 64 px field it was off by up to 11 px): light smoothing only
    rs = min(config.sigma_smooth, RIGID_SIGMA)
    dx, dy = estimate_rigid_shift(
        _prepare(ref, rs, vmin, vmax),
        _prepare(mov, rs, vmin, vmax),
        target_hw=(256, 256),
        upsample=config.cc_upsample,
        weight=weight,
    )
    rigid = np.empty((h, w, 2), np.float32)
    rigid[..., 0], rigid[..., 1] = dx, dy
    # shift the unsmoothed average (content from outside the frame: the centre's average), then
    # smooth: smoothing the moving image first would bring its reflected border into the frame
    shifted_raw = warp(mov.astype(np.float32), rigid, fill=ref.astype(np.float32))
    shifted = _prepare(shifted_raw, config.sigma_smooth, vmin, vmax)
    residual = get_displacement(
        ref_n,
        shifted,
        options=options,
        alpha=config.alpha_between,
        iterations=config.iterations_between,
        constancy_assumption=config.stage2_constancy_assumption,
        min_level=0,
        cc_initialization=False,
    )
    return (residual + rigid).astype(np.float32), (float(dx), float(dy))


def _digest(config: SessionConfig, center: Recording, ref: np.ndarray, avg: np.ndarray) -> str:
    h = hashlib.sha256()
    params = (
        center.name,
        config.sigma_smooth,
        config.cc_upsample,
        config.alpha_between,
        config.iterations_between,
        config.stage2_constancy_assumption,
    )
    h.update(repr(params).encode())
    for a in (ref, avg):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:32]


def load_flow(rec: Recording) -> np.ndarray:
    """(H, W, 2) float32 displacement of stage 2 from ``w_to_reference.npz``."""
    with np.load(rec.flow) as f:
        return np.stack([f["u"], f["v"]], axis=-1).astype(np.float32)


def run_stage2(
    config: SessionConfig, *, of_params: dict[str, Any] | None = None
) -> SessionAlignment:
    """Estimate each recording's displacement to the centre recording (see the module docs).

    Parameters
    ----------
    config : SessionConfig
        The session; stage 1 must be done for every recording.
    of_params : dict, optional
        The stage-1 OFOptions overrides (solver settings shared with stage 2).

    Returns
    -------
    SessionAlignment
        Recordings, centre index, displacements and temporal averages.

    Raises
    ------
    InvalidInputError
        Stage 1 is not done for some recording, or the averages differ in shape.
    """
    recs = discover(config)
    missing = missing_stage1(recs)
    if missing:
        raise InvalidInputError(
            f"stage 2 needs the temporal averages of stage 1, missing for: {', '.join(missing)}. "
            "Fix: run stage 1 first (flowreg-dask session run --config FILE --stage 1)."
        )
    ci = center_index(config, recs)
    averages = [np.load(r.average) for r in recs]
    shapes = {a.shape for a in averages}
    if len(shapes) > 1:
        listing = ", ".join(f"{r.name}: {a.shape}" for r, a in zip(recs, averages, strict=True))
        raise InvalidInputError(
            f"the recordings of a session must have the same frame size and channel count "
            f"(H, W, C); found {listing}. Fix: narrow pattern to recordings of one field of view."
        )
    options = stage1_options(config, of_params)
    ref = averages[ci]
    flows = []
    for i, (rec, avg) in enumerate(zip(recs, averages, strict=True)):
        digest = _digest(config, recs[ci], ref, avg)
        entry = read_json(rec.status).get("stage2") or {}
        if (
            config.resume
            and entry.get("state") == "done"
            and entry.get("digest") == digest
            and rec.flow.exists()
        ):
            log.info("stage 2: %s is done, skipped", rec.name)
            flows.append(load_flow(rec))
            continue
        if i == ci:
            flow = np.zeros(avg.shape[:2] + (2,), np.float32)
            rigid = (0.0, 0.0)
        else:
            log.info("stage 2: aligning %s to %s", rec.name, recs[ci].name)
            flow, rigid = align_average(ref, avg, config=config, options=options)
        atomic_save_npz(
            rec.flow, u=flow[..., 0], v=flow[..., 1], rigid=np.asarray(rigid, np.float64)
        )
        update_status(
            rec.status,
            "stage2",
            {
                "state": "done",
                "digest": digest,
                "center": recs[ci].name,
                "rigid_shift_dx_dy": list(rigid),
                "mean_u_v": [float(flow[..., 0].mean()), float(flow[..., 1].mean())],
                "flow": str(rec.flow),
                "finished_at": now(),
            },
        )
        flows.append(flow)
    return SessionAlignment(recordings=recs, center=ci, flows=flows, averages=averages)
