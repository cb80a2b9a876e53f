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

from ..errors import InvalidInputError, RecordingNotFoundError
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
            f"{where} has dtype {dtype}, expected integer or floating-point pixels; "
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
#: Base names of the arrays that flowreg_dask and pyflowreg exports store beside the movie
#: (flow components, valid masks, the reference image): never the movie when another
#: candidate exists.
AUXILIARY_NAMES = ("u", "v", "w", "valid", "reference")


def format_datasets(candidates: Mapping[str, tuple[tuple[int, ...], Any]]) -> str:
    """``'/mov' (100, 16, 20) uint16, ...`` for error messages."""
    if not candidates:
        return "(none)"
    return ", ".join(
        f"'{name}' {tuple(shape)} {np.dtype(dt) if dt is not None else '?'}"
        for name, (shape, dt) in sorted(candidates.items())
    )


def _channel_groups(
    usable: Mapping[str, tuple[tuple[int, ...], Any]],
) -> tuple[list[list[str]], list[str]]:
    """Channel-numbered names grouped by (parent, prefix, shape); the other names."""
    groups: dict[tuple[str, tuple[int, ...]], list[tuple[int, str]]] = {}
    single: list[str] = []
    for name, (shape, _) in sorted(usable.items()):
        parent, _, base = name.rpartition("/")
        m = _CHANNEL_RE.match(base)
        if m is None:
            single.append(name)
            continue
        key = (parent + "/" + m.group("prefix").lower(), shape)
        groups.setdefault(key, []).append((int(m.group("num")), name))
    out = []
    for members in groups.values():
        members.sort()
        nums = [n for n, _ in members]
        if len(set(nums)) != len(nums):  # ch1 and ch01: not one channel group
            single.extend(name for _, name in members)
        else:
            out.append([name for _, name in members])
    return out, single


def _describe_candidate(
    names: Sequence[str], candidates: Mapping[str, tuple[tuple[int, ...], Any]]
) -> str:
    shape, dt = candidates[names[0]]
    dtypes = sorted({str(np.dtype(candidates[n][1])) for n in names})
    dtype = "/".join(dtypes)
    if len(names) == 1:
        return f"'{names[0]}' {tuple(shape)} {dtype}"
    listed = ", ".join(f"'{n}'" for n in names)
    return f"{listed} ({len(names)} channels, each {tuple(shape)} {dtype})"


def discover_datasets(
    candidates: Mapping[str, tuple[tuple[int, ...], Any]],
    *,
    ndims: tuple[int, ...] = (3, 4),
    where: str,
    declared: Sequence[str] | None = None,
    member_word: str = "dataset",
) -> tuple[list[str], str]:
    """The dataset(s) holding the movie, one per channel group, and why they were chosen.

    ``candidates`` maps dataset names (paths inside the container, ``/``-separated) to
    ``(shape, dtype)``. The choice is made only when it is unambiguous:

    1. ``declared``: names the file itself lists as its movie (the ``dataset_names`` attribute
       that flowreg_dask and pyflowreg write), when they all exist.
    2. Otherwise the *candidates* are the numeric datasets with ``ndim in ndims``; datasets
       named like the auxiliary arrays of registration outputs (:data:`AUXILIARY_NAMES`:
       ``u``, ``v``, ``w``, ``valid``, ``reference``) are left out when anything else remains.
       Channel-numbered names with one prefix and shape (``ch1``, ``ch2``;
       ``channel_1``; ``Ch.3``) form one candidate, sorted by number.
    3. Exactly one candidate: it is read. Several: :class:`InvalidInputError` listing them
       (name, shape, dtype) and saying how to choose; a conventional name such as ``mov`` or
       ``data`` does not win over another movie-shaped dataset. None: an error listing what
       the file holds.

    Returns
    -------
    names : list of str
        The chosen datasets (several: one per channel).
    reason : str
        How they were chosen, for ``flowreg-dask info``.
    """
    if declared:
        names = [str(n).strip("/") for n in declared]
        if names and all(n in candidates for n in names):
            return names, "listed in the file's 'dataset_names' attribute"
    usable = {
        name: (tuple(shape), dt)
        for name, (shape, dt) in candidates.items()
        if len(shape) in ndims and dt is not None and np.dtype(dt).kind in "uif"
    }
    primary = {
        n: v for n, v in usable.items() if n.rpartition("/")[2].lower() not in AUXILIARY_NAMES
    }
    if primary:
        usable = primary
    groups, single = _channel_groups(usable)
    options = groups + [[name] for name in single]
    if len(options) == 1:
        names = options[0]
        if len(names) > 1:
            return names, f"the only movie-shaped {member_word}s (channel-numbered)"
        return names, f"the only movie-shaped {member_word}"
    nd = " or ".join(f"{d}-D" for d in ndims)
    if not options:
        msg = (
            f"{where} contains no numeric {nd} {member_word} that could hold a movie; "
            f"{member_word}s found: {format_datasets(candidates)}. Pass dataset='NAME' (and "
            "axes=... if the dimensions are not (T, H, W[, C]))."
        )
        raise InvalidInputError(msg)
    options.sort(key=lambda names: names[0])
    listing = "; ".join(_describe_candidate(names, usable) for names in options)
    first = options[0]
    example = f"'{first[0]}'" if len(first) == 1 else "[" + ", ".join(f"'{n}'" for n in first) + "]"
    cli = ",".join(first)
    msg = (
        f"{where} holds several {member_word}s that could be the movie (numeric {nd}): "
        f"{listing}. Choose one: dataset={example} in Python, --dataset {cli} on the command "
        f"line (several names, one per channel, are read as channels)."
    )
    raise InvalidInputError(msg)


