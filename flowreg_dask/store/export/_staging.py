"""Where an export writes: destination files, checks before writing, atomic staging."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ...errors import (
    InvalidInputError,
    InvalidOptionError,
    OutputExistsError,
)
from ._registry import _Format

#: Stem of the output files when ``output`` names a folder (as in pyflowreg).
_DEFAULT_STEM = "compensated"
_PARTIAL_SUFFIX = ".partial"


@dataclass(frozen=True)
class _Target:
    path: Path  # final path
    channels: tuple[int, ...]  # 0-based channels held by the file
    primary: bool  # the file that also receives flow and mask


def _wrap_os_error(exc: OSError, path: Path, action: str) -> OSError:
    """Return an OSError of the same kind (errno) whose message names ``path``."""
    reason = exc.strerror or str(exc)
    msg = (
        f"cannot {action} {str(path)!r}: {reason}. Choose a writable destination for the export, "
        "or fix the permissions of that folder."
    )
    return OSError(exc.errno, msg) if exc.errno is not None else OSError(msg)


def _plan(fmt: _Format, output: Path, n_channels: int) -> tuple[Path, list[_Target], list[Path]]:
    """Return (the path to return, the files to write, the files an export makes stale)."""
    if fmt.kind == "suite2p":
        if n_channels > 2:
            raise InvalidInputError(
                f"the suite2p binary format holds at most 2 channels; the result has {n_channels}. "
                "Export a selection of channels (e.g. ds.isel(c=[0, 1])) or another format."
            )
        folder = output / "plane0"
        files = [_Target(folder / "data.bin", (0,), True)]
        if n_channels == 2:
            files.append(_Target(folder / "data_chan2.bin", (1,), False))
        files.append(_Target(folder / "ops.npy", (), False))
        stale = [folder / "data_chan2.bin"] if n_channels == 1 else []
        return folder, files, stale
    per_channel = fmt.per_channel or (fmt.kind == "caiman" and n_channels > 1)
    if not per_channel:
        path = output / f"{_DEFAULT_STEM}{fmt.suffix}" if output.is_dir() else output
        return path, [_Target(path, tuple(range(n_channels)), True)], []
    if output.is_dir() or not output.suffix:
        folder, stem, suffix = output, _DEFAULT_STEM, fmt.suffix
    else:
        folder, stem, suffix = output.parent, output.stem, output.suffix
    files = [_Target(folder / f"{stem}_ch{c + 1}{suffix}", (c,), c == 0) for c in range(n_channels)]
    return folder, files, []


def _check_destination(
    targets: Sequence[_Target], store: str | os.PathLike | None, overwrite: bool
) -> None:
    if store:
        store = Path(store).absolute()
        for t in targets:
            if t.path == store or store in t.path.parents:
                raise InvalidOptionError(
                    f"the export {str(t.path)!r} would be written inside the store {str(store)!r}; "
                    "choose an output outside it."
                )
    existing = [t.path for t in targets if t.path.exists() or t.path.is_symlink()]
    folders = [p for p in existing if p.is_dir()]
    if folders:
        raise OutputExistsError(
            f"the export would replace {str(folders[0])!r}, which is a folder; folders are never "
            "replaced, not even with overwrite=True. Move it away or choose another output path."
        )
    if existing and not overwrite:
        listing = ", ".join(repr(str(p)) for p in existing)
        raise OutputExistsError(
            f"the export output exists already: {listing}. Pass overwrite=True to replace it "
            "(the old file is replaced only once the new one is complete), or choose another "
            "output path."
        )


def _make_folders(folders: Sequence[Path]) -> list[Path]:
    """Create the destination folders; return those created (parents first)."""
    created: list[Path] = []
    for folder in folders:
        missing = []
        p = folder
        while not p.exists() and p != p.parent:
            missing.append(p)
            p = p.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _wrap_os_error(exc, folder, "create the export folder") from exc
        created.extend(reversed(missing))
    return created


class _Staging:
    """Temporary files next to their final paths, renamed into place by :meth:`commit`."""

    def __init__(self) -> None:
        self._items: list[tuple[Path, Path]] = []

    def temp(self, final: Path) -> Path:
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}{_PARTIAL_SUFFIX}")
        self._items.append((tmp, final))
        return tmp

    def commit(self, overwrite: bool) -> None:
        for tmp, final in self._items:
            if overwrite:
                os.replace(tmp, final)
                continue
            try:  # no-clobber rename: a link fails if ``final`` appeared in the meantime
                os.link(tmp, final)
            except FileExistsError:
                raise OutputExistsError(
                    f"{str(final)!r} was created by someone else during the export; it was not "
                    "replaced. Pass overwrite=True to replace it."
                ) from None
            except (OSError, AttributeError, NotImplementedError):  # no hard links here
                if final.exists():
                    raise OutputExistsError(
                        f"{str(final)!r} was created by someone else during the export; it was "
                        "not replaced. Pass overwrite=True to replace it."
                    ) from None
                os.replace(tmp, final)
                continue
            tmp.unlink()

    def discard(self) -> None:
        for tmp, _ in self._items:
            with contextlib.suppress(OSError):
                tmp.unlink()
