"""Backward warping of frames by flow fields, with out-of-bounds fill and valid masks."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError, InvalidOptionError
from ..kernels.cpu import remap as _remap
from ..kernels.cpu import warp as _k
from ._checks import as_hwc

_ORDER = {"cubic": 3, "linear": 1, "nearest": 0}


def interpolation_order(interpolation: str) -> int:
    """Map ``"cubic" | "linear" | "nearest"`` to the kernel's interpolation order."""
    try:
        return _ORDER[str(getattr(interpolation, "value", interpolation)).lower()]
    except KeyError:
        raise InvalidOptionError(
            f"interpolation: expected one of {sorted(_ORDER)}, got {interpolation!r}"
        ) from None


def cast_like(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast float results to ``dtype``; integers are rounded and clipped to the dtype's range."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if dtype.itemsize >= 4:  # float32 cannot hold the bounds exactly (2**31 - 1 rounds up)
            values = np.asarray(values, np.float64)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    if dtype.kind == "b":
        return values > 0.5
    return values.astype(dtype, copy=False)


_F0 = np.float32(0.0)


def _fused_bounds(dtype: np.dtype) -> tuple[bool, np.float32, np.float32] | None:
    """(to_int, lo, hi) for the fused output warp into ``dtype``, or None where it cannot store
    that dtype exactly (float16, bool, integers wider than float32's 24-bit mantissa)."""
    if dtype.kind == "f" and dtype.itemsize >= 4:
        return False, _F0, _F0
    if dtype.kind in "iu" and dtype.itemsize <= 2:
        info = np.iinfo(dtype)
        return True, np.float32(info.min), np.float32(info.max)
    return None


def warp_into(
    img: np.ndarray,
    flow: np.ndarray,
    fill: np.ndarray,
    *,
    order: int,
    out: np.ndarray,
    valid: np.ndarray,
    tmp: np.ndarray | None = None,
) -> None:
    """Warp one frame into ``out`` of any real dtype, in one fused pass where the dtype allows.

    Parameters
    ----------
    img : ndarray
        (H, W, C) float32 frame.
    flow : ndarray
        (H, W, 2) float32 flow (u, v).
    fill : ndarray
        (H, W, C) float32 values of out-of-bounds pixels (the reference).
    order : int
        3 cubic, 1 linear, 0 nearest (:func:`interpolation_order`).
    out : ndarray
        (H, W, C) output: float32/float64 stored as is, 8/16-bit integers rounded half to even
        and clipped (never wrapped); other dtypes go through ``tmp`` and :func:`cast_like`.
    valid : ndarray
        (H, W) uint8, receives 1 where the sample is in bounds.
    tmp : ndarray, optional
        (H, W, C) float32 scratch for the dtypes the fused kernel cannot store.
    """
    fused = _fused_bounds(out.dtype)
    if fused is not None:
        _remap.warp_frame(img, flow, fill, order, fused[0], fused[1], fused[2], out, valid)
        return
    if tmp is None:
        tmp = np.empty(img.shape, np.float32)
    _remap.warp_frame(img, flow, fill, order, False, _F0, _F0, tmp, valid)
    out[...] = cast_like(tmp, out.dtype)


def warp_stack(
    frames: np.ndarray, flows: np.ndarray, fill: np.ndarray, *, order: int, out_dtype
) -> tuple[np.ndarray, np.ndarray]:
    """Warp (T, H, W, C) frames by (T, H, W, 2) flows (or one (1, H, W, 2) flow for all) into
    ``out_dtype`` (see :func:`warp_into`); returns (warped, valid (T, H, W) bool)."""
    t, h, w, nc = frames.shape
    out = np.empty(frames.shape, dtype=out_dtype)
    valid = np.empty((t, h, w), np.uint8)
    tmp = np.empty((h, w, nc), np.float32)
    fill = np.ascontiguousarray(fill, dtype=np.float32)
    for k in range(t):
        warp_into(
            np.ascontiguousarray(frames[k], dtype=np.float32),
            np.ascontiguousarray(flows[k if flows.shape[0] > 1 else 0], dtype=np.float32),
            fill,
            order=order,
            out=out[k],
            valid=valid[k],
            tmp=tmp,
        )
    return out, valid.view(bool)


def warp(
    frames: np.ndarray,
    flow: np.ndarray,
    *,
    fill: np.ndarray | None = None,
    interpolation: str = "cubic",
) -> np.ndarray:
    """Backward-warp frames: ``out(y, x) = frame(y + v(y, x), x + u(y, x))``.

    Parameters
    ----------
    frames : ndarray
        One frame (H, W) / (H, W, C) or a stack (T, H, W, C) (a 3-D array is one frame).
    flow : ndarray
        (H, W, 2) or (T, H, W, 2) float displacement (u, v) in pixels.
    fill : ndarray, optional
        (H, W) / (H, W, C) image for out-of-bounds pixels (the reference); zeros if omitted.
    interpolation : {"cubic", "linear", "nearest"}
        Interpolation of the moving frame (Keys cubic with a = -0.75 by default).

    Returns
    -------
    ndarray
        Warped frames with the input's shape and dtype; integer outputs are rounded and clipped
        to the dtype's range (never wrapped around).
    """
    frames = np.asarray(frames)
    flow = np.asarray(flow)
    order = interpolation_order(interpolation)
    stack = frames.ndim == 4
    fr = frames if stack else as_hwc(frames, "frames")[None]
    fl = flow if flow.ndim == 4 else flow[None]
    if fl.shape[-1] != 2 or fl.shape[1:3] != fr.shape[1:3]:
        raise InvalidInputError(
            f"flow: expected shape (..., {fr.shape[1]}, {fr.shape[2]}, 2) to match frames of "
            f"shape {frames.shape}, got {flow.shape}"
        )
    if fl.shape[0] not in (1, fr.shape[0]):
        raise InvalidInputError(
            f"flow: {fl.shape[0]} flow fields for {fr.shape[0]} frames; give one per frame or one"
        )
    h, w, nc = fr.shape[1:]
    if fill is None:
        fill_f = np.zeros((h, w, nc), np.float32)
    else:
        fill_f = as_hwc(np.asarray(fill), "fill").astype(np.float32)
        if fill_f.shape[:2] != (h, w) or fill_f.shape[2] not in (1, nc):
            raise InvalidInputError(
                f"fill: expected shape ({h}, {w}) or ({h}, {w}, {nc}), got {np.shape(fill)}"
            )
        fill_f = np.ascontiguousarray(np.broadcast_to(fill_f, (h, w, nc)))
    out, _ = warp_stack(fr, fl, fill_f, order=order, out_dtype=frames.dtype)
    if stack:
        return out
    return out[0] if frames.ndim == 3 else out[0, :, :, 0]


def valid_mask(flow: np.ndarray) -> np.ndarray:
    """Boolean mask, True where the backward-warp sample ``(x + u, y + v)`` is inside the frame.

    ``flow`` is (H, W, 2) or (T, H, W, 2); the result drops the last axis.
    """
    flow = np.asarray(flow, dtype=np.float32)
    if flow.shape[-1] != 2 or flow.ndim not in (3, 4):
        raise InvalidInputError(f"flow: expected (H, W, 2) or (T, H, W, 2), got {flow.shape}")
    fl = flow if flow.ndim == 4 else flow[None]
    out = np.empty(fl.shape[:3], np.uint8)
    for t in range(fl.shape[0]):
        _k.valid_mask(
            np.ascontiguousarray(fl[t, ..., 0]), np.ascontiguousarray(fl[t, ..., 1]), out[t]
        )
    out = out.astype(bool)
    return out if flow.ndim == 4 else out[0]


# ---- pyflowreg's names (pyflowreg.core.warping) -----------------------------------------------


def _flow_of(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    u, v = np.asarray(u, np.float32), np.asarray(v, np.float32)
    if u.shape != v.shape or u.ndim != 2:
        raise InvalidInputError(f"u, v: expected two (H, W) arrays, got {u.shape} and {v.shape}")
    return np.stack([u, v], axis=-1)


def imregister_wrapper(
    f2_level: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    f1_level: np.ndarray,
    interpolation_method: str = "cubic",
) -> np.ndarray:
    """pyflowreg's warp of one image: ``f2_level`` (H, W[, C]) backward-warped by (u, v), pixels
    sampled from outside the frame taken from ``f1_level`` (the reference); float32, one channel
    squeezed to (H, W). Unlike pyflowreg, ``"nearest"`` works."""
    f2 = np.asarray(f2_level, np.float32)
    out = warp(
        f2,
        _flow_of(u, v),
        fill=np.asarray(f1_level, np.float32),
        interpolation=interpolation_method,
    )
    return out[..., 0] if out.ndim == 3 and out.shape[2] == 1 else out


def backward_valid_mask(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(H, W) bool: True where the sample (x + u, y + v) lies inside the frame."""
    return valid_mask(_flow_of(u, v))


def compute_batch_valid_masks(w: np.ndarray) -> np.ndarray:
    """(T, H, W) uint8 0/255 valid masks of flows ``w`` (T, H, W, 2), as ``idx.hdf`` holds them."""
    w = np.asarray(w)
    if w.ndim != 4:
        raise InvalidInputError(f"w: expected flows (T, H, W, 2), got {w.shape}")
    return valid_mask(w).astype(np.uint8) * 255
