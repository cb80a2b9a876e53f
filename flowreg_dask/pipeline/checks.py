"""Checks a run makes before it writes anything: inputs that are not outputs, finite values.

Each check raises an error that names what is wrong and what to do; none changes the input.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError, InvalidOptionError

__all__ = ["input_paths", "check_distinct", "nonfinite_frames", "format_frames"]


def _resolved(path: Any) -> Path:
    return Path(os.path.realpath(os.path.expanduser(os.fspath(path))))


def input_paths(recording: Any, source: Any) -> list[Path]:
    """The files and folders a recording is read from (resolved, symbolic links followed)."""
    files = list(getattr(recording, "attrs", {}).get("files") or [])
    if isinstance(source, (str, os.PathLike)):
        files.append(source)
    elif isinstance(source, (list, tuple)):
        files.extend(s for s in source if isinstance(s, (str, os.PathLike)))
    return sorted({_resolved(f) for f in files})


def check_distinct(inputs: Iterable[Path], outputs: Iterable[Path | None]) -> None:
    """Refuse outputs that are, contain or lie inside an input file or folder.

    Raises
    ------
    InvalidOptionError
        Naming the input and the output that collide.
    """
    ins = [_resolved(p) for p in inputs]
    for out in outputs:
        if out is None:
            continue
        target = _resolved(out)
        for src in ins:
            if target == src or src in target.parents or target in src.parents:
                raise InvalidOptionError(
                    f"output {str(out)!r} would overwrite the input {str(src)!r} (the same file or "
                    "folder, or one inside the other); the input is never modified. Choose an "
                    "output path outside the input."
                )


def format_frames(indices: Sequence[int], limit: int = 10) -> str:
    """``[0, 1, 2, 7]`` -> ``"0-2, 7"`` (at most ``limit`` ranges)."""
    runs: list[list[int]] = []
    for i in sorted(int(x) for x in indices):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    parts = [f"{a}" if a == b else f"{a}-{b}" for a, b in runs[:limit]]
    if len(runs) > limit:
        parts.append(f"... ({len(runs) - limit} more)")
    return ", ".join(parts)


def _nonfinite_per_frame(block: np.ndarray) -> np.ndarray:
    flat = block.reshape(block.shape[0], -1)
    return ~np.isfinite(flat).all(axis=1)


def nonfinite_frames(data: Any, run: Any) -> np.ndarray:
    """Indices of the frames of a (t, y, x, c) dask array holding NaN or Inf (float data only;
    integer recordings cannot hold them and are not read)."""
    if np.dtype(data.dtype).kind != "f":
        return np.empty(0, np.int64)
    flags = data.map_blocks(
        _nonfinite_per_frame, drop_axis=[1, 2, 3], dtype=bool, meta=np.empty((0,), bool)
    )
    (out,) = run.compute(flags)
    return np.flatnonzero(out)


def refuse_nonfinite(bad: np.ndarray, where: str) -> None:
    """Raise for the frames ``bad`` (see :func:`nonfinite_frames`)."""
    if bad.size:
        raise InvalidInputError(
            f"{where}: {bad.size} frame(s) hold NaN or Inf values (frames {format_frames(bad)}); "
            "nothing was written. Replace them (e.g. numpy.nan_to_num, or drop those frames with "
            "frames=/--frames), or pass nonfinite='reference' to fill them from the reference."
        )
