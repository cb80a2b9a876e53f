"""What a synthetic recording is (:class:`SyntheticSpec`) and how to get one in memory."""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidOptionError
from ._activity import _activity, _activity_key
from ._common import (
    _CELL_DENSITY,
    _DETECTOR_DEFAULTS,
    SUPPORTED_DTYPES,
    _as_float,
    _as_int,
    _clip_to_dtype,
    _fail,
    _has_activity,
)
from ._motion import _motion, _motion_key, _solve_fields
from ._render import _detect, _Inline, _quantize, _render
from ._scene import _scene, _scene_key


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
