"""Error and warning classes of flowreg_dask.

Every error inherits a builtin exception as well, so ``except ValueError`` keeps working for callers
that do not know our classes. Messages say what was expected, what was found and what to do.
"""

from __future__ import annotations

__all__ = [
    "FlowRegError",
    "InvalidOptionError",
    "InvalidInputError",
    "RecordingNotFoundError",
    "UnsupportedFormatError",
    "IncompleteStoreError",
    "OutputExistsError",
    "BackendUnavailableError",
    "StoreLockedError",
    "RunInterruptedError",
    "NotSupportedError",
    "ClosedError",
    "FlowRegWarning",
    "warn_user",
]


class FlowRegError(Exception):
    """Base class of all flowreg_dask errors."""


class InvalidOptionError(FlowRegError, ValueError):
    """An option or parameter has a value outside what is allowed."""


class InvalidInputError(FlowRegError, ValueError):
    """An input array or file has the wrong shape, dtype or content."""


class RecordingNotFoundError(FlowRegError, FileNotFoundError):
    """A recording, dataset or reference file does not exist."""


class UnsupportedFormatError(FlowRegError, ValueError):
    """No reader or writer handles the given file or format."""


class IncompleteStoreError(FlowRegError, RuntimeError):
    """An output store was opened as a result but its run has not finished."""


class OutputExistsError(FlowRegError, FileExistsError):
    """A complete output exists already and ``overwrite`` was not requested."""


class BackendUnavailableError(FlowRegError, RuntimeError):
    """The requested compute backend (e.g. ``cupy``) cannot be used on this machine."""


class StoreLockedError(FlowRegError, BlockingIOError):
    """Another run is writing the same output store (the message names it)."""


class RunInterruptedError(FlowRegError, RuntimeError):
    """A run stopped before it finished (Ctrl-C, full disk, a failed worker); what was written
    is kept and the message says how to resume."""


class NotSupportedError(FlowRegError, NotImplementedError):
    """A feature of pyflowreg (or a format) that flowreg_dask does not provide; the message says
    what to use instead."""


class ClosedError(FlowRegError, ValueError):
    """A video reader or writer was used after ``close()``."""


class FlowRegWarning(UserWarning):
    """Warnings emitted by flowreg_dask (clipped indices, fallbacks, ...)."""


def warn_user(message: str, category: type[Warning] = FlowRegWarning) -> None:
    """Emit a warning attributed to the first caller outside flowreg_dask and pydantic (the
    user's line), so ``-W error`` and warning filters point at the user's code."""
    import os
    import sys
    import warnings

    here = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame = sys._getframe(1)
    level = 2  # stacklevel 2 is warn_user's caller
    while frame is not None:
        name = os.path.abspath(frame.f_code.co_filename)
        if not (name.startswith(here) or f"{os.sep}pydantic" in name):
            break
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
