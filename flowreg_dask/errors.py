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


class FlowRegWarning(UserWarning):
    """Warnings emitted by flowreg_dask (clipped indices, fallbacks, ...)."""


def warn_user(message: str, stacklevel: int = 3) -> None:
    """Emit a :class:`FlowRegWarning` pointing at the caller's caller."""
    import warnings

    warnings.warn(message, FlowRegWarning, stacklevel=stacklevel)
