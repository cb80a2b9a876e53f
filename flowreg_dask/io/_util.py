"""Small shared helpers of the reader layer."""

from __future__ import annotations

import os
import sys
import warnings

from ..errors import FlowRegWarning

__all__ = ["warn_user", "describe_path"]

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def warn_user(message: str, category: type[Warning] = FlowRegWarning) -> None:
    """Emit a warning attributed to the first caller outside flowreg_dask (the user's line)."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
        _PACKAGE_DIR + os.sep
    ):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)


def describe_path(path: object) -> str:
    """A path as it appears in messages: ``'/data/run1.tif'``."""
    return f"'{os.fspath(path)}'" if isinstance(path, (str, os.PathLike)) else repr(path)
