"""Synthetic 2-photon recordings with known ground-truth motion.

The generator builds a realistic-looking two-photon calcium imaging field of view (neuropil
texture, somata with GCaMP-like rings, blood-vessel shadows, neurites, slight vignetting, a
point-spread-function blur), moves it with slow drift, breathing-like rigid jitter and a smooth
non-rigid deformation, adds calcium transients to the functional channels and Poisson-Gaussian
detector noise, and returns the exact backward displacement field of every frame.

Conventions
-----------
* Movies are ``(T, H, W, C)``: time, rows (y), columns (x), channels.
* Flow fields are ``(..., H, W, 2)`` float32 with ``[..., 0] = u`` (horizontal, x) and
  ``[..., 1] = v`` (vertical, y), in pixels.
* The flow is the *backward* flow of the registration: for every frame ``t``::

      registered(y, x) = movie_t(y + v(y, x), x + u(y, x)) == reference(y, x)

  up to noise, calcium activity and interpolation. Content translated by ``+dx`` to the
  right therefore has ``u == +dx``.

How frames are made
-------------------
A smooth *sampling* field ``g_t`` is built per frame (rigid part plus a cubic-spline
non-rigid part on a coarse grid). The clean frame is ``movie_t(p) = scene(p + g_t(p))``, sampled
with :func:`scipy.ndimage.map_coordinates` (cubic spline) from a scene that is larger than the
field of view, so that content really moves in from outside the frame. The backward flow solves
``w(p) + g(p + w(p)) = 0``; it is found by fixed-point iteration ``w <- -g(p + w)`` on the
coarse grid (to 1e-5 px) and interpolated with the same cubic spline. Everything is determined by
``spec`` and the frame index only, so any chunk of frames can be generated independently.

Only numpy and scipy are used here (no code of :mod:`flowreg_dask` besides its error classes), so
the ground truth does not depend on the registration code it is used to test.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import pathlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from scipy import sparse

from flowreg_dask.errors import InvalidOptionError

__all__ = [
    "SyntheticSpec",
    "SyntheticRecording",
    "synthetic_recording",
    "synthetic_pair",
    "save_synthetic_recording",
    "spec_from_json",
]

#: Output dtypes that :class:`SyntheticSpec` accepts.
SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "float32")

# Detector defaults (gain [ADU / photon], read noise [ADU], baseline offset [ADU]) per dtype.
_DETECTOR_DEFAULTS: dict[str, tuple[float, float, float]] = {
    "uint16": (80.0, 20.0, 100.0),
    "int16": (80.0, 20.0, 100.0),
    "float32": (80.0, 20.0, 100.0),
    "uint8": (1.0, 1.5, 4.0),
}

# Independent random streams (all seeded with ``[seed, stream, ...]``).
_S_SCENE = 11
_S_MOTION = 23
_S_ACTIVITY = 37
_S_NOISE = 41

_PSF_SIGMA = 0.75  # lateral PSF blur (px)
_N_WAVES = 4  # number of plane waves of the non-rigid deformation
_MAX_GRADIENT = 0.5  # cap on |grad g| of the non-rigid part (keeps the warp invertible)
_CAP_MARGIN = 0.97  # |g| on the coarse grid is kept below this fraction of max_displacement
_FP_TOL = 1e-5  # fixed-point tolerance (px)
_FP_MAX_ITER = 60
_SPLINE_MODE = "reflect"
_CELL_RADIUS = (4.0, 8.0)
_CELL_DENSITY = 1.0 / 600.0  # somata per px^2
_TAU_DECAY_S = (0.5, 1.0)
_TAU_RISE_S = 0.05
_DFF_MAX = 4.0


def _fail(name: str, expected: str, value: Any) -> InvalidOptionError:
    return InvalidOptionError(f"SyntheticSpec: {name} must be {expected}, got {value!r}")


def _as_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise _fail(name, f"an integer >= {minimum}", value)
    if int(value) < minimum:
        raise _fail(name, f"an integer >= {minimum}", value)
    return int(value)


def _as_float(name: str, value: Any, minimum: float | None = None, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise _fail(name, "a finite number", value)
    out = float(value)
    if not math.isfinite(out):
        raise _fail(name, "a finite number", value)
    if minimum is not None and (out < minimum or (strict and out == minimum)):
        op = ">" if strict else ">="
        raise _fail(name, f"a finite number {op} {minimum}", value)
    return out


@dataclass(frozen=True, kw_only=True)
class SyntheticSpec:
    """All parameters of a synthetic two-photon recording.

    The spec is immutable and hashable; generating from the same spec always gives the same data.
    Construction is keyword-only and every parameter is validated (``ValueError`` naming the
    parameter, of class :class:`flowreg_dask.errors.InvalidOptionError`).

    Parameters
    ----------
    n_frames, height, width : int
        Recording size (``n_frames >= 1``, ``height, width >= 8``).
    n_channels : int
        Number of channels. With one channel it is a functional (GCaMP-like) channel; with two or
        more, channel 0 is a static structural channel (tdTomato-like: bright somata, no activity)
        and channels 1.. are functional channels, each with its own brightness and activity.
    seed : int
        Seed of everything (scene, motion, activity and noise; independent streams).
    n_cells : int or None
        Number of somata in the field of view; default ``height * width / 600``.
    drift_px : float
        Maximum amplitude of the slow drift over the recording (a smooth random curve).
    jitter_px : float
        Standard deviation (per axis) of the rigid per-frame jitter: an AR(1) process plus a
        breathing-like oscillation of 1.5-3 Hz.
    nonrigid_px : float
        RMS magnitude of the smooth non-rigid deformation (four plane waves of wavelength
        0.4-1.2 times the image size, at least 48 px, with slowly varying coefficients).
    max_displacement : float
        Hard cap on the magnitude of the flow; frames whose motion would exceed it are scaled
        down. Also sets how far outside the field of view the scene extends.
    noise : bool
        Add Poisson shot noise and Gaussian read noise.
    activity : bool
        Add calcium transients to the functional channels. With ``False`` every frame is a pure
        warp of :meth:`template`.
    frame_rate : float
        Frame rate in Hz; sets the time scales of calcium transients, breathing and motion.
    photons_per_unit : float
        Expected photon count per pixel and frame of an average resting soma of the structural
        channel (neuropil is ~0.1-0.15 of it, functional somata at rest ~0.25).
    gain : float or None
        Detector gain in ADU per photon. Default 80 (uint16, int16, float32) or 1 (uint8).
    read_noise : float or None
        Standard deviation of the Gaussian read noise in ADU. Default 20 or 1.5 (uint8).
    baseline : float or None
        Dark offset in ADU added to every pixel. Default 100 or 4 (uint8).
    dtype : str
        Output dtype: ``"uint16"`` (default), ``"uint8"``, ``"int16"`` or ``"float32"``. Integer
        outputs are rounded and clipped to the dtype range (saturation, never wrap-around).

    Notes
    -----
    Intensities of the default uint16 setting: background ~800-1500 ADU, resting somata
    ~2000-8000 ADU, the brightest structures and active cells ~10000-20000 ADU.
    """

    n_frames: int = 200
    height: int = 256
    width: int = 256
    n_channels: int = 2
    seed: int = 0
    n_cells: int | None = None
    drift_px: float = 3.0
    jitter_px: float = 1.0
    nonrigid_px: float = 1.5
    max_displacement: float = 7.0
    noise: bool = True
    activity: bool = True
    frame_rate: float = 30.0
    photons_per_unit: float = 100.0
    gain: float | None = None
    read_noise: float | None = None
    baseline: float | None = None
    dtype: str = "uint16"

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        put("n_frames", _as_int("n_frames", self.n_frames, 1))
        put("height", _as_int("height", self.height, 8))
        put("width", _as_int("width", self.width, 8))
        put("n_channels", _as_int("n_channels", self.n_channels, 1))
        if self.n_channels > 64:
            raise _fail("n_channels", "at most 64", self.n_channels)
        put("seed", _as_int("seed", self.seed, 0))
        if self.n_cells is not None:
            put("n_cells", _as_int("n_cells", self.n_cells, 0))
        put("drift_px", _as_float("drift_px", self.drift_px, 0.0))
        put("jitter_px", _as_float("jitter_px", self.jitter_px, 0.0))
        put("nonrigid_px", _as_float("nonrigid_px", self.nonrigid_px, 0.0))
        put("max_displacement", _as_float("max_displacement", self.max_displacement, 0.0, True))
        if self.max_displacement > 100:
            raise _fail("max_displacement", "at most 100 px", self.max_displacement)
        for name in ("noise", "activity"):
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise _fail(name, "a bool", value)
            put(name, bool(value))
        put("frame_rate", _as_float("frame_rate", self.frame_rate, 0.0, True))
        put("photons_per_unit", _as_float("photons_per_unit", self.photons_per_unit, 0.0, True))
        if self.gain is not None:
            put("gain", _as_float("gain", self.gain, 0.0, True))
        if self.read_noise is not None:
            put("read_noise", _as_float("read_noise", self.read_noise, 0.0))
        if self.baseline is not None:
            put("baseline", _as_float("baseline", self.baseline))
        try:
            name = np.dtype(self.dtype).name
        except TypeError:
            name = None
        if name not in SUPPORTED_DTYPES:
            raise _fail("dtype", f"one of {SUPPORTED_DTYPES}", self.dtype)
        put("dtype", name)

    # ------------------------------------------------------------------ derived values
    @property
    def cells_in_view(self) -> int:
        """Number of somata in the field of view (``n_cells`` or its default)."""
        if self.n_cells is not None:
            return self.n_cells
        return int(round(self.height * self.width * _CELL_DENSITY))

    @property
    def detector(self) -> tuple[float, float, float]:
        """Effective ``(gain, read_noise, baseline)`` in ADU after applying dtype defaults."""
        gain, read, base = _DETECTOR_DEFAULTS[self.dtype]
        return (
            gain if self.gain is None else self.gain,
            read if self.read_noise is None else self.read_noise,
            base if self.baseline is None else self.baseline,
        )

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """Movie shape ``(T, H, W, C)``."""
        return (self.n_frames, self.height, self.width, self.n_channels)

    @property
    def pad(self) -> int:
        """Margin (px) by which the scene extends beyond the field of view."""
        return int(math.ceil(self.max_displacement)) + 6

    def to_dict(self) -> dict[str, Any]:
        """Return the parameters as a JSON-serialisable dict (``SyntheticSpec(**d)`` inverts)."""
        return dataclasses.asdict(self)

    # ------------------------------------------------------------------ generation
    def template(self) -> np.ndarray:
        """Clean reference frame.

        Returns
        -------
        numpy.ndarray
            ``(H, W, C)`` float32, in the intensity units (ADU) of the movie, without noise and
            with all cells at rest. Integer dtypes are clipped to the dtype range (not rounded).
        """
        scene = _scene(_scene_key(self))
        p = self.pad
        rel = scene.canvas[:, p : p + self.height, p : p + self.width]
        gain, _, base = self.detector
        out = np.moveaxis(rel, 0, -1) * np.float32(gain * self.photons_per_unit) + np.float32(base)
        return _clip_to_dtype(out, self.dtype).astype(np.float32)

    def frames(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Generate frames ``[start, stop)``.

        Each frame depends only on the spec and its index, so chunks agree with each other:
        ``frames(0, 100)[0][k] == frames(50, 150)[0][k - 50]``. Memory is bounded by the chunk
        (plus a cached scene of a few full-size images).

        Parameters
        ----------
        start, stop : int
            Frame range, ``0 <= start <= stop <= n_frames``.

        Returns
        -------
        movie : numpy.ndarray
            ``(stop - start, H, W, C)`` in ``dtype``.
        flow : numpy.ndarray
            ``(stop - start, H, W, 2)`` float32 backward flow ``(u, v)``.
        """
        if isinstance(start, bool) or not isinstance(start, (int, np.integer)):
            raise InvalidOptionError(f"frames: start must be an integer, got {start!r}")
        if isinstance(stop, bool) or not isinstance(stop, (int, np.integer)):
            raise InvalidOptionError(f"frames: stop must be an integer, got {stop!r}")
        start, stop = int(start), int(stop)
        if not 0 <= start <= self.n_frames:
            raise InvalidOptionError(
                f"frames: start must be in [0, {self.n_frames}] (n_frames), got {start}"
            )
        if not start <= stop <= self.n_frames:
            raise InvalidOptionError(
                f"frames: stop must be in [start={start}, n_frames={self.n_frames}], got {stop}"
            )
        n = stop - start
        H, W, C = self.height, self.width, self.n_channels
        movie = np.empty((n, H, W, C), dtype=self.dtype)
        flow = np.empty((n, H, W, 2), dtype=np.float32)
        if n == 0:
            return movie, flow
        scene = _scene(_scene_key(self))
        motion = _motion(_motion_key(self))
        act = _activity(_activity_key(self, scene.n_cells)) if _has_activity(self) else None

        def detect(i: int, clean: np.ndarray, t: int) -> None:
            movie[i] = _detect(self, clean, t)

        # The detector noise (numpy's Poisson sampler releases the GIL) of frame i runs in a
        # helper thread while frame i + 1 is warped; at most two frames are in flight. Results
        # do not depend on it: every frame has its own random stream.
        threaded = n > 1 and self.noise and H * W >= 128 * 128
        with ThreadPoolExecutor(max_workers=1) if threaded else _Inline() as pool:
            pending: deque[Future] = deque()
            for i, t in enumerate(range(start, stop)):
                g, w = _solve_fields(motion, motion.rigid[t], motion.coef[t], self.max_displacement)
                flow[i, ..., 0] = w[1]
                flow[i, ..., 1] = w[0]
                clean = _render(self, scene, g, act, t)
                pending.append(pool.submit(detect, i, clean, t))
                while len(pending) > 1:
                    pending.popleft().result()
            while pending:
                pending.popleft().result()
        return movie, flow


