"""Small shared helpers of the reader layer."""

from __future__ import annotations

import os

import numpy as np

from ..errors import (
    warn_user,  # noqa: F401  (re-exported for the readers)
)

__all__ = [
    "warn_user",
    "describe_path",
    "length_to_um",
    "interval_to_rate",
    "positive_float",
    "frame_runs",
    "format_frame_ranges",
]

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def describe_path(path: object) -> str:
    """A path as it appears in messages: ``'/data/run1.tif'``."""
    return f"'{os.fspath(path)}'" if isinstance(path, (str, os.PathLike)) else repr(path)


_LENGTH_TO_UM = {
    "um": 1.0,
    "µm": 1.0,
    "μm": 1.0,
    "\\u00b5m": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "nanometre": 1e-3,
    "mm": 1e3,
    "millimeter": 1e3,
    "millimetre": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "m": 1e6,
    "meter": 1e6,
    "metre": 1e6,
}

_TIME_TO_S = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "ms": 1e-3,
    "millisecond": 1e-3,
    "milliseconds": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "microsecond": 1e-6,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}


def length_to_um(value: object, unit: object) -> float | None:
    """``value`` in ``unit`` as micrometres; None if either is unknown or not positive."""
    try:
        factor = _LENGTH_TO_UM[str(unit).strip().lower()]
        result = float(value) * factor  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError):
        return None
    return result if result > 0 and result == result else None


def interval_to_rate(value: object, unit: object = "s") -> float | None:
    """Frame rate in Hz from a frame interval in ``unit``; None if unknown or not positive."""
    try:
        seconds = float(value) * _TIME_TO_S[str(unit).strip().lower()]  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError):
        return None
    return 1.0 / seconds if seconds > 0 and seconds == seconds else None


def positive_float(value: object) -> float | None:
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return result if result > 0 and result == result and result != float("inf") else None


def frame_runs(mask: np.ndarray) -> tuple[tuple[int, int], ...]:
    """``(start, stop)`` of every run of True in a 1-D boolean mask."""
    padded = np.concatenate([[0], np.asarray(mask, dtype=np.int8).reshape(-1), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return tuple((int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True))


def format_frame_ranges(ranges: tuple[tuple[int, int], ...] | list[tuple[int, int]]) -> str:
    """``'50-599'``, ``'3, 10-19'``: inclusive frame numbers of ``(start, stop)`` ranges."""
    return ", ".join(f"{a}" if b - a == 1 else f"{a}-{b - 1}" for a, b in ranges)
