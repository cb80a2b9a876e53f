"""Algorithm options (:class:`OFOptions`) and runtime settings (:class:`RegistrationConfig`).

:class:`OFOptions` holds every parameter of the Flow-Registration method (Flotho et al., J
Biophotonics 2022, :doi:`10.1002/jbio.202100330`): the variational optical-flow energy, its
coarse-to-fine solver, the pre-processing, the reference and the outputs. Field names and defaults
follow the reference implementation (pyflowreg's ``OFOptions``) where a pyflowreg user would look
for them, so existing option files load. Unlike the reference implementation the model is validated
on assignment too, never mutates itself while being read and can be saved at any time.

:class:`RegistrationConfig` holds the runtime settings (parallelism, scheduler, verbosity, progress)
that do not change the result and are therefore kept apart from the algorithm options.

The field descriptions of both models are the source of the options table in the documentation
(:func:`options_table`).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import sys
import warnings
from collections.abc import Iterable, Mapping
from difflib import get_close_matches
from enum import Enum
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from flowreg_dask.errors import FlowRegWarning, InvalidOptionError, RecordingNotFoundError

__all__ = [
    "OFOptions",
    "RegistrationConfig",
    "QUALITY_PRESETS",
    "presets",
    "load_preset",
    "options_table",
    "QualitySetting",
    "ConstancyAssumption",
    "ChannelNormalization",
    "InterpolationMethod",
    "FlowBackend",
    "OutputFormat",
    "OutputTypename",
    "NamingConvention",
    "Parallelization",
    "LEGACY_PYFLOWREG_KEYS",
]

# --------------------------------------------------------------------------------------------------
# Vocabularies
# --------------------------------------------------------------------------------------------------

QualitySetting = Literal["quality", "balanced", "fast", "custom"]
ConstancyAssumption = Literal["gc", "gray", "cs"]
ChannelNormalization = Literal["joint", "separate"]
InterpolationMethod = Literal["cubic", "linear", "nearest"]
NonfinitePolicy = Literal["error", "reference"]
FlowBackend = Literal["numba", "cupy"]
OutputFormat = Literal[
    "zarr",
    "hdf5",
    "tiff",
    "mat",
    "npy",
    "caiman_hdf5",
    "suite2p",
    "suite2p_tiff",
    "multifile_tiff",
    "multifile_hdf5",
    "multifile_mat",
    "array",
    "null",
]
OutputTypename = Literal[
    "single", "double", "float32", "float64", "uint8", "uint16", "int16", "int32"
]
NamingConvention = Literal["default", "batch"]
Parallelization = Literal["sequential", "threading", "multiprocessing", "distributed"]

#: Finest pyramid level of each quality preset (0 = full resolution); "custom" uses ``min_level``.
QUALITY_PRESETS: Mapping[str, int] = MappingProxyType({"quality": 0, "balanced": 4, "fast": 6})
#: Alias of :data:`QUALITY_PRESETS`.
presets = QUALITY_PRESETS

_QUALITY_CHOICES: tuple[str, ...] = ("quality", "balanced", "fast", "custom")
_CONSTANCY_CHOICES: tuple[str, ...] = ("gc", "gray", "cs")
_CONSTANCY_ALIASES = {
    "gradient": "gc",
    "gradient_constancy": "gc",
    "grey": "gray",
    "brightness": "gray",
    "brightness_constancy": "gray",
    "census": "cs",
}
_NORMALIZATION_CHOICES: tuple[str, ...] = ("joint", "separate")
_NORMALIZATION_ALIASES = {"together": "joint"}
_INTERPOLATION_CHOICES: tuple[str, ...] = ("cubic", "linear", "nearest")
_INTERPOLATION_ALIASES = {"bicubic": "cubic", "bilinear": "linear", "nearest_neighbor": "nearest"}
_NONFINITE_CHOICES: tuple[str, ...] = ("error", "reference")
_BACKEND_CHOICES: tuple[str, ...] = ("numba", "cupy")
_BACKEND_ALIASES = {"flowreg": "numba", "cpu": "numba", "flowreg_cuda": "cupy", "cuda": "cupy"}
_FORMAT_CHOICES: tuple[str, ...] = (
    "zarr",
    "hdf5",
    "tiff",
    "mat",
    "npy",
    "caiman_hdf5",
    "suite2p",
    "suite2p_tiff",
    "multifile_tiff",
    "multifile_hdf5",
    "multifile_mat",
    "array",
    "null",
)
_FORMAT_ALIASES = {
    "ome_zarr": "zarr",
    "h5": "hdf5",
    "hdf": "hdf5",
    "tif": "tiff",
    "suite2p_binary": "suite2p",
    "multifile_mat73": "multifile_mat",
    "multifile_tif": "multifile_tiff",
    "multifile_h5": "multifile_hdf5",
    "none": "null",
}
_TYPENAME_CHOICES: tuple[str, ...] = (
    "single",
    "double",
    "float32",
    "float64",
    "uint8",
    "uint16",
    "int16",
    "int32",
)
_NAMING_CHOICES: tuple[str, ...] = ("default", "batch")
_PARALLEL_CHOICES: tuple[str, ...] = ("sequential", "threading", "multiprocessing", "distributed")
_PARALLEL_ALIASES = {
    "synchronous": "sequential",
    "single_threaded": "sequential",
    "threads": "threading",
    "threaded": "threading",
    "processes": "multiprocessing",
    "dask": "distributed",
}

#: pyflowreg option keys that flowreg_dask does not have (dropped with a warning on load).
LEGACY_PYFLOWREG_KEYS: tuple[str, ...] = (
    "channel_idx",
    "save_valid_mask",
    "min_frames_per_reference",
    "n_references",
    "preproc_funct",
    "get_displacement_impl",
    "get_displacement_factory",
)

_NDARRAY_MARKER = "__ndarray__"
_NPY_MARKER = "__npy__"
_ARRAY_FIELDS: tuple[str, ...] = ("weight", "reference_frames")
_WEIGHT_SUM_TOL = 1e-12
_GNC_TOL = 1e-6

# numpy arrays are allowed as field values; this gives them a JSON schema (model_json_schema).
NDArray = Annotated[
    np.ndarray,
    WithJsonSchema(
        {
            "type": "array",
            "items": {},
            "description": "numpy array (nested lists in JSON; saved as a .npy side file)",
        }
    ),
]

# --------------------------------------------------------------------------------------------------
# Small helpers (messages, warnings, coercion)
# --------------------------------------------------------------------------------------------------


def _short(value: Any, limit: int = 80) -> str:
    """Short ``repr`` of ``value`` for error messages (arrays and long lists summarised)."""
    if isinstance(value, np.ndarray):
        return f"array(shape={value.shape}, dtype={value.dtype})"
    if isinstance(value, range):
        return repr(value)
    if isinstance(value, (list, tuple)) and len(value) > 8:
        head = ", ".join(_short(v, 20) for v in value[:3])
        return f"[{head}, ...] ({len(value)} items)"
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def _invalid(field: str, value: Any, expected: str, fix: str) -> ValueError:
    """Build the standard "field, value, allowed range, fix" error."""
    return ValueError(f"{field}={_short(value)} is invalid: expected {expected}. Fix: {fix}")


_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


def _user_stacklevel() -> int:
    """Stack level of the first frame outside flowreg_dask and pydantic (the user's line)."""
    import pydantic

    skip = (_PKG_DIR, os.path.dirname(os.path.abspath(pydantic.__file__)))
    frame = sys._getframe(1)
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(skip):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def _warn(message: str) -> None:
    warnings.warn(message, FlowRegWarning, stacklevel=_user_stacklevel())


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not _is_bool(value)


def _as_float(
    field: str,
    value: Any,
    *,
    low: float | None = None,
    low_inclusive: bool = True,
    high: float | None = None,
    high_inclusive: bool = True,
    fix: str,
) -> float:
    """Coerce a finite real number and check its range."""
    parts = []
    if low is not None:
        parts.append(f"{'>=' if low_inclusive else '>'} {low:g}")
    if high is not None:
        parts.append(f"{'<=' if high_inclusive else '<'} {high:g}")
    expected = "a finite real number" + (f" {' and '.join(parts)}" if parts else "")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if not _is_number(value) or not math.isfinite(float(value)):
        raise _invalid(field, value, expected, fix)
    out = float(value)
    if low is not None and (out < low or (out == low and not low_inclusive)):
        raise _invalid(field, value, expected, fix)
    if high is not None and (out > high or (out == high and not high_inclusive)):
        raise _invalid(field, value, expected, fix)
    return out


def _as_int(field: str, value: Any, *, low: int, fix: str, what: str = "an integer") -> int:
    """Coerce an integer (integral floats accepted, booleans rejected) and check ``>= low``."""
    expected = f"{what} >= {low}"
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (int, np.integer)) and not _is_bool(value):
        out = int(value)
    elif (
        isinstance(value, (float, np.floating))
        and math.isfinite(value)
        and float(value).is_integer()
    ):
        out = int(value)
    else:
        raise _invalid(field, value, expected, fix)
    if out < low:
        raise _invalid(field, value, expected, fix)
    return out


