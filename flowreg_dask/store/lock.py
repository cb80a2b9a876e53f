"""One writer per output store: an exclusive lock file next to the store.

``OUT.zarr`` is locked by ``OUT.zarr.lock`` (beside the store, so the zarr hierarchy holds no
foreign file). The lock file is created exclusively and holds who owns it (host, process id,
start time, command line); the owner also keeps an ``fcntl`` lock on it while it runs, which the
operating system drops when the process dies, however it dies. So:

* a second run on the same output fails at once with :class:`~flowreg_dask.errors.StoreLockedError`
  naming the owner;
* a lock left by a killed run on this host is recognised (nobody holds the ``fcntl`` lock) and
  taken over, so rerunning the command resumes;
* a lock owned by another host cannot be checked from here: the error says how to remove it if
  that run is gone.

In ``distributed`` mode the client process holds the lock; the workers only write chunks.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import StoreLockedError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows: the exclusive create alone
    fcntl = None  # type: ignore[assignment]

__all__ = ["lock_path", "store_lock", "read_lock_owner"]


def lock_path(store: Path) -> Path:
    """The lock file of ``store``: ``<store>.lock`` beside it."""
    store = Path(store)
    return store.with_name(store.name + ".lock")


def read_lock_owner(path: Path) -> dict[str, Any]:
    """The owner record of a lock file (empty if unreadable)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _describe(owner: dict[str, Any]) -> str:
    if not owner:
        return "an unknown process"
    return (
        f"process {owner.get('pid')} on host {owner.get('host')!r} (since {owner.get('since')}, "
        f"command: {owner.get('command')})"
    )


def _try_flock(fd: int) -> bool:
    if fcntl is None:  # pragma: no cover
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _write_owner(fd: int) -> None:
    record = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv)[:500],
    }
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(record).encode())
    os.fsync(fd)


def _acquire(path: Path, store: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pass
        else:
            if _try_flock(fd):
                _write_owner(fd)
                return fd
            os.close(fd)  # pragma: no cover - someone locked a file we just created
            continue
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue  # released in between: try again
        owner = read_lock_owner(path)
        same_host = owner.get("host") in (None, socket.gethostname())
        if same_host and _try_flock(fd):
            # nobody holds it: the run that wrote it died (SIGKILL, power loss); take it over
            _write_owner(fd)
            return fd
        os.close(fd)
        if same_host:
            raise StoreLockedError(
                f"the output store {str(store)!r} is being written by {_describe(owner)}. "
                "Wait for that run to finish (or stop it), or choose another output path."
            )
        raise StoreLockedError(
            f"the output store {str(store)!r} is locked by {_describe(owner)}, which cannot be "
            f"checked from this host. If no run is active there, delete {str(path)!r} and rerun "
            "the command (it resumes)."
        )
    raise StoreLockedError(  # pragma: no cover - the lock changed hands three times
        f"could not lock the output store {str(store)!r} ({str(path)!r} keeps changing); retry"
    )


@contextlib.contextmanager
def store_lock(store: Path) -> Iterator[Path]:
    """Hold the lock of ``store`` for the duration of the ``with`` block.

    Raises
    ------
    StoreLockedError
        Another live process holds it (the message names the process and host).
    """
    path = lock_path(Path(store))
    fd = _acquire(path, Path(store))
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # still ours: we hold the flock, and nobody else unlinks a held lock
        os.close(fd)
