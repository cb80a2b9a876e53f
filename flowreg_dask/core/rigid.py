"""Rigid sub-pixel pre-alignment by phase correlation (method spec §1.10).

Implemented from the textbook method: normalised cross-power spectrum, integer peak, then
refinement on an upsampled grid around the peak with a matrix-multiply DFT
(Guizar-Sicairos et al., Opt. Lett. 33, 156 (2008)).
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidOptionError
from ..kernels.cpu.resample import resize


def _to_gray(img: np.ndarray, weight: np.ndarray | None) -> np.ndarray:
    if img.ndim == 2:
        return img.astype(np.float32, copy=False)
    n_channels = img.shape[2]
    if weight is None:
        wvec = np.full(n_channels, 1.0 / n_channels, np.float32)
    else:
        w = np.asarray(weight, np.float32)
        # a spatial map (H, W, C) or (H, W) reduces to its mean channel weights
        wvec = w.reshape(-1, n_channels).mean(axis=0) if w.ndim == 3 else np.atleast_1d(w)
        if w.ndim == 2:
            wvec = np.full(n_channels, 1.0 / n_channels, np.float32)
        wvec = wvec / max(float(wvec.sum()), 1e-12)
    return np.tensordot(img.astype(np.float32, copy=False), wvec, axes=([2], [0]))


def _upsampled_dft(spec: np.ndarray, center: np.ndarray, up: int, extent: float) -> np.ndarray:
    ny, nx = spec.shape
    n_out = int(np.ceil(extent * up))
    offs = (np.arange(n_out) - n_out // 2) / up
    sy = center[0] + offs
    sx = center[1] + offs
    fy = np.fft.fftfreq(ny)
    fx = np.fft.fftfreq(nx)
    ky = np.exp(2j * np.pi * sy[:, None] * fy[None, :])
    kx = np.exp(2j * np.pi * fx[:, None] * sx[None, :])
    return (ky @ spec @ kx).real, sy, sx


def estimate_rigid_shift(
    reference: np.ndarray,
    moving: np.ndarray,
    *,
    target_hw: tuple[int, int] = (256, 256),
    upsample: int | None = None,
    weight: np.ndarray | None = None,
    up: int | None = None,
) -> tuple[float, float]:
    """Translation (dx, dy) of ``moving``'s content relative to ``reference``.

    The result follows the backward-flow convention: a constant flow (u, v) = (dx, dy) registers
    ``moving`` onto ``reference``.

    Parameters
    ----------
    reference, moving : ndarray
        (H, W) or (H, W, C) images.
    target_hw : tuple of int
        Working-size cap; larger images are downsampled (antialiased) first.
    upsample : int
        Sub-pixel precision 1/upsample (default 1 = integer shift at working resolution).
    weight : ndarray, optional
        Channel weights (C,) or a spatial weight map (its mean per channel is used).
    up : int, optional
        pyflowreg's name of ``upsample`` (``estimate_rigid_xcorr_2d(..., up=)``).
    """
    if up is not None and upsample is not None and up != upsample:
        raise InvalidOptionError("pass the upsampling once: upsample= or up=")
    upsample = up if upsample is None else upsample
    upsample = 1 if upsample is None else upsample
    ref = _to_gray(reference, weight)
    mov = _to_gray(moving, weight)
    h, w = ref.shape
    th, tw = min(h, target_hw[0]), min(w, target_hw[1])
    if (th, tw) != (h, w):
        ref = resize(ref[:, :, None], th, tw)[:, :, 0]
        mov = resize(mov[:, :, None], th, tw)[:, :, 0]
    win = np.outer(np.hanning(th), np.hanning(tw)).astype(np.float32)
    fr = np.fft.fft2((ref - ref.mean()) * win)
    fm = np.fft.fft2((mov - mov.mean()) * win)
    cross = np.conj(fr) * fm
    cross /= np.maximum(np.abs(cross), 1e-12)
    corr = np.fft.ifft2(cross).real
    py, px = np.unravel_index(int(np.argmax(corr)), corr.shape)
    peak = np.array([py if py <= th // 2 else py - th, px if px <= tw // 2 else px - tw], float)
    if upsample > 1:
        up_corr, sy, sx = _upsampled_dft(cross, peak, upsample, 3.0)
        iy, ix = np.unravel_index(int(np.argmax(up_corr)), up_corr.shape)
        peak = np.array([sy[iy], sx[ix]])
    return float(peak[1] * (w / tw)), float(peak[0] * (h / th))