def _as_bool(field: str, value: Any) -> bool:
    if _is_bool(value):
        return bool(value)
    if isinstance(value, (int, np.integer)) and int(value) in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in (
        "true",
        "false",
        "yes",
        "no",
        "on",
        "off",
    ):
        return value.strip().lower() in ("true", "yes", "on")
    raise _invalid(field, value, "True or False", f"pass {field}=True or {field}=False")


def _choice(
    field: str, value: Any, choices: tuple[str, ...], aliases: Mapping[str, str] | None = None
) -> str:
    """Normalise a case-insensitive string choice (with aliases)."""
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, str):
        key = value.strip().lower().replace("-", "_").replace(" ", "_")
        if key in choices:
            return key
        if aliases and key in aliases:
            return aliases[key]
    names = ", ".join(repr(c) for c in choices)
    alias_text = ""
    if aliases:
        alias_text = " (aliases: " + ", ".join(f"{a!r}->{b!r}" for a, b in aliases.items()) + ")"
    hint = ""
    if isinstance(value, str):
        close = get_close_matches(value.strip().lower(), list(choices) + list(aliases or ()), n=1)
        if close:
            hint = f" Did you mean {close[0]!r}?"
    raise _invalid(
        field,
        value,
        f"one of {names}{alias_text}, case-insensitive",
        f"pass one of the allowed values.{hint}",
    )


