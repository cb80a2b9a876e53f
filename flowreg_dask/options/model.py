"""The algorithm options of the Flow-Registration method: :class:`OFOptions`.

:class:`OFOptions` holds every parameter of the Flow-Registration method (Flotho et al., J
Biophotonics 2022, :doi:`10.1002/jbio.202100330`): the variational optical-flow energy, its
coarse-to-fine solver, the pre-processing, the reference and the outputs. Field names and defaults
follow the reference implementation (pyflowreg's ``OFOptions``) where a pyflowreg user would look
for them, so existing option files load. Unlike the reference implementation the model is validated
on assignment too, never mutates itself while being read and can be saved at any time.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, PrivateAttr, field_validator

from .._constants import DEFAULT_BUFFER_SIZE
from ..errors import InvalidOptionError, RecordingNotFoundError
from ._serialize import (
    _NPY_MARKER,
    _dumps_toml,
    _format_from_suffix,
    _inline_array,
    _parse_json_text,
    _restore_inline,
    loads_toml,
)
from ._validate import (
    NDArray,
    StrictModel,
    _as_bool,
    _as_float,
    _as_int,
    _as_positive,
    _invalid,
    _is_number,
    _json_safe,
    _path_or_url,
    _short,
    _to_index,
)
from ._vocab import (
    QUALITY_PRESETS,
    ChannelNormalization,
    ConstancyAssumption,
    FlowBackend,
    InterpolationMethod,
    NamingConvention,
    NonfinitePolicy,
    OutputFormat,
    OutputTypename,
    QualitySetting,
    choice,
)
from .backends import is_custom_backend

_ARRAY_FIELDS: tuple[str, ...] = ("weight", "reference_frames")
_WEIGHT_SUM_TOL = 1e-12
_GNC_TOL = 1e-6


def _default_weight() -> list[float]:
    return [0.5, 0.5]


def _default_sigma() -> list[list[float]]:
    return [[1.0, 1.0, 0.1], [1.0, 1.0, 0.1]]


def _default_reference_frames() -> list[int]:
    return list(range(50, 500))


class OFOptions(StrictModel):
    """Options of the Flow-Registration method (variational optical flow motion correction).

    The flow ``w = (u, v)`` between the reference ``f1`` and a frame ``f2`` minimises, per pyramid
    level,

    ``E(w) = sum_c W_c * psi_data(J_c; a_data_c) + alpha * psi_smooth(|grad u|^2 + |grad v|^2;
    a_smooth)``

    with the generalised Charbonnier penalty ``psi(s^2) = (s^2 + eps)^a`` and the motion tensor
    ``J_c`` of the chosen constancy assumption (Flotho et al. 2022). Field names and defaults follow
    pyflowreg's ``OFOptions``; every field is validated on construction **and** on assignment.

    Parameters
    ----------
    **data
        Any field below by name (every field of pyflowreg's ``OFOptions``). Unknown names raise
        :class:`OptionsValidationError` (a pydantic ``ValidationError`` and an
        :class:`~flowreg_dask.errors.InvalidOptionError`).

    Raises
    ------
    InvalidOptionError
        If a value is outside its allowed range; the message names the field, the value, the range
        and the fix.

    Notes
    -----
    ``quality_setting`` and ``min_level`` are coupled as in pyflowreg: a preset ("quality",
    "balanced", "fast") fixes the finest pyramid level (0, 4, 6; :attr:`effective_min_level`);
    setting ``min_level >= 0`` switches to ``"custom"``, setting ``min_level = -1`` restores the
    preset used before, and choosing a preset resets ``min_level`` to -1.

    References
    ----------
    .. [1] P. Flotho, S. Nomura, B. Kuhn, D. J. Strauss, "Software for non-parametric image
       registration of 2-photon imaging data", J Biophotonics 15(8), 2022.
       :doi:`10.1002/jbio.202100330`

    Examples
    --------
    >>> opts = OFOptions(alpha=4, quality_setting="balanced")
    >>> opts.alpha, opts.effective_min_level
    ((4.0, 4.0), 4)
    >>> opts.min_level = 2
    >>> opts.quality_setting, opts.effective_min_level
    ('custom', 2)
    """

    # ---- variational model and solver ------------------------------------------------------------
    alpha: tuple[float, float] = Field(
        default=(1.5, 1.5),
        description=(
            "Smoothness weight alpha = (alpha_x, alpha_y) of the regulariser (larger = smoother "
            "flow). A scalar or 1-element sequence is used for both axes; all values > 0."
        ),
    )
    weight: list[float] | NDArray = Field(
        default_factory=_default_weight,
        description=(
            "Channel weights W_c of the data term. A 1-D sequence (one weight per channel, >= 0) "
            "is normalised to sum 1 (missing channels get 1/C, extra ones are ignored); a 2-D (H, "
            "W) or 3-D (H, W, C) array is a spatial weight map used as is."
        ),
    )
    levels: int = Field(
        default=100,
        description="Maximum number of pyramid levels (the pyramid stops earlier at ~10 px); >= 1.",
    )
    min_level: int = Field(
        default=-1,
        description=(
            "Finest pyramid level solved (0 = full resolution; the flow is upsampled from there). "
            "-1 = take it from quality_setting; a value >= 0 switches quality_setting to 'custom'."
        ),
    )
    quality_setting: QualitySetting = Field(
        default=QualitySetting.QUALITY,
        description=(
            "Speed/quality preset selecting the finest level: 'quality' -> 0, 'balanced' -> 4, "
            "'fast' -> 6, 'custom' -> max(min_level, 0)."
        ),
    )
    eta: float = Field(
        default=0.8,
        description=(
            "Pyramid downsampling factor eta per level, 0 < eta <= 1 (level k has size eta^k of "
            "the frame)."
        ),
    )
    update_lag: int = Field(
        default=5,
        description=(
            "Lagged non-linearity: the robust weights psi' are recomputed every update_lag SOR "
            "iterations; >= 1."
        ),
    )
    iterations: int = Field(
        default=50,
        description="SOR iterations per pyramid level (per warping step with GNC); >= 1.",
    )
    a_smooth: float = Field(
        default=1.0,
        description=(
            "Exponent a_smooth of the generalised Charbonnier penalty (s^2 + eps)^a of the "
            "smoothness term; 1 = quadratic (linear diffusion), < 1 = robust (edge-preserving); "
            "must be > 0 (0 would switch the smoothness term off)."
        ),
    )
    a_data: float | tuple[float, ...] = Field(
        default=0.45,
        description=(
            "Exponent a_data of the generalised Charbonnier penalty of the data term, 0 < a_data "
            "<= 1 (1 = quadratic, 0.45 = robust); a scalar or one value per channel."
        ),
    )
    gnc_schedule: tuple[float, ...] | None = Field(
        default=None,
        description=(
            "Graduated non-convexity: weights beta of the robust penalties, one full pyramid pass "
            "per entry, e.g. (0, 0.5, 1). >= 2 values in [0, 1], non-decreasing, first 0, last 1. "
            "None = GNC off."
        ),
    )
    warping_steps: int | None = Field(
        default=None,
        description=(
            "Warping steps per pyramid level with GNC (None = 10); >= 1. Ignored without "
            "gnc_schedule."
        ),
    )
    constancy_assumption: ConstancyAssumption = Field(
        default=ConstancyAssumption.GC,
        description=(
            "Data term: 'gc' gradient constancy (normalised), 'gray' brightness constancy, 'cs' "
            "smoothed census. Aliases: 'gradient', 'brightness', 'census'."
        ),
    )
    # ---- pre-processing --------------------------------------------------------------------------
    sigma: list[list[float]] = Field(
        default_factory=_default_sigma,
        description=(
            "Gaussian pre-filter sigmas (s_rows, s_cols, s_t) in pixels/frames, one row per "
            "channel (rows beyond the last are repeated); a length-3 sequence gives one row for "
            "all channels; all >= 0."
        ),
    )
    channel_normalization: ChannelNormalization = Field(
        default=ChannelNormalization.JOINT,
        description=(
            "Intensity normalisation to [0, 1] before filtering: 'joint' (one min/max for all "
            "channels) or 'separate' (per channel)."
        ),
    )
    interpolation_method: InterpolationMethod = Field(
        default=InterpolationMethod.CUBIC,
        description=(
            "Interpolation of the final backward warp of the raw frames: 'cubic', 'linear' or "
            "'nearest'."
        ),
    )
    nonfinite: NonfinitePolicy = Field(
        default=NonfinitePolicy.ERROR,
        description=(
            "NaN/Inf in a float recording: 'error' refuses the recording before anything is "
            "written, naming the frames; 'reference' replaces those pixels by the raw reference's "
            "(and leaves such frames out of the reference), with a warning naming the frames."
        ),
    )
    cc_initialization: bool = Field(
        default=False,
        description="Rigid phase-correlation pre-alignment of every frame before the optical flow.",
    )
    cc_hw: int | tuple[int, int] = Field(
        default=256,
        description=(
            "Working size (height, width) cap of the cross-correlation (frames are downsampled to "
            "it); an int for both axes; every value >= 8."
        ),
    )
    cc_up: int = Field(
        default=1,
        description="Upsampling factor of the cross-correlation peak (precision 1/cc_up px); >= 1.",
    )
    update_initialization_w: bool = Field(
        default=True,
        description=(
            "Start each frame t from the mean coarse flow of the frames before it (those at "
            "positions divisible by 4 among t-20..t-1; frame 0 starts from zero flow), so that "
            "the result does not depend on buffer_size or the run mode (pyflowreg carries the "
            "mean flow of the previous batch instead). False = every frame starts from zero."
        ),
    )
    # ---- reference -------------------------------------------------------------------------------
    update_reference: bool = Field(
        default=False,
        description=(
            "Re-estimate the pre-processed reference from the registered frames after every batch "
            "(time chunk). The chunks then run one after another, and the result depends on "
            "buffer_size (as in pyflowreg); every other option gives the same result whatever "
            "buffer_size, run mode or worker count."
        ),
    )
    reference_frames: list[int] | Path | str | NDArray = Field(
        default_factory=_default_reference_frames,
        description=(
            "Reference: 0-based frame indices (after binning) that are pre-registered and "
            "averaged (default 50..499), a path to an image file, or an (H, W) / (H, W, C) array."
        ),
    )
    # ---- batching --------------------------------------------------------------------------------
    bin_size: int = Field(
        default=1,
        description="Temporal binning: mean of bin_size raw frames per registered frame; >= 1.",
    )
    buffer_size: int = Field(
        default=DEFAULT_BUFFER_SIZE,
        description=(
            "Frames (after binning) per batch / time chunk; >= 1. It sets how the work is cut "
            "into tasks, never the result (except with update_reference). Chunks shorter than "
            "the registration halo (20 frames plus the temporal filter radius) are merged."
        ),
    )
    # ---- compute backend -------------------------------------------------------------------------
    flow_backend: FlowBackend | str = Field(
        default=FlowBackend.NUMBA,
        description=(
            "Flow solver backend: 'numba' (CPU; alias 'flowreg'), 'cupy' (CUDA GPU; alias "
            "'flowreg_cuda') or a name registered with flowreg_dask.register_backend."
        ),
    )
    backend_params: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra keyword arguments for the flow backend (JSON-compatible values).",
    )
    # ---- outputs ---------------------------------------------------------------------------------
    save_w: bool = Field(default=False, description="Save the displacement fields w = (u, v).")
    save_valid_idx: bool = Field(
        default=False,
        description="Save per-frame masks of the pixels whose source lies inside the frame.",
    )
    save_meta_info: bool = Field(
        default=True,
        description="Save per-frame statistics and the reference frame with the results.",
    )
    output_typename: OutputTypename | None = Field(
        default=None,
        description=(
            "dtype of the registered frames: 'single'/'float32', 'double'/'float64', 'uint8', "
            "'uint16', 'int16', 'int32'; None = keep the input dtype (integers are rounded and "
            "clipped)."
        ),
    )
    output_format: OutputFormat = Field(
        default=OutputFormat.ZARR,
        description=(
            "Output format: 'zarr' (default, resumable), 'hdf5', 'tiff', 'mat', 'npy', "
            "'caiman_hdf5', 'suite2p', 'multifile_tiff', 'multifile_hdf5', 'array' (in memory) or "
            "'null' (none); case-insensitive."
        ),
    )
    input_file: Any = Field(
        default=None,
        description=(
            "Input recording: a path, an in-memory array (T, H, W[, C]), or a video reader; None "
            "when the recording is passed to the registration function directly."
        ),
    )
    output_path: Path = Field(default=Path("results"), description="Output folder.")
    output_file_name: str | None = Field(
        default=None,
        description="Output file name overriding naming_convention (None = derived from it).",
    )
    naming_convention: NamingConvention = Field(
        default=NamingConvention.DEFAULT,
        description=(
            "Output names: 'default' -> compensated.<ext>; 'batch' -> <input "
            "stem>_compensated.<ext> (also for the metadata files)."
        ),
    )
    verbose: bool = Field(default=False, description="Print extra diagnostic information.")
    # ---- pyflowreg fields ------------------------------------------------------------------------
    channel_idx: list[int] | None = Field(
        default=None,
        description=(
            "0-based channels of the recording to read and register (None = all). pyflowreg "
            "declared it but never used it."
        ),
    )
    save_valid_mask: bool = Field(
        default=False,
        description="pyflowreg's unused flag; True is the same as save_valid_idx=True.",
    )
    n_references: int = Field(
        default=1,
        description=(
            "Number of references; only 1 (MATLAB's multi-reference mode is not ported, and "
            "pyflowreg only repeated one reference). Register parts of the recording separately "
            "for several references."
        ),
    )
    min_frames_per_reference: int = Field(
        default=20,
        description="Only used with n_references > 1 (not available); kept for option files.",
    )
    preproc_funct: Any = Field(
        default=None,
        exclude=True,
        description=(
            "Function applied to every block of raw frames (T, H, W, C) -> (T, H, W, C) before "
            "registration (the corrected movie is the warped result of it), as in MATLAB. Must "
            "keep the shape and work frame by frame; not saved with the options."
        ),
    )
    get_displacement_impl: Any = Field(
        default=None,
        exclude=True,
        description=(
            "A flow function f(reference, moving, **flow_kwargs) -> (H, W, 2) used instead of the "
            "built-in solver (pyflowreg's hook); not saved with the options."
        ),
    )
    get_displacement_factory: Any = Field(
        default=None,
        exclude=True,
        description=(
            "A factory called with backend_params that returns such a flow function; not saved "
            "with the options."
        ),
    )

    _preset_before_custom: QualitySetting = PrivateAttr(default=QualitySetting.QUALITY)

    # ---- validators ------------------------------------------------------------------------------

    @classmethod
    def _preprocess_input(cls, data: dict[str, Any]) -> dict[str, Any]:
        """pyflowreg's ``save_valid_mask=True`` means ``save_valid_idx=True``."""
        if data.get("save_valid_mask") is True and "save_valid_idx" not in data:
            data["save_valid_idx"] = True
        return data

    @field_validator("channel_idx", mode="before")
    @classmethod
    def _v_channel_idx(cls, value: Any) -> list[int] | None:
        if value is None:
            return None
        fix = "pass a list of 0-based channel indices, e.g. channel_idx=[0], or None for all"
        vals = [value] if _is_number(value) else list(np.atleast_1d(np.asarray(value)).tolist())
        out = [_as_int("channel_idx", v, low=0, fix=fix) for v in vals]
        if not out or len(set(out)) != len(out):
            raise _invalid("channel_idx", value, "distinct channel indices", fix)
        return out

    @field_validator("n_references", mode="before")
    @classmethod
    def _v_n_references(cls, value: Any) -> int:
        n = _as_int("n_references", value, low=1, fix="use 1")
        if n != 1:
            raise _invalid(
                "n_references",
                value,
                "1 (MATLAB's multi-reference mode is not available; pyflowreg repeated one "
                "reference)",
                "register the parts of the recording that need another reference separately "
                "(frames=..., reference_frames=...)",
            )
        return n

    @field_validator("min_frames_per_reference", mode="before")
    @classmethod
    def _v_min_frames(cls, value: Any) -> int:
        return _as_int("min_frames_per_reference", value, low=1, fix="pass an integer >= 1")

    @field_validator("preproc_funct", "get_displacement_impl", "get_displacement_factory")
    @classmethod
    def _v_callable(cls, value: Any, info: Any) -> Any:
        if value is not None and not callable(value):
            raise _invalid(info.field_name, value, "None or a callable", "pass a function")
        return value

    @field_validator("alpha", mode="before")
    @classmethod
    def _v_alpha(cls, value: Any) -> tuple[float, float]:
        fix = "pass a positive number (e.g. alpha=1.5) or a pair (alpha_x, alpha_y)"
        vals = value
        if isinstance(value, np.ndarray):
            vals = value.reshape(-1).tolist()
        if isinstance(vals, (list, tuple)):
            if len(vals) not in (1, 2):
                raise _invalid("alpha", value, "a positive number or 1-2 positive numbers", fix)
            out = [_as_float("alpha", v, low=0.0, low_inclusive=False, fix=fix) for v in vals]
            return (out[0], out[-1])
        a = _as_float("alpha", value, low=0.0, low_inclusive=False, fix=fix)
        return (a, a)

    @field_validator("weight", mode="before")
    @classmethod
    def _v_weight(cls, value: Any) -> list[float] | np.ndarray:
        fix = (
            "pass one weight per channel (e.g. [0.5, 0.5]) or a spatial map of shape (H, W) or "
            "(H, W, C) with finite values >= 0"
        )
        if _is_number(value):
            value = [value]
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError):
            raise _invalid("weight", value, "a 1-D sequence or a 2-D/3-D array", fix) from None
        if arr.dtype.kind not in "biuf" or arr.size == 0 or arr.ndim not in (1, 2, 3):
            raise _invalid("weight", value, "a non-empty 1-D sequence or a 2-D/3-D real array", fix)
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise _invalid("weight", value, "finite values >= 0", fix)
        if arr.ndim == 1:
            vec = arr.astype(np.float64)
            total = float(vec.sum())
            if total <= 0:
                raise _invalid("weight", value, "weights with a positive sum", fix)
            if abs(total - 1.0) > _WEIGHT_SUM_TOL:
                vec = vec / total
            return [float(v) for v in vec]
        if arr.dtype.kind != "f":
            arr = arr.astype(np.float64)
        return np.array(arr, copy=True)

    @field_validator(
        "levels", "update_lag", "iterations", "bin_size", "buffer_size", "cc_up", mode="before"
    )
    @classmethod
    def _v_positive_int(cls, value: Any, info: Any) -> int:
        name = info.field_name
        return _as_int(name, value, low=1, fix=f"pass an integer >= 1, e.g. {name}=1")

    @field_validator("min_level", mode="before")
    @classmethod
    def _v_min_level(cls, value: Any) -> int:
        return _as_int(
            "min_level",
            value,
            low=-1,
            fix="pass -1 (use quality_setting) or a pyramid level >= 0 (0 = full resolution)",
        )

    @field_validator("warping_steps", mode="before")
    @classmethod
    def _v_warping_steps(cls, value: Any) -> int | None:
        if value is None:
            return None
        return _as_int("warping_steps", value, low=1, fix="pass None (= 10) or an integer >= 1")

    @field_validator("eta", mode="before")
    @classmethod
    def _v_eta(cls, value: Any) -> float:
        return _as_float(
            "eta",
            value,
            low=0.0,
            low_inclusive=False,
            high=1.0,
            fix="pass a downsampling factor in (0, 1], e.g. eta=0.8",
        )

    @field_validator("a_smooth", mode="before")
    @classmethod
    def _v_a_smooth(cls, value: Any) -> float:
        return _as_float(
            "a_smooth",
            value,
            low=0.0,
            low_inclusive=False,
            fix=(
                "pass a_smooth=1 (quadratic) or a robust exponent such as 0.5 (0 would remove the "
                "smoothness term)"
            ),
        )

    @field_validator("a_data", mode="before")
    @classmethod
    def _v_a_data(cls, value: Any) -> float | tuple[float, ...]:
        fix = "pass an exponent in (0, 1] (e.g. a_data=0.45) or one such value per channel"

        def one(v: Any) -> float:
            return _as_float("a_data", v, low=0.0, low_inclusive=False, high=1.0, fix=fix)

        vals = value.reshape(-1).tolist() if isinstance(value, np.ndarray) else value
        if isinstance(vals, (list, tuple)):
            if len(vals) == 0:
                raise _invalid("a_data", value, "a number or a non-empty sequence in (0, 1]", fix)
            out = tuple(one(v) for v in vals)
            return out[0] if len(out) == 1 else out
        return one(vals)

    @field_validator("gnc_schedule", mode="before")
    @classmethod
    def _v_gnc(cls, value: Any) -> tuple[float, ...] | None:
        if value is None:
            return None
        fix = "pass None (no GNC) or a non-decreasing schedule from 0 to 1, e.g. (0.0, 0.5, 1.0)"
        expected = ">= 2 values in [0, 1], non-decreasing, first 0 and last 1"
        vals = value.reshape(-1).tolist() if isinstance(value, np.ndarray) else value
        if not isinstance(vals, (list, tuple)) or len(vals) < 2:
            raise _invalid("gnc_schedule", value, expected, fix)
        out = tuple(_as_float("gnc_schedule", v, low=0.0, high=1.0, fix=fix) for v in vals)
        if any(b < a for a, b in zip(out[:-1], out[1:], strict=True)):
            raise _invalid("gnc_schedule", value, expected + " (found a decrease)", fix)
        if abs(out[0]) > _GNC_TOL or abs(out[-1] - 1.0) > _GNC_TOL:
            raise _invalid("gnc_schedule", value, expected, fix)
        return out

    @field_validator("sigma", mode="before")
    @classmethod
    def _v_sigma(cls, value: Any) -> list[list[float]]:
        fix = (
            "pass (s_rows, s_cols, s_t) for all channels or one such row per channel, e.g. "
            "[[1, 1, 0.1], [1, 1, 0.1]], with values >= 0"
        )
        expected = "a length-3 sequence or an (n_channels, 3) matrix of finite values >= 0"
        if _is_number(value):
            raise _invalid("sigma", value, expected, fix)
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError):
            raise _invalid("sigma", value, expected, fix) from None
        if arr.dtype.kind not in "iuf" or arr.size == 0:
            raise _invalid("sigma", value, expected, fix)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != 3:
            raise _invalid("sigma", value, expected, fix)
        arr = arr.astype(np.float64)
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise _invalid("sigma", value, expected + " (negative or non-finite value found)", fix)
        return [[float(v) for v in row] for row in arr]

    @field_validator("cc_hw", mode="before")
    @classmethod
    def _v_cc_hw(cls, value: Any) -> int | tuple[int, int]:
        fix = "pass an int >= 8 (e.g. cc_hw=256) or a pair (height, width) of ints >= 8"
        vals = value.reshape(-1).tolist() if isinstance(value, np.ndarray) else value
        if isinstance(vals, (list, tuple)):
            if len(vals) not in (1, 2):
                raise _invalid("cc_hw", value, "an int >= 8 or a pair of ints >= 8", fix)
            out = [_as_int("cc_hw", v, low=8, fix=fix) for v in vals]
            return out[0] if len(out) == 1 else (out[0], out[1])
        return _as_int("cc_hw", vals, low=8, fix=fix)

    @field_validator("reference_frames", mode="before")
    @classmethod
    def _v_reference(cls, value: Any) -> list[int] | Path | str | np.ndarray:
        fix = (
            "pass 0-based frame indices (e.g. list(range(50, 500))), a path to an image file, or "
            "an (H, W) / (H, W, C) array"
        )
        if isinstance(value, (str, os.PathLike)):
            return _path_or_url("reference_frames", value)
        if isinstance(value, range):
            value = list(value)
        if _is_number(value):
            value = [value]
        if isinstance(value, (list, tuple)):
            try:
                arr = np.asarray(value)
            except (ValueError, TypeError):
                raise _invalid(
                    "reference_frames", value, "frame indices or an array", fix
                ) from None
            if arr.ndim == 1:
                if len(value) == 0:
                    raise _invalid("reference_frames", value, "at least one frame index >= 0", fix)
                return [
                    _as_int("reference_frames", v, low=0, fix=fix, what="a frame index")
                    for v in value
                ]
            value = arr
        if isinstance(value, np.ndarray):
            if value.ndim == 1:
                return [
                    _as_int("reference_frames", v, low=0, fix=fix, what="a frame index")
                    for v in value.tolist()
                ]
            if value.ndim not in (2, 3) or value.size == 0 or value.dtype.kind not in "biuf":
                raise _invalid(
                    "reference_frames",
                    value,
                    "an (H, W) or (H, W, C) real array (a stack: average it, e.g. "
                    "stack.mean(axis=0))",
                    fix,
                )
            return np.array(value, copy=True)
        raise _invalid("reference_frames", value, "frame indices, a path or an array", fix)

    @field_validator("quality_setting", mode="before")
    @classmethod
    def _v_quality(cls, value: Any) -> Any:
        return choice("quality_setting", value, QualitySetting)

    @field_validator("constancy_assumption", mode="before")
    @classmethod
    def _v_constancy(cls, value: Any) -> Any:
        return choice("constancy_assumption", value, ConstancyAssumption)

    @field_validator("channel_normalization", mode="before")
    @classmethod
    def _v_normalization(cls, value: Any) -> Any:
        return choice("channel_normalization", value, ChannelNormalization)

    @field_validator("interpolation_method", mode="before")
    @classmethod
    def _v_interpolation(cls, value: Any) -> Any:
        return choice("interpolation_method", value, InterpolationMethod)

    @field_validator("nonfinite", mode="before")
    @classmethod
    def _v_nonfinite(cls, value: Any) -> Any:
        return choice("nonfinite", value, NonfinitePolicy)

    @field_validator("flow_backend", mode="before")
    @classmethod
    def _v_backend(cls, value: Any) -> Any:
        if is_custom_backend(value):
            return value.strip().lower()
        return choice("flow_backend", value, FlowBackend)

    @field_validator("output_format", mode="before")
    @classmethod
    def _v_format(cls, value: Any) -> Any:
        fmt = choice("output_format", value, OutputFormat)
        if fmt is OutputFormat.BEGONIA:
            raise _invalid(
                "output_format",
                value,
                "a format flowreg_dask writes (BEGONIA is not implemented, as in pyflowreg)",
                "choose 'HDF5', 'TIFF', 'MAT' or the default OME-Zarr store",
            )
        return fmt

    @field_validator("naming_convention", mode="before")
    @classmethod
    def _v_naming(cls, value: Any) -> Any:
        return choice("naming_convention", value, NamingConvention)

    @field_validator("output_typename", mode="before")
    @classmethod
    def _v_typename(cls, value: Any) -> OutputTypename | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None  # pyflowreg: anything that is not a type name means "no cast"
        if isinstance(value, (type, np.dtype)):
            try:
                value = np.dtype(value).name
            except TypeError:
                pass
        return choice("output_typename", value, OutputTypename)

    @field_validator(
        "cc_initialization",
        "update_initialization_w",
        "update_reference",
        "save_w",
        "save_valid_idx",
        "save_meta_info",
        "save_valid_mask",
        "verbose",
        mode="before",
    )
    @classmethod
    def _v_bool(cls, value: Any, info: Any) -> bool:
        return _as_bool(info.field_name, value)

    @field_validator("backend_params", mode="before")
    @classmethod
    def _v_backend_params(cls, value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise _invalid(
                "backend_params", value, "a dict", "pass keyword arguments as a dict, e.g. {}"
            )
        return _json_safe("backend_params", value)

    @field_validator("input_file", mode="before")
    @classmethod
    def _v_input_file(cls, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, (str, os.PathLike)):
            return _path_or_url("input_file", value)
        if isinstance(value, (list, tuple)) and all(
            isinstance(v, (str, os.PathLike)) for v in value
        ):
            return [_path_or_url("input_file", v) for v in value]  # one file per channel
        if (
            isinstance(value, np.ndarray)
            or hasattr(value, "__array__")
            or hasattr(value, "read_batch")
        ):
            return value  # an in-memory recording or a video reader (pyflowreg accepts both)
        raise _invalid(
            "input_file",
            value,
            "None, a path, a list of per-channel paths, an array or a video reader",
            "pass a file path or the frames",
        )

    @field_validator("output_path", mode="before")
    @classmethod
    def _v_output_path(cls, value: Any) -> Path:
        if not isinstance(value, (str, os.PathLike)) or not os.fspath(value).strip():
            raise _invalid("output_path", value, "a folder path", "pass a folder, e.g. 'results'")
        return Path(os.fspath(value))

    @field_validator("output_file_name", mode="before")
    @classmethod
    def _v_output_file_name(cls, value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, (str, os.PathLike)) or not os.fspath(value).strip():
            raise _invalid(
                "output_file_name",
                value,
                "None or a non-empty file name",
                "pass a file name or None to use naming_convention",
            )
        return os.fspath(value)

    # ---- quality_setting <-> min_level coupling --------------------------------------------------

    def model_post_init(self, context: Any, /) -> None:
        """Apply the ``min_level``/``quality_setting`` coupling after construction."""
        qs = self.__dict__["quality_setting"]
        if qs != "custom":
            self._preset_before_custom = qs
            if self.__dict__["min_level"] >= 0:
                self.__dict__["quality_setting"] = QualitySetting.CUSTOM

    def __setattr__(self, name: str, value: Any) -> None:
        before = self.__dict__.get("quality_setting")
        super().__setattr__(name, value)
        if name == "min_level":
            if self.min_level >= 0 and self.quality_setting != "custom":
                self._preset_before_custom = self.quality_setting
                self.__dict__["quality_setting"] = QualitySetting.CUSTOM
            elif self.min_level == -1 and self.quality_setting == "custom":
                self.__dict__["quality_setting"] = self._preset_before_custom
        elif name == "quality_setting":
            if self.quality_setting != "custom":
                self._preset_before_custom = self.quality_setting
                self.__dict__["min_level"] = -1
            elif before is not None and before != "custom":
                self._preset_before_custom = before

    # ---- derived values --------------------------------------------------------------------------

    @property
    def effective_min_level(self) -> int:
        """Finest pyramid level solved: the preset's level, or ``max(min_level, 0)`` if custom."""
        if self.quality_setting == "custom":
            return max(self.min_level, 0)
        return QUALITY_PRESETS[self.quality_setting]

    def get_sigma_at(self, channel: int) -> np.ndarray:
        """Gaussian pre-filter sigmas of one channel.

        Parameters
        ----------
        channel : int
            0-based channel index; channels beyond the rows of :attr:`sigma` use the last row.

        Returns
        -------
        numpy.ndarray
            ``(3,)`` float64 array ``(s_rows, s_cols, s_t)`` (a new array).
        """
        c = _to_index("channel", channel)
        row = self.sigma[min(c, len(self.sigma) - 1)]
        return np.array(row, dtype=np.float64)

    def get_weight_at(self, channel: int, n_channels: int) -> float | np.ndarray:
        """Weight of one channel of a recording with ``n_channels`` channels (pyflowreg's API).

        Returns a float for a weight vector (see :func:`channel_weights`) or an ``(H, W)`` map for a
        spatial weight. Unlike pyflowreg, the options are never changed by the call.
        """
        c = _to_index("channel", channel)
        n = _as_positive("n_channels", n_channels)
        if c >= n:
            raise InvalidOptionError(
                f"channel={c} is invalid for {n} channel(s): expected 0..{n - 1}."
            )
        w = channel_weights(self.weight, n)
        return float(w[c]) if w.ndim == 1 else np.array(w[:, :, c])

    def to_dict(self) -> dict[str, Any]:
        """The flow engine's keyword arguments, as pyflowreg's ``OFOptions.to_dict()`` gives them.

        Returns
        -------
        dict
            ``alpha`` (tuple), ``weight`` (list or ndarray copy), ``levels``, ``min_level`` (the
            *effective* finest level), ``eta``, ``iterations``, ``update_lag``, ``a_data``,
            ``a_smooth``, ``gnc_schedule``, ``warping_steps``, ``const_assumption``: what
            :func:`flowreg_dask.get_displacement` takes. The whole model as JSON-ready data is
            :meth:`to_json_dict`.
        """
        weight = self.weight.copy() if isinstance(self.weight, np.ndarray) else list(self.weight)
        return {
            "alpha": tuple(self.alpha),
            "weight": weight,
            "levels": self.levels,
            "min_level": self.effective_min_level,
            "eta": self.eta,
            "iterations": self.iterations,
            "update_lag": self.update_lag,
            "a_data": self.a_data,
            "a_smooth": self.a_smooth,
            "gnc_schedule": self.gnc_schedule,
            "warping_steps": self.warping_steps,
            "const_assumption": str(self.constancy_assumption),
        }

    # ---- pyflowreg's helpers (they delegate, at call time, to the readers, writers and
    # ---- pipeline above this layer; importing the options never imports those)

    def get_video_reader(self) -> Any:
        """A pyflowreg-style video reader of :attr:`input_file` (with ``buffer_size`` and
        ``bin_size``); the options are not changed (pyflowreg replaced ``input_file`` by it)."""
        if self.input_file is None:
            raise InvalidOptionError("input_file: no input set; set input_file first")
        io = importlib.import_module("flowreg_dask.io")
        return io.get_video_file_reader(
            self.input_file, buffer_size=self.buffer_size, bin_size=self.bin_size
        )

    def output_file(self) -> Path:
        """The output file pyflowreg would write: ``output_file_name``, else
        ``output_path/compensated.<FORMAT>`` (``<input stem>_compensated.<FORMAT>`` with
        ``naming_convention="batch"``)."""
        if self.output_file_name:
            name = Path(self.output_file_name)
            return name if name.is_absolute() else Path(self.output_path) / name
        stem = "compensated"
        if self.naming_convention == NamingConvention.BATCH and isinstance(
            self.input_file, (str, Path)
        ):
            stem = f"{Path(self.input_file).stem}_compensated"
        return Path(self.output_path) / f"{stem}.{self.output_format.value}"

    def get_video_writer(self) -> Any:
        """A pyflowreg-style video writer of :meth:`output_file` for ``output_format``."""
        io = importlib.import_module("flowreg_dask.io")
        return io.get_video_file_writer(str(self.output_file()), self.output_format)

    def get_reference_frame(
        self, video_reader: Any = None, registration_config: Any = None
    ) -> np.ndarray:
        """The raw reference of a run (H, W, C) float32, as pyflowreg's method: an array or
        image file given as ``reference_frames``, or those frames of the recording
        pre-registered (method spec §2.2)."""
        arrays = importlib.import_module("flowreg_dask.pipeline.arrays")
        source = self.input_file if video_reader is None else video_reader
        return arrays.reference_frame(self, source, config=registration_config)

    def save_options(self, path: str | os.PathLike[str] | None = None) -> Path:
        """pyflowreg's name of :meth:`save` (default ``output_path/options.json``)."""
        return self.save(Path(self.output_path) / "options.json" if path is None else path)

    @classmethod
    def load_options(cls, path: str | os.PathLike[str]) -> OFOptions:
        """pyflowreg's name of :meth:`load`."""
        return cls.load(path)

    def resolved_output_dtype(self) -> np.dtype | None:
        """numpy dtype of ``output_typename`` (``None`` = keep the input dtype)."""
        if self.output_typename is None:
            return None
        name = str(self.output_typename)
        return np.dtype({"single": "float32", "double": "float64"}.get(name, name))

    def copy(self, **overrides: Any) -> OFOptions:  # type: ignore[override]
        """Deep copy, optionally with some fields changed (validated).

        Parameters
        ----------
        **overrides
            Fields to set on the copy.

        Returns
        -------
        OFOptions
            An independent copy (arrays and lists are copied too).
        """
        new = self.model_copy(deep=True)
        for key, value in overrides.items():
            setattr(new, key, value)
        return new

    # ---- serialisation ---------------------------------------------------------------------------

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready dict of all fields (what is stored with every output).

        Paths become strings, tuples lists, and numpy arrays a marker dict
        ``{"__ndarray__": True, "dtype": ..., "shape": [...], "data": nested lists}`` so that
        :meth:`from_dict` restores them exactly (dtype included).

        Returns
        -------
        dict
            Plain dict (str keys; str, int, float, bool, None, list and dict values).
        """
        return self._serialise(_inline_array)

    def _serialise(self, array_hook: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, info in type(self).model_fields.items():
            if info.exclude:
                continue  # functions are not data
            value = getattr(self, name)
            if name == "input_file" and not isinstance(value, (str, Path, list, type(None))):
                value = None  # an in-memory recording or a reader is not saved
            if isinstance(value, list) and name == "input_file":
                value = [str(v) for v in value]
            if isinstance(value, np.ndarray):
                out[name] = array_hook(name, value)
            elif isinstance(value, Path):
                out[name] = str(value)
            else:
                out[name] = _json_safe(name, value)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OFOptions:
        """Build options from a dict (:meth:`to_json_dict` output or a pyflowreg options file).

        Parameters
        ----------
        data : Mapping
            Field values. Array markers written by :meth:`to_json_dict` are restored.

        Returns
        -------
        OFOptions

        Raises
        ------
        InvalidOptionError
            For unknown keys, invalid values or unsupported pyflowreg settings (``n_references >
            1``).
        """
        if not isinstance(data, Mapping):
            raise InvalidOptionError(
                f"OFOptions.from_dict got {type(data).__name__}: expected a dict of options. "
                "Fix: pass a dict such as OFOptions().to_json_dict()."
            )
        return cls(**{str(k): _restore_inline(v) for k, v in data.items()})

    def to_json(self, indent: int | None = None) -> str:
        """JSON string with arrays inline (marker dicts with dtype and shape), see to_json_dict."""
        return json.dumps(self.to_json_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> OFOptions:
        """Inverse of :meth:`to_json` (header lines before the first ``{`` are skipped)."""
        return cls.from_dict(_parse_json_text(text, source="JSON text"))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the options to ``path`` as JSON (``.json``) or TOML (``.toml``).

        JSON files start with a header line ``Compensation options <date>`` (as pyflowreg writes
        them). Array-valued fields (spatial weight maps, reference images) go to side files
        ``<stem>.<field>.npy`` next to the options file, referenced by a ``{"__npy__": name}``
        entry. ``None`` values are omitted in TOML (TOML has no null; loading restores the default
        ``None``).

        Parameters
        ----------
        path : str or path-like
            Target file; its suffix selects the format; parent folders are created.

        Returns
        -------
        pathlib.Path
            The written file.
        """
        path = Path(path)
        fmt = _format_from_suffix(path)
        path.parent.mkdir(parents=True, exist_ok=True)

        def side_file(name: str, arr: np.ndarray) -> dict[str, str]:
            fname = f"{path.stem}.{name}.npy"
            tmp = path.parent / (fname + ".tmp")
            with open(tmp, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)
            os.replace(tmp, path.parent / fname)
            return {_NPY_MARKER: fname}

        data = self._serialise(side_file)
        stamp = _dt.date.today().isoformat()
        if fmt == "json":
            text = f"Compensation options {stamp}\n\n" + json.dumps(data, indent=4) + "\n"
        else:
            text = f"# flowreg_dask compensation options {stamp}\n" + _dumps_toml(data)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> OFOptions:
        """Read options written by :meth:`save` or by pyflowreg's ``save_options``.

        Parameters
        ----------
        path : str or path-like
            A ``.json`` file (lines before the first ``{`` are skipped) or a ``.toml`` file.

        Returns
        -------
        OFOptions

        Raises
        ------
        RecordingNotFoundError
            If the file or an ``.npy`` side file does not exist.
        InvalidOptionError
            If the content is not valid options.
        """
        path = Path(path)
        if not path.is_file():
            raise RecordingNotFoundError(
                f"options file {str(path)!r} does not exist. Fix: check the path."
            )
        text = path.read_text(encoding="utf-8")
        suffix = path.suffix.lower()
        if suffix == ".toml":
            data = loads_toml(text, source=str(path))
        elif suffix == ".json":
            data = _parse_json_text(text, source=str(path))
        else:
            data = (
                _parse_json_text(text, source=str(path))
                if any(line.lstrip().startswith("{") for line in text.splitlines())
                else loads_toml(text, source=str(path))
            )
        for key, value in list(data.items()):
            if isinstance(value, Mapping) and set(value) == {_NPY_MARKER}:
                side = path.parent / str(value[_NPY_MARKER])
                if not side.is_file():
                    raise RecordingNotFoundError(
                        f"{key}: side file {str(side)!r} referenced by {str(path)!r} does not "
                        "exist. Fix: keep the .npy files next to the options file."
                    )
                data[key] = np.load(side, allow_pickle=False)
        return cls.from_dict(data)


def _default_weight_value(weight: Any) -> bool:
    return isinstance(weight, list) and weight == _default_weight()


def channel_weights(
    weight: Any, n_channels: int, height: int | None = None, width: int | None = None
) -> np.ndarray:
    """Channel weights of the data term for a recording with ``n_channels`` channels (the one rule).

    Parameters
    ----------
    weight : list of float, ndarray or None
        ``OFOptions.weight``. None, or the default ``[0.5, 0.5]``, means equal weights for any
        number of channels. Another vector needs one weight per channel (pyflowreg pads or
        truncates a vector of another length; here that is an error, since it is almost always a
        mistake) and is renormalised to sum 1. An ``(H, W)`` map is used for every channel, an
        ``(H, W, C)`` map as is (maps are not renormalised).
    n_channels : int
        Number of channels C.
    height, width : int, optional
        Frame size; a spatial map must have it.

    Returns
    -------
    numpy.ndarray
        ``(C,)`` float32 vector summing to 1, or an ``(H, W, C)`` float32 map.

    Raises
    ------
    InvalidOptionError
        A vector of another length than C, negative weights or weights that sum to 0, or a map
        of another size or channel count.
    """
    n = _as_positive("n_channels", n_channels)
    if weight is None or _default_weight_value(weight):
        return np.full(n, 1.0 / n, np.float32)
    arr = np.asarray(weight, dtype=np.float64)
    if arr.ndim <= 1:
        vec = np.atleast_1d(arr)
        if vec.size != n:
            raise InvalidOptionError(
                f"weight={_short(weight)} has {vec.size} value(s) for {n} channel(s): expected one "
                f"weight per channel. Fix: pass {n} weights (e.g. weight={[1.0] + [0.0] * (n - 1)} "
                "to register on the first channel only), or leave the default for equal weights."
            )
        total = float(vec.sum())
        if total <= 0 or np.any(vec < 0):
            raise InvalidOptionError(
                f"weight={_short(weight)} is invalid: weights must be >= 0 and not all 0. Fix: "
                "give at least one channel a positive weight."
            )
        return (vec / total).astype(np.float32)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], n, axis=2)
    if arr.shape[2] == 1 and n != 1:
        arr = np.repeat(arr, n, axis=2)
    if arr.shape[2] != n:
        raise InvalidOptionError(
            f"weight=array(shape={np.shape(weight)}) is invalid for {n} channel(s): expected an "
            f"(H, W) map or an (H, W, {n}) map. Fix: pass one weight map per channel or one (H, W) "
            "map."
        )
    if height is not None and arr.shape[:2] != (height, width):
        raise InvalidOptionError(
            f"weight=array(shape={np.shape(weight)}) is invalid for frames of {height}x{width}: "
            f"expected a map of shape ({height}, {width}[, C]). Fix: resize the weight map to the "
            "frame size."
        )
    return np.ascontiguousarray(arr, dtype=np.float32)


