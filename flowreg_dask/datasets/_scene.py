"""The field of view: neuropil texture, somata, vessels, neurites, vignetting."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage as ndi
from scipy import sparse

from ._common import _CELL_RADIUS, _PSF_SIGMA, _S_SCENE, _SPLINE_MODE, _functional_channels

if TYPE_CHECKING:
    from ._spec import SyntheticSpec


@dataclass(frozen=True, eq=False)
class _Scene:
    canvas: np.ndarray  # (C, Hc, Wc) float32 resting intensity (relative units)
    coef: np.ndarray  # (C, Hc, Wc) float32 cubic-spline coefficients of canvas
    neuropil_coef: dict  # channel -> (Hc, Wc) float32 spline coefficients of the neuropil part
    # channel -> csr (Hc*Wc, N): spline coefficients of cell footprints times brightness
    footprints: dict
    n_cells: int


def _scene_key(spec: SyntheticSpec) -> tuple:
    return (spec.seed, spec.height, spec.width, spec.n_channels, spec.cells_in_view, spec.pad)


def _normalized_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    x = ndi.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return x / max(float(x.std()), 1e-12)


def _curves(
    rng: np.random.Generator,
    shape: tuple[int, int],
    n: int,
    length: tuple[float, float],
    wiggle: float,
) -> list[np.ndarray]:
    """Smooth random curves as arrays of points (y, x) every 0.5 px."""
    out = []
    step = 0.5
    for _ in range(n):
        L = rng.uniform(*length)
        m = max(int(L / step / 2), 2)
        start = rng.uniform((0.0, 0.0), shape)
        angle = rng.uniform(0, 2 * np.pi)
        halves = []
        for direction in (1.0, -1.0):
            turn = ndi.gaussian_filter1d(rng.standard_normal(m), 20.0 / step) * wiggle
            theta = angle + np.cumsum(turn)
            d = np.stack([np.sin(theta), np.cos(theta)], axis=1) * step * direction
            halves.append(start + np.cumsum(d, axis=0))
        out.append(np.concatenate([halves[1][::-1], start[None], halves[0]]))
    return out


def _splat(img: np.ndarray, pts: np.ndarray, weight: float) -> None:
    """Add ``weight`` per point to ``img`` with bilinear splatting."""
    Hc, Wc = img.shape
    y, x = pts[:, 0], pts[:, 1]
    keep = (y >= 0) & (y < Hc - 1) & (x >= 0) & (x < Wc - 1)
    y, x = y[keep], x[keep]
    y0, x0 = np.floor(y).astype(np.intp), np.floor(x).astype(np.intp)
    fy, fx = y - y0, x - x0
    for dy, dx, wgt in (
        (0, 0, (1 - fy) * (1 - fx)),
        (0, 1, (1 - fy) * fx),
        (1, 0, fy * (1 - fx)),
        (1, 1, fy * fx),
    ):
        np.add.at(img, (y0 + dy, x0 + dx), weight * wgt)


def _line_image(shape, curves, weights, sigma: float) -> np.ndarray:
    """Blurred curves with unit peak across a straight line of weight 1."""
    img = np.zeros(shape)
    for pts, wgt in zip(curves, weights, strict=True):
        _splat(img, pts, 0.5 * wgt)
    return ndi.gaussian_filter(img, sigma, mode="constant") * (math.sqrt(2 * math.pi) * sigma)


@functools.lru_cache(maxsize=4)
def _scene(key: tuple) -> _Scene:
    seed, H, W, C, n_view, pad = key
    rng = np.random.default_rng([seed, _S_SCENE])
    Hc, Wc = H + 2 * pad, W + 2 * pad
    shape = (Hc, Wc)
    area = Hc * Wc
    functional = list(_functional_channels(C))

    # neuropil texture (positive, band-limited)
    fine = _normalized_noise(rng, shape, 1.5)
    mid = _normalized_noise(rng, shape, 5.0)
    large = _normalized_noise(rng, shape, 18.0)

    # vessels (binned by width), dark in all channels; a quarter bright in the structural one
    n_vessels = int(np.clip(round(area / 25000), 1, 40))
    vessels = _curves(rng, shape, n_vessels, (0.8 * max(Hc, Wc), 2.0 * max(Hc, Wc)), 0.02)
    v_sigma = rng.uniform(1.5, 4.5, n_vessels)
    v_depth = rng.uniform(0.5, 0.9, n_vessels)
    v_bright = rng.random(n_vessels) < 0.25
    widths = (1.5, 2.5, 3.5, 4.5)
    v_bin = np.argmin(np.abs(v_sigma[:, None] - np.array(widths)[None]), axis=1)
    dark_all = np.zeros(shape)
    dark_struct = np.zeros(shape)
    bright_struct = np.zeros(shape)
    for b, sig in enumerate(widths):
        idx = np.flatnonzero(v_bin == b)
        if idx.size == 0:
            continue
        dark_all += _line_image(shape, [vessels[i] for i in idx], v_depth[idx], sig)
        nb = [i for i in idx if not v_bright[i]]
        if nb:
            dark_struct += _line_image(shape, [vessels[i] for i in nb], v_depth[nb], sig)
        br = [i for i in idx if v_bright[i]]
        if br:
            bright_struct += _line_image(shape, [vessels[i] for i in br], v_depth[br], sig)
    shadow_func = np.exp(-1.6 * dark_all)
    shadow_struct = np.exp(-1.6 * dark_struct)
    bright_struct = 0.9 * (1.0 - np.exp(-2.0 * bright_struct))

    # neurites: thin short processes
    n_proc = int(round(area / 2500))
    procs = _curves(rng, shape, n_proc, (15.0, 70.0), 0.06)
    p_amp = rng.uniform(0.5, 1.0, n_proc)
    neurites = _line_image(shape, procs, p_amp, 0.8)

    # slight vignetting, centred on the field of view (in scene coordinates, so it moves along)
    yy, xx = np.mgrid[0:Hc, 0:Wc].astype(np.float64)
    r2 = ((yy - pad - (H - 1) / 2) ** 2 + (xx - pad - (W - 1) / 2) ** 2) / (
        (H / 2) ** 2 + (W / 2) ** 2
    )
    vignette = np.clip(1.0 - 0.15 * r2, 0.5, 1.0)
    del yy, xx

    mods: dict[int, np.ndarray] = {}
    backgrounds: dict[int, np.ndarray] = {}
    neuropils: dict[int, np.ndarray] = {}
    for c in range(C):
        if c in functional:
            own = _normalized_noise(rng, shape, 1.5)
            texture = 0.6 * fine + 0.8 * own
            neuropil = 0.10 * np.exp(0.3 * texture + 0.25 * mid + 0.15 * large) + 0.08 * neurites
            mods[c] = shadow_func * vignette
            neuropils[c] = ndi.gaussian_filter(neuropil * mods[c], _PSF_SIGMA, mode="reflect")
            backgrounds[c] = neuropils[c]
        else:
            neuropil = 0.14 * np.exp(0.3 * fine + 0.25 * mid + 0.15 * large) + 0.25 * neurites
            mods[c] = shadow_struct * vignette
            backgrounds[c] = ndi.gaussian_filter(
                neuropil * mods[c] + bright_struct * vignette, _PSF_SIGMA, mode="reflect"
            )

    # somata: soft ellipses, a third ring-shaped (dark nucleus), not inside vessels
    n_target = int(round(n_view * area / (H * W)))
    cy, cx, cr = _place_cells(rng, shape, n_target, dark_all)
    N = cy.size
    axes = cr[:, None] * rng.uniform(0.85, 1.15, (N, 2))
    angle = rng.uniform(0, np.pi, N)
    ring = rng.random(N) < 1.0 / 3.0
    b_struct = np.clip(rng.lognormal(math.log(0.9), 0.3, N), 0.4, 2.0)
    b_func = {c: np.clip(rng.lognormal(math.log(0.25), 0.35, N), 0.08, 0.8) for c in functional}

    canvas = np.stack([backgrounds[c] for c in range(C)]).astype(np.float64)
    rows: dict[int, list] = {c: [] for c in functional}
    cols: dict[int, list] = {c: [] for c in functional}
    vals: dict[int, list] = {c: [] for c in functional}
    for i in range(N):
        half = int(math.ceil(axes[i].max() * 1.1 + 3 * _PSF_SIGMA + 10))
        y0, y1 = max(int(cy[i]) - half, 0), min(int(cy[i]) + half + 2, Hc)
        x0, x1 = max(int(cx[i]) - half, 0), min(int(cx[i]) + half + 2, Wc)
        if y1 <= y0 or x1 <= x0:
            continue
        py, px = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        dy, dx = py - cy[i], px - cx[i]
        ca, sa = math.cos(angle[i]), math.sin(angle[i])
        u = (dx * ca + dy * sa) / axes[i, 0]
        v = (-dx * sa + dy * ca) / axes[i, 1]
        rho = np.sqrt(u * u + v * v)
        rm = math.sqrt(axes[i, 0] * axes[i, 1])
        fp = 0.5 * (1.0 - np.tanh((rho - 1.0) * rm / 0.8))
        if ring[i]:
            fp *= 1.0 - 0.8 * 0.5 * (1.0 - np.tanh((rho - 0.55) * rm / 0.8))
        else:
            fp *= 1.0 - 0.15 * np.minimum(rho, 1.0) ** 2
        for c in range(C):
            blurred = ndi.gaussian_filter(fp * mods[c][y0:y1, x0:x1], _PSF_SIGMA, mode="constant")
            bright = b_func[c][i] if c in functional else b_struct[i]
            canvas[c, y0:y1, x0:x1] += bright * blurred
            if c in functional:
                pre = ndi.spline_filter(blurred, order=3, mode=_SPLINE_MODE) * bright
                keep = np.abs(pre) > 1e-6 * np.abs(pre).max()
                ky, kx = np.nonzero(keep)
                rows[c].append((ky + y0) * Wc + (kx + x0))
                cols[c].append(np.full(ky.size, i, dtype=np.int64))
                vals[c].append(pre[keep])

    canvas32 = canvas.astype(np.float32)
    coef = np.stack(
        [
            ndi.spline_filter(canvas[c], order=3, mode=_SPLINE_MODE, output=np.float64)
            for c in range(C)
        ]
    ).astype(np.float32)
    neuropil_coef = {
        c: ndi.spline_filter(neuropils[c], order=3, mode=_SPLINE_MODE).astype(np.float32)
        for c in functional
    }
    footprints = {}
    for c in functional:
        if rows[c]:
            r = np.concatenate(rows[c])
            k = np.concatenate(cols[c])
            val = np.concatenate(vals[c]).astype(np.float32)
        else:
            r = k = np.zeros(0, dtype=np.int64)
            val = np.zeros(0, dtype=np.float32)
        footprints[c] = sparse.csr_matrix((val, (r, k)), shape=(Hc * Wc, N), dtype=np.float32)
    return _Scene(
        canvas=canvas32, coef=coef, neuropil_coef=neuropil_coef, footprints=footprints, n_cells=N
    )


def _place_cells(rng, shape, n, vessel_density):
    Hc, Wc = shape
    ay = np.zeros(n)
    ax = np.zeros(n)
    ar = np.zeros(n)
    k = 0
    for _ in range(30 * n):
        if k >= n:
            break
        y, x = rng.uniform(0, Hc), rng.uniform(0, Wc)
        r = rng.uniform(*_CELL_RADIUS)
        if vessel_density[min(int(y), Hc - 1), min(int(x), Wc - 1)] > 0.25:
            continue
        if k and np.any(np.hypot(ay[:k] - y, ax[:k] - x) < 0.9 * (ar[:k] + r)):
            continue
        ay[k], ax[k], ar[k] = y, x, r
        k += 1
    return ay[:k], ax[:k], ar[:k]