def _path_or_url(field: str, value: Any) -> Path | str:
    """str → Path (URLs such as ``s3://...`` stay strings); Path kept."""
    if isinstance(value, Path):
        return value
    if isinstance(value, os.PathLike):
        return Path(os.fspath(value))
    if isinstance(value, str):
        if not value.strip():
            raise _invalid(
                field, value, "a non-empty path", f"pass a file path or leave {field} unset"
            )
        return value if "://" in value else Path(value)
    raise _invalid(field, value, "a str or pathlib.Path", "pass a file path as str or Path")


def _json_safe(field: str, value: Any) -> Any:
    """Normalise a JSON-compatible value (tuples → lists, numpy scalars → Python)."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_json_safe(field, v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(field, value.tolist())
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise _invalid(field, value, "a dict with str keys", "use string keys")
            out[k] = _json_safe(field, v)
        return out
    raise _invalid(
        field,
        value,
        "JSON-compatible values (str, int, float, bool, None, lists, dicts)",
        "pass plain values so the options can be saved with the results",
    )


def _values_equal(a: Any, b: Any) -> bool:
    """Exact equality that understands numpy arrays (shape, dtype and values)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return False
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        if type(a) is not type(b) or len(a) != len(b):
            return False
        return all(_values_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) or isinstance(b, dict):
        if not (isinstance(a, dict) and isinstance(b, dict)) or a.keys() != b.keys():
            return False
        return all(_values_equal(a[k], b[k]) for k in a)
    if type(a) is not type(b):
        return False
    return bool(a == b)


def _format_validation_error(model: str, exc: ValidationError, fields: Mapping[str, Any]) -> str:
    """Turn a pydantic ValidationError into one readable message naming field, value and fix."""
    lines: list[str] = []
    seen: set[str] = set()
    for err in exc.errors(include_url=False):
        loc = err.get("loc", ())
        field = str(loc[0]) if loc else ""
        if field in seen:
            continue
        seen.add(field)
        ctx = err.get("ctx") or {}
        if err.get("type") in ("value_error", "assertion_error") and "error" in ctx:
            lines.append(str(ctx["error"]))
            continue
        desc = ""
        if field in fields and getattr(fields[field], "description", None):
            desc = f" ({field}: {fields[field].description})"
        lines.append(
            f"{field or model}={_short(err.get('input'))} is invalid: {err.get('msg')}.{desc}"
        )
    if len(lines) == 1:
        return f"Invalid {model} option: {lines[0]}"
    return f"Invalid {model} options:\n" + "\n".join(f"  - {line}" for line in lines)