def get_mcp_schema() -> dict[str, Any]:
    """The JSON schema of :class:`OFOptions` (pyflowreg's ``get_mcp_schema``)."""
    return OFOptions.model_json_schema()


def load_preset(name: str, **overrides: Any) -> OFOptions:
    """Options of a quality preset, optionally with other fields changed.

    Parameters
    ----------
    name : {"quality", "balanced", "fast", "custom"}
        Preset (case-insensitive): finest pyramid level 0, 4 or 6 (see :data:`QUALITY_PRESETS`).
    **overrides
        Further fields. ``min_level >= 0`` switches to "custom".

    Returns
    -------
    OFOptions

    Examples
    --------
    >>> load_preset("fast", alpha=2).effective_min_level
    6
    """
    return OFOptions(quality_setting=name, **overrides)


def options_table(model: type[BaseModel] = OFOptions) -> str:
    """Markdown table (field, default, description) of ``model`` for the documentation.

    Parameters
    ----------
    model : type
        :class:`OFOptions` (default) or :class:`RegistrationConfig`.

    Returns
    -------
    str
        A Markdown table built from the field descriptions.
    """
    rows = ["| Option | Default | Meaning |", "|---|---|---|"]
    for name, info in model.model_fields.items():
        default = info.get_default(call_default_factory=True)
        if isinstance(default, Path):
            default = str(default)
        text = _short(default, 40).replace("|", "\\|")
        desc = (info.description or "").replace("|", "\\|")
        rows.append(f"| `{name}` | `{text}` | {desc} |")
    return "\n".join(rows) + "\n"