@dataclass(frozen=True, eq=False)
class SyntheticRecording:
    """A generated recording with its ground truth.

    Attributes
    ----------
    movie : numpy.ndarray
        ``(T, H, W, C)`` in ``spec.dtype``, with detector noise when ``spec.noise``.
    flow : numpy.ndarray
        ``(T, H, W, 2)`` float32 ground-truth backward flow ``(u, v)``.
    reference : numpy.ndarray
        ``(H, W, C)`` float32 clean template (:meth:`SyntheticSpec.template`).
    spec : SyntheticSpec
        The parameters it was generated from.
    """

    movie: np.ndarray
    flow: np.ndarray
    reference: np.ndarray
    spec: SyntheticSpec


def synthetic_recording(**kwargs: Any) -> SyntheticRecording:
    """Generate a whole synthetic recording in memory.

    Parameters
    ----------
    **kwargs
        Any :class:`SyntheticSpec` parameter (e.g. ``n_frames=50, height=128, seed=3``).

    Returns
    -------
    SyntheticRecording
        Movie, ground-truth flow, clean reference and the spec.

    Examples
    --------
    >>> rec = synthetic_recording(n_frames=10, height=64, width=64, n_channels=1)
    >>> rec.movie.shape, rec.flow.shape
    ((10, 64, 64, 1), (10, 64, 64, 2))
    """
    spec = SyntheticSpec(**kwargs)
    movie, flow = spec.frames(0, spec.n_frames)
    return SyntheticRecording(movie=movie, flow=flow, reference=spec.template(), spec=spec)