class _StrictModel(BaseModel):
    """Base model: extra keys forbidden, validated on assignment, raises InvalidOptionError.

    A failed assignment leaves the model unchanged (pydantic alone keeps a value that failed a
    model-level check).
    """

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, arbitrary_types_allowed=True
    )

    if not TYPE_CHECKING:  # keep the field-typed __init__ signature for type checkers

        def __init__(self, /, **data: Any) -> None:
            try:
                super().__init__(**data)
            except ValidationError as exc:
                raise InvalidOptionError(
                    _format_validation_error(type(self).__name__, exc, type(self).model_fields)
                ) from exc

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            super().__setattr__(name, value)
            return
        fields = type(self).model_fields
        if name not in fields:
            raise InvalidOptionError(self._unknown_key_message([name]))
        snapshot = dict(self.__dict__)
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            self.__dict__.clear()
            self.__dict__.update(snapshot)
            raise InvalidOptionError(
                _format_validation_error(type(self).__name__, exc, fields)
            ) from exc
        except Exception:
            self.__dict__.clear()
            self.__dict__.update(snapshot)
            raise

    @classmethod
    def _unknown_key_message(cls, keys: Iterable[str]) -> str:
        parts = []
        names = list(cls.model_fields)
        for key in keys:
            close = get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            parts.append(f"{key!r}{hint}")
        return (
            f"unknown {cls.__name__} option(s) {', '.join(parts)}: expected one of "
            f"{', '.join(names)}. Fix: remove or rename the key."
        )

    @classmethod
    def _preprocess_input(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Hook for subclasses: adapt raw input keys before validation."""
        return data

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            data = cls._preprocess_input(dict(data))
            unknown = [k for k in data if k not in cls.model_fields]
            if unknown:
                raise ValueError(cls._unknown_key_message(unknown))
        return data

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(
            _values_equal(getattr(self, name), getattr(other, name))
            for name in type(self).model_fields
        )

    __hash__ = None  # type: ignore[assignment]

    def _non_default_items(self) -> list[tuple[str, Any]]:
        items = []
        for name, info in type(self).model_fields.items():
            default = info.get_default(call_default_factory=True)
            value = getattr(self, name)
            if not _values_equal(value, default):
                items.append((name, value))
        return items

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={_short(v, 60)}" for k, v in self._non_default_items())
        return f"{type(self).__name__}({args})"

    __str__ = __repr__


# --------------------------------------------------------------------------------------------------
# OFOptions
# --------------------------------------------------------------------------------------------------


def _default_weight() -> list[float]:
    return [0.5, 0.5]


def _default_sigma() -> list[list[float]]:
    return [[1.0, 1.0, 0.1], [1.0, 1.0, 0.1]]


def _default_reference_frames() -> list[int]:
    return list(range(50, 500))


class OFOptions(_StrictModel):
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
        Any field below by name. Unknown names raise
        :class:`~flowreg_dask.errors.InvalidOptionError`; pyflowreg-only keys
        (:data:`LEGACY_PYFLOWREG_KEYS`) are dropped with a
        :class:`~flowreg_dask.errors.FlowRegWarning`.

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
        default="quality",
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
        default="gc",
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
        default="joint",
        description=(
            "Intensity normalisation to [0, 1] before filtering: 'joint' (one min/max for all "
            "channels) or 'separate' (per channel)."
        ),
    )
    interpolation_method: InterpolationMethod = Field(
        default="cubic",
        description=(
            "Interpolation of the final backward warp of the raw frames: 'cubic', 'linear' or "
            "'nearest'."
        ),
    )
    nonfinite: NonfinitePolicy = Field(
        default="error",
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
        default=400,
        description=(
            "Frames (after binning) per batch / time chunk; >= 1. It sets how the work is cut "
            "into tasks, never the result (except with update_reference). Chunks shorter than "
            "the registration halo (20 frames plus the temporal filter radius) are merged."
        ),
    )
    # ---- compute backend -------------------------------------------------------------------------
    flow_backend: FlowBackend = Field(
        default="numba",
        description="Flow solver backend: 'numba' (CPU; alias 'flowreg') or 'cupy' (CUDA GPU).",
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
        default="zarr",
        description=(
            "Output format: 'zarr' (default, resumable), 'hdf5', 'tiff', 'mat', 'npy', "
            "'caiman_hdf5', 'suite2p', 'multifile_tiff', 'multifile_hdf5', 'array' (in memory) or "
            "'null' (none); case-insensitive."
        ),
    )
    input_file: Path | str | None = Field(
        default=None,
        description="Input recording (path); None when the recording is passed directly.",
    )
    output_path: Path = Field(default=Path("results"), description="Output folder.")
    output_file_name: str | None = Field(
        default=None,
        description="Output file name overriding naming_convention (None = derived from it).",
    )
    naming_convention: NamingConvention = Field(
        default="default",
        description=(
            "Output names: 'default' -> compensated.<ext>; 'batch' -> <input "
            "stem>_compensated.<ext> (also for the metadata files)."
        ),
    )
    verbose: bool = Field(default=False, description="Print extra diagnostic information.")

    _preset_before_custom: str = PrivateAttr(default="quality")

    # ---- validators ------------------------------------------------------------------------------

    @classmethod
    def _preprocess_input(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Drop pyflowreg-only keys (warning) before validation."""
        _pop_legacy_keys(data)
        return data

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
    def _v_quality(cls, value: Any) -> str:
        return _choice("quality_setting", value, _QUALITY_CHOICES)

    @field_validator("constancy_assumption", mode="before")
    @classmethod
    def _v_constancy(cls, value: Any) -> str:
        return _choice("constancy_assumption", value, _CONSTANCY_CHOICES, _CONSTANCY_ALIASES)

    @field_validator("channel_normalization", mode="before")
    @classmethod
    def _v_normalization(cls, value: Any) -> str:
        return _choice(
            "channel_normalization", value, _NORMALIZATION_CHOICES, _NORMALIZATION_ALIASES
        )

    @field_validator("interpolation_method", mode="before")
    @classmethod
    def _v_interpolation(cls, value: Any) -> str:
        return _choice(
            "interpolation_method", value, _INTERPOLATION_CHOICES, _INTERPOLATION_ALIASES
        )

    @field_validator("nonfinite", mode="before")
    @classmethod
    def _v_nonfinite(cls, value: Any) -> str:
        return _choice("nonfinite", value, _NONFINITE_CHOICES, {})

    @field_validator("flow_backend", mode="before")
    @classmethod
    def _v_backend(cls, value: Any) -> str:
        return _choice("flow_backend", value, _BACKEND_CHOICES, _BACKEND_ALIASES)

    @field_validator("output_format", mode="before")
    @classmethod
    def _v_format(cls, value: Any) -> str:
        return _choice("output_format", value, _FORMAT_CHOICES, _FORMAT_ALIASES)

    @field_validator("naming_convention", mode="before")
    @classmethod
    def _v_naming(cls, value: Any) -> str:
        return _choice("naming_convention", value, _NAMING_CHOICES)

    @field_validator("output_typename", mode="before")
    @classmethod
    def _v_typename(cls, value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, (type, np.dtype)):
            try:
                value = np.dtype(value).name
            except TypeError:
                pass
        return _choice("output_typename", value, _TYPENAME_CHOICES)

    @field_validator(
        "cc_initialization",
        "update_initialization_w",
        "update_reference",
        "save_w",
        "save_valid_idx",
        "save_meta_info",
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
    def _v_input_file(cls, value: Any) -> Path | str | None:
        if value is None:
            return None
        if not isinstance(value, (str, os.PathLike)):
            raise _invalid(
                "input_file",
                value,
                "None or a path (str or pathlib.Path)",
                "pass a file path; give in-memory arrays to the registration function directly",
            )
        return _path_or_url("input_file", value)

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
                self.__dict__["quality_setting"] = "custom"

    def __setattr__(self, name: str, value: Any) -> None:
        before = self.__dict__.get("quality_setting")
        super().__setattr__(name, value)
        if name == "min_level":
            if self.min_level >= 0 and self.quality_setting != "custom":
                self._preset_before_custom = self.quality_setting
                self.__dict__["quality_setting"] = "custom"
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

    @property
    def uses_gnc(self) -> bool:
        """True when a graduated non-convexity schedule is set."""
        return self.gnc_schedule is not None

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

    def weight_map(
        self, n_channels: int, height: int | None = None, width: int | None = None
    ) -> np.ndarray:
        """Channel weights for a recording with ``n_channels`` channels (options stay unchanged).

        Parameters
        ----------
        n_channels : int
            Number of channels C of the recording.
        height, width : int, optional
            Frame size. When given, the result is always an ``(H, W, C)`` map and a spatial weight
            map must have that size.

        Returns
        -------
        numpy.ndarray
            float64 ``(C,)`` vector summing to 1 for a 1-D weight (missing channels get 1/C, extra
            weights are dropped, then renormalised) when no frame size is given; otherwise an ``(H,
            W, C)`` map. A spatial ``(H, W)`` map is replicated to every channel; spatial maps are
            not renormalised.

        Raises
        ------
        InvalidOptionError
            If the spatial map does not fit the frame size or channel count.
        """
        n = _as_positive("n_channels", n_channels)
        if (height is None) != (width is None):
            raise InvalidOptionError(
                f"height={height!r}, width={width!r}: pass both or neither of height and width"
            )
        w = self.weight
        if isinstance(w, list):
            vec = np.full(n, 1.0 / n, dtype=np.float64)
            k = min(len(w), n)
            vec[:k] = w[:k]
            total = float(vec.sum())
            if total <= 0:
                raise InvalidOptionError(
                    f"weight={_short(w)} is invalid for {n} channel(s): the weights of the first "
                    f"{n} channel(s) sum to 0. Fix: give at least one of them a positive weight."
                )
            vec /= total
            if height is None:
                return vec
            h = _as_positive("height", height)
            wd = _as_positive("width", width)
            return np.broadcast_to(vec, (h, wd, n)).copy()
        arr = np.asarray(w, dtype=np.float64)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.shape[2] == 1 and n != 1:
            arr = np.repeat(arr, n, axis=2)
        elif arr.shape[2] != n:
            raise InvalidOptionError(
                f"weight=array(shape={w.shape}) is invalid for {n} channel(s): expected an (H, W) "
                f"map or an (H, W, {n}) map. Fix: pass one weight map per channel or a single (H, "
                "W) map."
            )
        if height is not None:
            h = _as_positive("height", height)
            wd = _as_positive("width", width)
            if arr.shape[:2] != (h, wd):
                raise InvalidOptionError(
                    f"weight=array(shape={w.shape}) is invalid for frames of {h}x{wd}: expected a "
                    f"map of shape ({h}, {wd}[, C]). Fix: resize the weight map to the frame size."
                )
        return np.array(arr, dtype=np.float64, copy=True)

    def a_data_vector(self, n_channels: int) -> np.ndarray:
        """Per-channel data-term exponents.

        Parameters
        ----------
        n_channels : int
            Number of channels C.

        Returns
        -------
        numpy.ndarray
            ``(C,)`` float64 array (a scalar ``a_data`` is repeated).

        Raises
        ------
        InvalidOptionError
            If a per-channel ``a_data`` has neither 1 nor ``n_channels`` entries.
        """
        n = _as_positive("n_channels", n_channels)
        if isinstance(self.a_data, tuple):
            if len(self.a_data) != n:
                raise InvalidOptionError(
                    f"a_data={self.a_data!r} is invalid for {n} channel(s): expected a scalar or "
                    f"{n} values. Fix: pass one exponent per channel or a single value."
                )
            return np.array(self.a_data, dtype=np.float64)
        return np.full(n, self.a_data, dtype=np.float64)

    def to_flow_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the per-frame flow engine.

        Returns
        -------
        dict
            Keys ``alpha`` (tuple), ``levels``, ``min_level`` (the *effective* finest level),
            ``eta``, ``iterations``, ``update_lag``, ``a_data`` (float or tuple), ``a_smooth``,
            ``constancy_assumption``, ``weight`` (list or ndarray copy), ``gnc_schedule``,
            ``warping_steps``, ``cc_initialization``, ``cc_hw``, ``cc_up``.
        """
        weight = self.weight.copy() if isinstance(self.weight, np.ndarray) else list(self.weight)
        return {
            "alpha": tuple(self.alpha),
            "levels": self.levels,
            "min_level": self.effective_min_level,
            "eta": self.eta,
            "iterations": self.iterations,
            "update_lag": self.update_lag,
            "a_data": self.a_data,
            "a_smooth": self.a_smooth,
            "constancy_assumption": self.constancy_assumption,
            "weight": weight,
            "gnc_schedule": self.gnc_schedule,
            "warping_steps": self.warping_steps,
            "cc_initialization": self.cc_initialization,
            "cc_hw": self.cc_hw,
            "cc_up": self.cc_up,
        }

    def resolved_output_dtype(self) -> np.dtype | None:
        """numpy dtype of ``output_typename`` (``None`` = keep the input dtype)."""
        if self.output_typename is None:
            return None
        name = {"single": "float32", "double": "float64"}.get(
            self.output_typename, self.output_typename
        )
        return np.dtype(name)

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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of all fields.

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
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, np.ndarray):
                out[name] = array_hook(name, value)
            elif isinstance(value, Path):
                out[name] = str(value)
            else:
                out[name] = _json_safe(name, value)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OFOptions:
        """Build options from a dict (e.g. :meth:`to_dict` output or a pyflowreg options file).

        Parameters
        ----------
        data : Mapping
            Field values. Array markers written by :meth:`to_dict` are restored; pyflowreg-only keys
            are dropped with a :class:`~flowreg_dask.errors.FlowRegWarning`.

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
                "Fix: pass a dict such as OFOptions().to_dict()."
            )
        d = {str(k): _restore_inline(v) for k, v in data.items()}
        _pop_legacy_keys(d)
        return cls(**d)

    def to_json(self, indent: int | None = None) -> str:
        """JSON string with arrays inline (marker dicts with dtype and shape); see to_dict()."""
        return json.dumps(self.to_dict(), indent=indent)

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
            data = _loads_toml(text, source=str(path))
        elif suffix == ".json":
            data = _parse_json_text(text, source=str(path))
        else:
            data = (
                _parse_json_text(text, source=str(path))
                if any(line.lstrip().startswith("{") for line in text.splitlines())
                else _loads_toml(text, source=str(path))
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


# --------------------------------------------------------------------------------------------------
# Legacy keys, arrays, JSON/TOML helpers
# --------------------------------------------------------------------------------------------------


def _pop_legacy_keys(data: dict[str, Any]) -> None:
    """Remove pyflowreg-only keys from ``data`` in place (warn; raise for unsupported settings)."""
    present = [k for k in LEGACY_PYFLOWREG_KEYS if k in data]
    if not present:
        return
    n_ref = data.get("n_references")
    if n_ref is not None and not (_is_number(n_ref) and float(n_ref) == 1.0):
        raise InvalidOptionError(
            f"n_references={_short(n_ref)} is not supported: flowreg_dask builds a single "
            "reference (pyflowreg only repeated one reference as well). Fix: remove n_references "
            "or set it to 1."
        )
    for key in ("get_displacement_impl", "get_displacement_factory"):
        if data.get(key) is not None:
            raise InvalidOptionError(
                f"{key}={_short(data[key])} is not supported in OFOptions: custom flow callables "
                "are not options. Fix: remove it and choose the solver with "
                "flow_backend/backend_params."
            )
    notes = []
    for key in present:
        value = data.pop(key)
        note = f"{key}={_short(value, 40)}"
        if key == "channel_idx" and value is not None:
            note += " (pyflowreg ignored it too; all channels are registered)"
        elif key == "save_valid_mask" and value:
            note += " (use save_valid_idx=True to save valid masks)"
        elif key == "preproc_funct" and value is not None:
            note += " (pyflowreg never applied it)"
        notes.append(note)
    _warn(
        "ignoring pyflowreg-only option(s) not used by flowreg_dask: "
        + ", ".join(notes)
        + ". Remove them from the options to silence this warning."
    )


def _inline_array(name: str, arr: np.ndarray) -> dict[str, Any]:
    return {
        _NDARRAY_MARKER: True,
        "dtype": arr.dtype.str,
        "shape": list(arr.shape),
        "data": arr.tolist(),
    }


def _restore_inline(value: Any) -> Any:
    if isinstance(value, Mapping) and value.get(_NDARRAY_MARKER) is True:
        try:
            dtype = np.dtype(value["dtype"])
            shape = tuple(int(s) for s in value["shape"])
            return np.array(value["data"], dtype=dtype).reshape(shape)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidOptionError(
                f"malformed array entry {_short(value)}: expected keys dtype, shape and data "
                f"({exc}). Fix: write it with OFOptions.to_dict()."
            ) from exc
    return value


def _parse_json_text(text: str, *, source: str) -> dict[str, Any]:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("{")), None)
    if start is None:
        raise InvalidOptionError(
            f"{source}: no JSON object found (expected a line starting with '{{'). Fix: pass a "
            "file written by OFOptions.save() or pyflowreg's save_options()."
        )
    try:
        data = json.loads("\n".join(lines[start:]))
    except json.JSONDecodeError as exc:
        raise InvalidOptionError(f"{source}: invalid JSON ({exc}).") from exc
    if not isinstance(data, dict):
        raise InvalidOptionError(
            f"{source}: expected a JSON object of options, got {type(data).__name__}."
        )
    return data


