"""Motion: drift, breathing-like jitter and a smooth non-rigid deformation, and its exact
backward flow."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage as ndi
from scipy import sparse

from ._common import _CAP_MARGIN, _FP_MAX_ITER, _FP_TOL, _MAX_GRADIENT, _N_WAVES, _S_MOTION

if TYPE_CHECKING:
    from ._spec import SyntheticSpec


@dataclass(frozen=True, eq=False)
class _Motion:
    rigid: np.ndarray  # (T, 2) float64: rigid part of the sampling field g (y, x)
    coef: np.ndarray  # (T, 2K, 2) float64: coefficients of the wave basis (cos, sin) for (y, x)
    basis: np.ndarray  # (2K, Ny, Nx) float64: cos/sin waves on the coarse nodes
    spacing: float
    margin: int
    by: sparse.csr_matrix  # (H, Ny) cubic B-spline weights of the node coefficients at rows
    bx: sparse.csr_matrix  # (W, Nx) same for columns
    node_y: np.ndarray  # (Ny, Nx) float64 node index grid (rows)
    node_x: np.ndarray


def _motion_key(spec: SyntheticSpec) -> tuple:
    return (
        spec.seed,
        spec.n_frames,
        spec.height,
        spec.width,
        spec.drift_px,
        spec.jitter_px,
        spec.nonrigid_px,
        spec.max_displacement,
        spec.frame_rate,
    )


def _bspline_matrix(n_fine: int, n_nodes: int, spacing: float, margin: int) -> sparse.csr_matrix:
    """Sparse matrix of cubic B-spline weights (4 per row) at pixels 0..n_fine-1.

    Applied to spline coefficients (``spline_filter(values, mode="mirror")``) of node values it
    evaluates the same interpolating spline as ``map_coordinates(..., mode="mirror")``.
    Sparse products use no multi-threaded BLAS, whose idle spinning would slow the noise thread.
    """
    pos = (np.arange(n_fine, dtype=np.float64) + margin * spacing) / spacing
    eye = np.eye(n_nodes)
    out = np.empty((n_fine, n_nodes))
    for j in range(n_nodes):
        out[:, j] = ndi.map_coordinates(eye[j], [pos], order=3, mode="mirror", prefilter=False)
    out[np.abs(out) < 1e-12] = 0.0
    return sparse.csr_matrix(out.astype(np.float32))


def _smooth_process(
    rng: np.random.Generator, T: int, shape: tuple[int, ...], sigma: float, n_terms: int = 16
) -> np.ndarray:
    """Stationary smooth random series, ``(T, *shape)``, zero mean and unit variance.

    A random-phase sum of cosines whose frequencies follow the spectrum of white noise smoothed
    with a Gaussian of ``sigma`` frames. Unlike filtering white noise it is stationary and has
    unit variance for any length, including recordings shorter than ``sigma``.
    """
    omega = rng.standard_normal((n_terms, *shape)) / (math.sqrt(2.0) * max(sigma, 0.5))
    phase = rng.uniform(0.0, 2 * np.pi, (n_terms, *shape))
    t = np.arange(T, dtype=np.float64).reshape((T,) + (1,) * len(shape))
    out = np.zeros((T, *shape))
    for m in range(n_terms):
        out += np.cos(omega[m] * t + phase[m])
    return out * math.sqrt(2.0 / n_terms)


@functools.lru_cache(maxsize=6)
def _motion(key: tuple) -> _Motion:
    seed, T, H, W, drift_px, jitter_px, nonrigid_px, cap, fps = key
    rng = np.random.default_rng([seed, _S_MOTION])
    t = np.arange(T, dtype=np.float64)

    # slow drift: a few low harmonics over the recording, zero mean, max norm = drift_px
    tau = t / max(T - 1, 1)
    drift = np.zeros((T, 2))
    for j in (1, 2, 3):
        c = rng.standard_normal(2) / j
        phase = rng.uniform(0, 2 * np.pi, 2)
        drift += c[None] * np.sin(np.pi * j * tau[:, None] + phase[None])
    drift -= drift.mean(axis=0)
    peak = float(np.hypot(drift[:, 0], drift[:, 1]).max())
    drift *= drift_px / peak if peak > 1e-9 else 0.0

    # jitter: AR(1) (std 0.8) + breathing oscillation (std 0.6) per axis, scaled by jitter_px
    phi = 0.8
    e = rng.standard_normal((T, 2))
    ar = np.empty((T, 2))
    ar[0] = e[0]
    s = math.sqrt(1 - phi * phi)
    for k in range(1, T):
        ar[k] = phi * ar[k - 1] + s * e[k]
    f_b = rng.uniform(1.5, 3.0) / fps
    direction = rng.standard_normal(2)
    direction /= np.linalg.norm(direction)
    # amplitude 1.2 along a unit direction: variance 0.72 in total, 0.36 per axis on average
    breath = (
        1.2 * np.sin(2 * np.pi * f_b * t + rng.uniform(0, 2 * np.pi))[:, None] * direction[None]
    )
    jitter = jitter_px * (0.8 * ar + breath)
    rigid = -(drift + jitter)  # sampling field; the flow is about +(drift + jitter)

    # non-rigid: K plane waves with slowly varying (cos, sin) coefficient vectors
    K = _N_WAVES
    L = max(H, W)
    lam = np.maximum(rng.uniform(0.4, 1.2, K) * L, 48.0)
    theta = rng.uniform(0, np.pi, K)
    phase0 = rng.uniform(0, 2 * np.pi, K)
    smooth = _smooth_process(rng, T, (2 * K, 2), 0.7 * fps)
    coef = smooth * (nonrigid_px / math.sqrt(2 * K))

    # coarse grid of nodes covering the frame +- (cap + margin)
    spacing = float(np.clip(np.floor(lam.min() / 8.0), 4.0, 16.0))
    margin = int(math.ceil((cap + 2.0) / spacing)) + 4
    ny = int(math.ceil((H - 1) / spacing)) + 1 + 2 * margin
    nx = int(math.ceil((W - 1) / spacing)) + 1 + 2 * margin
    node_y, node_x = np.mgrid[0:ny, 0:nx].astype(np.float64)
    py = (node_y - margin) * spacing
    px = (node_x - margin) * spacing
    basis = np.empty((2 * K, ny, nx))
    for k in range(K):
        arg = 2 * np.pi * (py * math.sin(theta[k]) + px * math.cos(theta[k])) / lam[k] + phase0[k]
        basis[k] = np.cos(arg)
        basis[K + k] = np.sin(arg)
    return _Motion(
        rigid=rigid,
        coef=coef,
        basis=basis,
        spacing=spacing,
        margin=margin,
        by=_bspline_matrix(H, ny, spacing, margin),
        bx=_bspline_matrix(W, nx, spacing, margin),
        node_y=node_y,
        node_x=node_x,
    )


def _solve_fields(
    motion: _Motion, rigid: np.ndarray, coef: np.ndarray, cap: float
) -> tuple[np.ndarray, np.ndarray]:
    """Sampling field g and backward flow w (both (2, H, W) in (y, x) order, float32)."""
    r = np.asarray(rigid, dtype=np.float64).copy()
    n = np.einsum("kc,kyx->cyx", coef, motion.basis)
    s = motion.spacing
    # keep the deformation invertible: limit its gradient
    gy = np.diff(n, axis=1) / s
    gx = np.diff(n, axis=2) / s
    grad = max(
        float(np.sqrt((gy**2).sum(axis=0)).max(initial=0.0)),
        float(np.sqrt((gx**2).sum(axis=0)).max(initial=0.0)),
    )
    if grad > _MAX_GRADIENT:
        n *= _MAX_GRADIENT / grad
    factor = 1.0
    for _attempt in range(8):
        rr = r * factor
        nn = n * factor
        mag = np.sqrt((nn[0] + rr[0]) ** 2 + (nn[1] + rr[1]) ** 2).max()
        if mag > _CAP_MARGIN * cap:
            scale = _CAP_MARGIN * cap / mag
            rr, nn, factor = rr * scale, nn * scale, factor * scale
        coeffs = [ndi.spline_filter(nn[i], order=3, mode="mirror") for i in (0, 1)]
        z = np.zeros_like(nn)
        for _ in range(_FP_MAX_ITER):
            qy = motion.node_y + (z[0] - rr[0]) / s
            qx = motion.node_x + (z[1] - rr[1]) / s
            znew = np.stack(
                [
                    -ndi.map_coordinates(
                        coeffs[i], [qy, qx], order=3, prefilter=False, mode="mirror"
                    )
                    for i in (0, 1)
                ]
            )
            delta = float(np.abs(znew - z).max())
            z = znew
            if delta < _FP_TOL:
                break
        zc = [ndi.spline_filter(z[i], order=3, mode="mirror") for i in (0, 1)]
        full = np.stack(
            [
                motion.by @ (motion.bx @ c.astype(np.float32).T).T
                for c in (coeffs[0], coeffs[1], zc[0], zc[1])
            ]
        )
        g = full[:2]
        g[0] += np.float32(rr[0])
        g[1] += np.float32(rr[1])
        w = full[2:]
        w[0] -= np.float32(rr[0])
        w[1] -= np.float32(rr[1])
        if not math.isfinite(cap) or float(np.sqrt(w[0] ** 2 + w[1] ** 2).max()) <= cap:
            return g, w
        factor *= 0.97
    return g, w