def synthetic_pair(
    *,
    height: int = 128,
    width: int = 128,
    n_channels: int = 1,
    seed: int = 0,
    kind: str = "nonrigid",
    shift: tuple[float, float] = (1.5, -2.5),
    dtype: str = "float32",
    noise: bool = False,
    **spec_options: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One reference/moving pair with its exact flow, for engine tests.

    Parameters
    ----------
    height, width, n_channels, seed, dtype, noise
        As in :class:`SyntheticSpec` (no calcium activity in a pair).
    kind : {"nonrigid", "translation"}
        ``"translation"``: the moving frame is the template translated by ``shift``:
        ``moving(y, x) = reference(y - dy, x - dx)`` (content moved by ``(+dy, +dx)``) and the
        flow is exactly constant ``u = dx, v = dy``. ``"nonrigid"``: the same translation plus a
        smooth deformation of RMS ``nonrigid_px`` (default 1.5 px).
    shift : (float, float)
        Translation ``(dy, dx)`` in pixels.
    **spec_options
        Further :class:`SyntheticSpec` parameters (e.g. ``nonrigid_px``, ``n_cells``).

    Returns
    -------
    reference : numpy.ndarray
        ``(H, W, C)`` clean template (float32 values; cast to ``dtype``).
    moving : numpy.ndarray
        ``(H, W, C)`` in ``dtype``.
    flow : numpy.ndarray
        ``(H, W, 2)`` float32 backward flow: ``moving(p + flow(p)) ~ reference(p)``.
    """
    if kind not in ("nonrigid", "translation"):
        raise InvalidOptionError(
            f"synthetic_pair: kind must be 'nonrigid' or 'translation', got {kind!r}"
        )
    try:
        dy, dx = (float(s) for s in shift)
    except (TypeError, ValueError):
        raise InvalidOptionError(f"synthetic_pair: shift must be (dy, dx), got {shift!r}") from None
    if not (math.isfinite(dy) and math.isfinite(dx)):
        raise InvalidOptionError(f"synthetic_pair: shift must be finite, got {shift!r}")
    for name in ("n_frames", "drift_px", "jitter_px", "activity"):
        if name in spec_options:
            raise InvalidOptionError(f"synthetic_pair: {name} cannot be set for a pair")
    nonrigid = float(spec_options.get("nonrigid_px", 1.5)) if kind == "nonrigid" else 0.0
    spec_options["nonrigid_px"] = nonrigid
    spec_options.setdefault("max_displacement", math.hypot(dy, dx) + 4.0 * nonrigid + 2.0)
    spec = SyntheticSpec(
        n_frames=1,
        height=height,
        width=width,
        n_channels=n_channels,
        seed=seed,
        drift_px=0.0,
        jitter_px=0.0,
        activity=False,
        noise=noise,
        dtype=dtype,
        **spec_options,
    )
    scene = _scene(_scene_key(spec))
    motion = _motion(_motion_key(spec))
    rigid = np.array([-dy, -dx], dtype=np.float64)
    coef = motion.coef[0] if kind == "nonrigid" else np.zeros_like(motion.coef[0])
    g, w = _solve_fields(motion, rigid, coef, math.inf)
    flow = np.empty((height, width, 2), dtype=np.float32)
    if kind == "translation":
        flow[..., 0] = np.float32(dx)
        flow[..., 1] = np.float32(dy)
    else:
        flow[..., 0] = w[1]
        flow[..., 1] = w[0]
    moving = _detect(spec, _render(spec, scene, g, None, 0), 0)
    reference = _quantize(spec.template(), spec.dtype)
    return reference, moving, flow


# ---------------------------------------------------------------------------------- file output


def _sidecar_path(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(path.name + ".truth.json")


def _flow_npy_path(path: pathlib.Path) -> pathlib.Path:
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return path.with_name(stem + ".flow.npy")


def save_synthetic_recording(
    path: str | os.PathLike[str],
    *,
    spec: SyntheticSpec,
    chunk_frames: int = 200,
    save_flow: bool = True,
) -> pathlib.Path:
    """Generate a recording chunk by chunk and stream it to disk.

    Parameters
    ----------
    path : str or os.PathLike
        Output file; the suffix picks the format:

        * ``.tif`` / ``.tiff``: one page per frame, ``(H, W)`` for one channel, else contiguous
          ``(H, W, C)`` pages (``minisblack``) with axes metadata, so that ``tifffile.imread``
          returns ``(T, H, W)`` or ``(T, H, W, C)``. BigTIFF when larger than 2 GB.
        * ``.h5`` / ``.hdf5``: datasets ``"mov"`` ``(T, H, W, C)`` and ``"flow"``
          ``(T, H, W, 2)``.
        * ``.npy``: the movie ``(T, H, W, C)``.

        For TIFF and NPY the flow goes to ``<stem>.flow.npy`` next to it.
    spec : SyntheticSpec
        What to generate.
    chunk_frames : int
        Frames generated at a time. Peak memory is about
        ``chunk_frames * H * W * (C * itemsize + 8)`` bytes (the 8 for the flow).
    save_flow : bool
        Also write the ground-truth flow (8 bytes per pixel and frame).

    Returns
    -------
    pathlib.Path
        ``path``. A sidecar ``<path>.truth.json`` holds the spec (see :func:`spec_from_json`)
        and the names of the written files.
    """
    if not isinstance(spec, SyntheticSpec):
        raise InvalidOptionError(
            f"save_synthetic_recording: spec must be a SyntheticSpec, got {type(spec).__name__}"
        )
    chunk_frames = _as_int("chunk_frames", chunk_frames, 1)
    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".tif", ".tiff", ".h5", ".hdf5", ".npy"):
        raise InvalidOptionError(
            f"save_synthetic_recording: unsupported suffix {path.suffix!r} of path; "
            "use .tif, .tiff, .h5, .hdf5 or .npy"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    T, H, W, C = spec.shape
    chunks = [(s, min(s + chunk_frames, T)) for s in range(0, T, chunk_frames)]
    layout = "TYX" if suffix in (".tif", ".tiff") and C == 1 else "TYXC"
    stored = [T, H, W] if layout == "TYX" else [T, H, W, C]
    info: dict[str, Any] = {"movie": {"file": path.name, "layout": layout, "shape": stored}}

    flow_mm = None
    if save_flow and suffix in (".tif", ".tiff", ".npy"):
        flow_path = _flow_npy_path(path)
        flow_mm = np.lib.format.open_memmap(
            flow_path, mode="w+", dtype=np.float32, shape=(T, H, W, 2)
        )
        info["flow"] = {"file": flow_path.name, "layout": "TYX2 (u, v)"}

    try:
        if suffix in (".tif", ".tiff"):
            _save_tiff(path, spec, chunks, flow_mm)
        elif suffix == ".npy":
            mov = np.lib.format.open_memmap(path, mode="w+", dtype=spec.dtype, shape=(T, H, W, C))
            for s, e in chunks:
                m, f = spec.frames(s, e)
                mov[s:e] = m
                if flow_mm is not None:
                    flow_mm[s:e] = f
            mov.flush()
            del mov
        else:
            import h5py

            with h5py.File(path, "w") as h5:
                ct = min(T, 8)
                dmov = h5.create_dataset(
                    "mov", shape=(T, H, W, C), dtype=spec.dtype, chunks=(ct, H, W, C)
                )
                dflow = None
                if save_flow:
                    dflow = h5.create_dataset(
                        "flow", shape=(T, H, W, 2), dtype=np.float32, chunks=(ct, H, W, 2)
                    )
                    info["flow"] = {"file": path.name, "dataset": "flow", "layout": "TYX2 (u, v)"}
                h5.attrs["synthetic_spec"] = json.dumps(spec.to_dict())
                for s, e in chunks:
                    m, f = spec.frames(s, e)
                    dmov[s:e] = m
                    if dflow is not None:
                        dflow[s:e] = f
            info["movie"]["dataset"] = "mov"
    finally:
        if flow_mm is not None:
            flow_mm.flush()
            del flow_mm

    sidecar = {
        "format": "flowreg_dask.synthetic",
        "version": 1,
        "spec": spec.to_dict(),
        "dtype": spec.dtype,
        "flow_convention": "backward: registered(y, x) = movie(y + v, x + u); flow[..., 0] = u (x)",
        **info,
    }
    _sidecar_path(path).write_text(json.dumps(sidecar, indent=2))
    return path


def _save_tiff(path: pathlib.Path, spec: SyntheticSpec, chunks, flow_mm) -> None:
    import tifffile

    T, H, W, C = spec.shape
    nbytes = T * H * W * C * np.dtype(spec.dtype).itemsize
    bigtiff = nbytes > 2_000_000_000

    def pages():
        for s, e in chunks:
            m, f = spec.frames(s, e)
            if flow_mm is not None:
                flow_mm[s:e] = f
            for frame in m:
                yield frame[..., 0] if C == 1 else frame

    if C == 1:
        shape, axes = (T, H, W), "TYX"
    else:
        shape, axes = (T, H, W, C), "TYXS"
    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tif:
        tif.write(
            pages(),
            shape=shape,
            dtype=spec.dtype,
            photometric="minisblack",
            planarconfig="contig" if C > 1 else None,
            metadata={"axes": axes},
        )


def spec_from_json(path: str | os.PathLike[str]) -> SyntheticSpec:
    """Read the spec back from a sidecar written by :func:`save_synthetic_recording`.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.truth.json`` sidecar, or the recording itself (its sidecar is then used).

    Returns
    -------
    SyntheticSpec
        The spec; ``spec.frames(a, b)`` regenerates the movie and the ground-truth flow.
    """
    path = pathlib.Path(path)
    if not path.name.endswith(".json"):
        path = _sidecar_path(path)
    data = json.loads(path.read_text())
    params = data.get("spec", data) if isinstance(data, dict) else None
    if not isinstance(params, dict):
        raise InvalidOptionError(f"spec_from_json: {path} holds no synthetic spec")
    return SyntheticSpec(**params)


# ---------------------------------------------------------------------------------- internals


def _clip_to_dtype(x: np.ndarray, dtype: str) -> np.ndarray:
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return np.clip(x, info.min, info.max)
    return x


def _has_activity(spec: SyntheticSpec) -> bool:
    # there is always at least one functional channel
    return spec.activity


def _functional_channels(n_channels: int) -> range:
    return range(0, 1) if n_channels == 1 else range(1, n_channels)


# ----------------------------------------------------------------- scene


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


# ----------------------------------------------------------------- motion


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


# ----------------------------------------------------------------- activity


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


# ----------------------------------------------------------------- rendering and detection


class _Inline:
    """Executor-like object running submitted calls at once (no thread for tiny jobs)."""

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, fn, *args) -> Future:
        fut: Future = Future()
        fut.set_result(fn(*args))
        return fut


@functools.lru_cache(maxsize=6)
def _base_coords(H: int, W: int, pad: int) -> np.ndarray:
    return np.mgrid[pad : pad + H, pad : pad + W].astype(np.float64)


def _render(
    spec: SyntheticSpec, scene: _Scene, g: np.ndarray, act: _Activity | None, t: int
) -> np.ndarray:
    """Clean frame in expected photons, (H, W, C) float32."""
    H, W, C = spec.height, spec.width, spec.n_channels
    coords = _base_coords(H, W, spec.pad) + g
    out = np.empty((H, W, C), dtype=np.float32)
    Hc, Wc = scene.canvas.shape[1:]
    for c in range(C):
        coef = scene.coef[c]
        if act is not None and c in act.dff:
            coef = coef + scene.neuropil_coef[c] * act.neuropil[c][t]
            if scene.n_cells:
                coef += (scene.footprints[c] @ act.dff[c][t]).reshape(Hc, Wc)
        ndi.map_coordinates(
            coef, coords, output=out[..., c], order=3, prefilter=False, mode=_SPLINE_MODE
        )
    np.maximum(out, 0.0, out=out)
    out *= np.float32(spec.photons_per_unit)
    return out


def _detect(spec: SyntheticSpec, photons: np.ndarray, t: int) -> np.ndarray:
    """Detector model: Poisson photons x gain + baseline + Gaussian read noise, into dtype."""
    gain, read, base = spec.detector
    if spec.noise:
        rng = np.random.default_rng([spec.seed, _S_NOISE, t])
        adu = rng.poisson(photons).astype(np.float32)
        adu *= np.float32(gain)
        if read > 0:
            adu += rng.standard_normal(photons.shape, dtype=np.float32) * np.float32(read)
        adu += np.float32(base)
    else:
        adu = photons * np.float32(gain) + np.float32(base)
    return _quantize(adu, spec.dtype)


def _quantize(x: np.ndarray, dtype: str) -> np.ndarray:
    """Round and clip float32 ``x`` (in place) into ``dtype``: saturation, never wrap-around."""
    if np.dtype(dtype).kind in "iu":
        np.rint(x, out=x)
        x = _clip_to_dtype(x, dtype)
    return x.astype(dtype, copy=False)