def _format_from_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix == ".toml":
        return "toml"
    raise InvalidOptionError(
        f"path={str(path)!r} has suffix {suffix!r}: expected '.json' or '.toml'. Fix: choose one "
        "of them."
    )


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v, where) for v in value) + "]"
    if isinstance(value, Mapping):
        items = []
        for k, v in value.items():
            if v is None:
                raise InvalidOptionError(
                    f"{where}: entry {k!r} is None, which TOML cannot store. Fix: remove it or "
                    "save as .json."
                )
            items.append(f"{_toml_key(str(k))} = {_toml_value(v, where)}")
        return "{" + ", ".join(items) + "}"
    if value is None:
        raise InvalidOptionError(
            f"{where}: a None inside a list cannot be stored in TOML. Fix: save as .json."
        )
    raise InvalidOptionError(f"{where}: cannot store {_short(value)} in TOML. Fix: save as .json.")


def _dumps_toml(data: Mapping[str, Any]) -> str:
    """Minimal TOML writer for flat option dicts (None values omitted)."""
    lines = []
    for key, value in data.items():
        if value is None:
            continue
        lines.append(f"{_toml_key(key)} = {_toml_value(value, key)}")
    return "\n".join(lines) + "\n"


def _loads_toml(text: str, *, source: str) -> dict[str, Any]:
    try:
        import tomllib as toml_reader  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as toml_reader  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ModuleNotFoundError as exc:
            raise InvalidOptionError(
                f"{source}: reading TOML on Python < 3.11 needs the 'tomli' package. Fix: "
                "pip install tomli, or use a .json options file."
            ) from exc
    try:
        return dict(toml_reader.loads(text))
    except toml_reader.TOMLDecodeError as exc:
        raise InvalidOptionError(f"{source}: invalid TOML ({exc}).") from exc


