"""Names and small helpers shared by every layer (imports nothing from the package)."""

from __future__ import annotations

from collections.abc import Iterable

#: Axis order of every movie the library hands out: time, rows, columns, channels.
DIMS: tuple[str, str, str, str] = ("t", "y", "x", "c")
#: Per-frame statistics of a registration (pyflowreg's ``statistics.npz`` keys).
STAT_NAMES: tuple[str, ...] = ("mean_disp", "max_disp", "mean_div", "mean_translation")
#: Frames per time chunk unless told otherwise (OFOptions.buffer_size, open_recording).
DEFAULT_BUFFER_SIZE: int = 400


def bounds_from_chunks(lengths: Iterable[int]) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of consecutive chunks of the given lengths (empty ones dropped)."""
    bounds, start = [], 0
    for n in lengths:
        n = int(n)
        if n > 0:
            bounds.append((start, start + n))
            start += n
    return bounds
