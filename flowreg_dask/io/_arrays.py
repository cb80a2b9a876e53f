"""Helpers shared by the array-like readers (HDF5, MAT, zarr, npy, raw, in-memory arrays).

* ``axes`` strings: one letter per stored dimension out of ``t`` (time), ``z`` (depth, flattened
  into frames), ``y``, ``x`` and ``c`` (channel), e.g. ``"tyx"``, ``"yxt"``, ``"tcyx"``.
* :class:`AxesArrayFrames`: a :class:`LazyFrames` over one or more same-shaped stored arrays
  (one per channel group), transposed to ``(T, H, W, C)``.
* :func:`discover_datasets`: which datasets of an HDF5/MAT/zarr container hold the movie.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ._lazy import LazyFrames
from ._util import warn_user

__all__ = [
    "AXIS_LETTERS",
    "parse_axes",
    "default_axes",
    "axes_from_names",
    "axis_letter",
    "frames_layout",
    "to_tyxc",
    "AxesArrayFrames",
    "discover_datasets",
    "format_datasets",
    "check_numeric_dtype",
    "warn_z_flattened",
]

AXIS_LETTERS = "tzyxc"

_NAME_ALIASES = {
    "t": "t",
    "time": "t",
    "times": "t",
    "frame": "t",
    "frames": "t",
    "f": "t",
    "z": "z",
    "depth": "z",
    "plane": "z",
    "planes": "z",
    "slice": "z",
    "slices": "z",
    "y": "y",
    "row": "y",
    "rows": "y",
    "height": "y",
    "h": "y",
    "x": "x",
    "col": "x",
    "cols": "x",
    "column": "x",
    "columns": "x",
    "width": "x",
    "w": "x",
    "c": "c",
    "ch": "c",
    "chan": "c",
    "channel": "c",
    "channels": "c",
    "s": "c",
    "sample": "c",
    "samples": "c",
}

_DEFAULT_AXES = {2: "yx", 3: "tyx", 4: "tyxc"}


def default_axes(ndim: int) -> str | None:
    """Axes assumed for an unlabelled array: (H,W), (T,H,W), (T,H,W,C); None otherwise."""
    return _DEFAULT_AXES.get(ndim)


def parse_axes(axes: str, ndim: int, *, where: str) -> str:
    """Validate a user ``axes`` string for an array of ``ndim`` dimensions."""
    if not isinstance(axes, str):
        msg = f"axes must be a string such as 'tyx' or 'yxt', got {axes!r} for {where}"
        raise InvalidInputError(msg)
    ax = axes.strip().lower()
    bad = sorted(set(ax) - set(AXIS_LETTERS))
    if bad or len(set(ax)) != len(ax) or "y" not in ax or "x" not in ax:
        msg = (
            f"axes={axes!r} for {where} is not valid: use each of the letters t (time), z (depth, "
            "flattened into frames), y, x, c (channel) at most once, with y and x present, "
            "e.g. 'tyx', 'yxt' or 'tcyx'"
        )
        raise InvalidInputError(msg)
    if len(ax) != ndim:
        msg = (
            f"axes={axes!r} has {len(ax)} letters but {where} has {ndim} dimensions; "
            "give one letter per stored dimension"
        )
        raise InvalidInputError(msg)
    return ax


def axis_letter(name: Any) -> str | None:
    """Axis letter for a dimension name (``"time"`` -> ``"t"``); None if unknown."""
    if name is None:
        return None
    return _NAME_ALIASES.get(str(name).strip().lower())


def axes_from_names(names: Sequence[Any] | None) -> str | None:
    """Axes letters from dimension names (``('t', 'c', 'y', 'x')``, ``('time', ...)``).

    Returns None if any name is missing or unknown, or if the result is not a valid axes string.
    """
    if not names:
        return None
    letters = []
    for name in names:
        letter = axis_letter(name)
        if letter is None:
            return None
        letters.append(letter)
    ax = "".join(letters)
    if len(set(ax)) != len(ax) or "y" not in ax or "x" not in ax:
        return None
    return ax


def frames_layout(shape: Sequence[int], axes: str) -> tuple[int, int, int, int, int]:
    """``(T_total, H, W, C, Z)`` of an array with the given axes (T_total = t * z)."""
    sizes = dict(zip(axes, (int(s) for s in shape), strict=True))
    z = sizes.get("z", 1)
    return sizes.get("t", 1) * z, sizes["y"], sizes["x"], sizes.get("c", 1), z


def to_tyxc(block: np.ndarray, axes: str) -> np.ndarray:
    """Transpose a block with ``axes`` to ``(t*z, y, x, c)`` (t major, z minor)."""
    order = [a for a in AXIS_LETTERS if a in axes]
    block = np.transpose(block, [axes.index(a) for a in order])
    sizes = dict(zip(order, block.shape, strict=True))
    full = [sizes.get(a, 1) for a in AXIS_LETTERS]
    block = block.reshape(full)  # (t, z, y, x, c)
    return block.reshape(full[0] * full[1], full[2], full[3], full[4])


def check_numeric_dtype(dtype: Any, *, where: str) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.kind not in "uif":
        msg = (
            f"{where} has data type {dtype}, expected integer or floating-point pixels; "
            "convert it (e.g. .astype('uint16') or .astype('float32')) before opening"
        )
        raise InvalidInputError(msg)
    return dtype


class AxesArrayFrames(LazyFrames):
    """Frames from one or more stored arrays with a known axes order.

    Subclasses set ``path``/``stamp``/``members`` and implement ``_arrays()``, returning one
    sliceable array per member (h5py datasets, zarr arrays, memmaps, ...), opened through
    :func:`flowreg_dask.io._lazy.cached_handle`. Members are stacked along channels.
    """

    __slots__ = ("path", "stamp", "members", "axes", "raw_shape", "zsize")

    def __init__(
        self,
        *,
        path: str,
        stamp: tuple[int, int] | None,
        members: Sequence[Any],
        axes: str,
        raw_shape: Sequence[int],
        dtype: Any,
        metadata: dict[str, Any],
    ) -> None:
        t, h, w, c, z = frames_layout(raw_shape, axes)
        super().__init__((t, h, w, c * len(members)), dtype, metadata)
        self.path = path
        self.stamp = stamp
        self.members = tuple(members)
        self.axes = axes
        self.raw_shape = tuple(int(s) for s in raw_shape)
        self.zsize = z

    def _arrays(self) -> list[Any]:
        raise NotImplementedError

    def _read(self, start: int, stop: int) -> np.ndarray:
        z = self.zsize
        t0, t1 = start // z, (stop - 1) // z + 1
        key = tuple(slice(t0, t1) if a == "t" else slice(None) for a in self.axes)
        blocks = []
        for arr in self._arrays():
            block = to_tyxc(np.asarray(arr[key]), self.axes)
            blocks.append(block[start - t0 * z : stop - t0 * z].astype(self.dtype, copy=False))
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=3)


# --------------------------------------------------------------------------------------------
# dataset discovery (HDF5, MAT, zarr groups)
# --------------------------------------------------------------------------------------------

_CHANNEL_RE = re.compile(r"^(?P<prefix>.*?)(?:channel|chan|ch)[ _.\-]*(?P<num>\d+)$", re.IGNORECASE)
_MOVIE_NAMES = ("mov", "data", "dataset")


def format_datasets(candidates: Mapping[str, tuple[tuple[int, ...], Any]]) -> str:
    """``'/mov' (100, 16, 20) uint16, ...`` for error messages."""
    if not candidates:
        return "(none)"
    return ", ".join(
        f"'{name}' {tuple(shape)} {np.dtype(dt) if dt is not None else '?'}"
        for name, (shape, dt) in sorted(candidates.items())
    )


def discover_datasets(
    candidates: Mapping[str, tuple[tuple[int, ...], Any]],
    *,
    ndims: tuple[int, ...] = (3, 4),
    where: str,
) -> list[str]:
    """Names of the dataset(s) holding the movie, one per channel group.

    ``candidates`` maps dataset names (paths inside the container, ``/``-separated) to
    ``(shape, dtype)``; only numeric datasets with ``ndim in ndims`` are considered.

    1. Names ending in a channel number (``ch1``, ``channel_2``, ``Ch.3``, ``prefix_chan4``),
       grouped by their prefix; the largest group whose members share one shape wins, sorted by
       number.
    2. Otherwise a dataset named ``mov``, ``data`` or ``dataset`` (the shallowest one).
    3. Otherwise the largest dataset.
    """
    usable = {
        name: (tuple(shape), dt)
        for name, (shape, dt) in candidates.items()
        if len(shape) in ndims and dt is not None and np.dtype(dt).kind in "uif"
    }
    # pass 1: channel-numbered names
    groups: dict[tuple[str, tuple[int, ...]], list[tuple[int, str]]] = {}
    for name, (shape, _) in usable.items():
        parent, _, base = name.rpartition("/")
        m = _CHANNEL_RE.match(base)
        if m:
            key = (parent + "/" + m.group("prefix").lower(), shape)
            groups.setdefault(key, []).append((int(m.group("num")), name))
    if groups:
        best = max(
            groups.items(),
            key=lambda kv: (len(kv[1]), int(np.prod(kv[0][1])), [-ord(ch) for ch in kv[0][0]]),
        )
        members = sorted(best[1])
        nums = [n for n, _ in members]
        if len(set(nums)) != len(nums):
            msg = f"{where}: channel datasets with repeated numbers: {[n for _, n in members]}"
            raise InvalidInputError(msg)
        return [name for _, name in members]
    # pass 2: conventional names
    named = [name for name in usable if name.rpartition("/")[2].lower() in _MOVIE_NAMES]
    if named:
        named.sort(
            key=lambda n: (n.count("/"), _MOVIE_NAMES.index(n.rpartition("/")[2].lower()), n)
        )
        return [named[0]]
    # pass 3: largest
    if usable:
        return [max(sorted(usable), key=lambda n: int(np.prod(usable[n][0])))]
    nd = " or ".join(f"{d}-D" for d in ndims)
    msg = (
        f"{where} contains no numeric {nd} dataset that could hold a movie; datasets found: "
        f"{format_datasets(candidates)}. Pass dataset='NAME' (and axes=... if the dimensions are "
        "not (T, H, W[, C]))."
    )
    raise InvalidInputError(msg)


def warn_z_flattened(zsize: int, where: str) -> None:
    """Warn that ``zsize > 1`` planes are read as consecutive frames."""
    if zsize > 1:
        warn_user(
            f"{where} has a z axis of {zsize} planes; planes are read as consecutive frames "
            "(t major, z minor). Select one plane beforehand to register a single plane."
        )
