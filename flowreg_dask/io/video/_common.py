"""Helpers shared by the video readers and writers: argument checks, axis orders, atomic files."""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InvalidOptionError

__all__ = [
    "positive_int",
    "ordering_axes",
    "AtomicFile",
    "PARTIAL_SUFFIX",
]

#: Suffix of the hidden files a writer fills before renaming them into place (as the exports).
PARTIAL_SUFFIX = ".partial"


def positive_int(name: str, value: Any, *, where: str = "") -> int:
    """``value`` as an int >= 1, or :class:`InvalidOptionError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        at = f" of {where}" if where else ""
        msg = f"{name}{at} must be a positive integer (>= 1), got {value!r}"
        raise InvalidOptionError(msg)
    return int(value)


def ordering_axes(ordering: Sequence[int], base: str, *, name: str, where: str) -> str:
    """Axis letters of a stored array from pyflowreg's ``dimension_ordering``.

    ``ordering`` is the permutation ``p`` with ``stored.transpose(p)`` in the order ``base``
    (``"yxt"``: height, width, time). The default orderings, ``(0, 1, 2)`` for MAT variables
    and ``(1, 2, 0)`` for HDF5 datasets, give ``"yxt"`` and ``"tyx"``.
    """
    try:
        p = [int(v) for v in ordering]
    except (TypeError, ValueError) as exc:
        msg = f"{name}={ordering!r} for {where} must be a permutation of (0, 1, 2)"
        raise InvalidOptionError(msg) from exc
    if sorted(p) != list(range(len(base))):
        msg = (
            f"{name}={tuple(ordering)!r} for {where} is not a permutation of "
            f"{tuple(range(len(base)))}: stored.transpose({name}) must give (height, width, time)"
        )
        raise InvalidOptionError(msg)
    axes = [""] * len(base)
    for i, stored_axis in enumerate(p):
        axes[stored_axis] = base[i]
    return "".join(axes)


class AtomicFile:
    """A file written under a hidden temporary name and renamed into place on :meth:`commit`.

    The temporary file ``.<name>.<random>.partial`` lies next to the final one, so the rename
    is atomic; an existing final file is replaced only by a complete new one.
    """

    __slots__ = ("final", "tmp")

    def __init__(self, final: str | os.PathLike[str]) -> None:
        self.final = Path(os.fspath(final)).expanduser().absolute()
        self.tmp = self.final.with_name(
            f".{self.final.name}.{uuid.uuid4().hex[:8]}{PARTIAL_SUFFIX}"
        )

    def prepare(self) -> Path:
        """Create the destination folder; return the temporary path to write."""
        if self.final.is_dir():
            msg = (
                f"cannot write the video file '{self.final}': a folder of that name exists. "
                "Choose another output file name."
            )
            raise InvalidOptionError(msg)
        try:
            self.final.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = (
                f"cannot create the folder '{self.final.parent}' for '{self.final.name}': "
                f"{exc.strerror or exc}. Choose a writable destination."
            )
            raise OSError(exc.errno, msg) from exc
        return self.tmp

    def commit(self) -> None:
        """Rename the finished temporary file to its final name (replacing an old file)."""
        os.replace(self.tmp, self.final)

    def discard(self) -> None:
        """Delete the temporary file, if any."""
        try:
            self.tmp.unlink()
        except FileNotFoundError:
            pass