def warn_z_flattened(zsize: int, where: str) -> None:
    """Warn that ``zsize > 1`` planes are read as consecutive frames."""
    if zsize > 1:
        warn_user(
            f"{where} has a z axis of {zsize} planes; planes are read as consecutive frames "
            "(t major, z minor). Select one plane beforehand to register a single plane."
        )


def select_members(
    available: dict[str, tuple],
    dataset: str | list[str] | tuple[str, ...] | None,
    *,
    kind: str,
    path: str,
    ndims: tuple[int, ...] = (3, 4),
    declared: list[str] | None = None,
    member_word: str = "dataset",
) -> tuple[list[str], str]:
    """Dataset names to read, and how they were chosen.

    The requested ones (checked), or the unambiguous choice of :func:`discover_datasets`
    (``declared``: the names the file lists as its movie, if it does).
    """
    where = f"{kind} file '{path}'"
    if dataset is None:
        return discover_datasets(
            available, ndims=ndims, where=where, declared=declared, member_word=member_word
        )
    names = [dataset] if isinstance(dataset, str) else list(dataset)
    if not names:
        msg = f"dataset=[] for {where}: give at least one {member_word} name"
        raise InvalidInputError(msg)
    out = []
    for name in names:
        key = str(name).strip("/")
        if key not in available:
            msg = (
                f"{member_word.capitalize()} {name!r} not found in {where}. "
                f"{member_word.capitalize()}s in the file: {format_datasets(available)}. "
                f"Pass one of them with dataset='NAME' (CLI: --dataset NAME)."
            )
            raise RecordingNotFoundError(msg)
        out.append(key)
    return out, "given with dataset="


def check_members(
    available: dict[str, tuple], names: list[str], *, kind: str, path: str
) -> tuple[tuple[int, ...], np.dtype]:
    """Common shape and promoted dtype of the chosen datasets."""
    where = f"{kind} file '{path}'"
    shapes = {n: available[n][0] for n in names}
    if len(set(shapes.values())) > 1:
        msg = (
            f"Channel datasets of {where} differ in shape: "
            + ", ".join(f"'{n}' {s}" for n, s in shapes.items())
            + ". Pass dataset=[...] with datasets of one shape."
        )
        raise InvalidInputError(msg)
    dtypes = []
    for n in names:
        dt = available[n][1]
        if dt is None:
            msg = f"Dataset '{n}' of {where} is not numeric; pass dataset='NAME' of a movie"
            raise InvalidInputError(msg)
        dtypes.append(check_numeric_dtype(dt, where=f"dataset '{n}' of {where}"))
    return shapes[names[0]], np.result_type(*dtypes)


def resolve_axes(axes: str | None, shape: tuple[int, ...], *, where: str) -> str:
    if axes is not None:
        return parse_axes(axes, len(shape), where=where)
    ax = default_axes(len(shape))
    if ax is None:
        msg = (
            f"{where} has {len(shape)} dimensions {shape}; expected (T, H, W) or (T, H, W, C). "
            "Pass axes='...' (letters t, z, y, x, c in stored order), e.g. axes='tzcyx'"
        )
        raise InvalidInputError(msg)
    return ax


def check_frames(shape: tuple[int, ...], axes: str, *, where: str) -> None:
    t, h, w, c, z = frames_layout(shape, axes)
    if t == 0 or h == 0 or w == 0 or c == 0:
        msg = f"{where} has shape {shape} (axes {axes!r}): zero frames or an empty frame"
        raise InvalidInputError(msg)
    warn_z_flattened(z, where)
