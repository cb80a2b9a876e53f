"""Coercion, messages and the strict pydantic base model shared by the option models."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from difflib import get_close_matches
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, WithJsonSchema, model_validator

from ..errors import InvalidOptionError, warn_user

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


def _short(value: Any, limit: int = 80) -> str:
    """Short ``repr`` of ``value`` for error messages (arrays and long lists summarised)."""
    if isinstance(value, np.ndarray):
        return f"array(shape={value.shape}, dtype={value.dtype})"
    if isinstance(value, Enum):
        return repr(value.value)
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


def _warn(message: str) -> None:
    warn_user(message)


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


class OptionsValidationError(ValidationError, InvalidOptionError):
    """Invalid option values: a pydantic ``ValidationError`` (as pyflowreg raises) that is also an
    :class:`~flowreg_dask.errors.InvalidOptionError` and a ``ValueError``; its message names each
    field, the value, what is allowed and the fix."""

    def __str__(self) -> str:
        return getattr(self, "_message", None) or super().__str__()


def _as_options_error(model: str, exc: ValidationError, fields: Mapping[str, Any]) -> Exception:
    from pydantic_core import InitErrorDetails, PydanticCustomError

    details = []
    for err in exc.errors(include_url=False):
        text = str(err.get("msg", "")).replace("{", "{{").replace("}", "}}")
        details.append(
            InitErrorDetails(
                type=PydanticCustomError(str(err.get("type", "value_error")), text),
                loc=tuple(err.get("loc", ())),
                input=err.get("input"),
            )
        )
    error = OptionsValidationError.from_exception_data(model, details)
    error._message = _format_validation_error(model, exc, fields)
    return error


class StrictModel(BaseModel):
    """Base model: extra keys forbidden, validated on assignment, raises
    :class:`OptionsValidationError` (a pydantic ``ValidationError`` and an ``InvalidOptionError``).

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
                raise _as_options_error(type(self).__name__, exc, type(self).model_fields) from exc

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
            raise _as_options_error(type(self).__name__, exc, fields) from exc
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


def _to_index(name: str, value: Any) -> int:
    if isinstance(value, (int, np.integer)) and not _is_bool(value) and int(value) >= 0:
        return int(value)
    raise InvalidOptionError(f"{name}={_short(value)} is invalid: expected an integer >= 0.")


def _as_positive(name: str, value: Any) -> int:
    if isinstance(value, (int, np.integer)) and not _is_bool(value) and int(value) >= 1:
        return int(value)
    raise InvalidOptionError(f"{name}={_short(value)} is invalid: expected an integer >= 1.")
