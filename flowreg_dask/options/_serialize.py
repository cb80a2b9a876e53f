"""Options as files and plain data: JSON/TOML text, inline arrays, pyflowreg-only keys."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidOptionError
from ._validate import _short

_NDARRAY_MARKER = "__ndarray__"
_NPY_MARKER = "__npy__"


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
                f"({exc}). Fix: write it with OFOptions.to_json_dict()."
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


def loads_toml(text: str, *, source: str) -> dict[str, Any]:
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
