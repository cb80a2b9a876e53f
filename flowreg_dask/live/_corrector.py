"""Live (online) motion correction: register frames one at a time as they are acquired.

:class:`FlowRegLive` keeps a pre-processed reference and its flow estimator (the reference pyramid
is built once), warm-starts every frame's flow with the previous frame's flow, and blends
registered frames into the reference at a fixed interval. It offers the API of pyflowreg's
``FlowRegLive`` (method spec §6.2) without its normalisation bug: every frame is normalised with
the intensity range of the *raw* reference, exactly as the offline pipeline does (spec §1.2), so
raw integer frames (uint16 from a microscope) give the same flows as frames scaled to [0, 1].

Per frame (reference set)::

    raw frame -> normalise by the raw reference's range -> spatial Gaussian
              -> causal half-Gaussian over the last frames (only when sigma_t is large)
              -> flow against the reference, initialised with the previous flow
              -> warp the raw frame (out of bounds: the raw reference) -> input dtype

Method: Flotho et al., "Flow-Registration", J. Biophotonics 2022, :DOI:`10.1002/jbio.202100330`.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..core._checks import check_finite
from ..core.params import FlowParams, resolve_params
from ..core.solver import make_estimator
from ..core.warp import interpolation_order, warp_into
from ..errors import InvalidInputError, InvalidOptionError
from ..kernels.cpu import gaussian as _gauss
from ..options import QUALITY_PRESETS, OFOptions
from ..preprocess.filters import gaussian_weights, sigma_matrix
from ..preprocess.normalize import EPS, intensity_range

__all__ = ["FlowRegLive"]

#: Finest pyramid level used to pre-register a reference stack (the "balanced" preset).
STACK_MIN_LEVEL = QUALITY_PRESETS["balanced"]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _as_options(options: Any, overrides: Mapping[str, Any]) -> OFOptions:
    """A private copy of ``options`` with ``overrides`` applied and the live quality preset."""
    if options is None:
        opts = OFOptions()
    elif isinstance(options, OFOptions):
        opts = options.copy()
    elif isinstance(options, Mapping):
        opts = OFOptions.from_dict(options)
    else:
        raise InvalidOptionError(
            f"options: expected an OFOptions, a dict or None, got {type(options).__name__}. "
            "Fix: pass OFOptions(...) or a dict of option fields."
        )
    explicit_level = "min_level" in overrides or opts.quality_setting == "custom"
    opts = opts.copy(**overrides)
    if not explicit_level or opts.quality_setting != "custom":
        # pyflowreg's live corrector always runs the fast preset unless a level was given
        opts.quality_setting = "fast"
    return opts


def _check_frame_dtype(arr: np.ndarray, name: str) -> None:
    if arr.dtype.kind not in "uif":
        raise InvalidInputError(
            f"{name}: expected a real-valued array (uint8, uint16, int16, float32, float64, ...), "
            f"got dtype {arr.dtype}. Fix: convert it, e.g. {name}.astype(np.float32)."
        )


@dataclasses.dataclass
class _Buffers:
    """Per-frame work arrays, allocated once per reference (frame shape (H, W, C))."""

    plane: np.ndarray  # (H, W) float32: one channel of the frame
    tmp: np.ndarray  # (H, W) float32: that channel filtered along y
    raw: np.ndarray  # (H, W, C) float32 copy of the raw frame
    warped: np.ndarray  # (H, W, C) float32 registered frame (reference updates, float16 output)
    ring: np.ndarray  # (N, H, W, C) float32 pre-processed frames (N = temporal taps)
    smoothed: np.ndarray  # (H, W, C) float32 temporally filtered frame (when N > 1)
    scratch: np.ndarray  # (H, W, C) float32
    valid: np.ndarray  # (H, W) uint8 valid mask of the last warp

    @classmethod
    def allocate(cls, shape: tuple[int, int, int], n_taps: int) -> _Buffers:
        h, w, nc = shape
        f32 = np.float32
        return cls(
            plane=np.empty((h, w), f32),
            tmp=np.empty((h, w), f32),
            raw=np.empty((h, w, nc), f32),
            warped=np.empty((h, w, nc), f32),
            ring=np.zeros((n_taps, h, w, nc), f32),
            smoothed=np.empty((h, w, nc), f32),
            scratch=np.empty((h, w, nc), f32),
            valid=np.empty((h, w), np.uint8),
        )


class FlowRegLive:
    """Online motion correction of frames arriving one at a time (the API of pyflowreg's class).

    Give it a reference (:meth:`set_reference`), then call it on every new frame; it returns the
    registered frame and its flow. Before a reference is set, frames are collected in a buffer
    (and returned unchanged) so that ``set_reference()`` can build the reference from them.

    Parameters
    ----------
    options : OFOptions or dict, optional
        Algorithm options (copied; the caller's object is never changed). The live corrector runs
        the ``"fast"`` quality preset (pyramid level 6) unless ``min_level`` is given, either as
        an override or in ``options`` (``quality_setting="custom"``).
    reference_buffer_size : int
        Most recent frames kept while no reference is set (>= 1); ``set_reference()`` builds the
        reference from them.
    reference_update_interval : int
        Blend the registered frame into the reference every this many frames (>= 0; 0 never
        updates the reference).
    reference_update_weight : float
        Weight ``w`` in [0, 1] of the frame in the blend ``ref <- (1 - w) ref + w frame``.
    truncate : float
        Gaussian kernels are cut at ``truncate * sigma`` (> 0; spatial and temporal; 4.0 like the
        offline pipeline and scipy).
    **option_overrides
        Fields of :class:`~flowreg_dask.OFOptions` set on the copy (e.g. ``alpha=2``).

    Attributes
    ----------
    options : OFOptions
        The options in use.
    frame_count : int
        Frames registered since the reference was (re)set.

    Notes
    -----
    Pre-processing is that of the offline pipeline: each frame is normalised with the min/max of
    the raw reference (``channel_normalization`` joint or per channel) and smoothed with the
    per-channel spatial sigmas of ``options.sigma``. The temporal sigma (``sigma[c][2]``) is
    applied causally: frame t is averaged with frames t-1, t-2, ... with half-Gaussian weights
    (radius ``int(truncate * sigma_t + 0.5)``; the default 0.1 means no temporal filtering).
    Unlike pyflowreg, raw integer frames are really normalised (its live corrector takes the
    range from the already normalised reference, spec §9.1 item 3).

    When the reference is blended, the normalisation range is refreshed from the blended raw
    reference and the pre-processed reference is rescaled to the new range (an exact affine map),
    so reference and frames always share one intensity scale.

    Examples
    --------
    >>> import numpy as np
    >>> from flowreg_dask import FlowRegLive, datasets
    >>> rec = datasets.synthetic_recording(n_frames=5, height=64, width=64, n_channels=1)
    >>> live = FlowRegLive()
    >>> live.set_reference(rec.reference)
    >>> registered, flow = live(rec.movie[0])
    >>> registered.dtype, flow.shape
    (dtype('uint16'), (64, 64, 2))
    """

    def __init__(
        self,
        options: OFOptions | Mapping[str, Any] | None = None,
        reference_buffer_size: int = 50,
        reference_update_interval: int = 20,
        reference_update_weight: float = 0.2,
        truncate: float = 4.0,
        **option_overrides: Any,
    ) -> None:
        if not _is_int(reference_buffer_size) or reference_buffer_size < 1:
            raise InvalidOptionError(
                f"reference_buffer_size: expected an integer >= 1, got "
                f"{reference_buffer_size!r}. Fix: pass e.g. reference_buffer_size=50."
            )
        if not _is_int(reference_update_interval) or reference_update_interval < 0:
            raise InvalidOptionError(
                f"reference_update_interval: expected an integer >= 0 (0 = never update), got "
                f"{reference_update_interval!r}. Fix: pass e.g. reference_update_interval=20."
            )
        if not _is_real(reference_update_weight) or not 0.0 <= reference_update_weight <= 1.0:
            raise InvalidOptionError(
                f"reference_update_weight: expected a number in [0, 1], got "
                f"{reference_update_weight!r}. Fix: pass e.g. reference_update_weight=0.2."
            )
        if not _is_real(truncate) or not np.isfinite(truncate) or truncate <= 0:
            raise InvalidOptionError(
                f"truncate: expected a finite number > 0 (Gaussian radius in sigmas), got "
                f"{truncate!r}. Fix: pass e.g. truncate=4.0."
            )
        self.options = _as_options(options, option_overrides)
        self.reference_buffer_size = int(reference_buffer_size)
        self.reference_update_interval = int(reference_update_interval)
        self.reference_update_weight = float(reference_update_weight)
        self.truncate = float(truncate)
        self._order = interpolation_order(self.options.interpolation_method)
        self._buffer: collections.deque[np.ndarray] = collections.deque(
            maxlen=self.reference_buffer_size
        )
        self._shape: tuple[int, int, int] | None = None  # (H, W, C) of the frames
        self._ref_raw: np.ndarray | None = None  # (H, W, C) float32
        self._ref_proc: np.ndarray | None = None  # (H, W, C) float32
        self._estimator: Any = None
        self._params: FlowParams | None = None
        self._init: np.ndarray | None = None  # (H, W, 2) float32 warm start of the next frame
        self.frame_count = 0
        self._n_ring = 0  # frames held in the temporal ring buffer
        self._squeeze_c = False  # frames are (H, W): return (H, W) images

    # ------------------------------------------------------------------------------ properties
    @property
    def has_reference(self) -> bool:
        """True once a reference is set."""
        return self._ref_raw is not None

    @property
    def reference(self) -> np.ndarray | None:
        """The current raw reference, (H, W) or (H, W, C) float32 (a copy), or None."""
        if self._ref_raw is None:
            return None
        return self._squeeze(self._ref_raw.copy())

    @property
    def reference_processed(self) -> np.ndarray | None:
        """The current pre-processed (normalised, smoothed) reference (a copy), or None."""
        if self._ref_proc is None:
            return None
        return self._squeeze(self._ref_proc.copy())

    @property
    def normalization_range(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(min, max) per channel, (C,) float64, with which frames are normalised; or None."""
        if self._ref_raw is None:
            return None
        return self._vmin.copy(), self._vmax.copy()

    @property
    def buffered_frames(self) -> int:
        """Number of frames collected while no reference is set."""
        return len(self._buffer)

    def _squeeze(self, img: np.ndarray) -> np.ndarray:
        return img[..., 0] if self._squeeze_c else img

    # ------------------------------------------------------------------------------ reference
    def set_reference(self, frames: np.ndarray | None = None) -> None:
        """Set the reference and restart (flow warm start, temporal filter, frame count).

        Parameters
        ----------
        frames : ndarray or None
            * (H, W) or (H, W, C): the reference image itself. A 3-D array whose last axis is
              longer than 4 is read as a (T, H, W) single-channel stack (as ``compensate_arr``
              does), unless it has the shape of the frames seen so far.
            * (T, H, W, C): a stack, registered to its own mean (stronger smoothing, alpha + 2,
              at no finer than the balanced preset's pyramid level); the reference is the mean of
              the registered raw frames.
            * None: build it from the frames buffered so far (a stack as above; one frame is
              used as is).

        Raises
        ------
        InvalidInputError
            For None without buffered frames, a wrong shape or dtype, or NaN/Inf values.
        """
        if frames is None:
            if not self._buffer:
                raise InvalidInputError(
                    "frames: None asks for a reference from the buffered frames, but no frame "
                    "has been buffered. Fix: pass a reference image or stack, or call the "
                    "corrector on some frames first."
                )
            stack = np.stack(list(self._buffer))
            squeeze_c = self._squeeze_c
        else:
            arr = np.asarray(frames)
            _check_frame_dtype(arr, "frames")
            if arr.dtype == np.float16:  # the filter kernels read float32
                arr = arr.astype(np.float32)
            if arr.ndim == 2:
                stack, squeeze_c = arr[None, :, :, None], True
            elif arr.ndim == 3:
                if self._is_single_channel_stack(arr):
                    stack, squeeze_c = arr[..., None], True
                else:
                    stack, squeeze_c = arr[None], False
            elif arr.ndim == 4:
                stack, squeeze_c = arr, False
            else:
                raise InvalidInputError(
                    f"frames: expected an (H, W) or (H, W, C) reference or a (T, H, W, C) stack, "
                    f"got shape {arr.shape}. Fix: pass a single image or a stack of frames."
                )
            if stack.shape[0] == 0 or stack.size == 0:
                raise InvalidInputError(f"frames: is empty (shape {arr.shape})")
            check_finite(stack, "frames")
        if stack.shape[0] == 1:
            ref_raw = np.array(stack[0], dtype=np.float32)
        else:
            ref_raw = self._preregister(stack)
        self._install_reference(ref_raw, squeeze_c)

    def reset_reference(self, reference: np.ndarray) -> None:
        """Replace the reference by ``reference`` and restart, discarding buffered frames.

        Parameters
        ----------
        reference : ndarray
            (H, W) or (H, W, C) reference image, or a (T, H, W, C) stack (see
            :meth:`set_reference`).
        """
        if reference is None:
            raise InvalidInputError(
                "reference: expected an (H, W) or (H, W, C) image, got None. Fix: pass an "
                "image, or call set_reference() to use the buffered frames."
            )
        self.set_reference(reference)
        self._buffer.clear()

    def _is_single_channel_stack(self, arr: np.ndarray) -> bool:
        known = self._shape
        if known is not None and arr.shape == known:
            return False
        if known is not None and arr.shape[1:] == known[:2] and known[2] == 1:
            return True
        return arr.shape[-1] > 4

    def _preregister(self, stack: np.ndarray) -> np.ndarray:
        """Raw reference from a (T, H, W, C) stack registered to its own mean."""
        import dask.array as da
        import xarray as xr

        from ..pipeline.reference import resolve_reference

        params = self._resolve_params(stack.shape[-1])
        params = dataclasses.replace(params, min_level=min(params.min_level, STACK_MIN_LEVEL))
        rec = xr.DataArray(da.from_array(stack, chunks=(-1, -1, -1, -1)), dims=("t", "y", "x", "c"))
        return resolve_reference(
            rec,
            list(range(stack.shape[0])),
            params=params,
            sigma=self.options.sigma,
            channel_normalization=self.options.channel_normalization,
            interpolation=self.options.interpolation_method,
        )

    def _resolve_params(self, n_channels: int) -> FlowParams:
        return resolve_params(self.options, n_channels=n_channels)

    def _install_reference(self, ref_raw: np.ndarray, squeeze_c: bool) -> None:
        """Pre-process ``ref_raw`` (H, W, C) float32 once and build the flow estimator."""
        h, w, nc = ref_raw.shape
        if self._shape is not None and self._buffer and self._shape != (h, w, nc):
            self._buffer.clear()  # frames of another shape can no longer make a reference
        self._shape = (h, w, nc)
        self._squeeze_c = squeeze_c and nc == 1
        self._params = self._resolve_params(nc)
        sig = sigma_matrix(self.options.sigma, nc)
        self._taps_rows = [gaussian_weights(float(s), self.truncate) for s in sig[:, 0]]
        self._taps_cols = [gaussian_weights(float(s), self.truncate) for s in sig[:, 1]]
        self._taps_time = self._causal_weights(sig[:, 2])
        self._bufs = _Buffers.allocate(self._shape, self._taps_time.shape[0])
        self._ref_raw = np.ascontiguousarray(ref_raw, dtype=np.float32)
        self._set_range(*intensity_range(self._ref_raw, mode=self._norm_mode))
        self._unit = ([np.float32(0.0)] * nc, [np.float32(1.0)] * nc)  # normalize=False
        self._ref_proc = np.empty_like(self._ref_raw)
        self._prefilter(self._ref_raw, self._norm, self._ref_proc)
        self._build_estimator()
        self._init = None
        self._n_ring = 0
        self.frame_count = 0

    @property
    def _norm_mode(self) -> str:
        return str(self.options.channel_normalization)

    def _build_estimator(self) -> None:
        opts = self.options
        self._estimator = make_estimator(
            self._ref_proc, self._params, opts.flow_backend, **dict(opts.backend_params)
        )

    def _causal_weights(self, sigma_t: np.ndarray) -> np.ndarray:
        """(N, C) half-Gaussian weights of the frames aged 0..N-1 (unnormalised)."""
        radii = [int(self.truncate * float(s) + 0.5) for s in sigma_t]
        n = max(radii) + 1
        out = np.zeros((n, len(radii)), np.float32)
        for c, (s, r) in enumerate(zip(sigma_t, radii, strict=True)):
            k = np.arange(r + 1, dtype=np.float64)
            out[: r + 1, c] = np.exp(-0.5 * (k / s) ** 2) if r > 0 else 1.0
        return out

    # ------------------------------------------------------------------------------ per frame
    def _prefilter(self, frame: np.ndarray, norm: tuple[list, list], out: np.ndarray) -> None:
        """Normalise (H, W, C) ``frame`` with ``norm`` = (offsets, scales) per channel and smooth
        it spatially into ``out`` (H, W, C) float32 (the scaling is fused into the row pass)."""
        b = self._bufs
        lo, scale = norm
        rows, cols = self._taps_rows, self._taps_cols
        for c in range(out.shape[2]):
            _gauss.filter_frames(
                frame[None], c, lo[c], scale[c], rows[c], cols[c], out[None], c, b.plane, b.tmp
            )

    def _set_range(self, vmin: np.ndarray, vmax: np.ndarray) -> None:
        """Store the normalisation range (C,) and its float32 (offset, scale) per channel."""
        self._vmin = np.asarray(vmin, np.float64)
        self._vmax = np.asarray(vmax, np.float64)
        lo = self._vmin.astype(np.float32)
        scale = np.float32(1.0) / (self._vmax.astype(np.float32) - lo + np.float32(EPS))
        self._norm = (list(lo), list(scale))

    def _check_frame(self, frame: Any, name: str = "frame") -> np.ndarray:
        """(H, W, C) contiguous view of ``frame`` after shape, dtype and finiteness checks
        (float16 is widened to float32, which the filter kernels read)."""
        arr = np.asarray(frame)
        _check_frame_dtype(arr, name)
        if arr.dtype == np.float16:
            arr = arr.astype(np.float32)
        if arr.ndim == 2:
            arr3 = arr[:, :, None]
        elif arr.ndim == 3:
            arr3 = arr
        else:
            raise InvalidInputError(
                f"{name}: expected an (H, W) or (H, W, C) frame, got shape {arr.shape}. Fix: pass "
                "one frame at a time (use register_frames for a stack)."
            )
        if self._shape is not None and arr3.shape != self._shape:
            h, w, nc = self._shape
            expected = f"({h}, {w})" if nc == 1 else f"({h}, {w}, {nc})"
            raise InvalidInputError(
                f"{name}: expected shape {expected} like the reference, got {arr.shape}. Fix: "
                "pass frames of the reference's size and channel count, or set a new reference."
            )
        check_finite(arr3, name)
        return np.ascontiguousarray(arr3)

    def __call__(self, frame: np.ndarray, normalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Register one frame.

        Parameters
        ----------
        frame : ndarray
            (H, W) or (H, W, C) raw frame of any real dtype.
        normalize : bool
            Normalise the frame with the raw reference's intensity range (default). False: the
            frame is already on that normalised scale (e.g. ``(raw - min) / (max - min)`` with
            :attr:`normalization_range`); it is only smoothed.

        Returns
        -------
        registered : ndarray
            The frame's shape and dtype (integers rounded and clipped to the dtype's range).
            Without a reference: the frame itself (a copy), which is buffered.
        flow : ndarray
            (H, W, 2) float32 displacement (u, v) in pixels, backward convention:
            ``registered(y, x) = frame(y + v, x + u)``; zeros without a reference.
        """
        frame = np.asarray(frame)
        arr = self._check_frame(frame)
        if self._ref_raw is None:
            return self._buffer_frame(frame, arr)
        registered = np.empty(frame.shape, frame.dtype)
        flow = self._register(arr, normalize, registered.reshape(arr.shape))
        return registered, flow

    def _buffer_frame(self, frame: np.ndarray, arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keep a copy of a frame seen without a reference; return it unchanged, zero flow."""
        if self._shape is None or not self._buffer:
            self._shape = arr.shape
            self._squeeze_c = frame.ndim == 2
        self._buffer.append(arr.copy())
        return frame.copy(), np.zeros(arr.shape[:2] + (2,), np.float32)

    def _register(self, arr: np.ndarray, normalize: bool, out: np.ndarray) -> np.ndarray:
        """Register (H, W, C) ``arr`` into ``out`` (same shape, output dtype); returns the flow."""
        b = self._bufs
        n_taps = b.ring.shape[0]
        slot = b.ring[self.frame_count % n_taps]
        self._prefilter(arr, self._norm if normalize else self._unit, slot)
        proc = slot if n_taps == 1 else self._temporal(slot)
        flow = self._estimator.flow(proc, self._init, check=False)  # inputs built here
        np.copyto(b.raw, arr, casting="unsafe")
        warp_into(
            b.raw, flow, self._ref_raw, order=self._order, out=out, valid=b.valid, tmp=b.warped
        )
        if self._init is None:
            self._init = flow.copy()
        else:
            np.copyto(self._init, flow)
        self.frame_count += 1
        interval = self.reference_update_interval
        if interval and self.frame_count % interval == 0:
            self._update_reference(proc, flow)
        return flow

    def _temporal(self, slot: np.ndarray) -> np.ndarray:
        """Causal half-Gaussian average of the newest frames in the ring buffer."""
        b = self._bufs
        n_taps = b.ring.shape[0]
        newest = self.frame_count % n_taps
        self._n_ring = min(self._n_ring + 1, n_taps)
        wts = self._taps_time[: self._n_ring]
        wts = wts / wts.sum(axis=0)
        np.multiply(slot, wts[0], out=b.smoothed)
        for age in range(1, self._n_ring):
            np.multiply(b.ring[(newest - age) % n_taps], wts[age], out=b.scratch)
            b.smoothed += b.scratch
        return b.smoothed

    def _update_reference(self, proc: np.ndarray, flow: np.ndarray) -> None:
        """Blend the last registered frame into the reference; refresh range and estimator."""
        b = self._bufs
        wgt = np.float32(self.reference_update_weight)
        keep = np.float32(1.0) - wgt
        warp_into(
            b.raw, flow, self._ref_raw, order=self._order, out=b.warped, valid=b.valid, tmp=b.warped
        )
        warp_into(
            proc,
            flow,
            self._ref_proc,
            order=self._order,
            out=b.scratch,
            valid=b.valid,
            tmp=b.scratch,
        )
        self._ref_proc *= keep
        self._ref_proc += wgt * b.scratch
        self._ref_raw *= keep
        self._ref_raw += wgt * b.warped
        lo_old, hi_old = self._vmin, self._vmax
        self._set_range(*intensity_range(self._ref_raw, mode=self._norm_mode))
        # proc = (raw - lo) / (hi - lo + eps) is affine in raw: map the old scale onto the new
        s_old = (hi_old - lo_old + EPS).astype(np.float32)
        s_new = (self._vmax - self._vmin + EPS).astype(np.float32)
        self._ref_proc *= s_old / s_new
        self._ref_proc += ((lo_old - self._vmin) / s_new).astype(np.float32)
        self._build_estimator()

    # ------------------------------------------------------------------------------ stacks, flow
    def register_frames(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Register a stack frame by frame (as repeated calls would).

        Parameters
        ----------
        frames : ndarray
            (T, H, W, C) stack, or (T, H, W) for single-channel frames.

        Returns
        -------
        registered : ndarray
            Like ``frames`` (shape and dtype).
        flows : ndarray
            (T, H, W, 2) float32.
        """
        arr = np.asarray(frames)
        _check_frame_dtype(arr, "frames")
        if arr.ndim not in (3, 4):
            raise InvalidInputError(
                f"frames: expected a (T, H, W) or (T, H, W, C) stack, got shape {arr.shape}. "
                "Fix: call the corrector itself for a single frame."
            )
        n = arr.shape[0]
        registered = np.empty(arr.shape, arr.dtype)
        flows = np.zeros((n,) + arr.shape[1:3] + (2,), np.float32)
        for t in range(n):
            frame = self._check_frame(arr[t], f"frames[{t}]")
            if self._ref_raw is None:
                self._buffer_frame(arr[t], frame)
                registered[t] = arr[t]
                continue
            flows[t] = self._register(frame, True, registered[t].reshape(frame.shape))
        return registered, flows

    def get_current_flow(self) -> np.ndarray | None:
        """The warm start of the next frame: the last frame's flow (or the one given to
        :meth:`set_flow_init`), (H, W, 2) float32 (a copy); None before the first frame."""
        return None if self._init is None else self._init.copy()

    def set_flow_init(self, flow: np.ndarray) -> None:
        """Use ``flow`` (H, W, 2) as the initial flow of the next frame.

        Raises
        ------
        InvalidInputError
            Without a reference, or for a wrong shape or NaN/Inf values.
        """
        if self._shape is None or self._ref_raw is None:
            raise InvalidInputError(
                "flow: no reference is set, so the frame size is unknown (and set_reference "
                "resets the initial flow). Fix: call set_reference(...) first."
            )
        arr = np.asarray(flow)
        expected = self._shape[:2] + (2,)
        if arr.shape != expected or arr.dtype.kind not in "uif":
            raise InvalidInputError(
                f"flow: expected a real (H, W, 2) = {expected} array, got shape {arr.shape} and "
                f"dtype {arr.dtype}. Fix: pass (u, v) stacked on the last axis."
            )
        check_finite(arr, "flow")
        self._init = np.array(arr, dtype=np.float32, copy=True)

    def __repr__(self) -> str:
        if self._ref_raw is None:
            state = f"no reference, {len(self._buffer)} frame(s) buffered"
        else:
            state = f"reference {self._shape}, {self.frame_count} frame(s) registered"
        update = (
            f"every {self.reference_update_interval} frames (weight "
            f"{self.reference_update_weight:g})"
            if self.reference_update_interval
            else "never"
        )
        return (
            f"FlowRegLive({state}; min_level={self.options.effective_min_level}, "
            f"reference update {update})"
        )