def _to_index(name: str, value: Any) -> int:
    if isinstance(value, (int, np.integer)) and not _is_bool(value) and int(value) >= 0:
        return int(value)
    raise InvalidOptionError(f"{name}={_short(value)} is invalid: expected an integer >= 0.")


def _as_positive(name: str, value: Any) -> int:
    if isinstance(value, (int, np.integer)) and not _is_bool(value) and int(value) >= 1:
        return int(value)
    raise InvalidOptionError(f"{name}={_short(value)} is invalid: expected an integer >= 1.")


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


# --------------------------------------------------------------------------------------------------
# RegistrationConfig
# --------------------------------------------------------------------------------------------------


class RegistrationConfig(_StrictModel):
    """Runtime settings of a registration run (they do not change the result).

    Parameters
    ----------
    n_jobs : int
        Worker count; -1 = all cores.
    parallelization : {None, "sequential", "threading", "multiprocessing", "distributed"}
        Execution mode; None = automatic ("threading", or "distributed" when a scheduler address is
        given).
    scheduler_address : str, optional
        Address of a running dask.distributed scheduler (only with "distributed").
    verbose : bool
        True prints more information (unlike pyflowreg, where False was the chatty mode).
    progress : bool
        Show a progress bar.
    chunk_memory : int
        Working-memory budget of one time chunk in bytes (default 256 MiB); caps the chunk
        length below ``buffer_size`` for large frames.

    Examples
    --------
    >>> RegistrationConfig(scheduler_address="tcp://127.0.0.1:8786").resolved_parallelization()
    'distributed'
    """

    n_jobs: int = Field(
        default=-1, description="Number of workers/threads; -1 = all CPU cores, otherwise >= 1."
    )
    parallelization: Parallelization | None = Field(
        default=None,
        description=(
            "Execution mode: 'sequential', 'threading', 'multiprocessing' or 'distributed'; None "
            "= automatic ('threading', or 'distributed' when scheduler_address is set)."
        ),
    )
    scheduler_address: str | None = Field(
        default=None,
        description=(
            "Address of a dask.distributed scheduler, e.g. 'tcp://10.0.0.1:8786' (distributed only)"
        ),
    )
    verbose: bool = Field(default=False, description="Print more information (True = more output).")
    progress: bool = Field(default=True, description="Show a progress bar.")
    chunk_memory: int = Field(
        default=256 * 2**20,
        ge=16 * 2**20,
        description=(
            "Bytes of working memory one time chunk may use while it is registered (raw, "
            "pre-processed and corrected frames, flows, masks). Chunks are buffer_size frames long "
            "unless that would exceed this budget; then they are shortened, so peak memory stays "
            "about n_jobs x chunk_memory whatever the recording's length and frame size."
        ),
    )

    @field_validator("n_jobs", mode="before")
    @classmethod
    def _v_n_jobs(cls, value: Any) -> int:
        fix = "pass -1 (all cores) or a positive number of workers"
        out = _as_int("n_jobs", value, low=-1, fix=fix, what="-1 or an integer")
        if out == 0:
            raise _invalid("n_jobs", value, "-1 or an integer >= 1", fix)
        return out

    @field_validator("parallelization", mode="before")
    @classmethod
    def _v_parallelization(cls, value: Any) -> str | None:
        if value is None or (
            isinstance(value, str) and value.strip().lower() in ("auto", "none", "")
        ):
            return None
        return _choice("parallelization", value, _PARALLEL_CHOICES, _PARALLEL_ALIASES)

    @field_validator("scheduler_address", mode="before")
    @classmethod
    def _v_address(cls, value: Any) -> str | None:
        if value is None:
            return None
        if (
            not isinstance(value, str)
            or not value.strip()
            or any(c.isspace() for c in value.strip())
        ):
            raise _invalid(
                "scheduler_address",
                value,
                "None or an address string such as 'tcp://127.0.0.1:8786'",
                "pass the address printed by the dask scheduler",
            )
        return value.strip()

    @field_validator("verbose", "progress", mode="before")
    @classmethod
    def _v_flags(cls, value: Any, info: Any) -> bool:
        return _as_bool(info.field_name, value)

    @model_validator(mode="after")
    def _check_address(self) -> RegistrationConfig:
        if self.scheduler_address is not None and self.parallelization not in (None, "distributed"):
            raise ValueError(
                f"scheduler_address={self.scheduler_address!r} is invalid with "
                f"parallelization={self.parallelization!r}: a scheduler address needs "
                "'distributed'. Fix: set parallelization='distributed' (or None), or "
                "scheduler_address=None."
            )
        return self

    def resolved_n_jobs(self) -> int:
        """Number of workers: ``n_jobs``, or ``os.cpu_count()`` for -1."""
        if self.n_jobs == -1:
            return os.cpu_count() or 1
        return self.n_jobs

    def resolved_parallelization(self) -> str:
        """Execution mode with None resolved ("distributed" with an address, else "threading")."""
        if self.parallelization is not None:
            return self.parallelization
        return "distributed" if self.scheduler_address is not None else "threading"
