"""Reader registry in the style of xarray's backend engines.

Each file format is one :class:`Reader` subclass in its own module. The built-in readers are
listed in :data:`BUILTIN_READERS` as ``name -> (required module, "module:Class")`` and imported
only when first needed (recognising a TIFF imports neither h5py nor scipy); third-party readers
register through the entry-point group ``flowreg_dask.readers`` (the entry point loads a
:class:`Reader` subclass).

``guess_reader(path)`` asks every reader first whether the file's leading bytes (magic) are
its format, then whether its extension is; the first match wins, in the table's order.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any, ClassVar

from ..errors import UnsupportedFormatError
from ._lazy import LazyFrames
from ._util import warn_user

__all__ = [
    "Reader",
    "BUILTIN_READERS",
    "ENTRY_POINT_GROUP",
    "list_readers",
    "get_reader",
    "guess_reader",
    "read_header",
    "call_open",
]

ENTRY_POINT_GROUP = "flowreg_dask.readers"

#: Built-in readers: ``name -> (module that must be importable, "module:Class")``, in the
#: order in which they are asked to recognise a file (MAT before HDF5: v7.3 files are HDF5).
BUILTIN_READERS: dict[str, tuple[str, str]] = {
    "tiff": ("tifffile", "flowreg_dask.io.tiff_:TiffReader"),
    "mat": ("scipy", "flowreg_dask.io.mat:MatReader"),
    "hdf5": ("h5py", "flowreg_dask.io.hdf5:Hdf5Reader"),
    "zarr": ("zarr", "flowreg_dask.io.zarr_:ZarrReader"),
    "npy": ("numpy", "flowreg_dask.io.npy:NpyReader"),
    "raw": ("numpy", "flowreg_dask.io.raw:RawReader"),
}

#: Other names accepted for ``format=``.
ALIASES = {
    "tif": "tiff",
    "ome-tiff": "tiff",
    "ome.tiff": "tiff",
    "bigtiff": "tiff",
    "scanimage": "tiff",
    "imagej": "tiff",
    "h5": "hdf5",
    "hdf": "hdf5",
    "matlab": "mat",
    "ome-zarr": "zarr",
    "omezarr": "zarr",
    "numpy": "npy",
    "bin": "raw",
    "binary": "raw",
    "suite2p": "raw",
}

HEADER_BYTES = 2048


def read_header(path: str, n: int = HEADER_BYTES) -> bytes:
    """First ``n`` bytes of a file (empty for folders or unreadable files)."""
    if not os.path.isfile(path):
        return b""
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


class Reader(ABC):
    """One file format.

    Class attributes
    ----------------
    name : str
        Registry name, used with ``open_recording(..., format=name)``.
    description : str
        One line shown by ``list_readers()`` and in error messages.
    url : str
        Where the format is documented.
    extensions : tuple of str
        Lower-case file name endings (``".tif"``, ``".ome.tif"``, ``".zarr"``).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    url: ClassVar[str] = ""
    extensions: ClassVar[tuple[str, ...]] = ()

    def sniff(self, path: str, header: bytes) -> bool:
        """True if the leading bytes (or, for folders, the folder's content) are this format."""
        return False

    def matches_extension(self, path: str) -> bool:
        name = os.path.basename(os.path.normpath(os.fspath(path))).lower()
        return any(name.endswith(ext) for ext in self.extensions)

    def guess_can_open(self, path: str | os.PathLike) -> bool:
        """Whether this reader can probably open ``path``: magic bytes first, then extension."""
        path = os.fspath(path)
        return self.sniff(path, read_header(path)) or self.matches_extension(path)

    @abstractmethod
    def open(self, path: str, **kwargs: Any) -> LazyFrames:
        """Read the header of ``path`` and return a lazy wrapper; no pixel data is read."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {self.description}>"


def _load(target: str) -> type[Reader]:
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


@functools.cache
def _builtin(name: str) -> Reader | None:
    """The built-in reader ``name``, imported on first use; None when its package is missing."""
    required, target = BUILTIN_READERS[name]
    try:
        importlib.import_module(required)
    except ImportError:
        return None
    return _load(target)()


@functools.cache
def _plugins() -> dict[str, Reader]:
    """Readers registered through the entry-point group, by name (an installed built-in keeps
    its name)."""
    readers: dict[str, Reader] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in readers or (ep.name in BUILTIN_READERS and _builtin(ep.name) is not None):
            continue
        try:
            cls = ep.load()
            reader = cls() if isinstance(cls, type) else cls
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the others
            warn_user(f"reader plugin {ep.name!r} ({ep.value}) failed to load: {exc!r}")
            continue
        if not isinstance(reader, Reader):
            warn_user(f"reader plugin {ep.name!r} ({ep.value}) is not a flowreg_dask Reader")
            continue
        readers[ep.name] = reader
    return readers


def _in_order() -> Iterator[Reader]:
    """The installed readers in the order they are tried, each imported only when reached (a
    TIFF is recognised without importing h5py or scipy)."""
    for name in BUILTIN_READERS:
        reader = _builtin(name)
        if reader is not None:
            yield reader
    yield from _plugins().values()


def _readers() -> dict[str, Reader]:
    readers = {name: _builtin(name) for name in BUILTIN_READERS}
    return {n: r for n, r in readers.items() if r is not None} | _plugins()


def list_readers() -> dict[str, Reader]:
    """Installed readers by name, in the order they are tried (built-ins first)."""
    return dict(_readers())


def _readers_text() -> str:
    return "; ".join(
        f"{name} ({', '.join(r.extensions) or 'explicit format= only'})"
        for name, r in _readers().items()
    )


def get_reader(name: str) -> Reader:
    """The reader registered as ``name`` (aliases such as ``"tif"`` or ``"h5"`` accepted)."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    reader = _builtin(key) if key in BUILTIN_READERS else _plugins().get(key)
    if reader is not None:
        return reader
    hint = ""
    if key in BUILTIN_READERS:
        hint = f" Reader {key!r} needs the package {BUILTIN_READERS[key][0]!r}: install it."
    msg = f"Unknown format {name!r}. Installed readers: {_readers_text()}.{hint}"
    raise UnsupportedFormatError(msg)


def guess_reader(path: str | os.PathLike) -> Reader:
    """The reader for ``path``: the first whose magic bytes match, else the first extension."""
    path = os.fspath(path)
    header = read_header(path)
    for reader in _in_order():
        if reader.sniff(path, header):
            return reader
    for reader in _in_order():
        if reader.matches_extension(path):
            return reader
    ext = os.path.splitext(path)[1] or "(none)"
    msg = (
        f"No reader recognises '{path}' (extension {ext}, content not a known format). "
        f"Installed readers and their extensions: {_readers_text()}. "
        "Pass format='NAME' to force a reader, or convert the file to TIFF, HDF5 or zarr."
    )
    raise UnsupportedFormatError(msg)


def call_open(reader: Reader, path: str, kwargs: dict[str, Any]) -> LazyFrames:
    """``reader.open(path, **kwargs)``, with a TypeError naming the reader for unknown kwargs."""
    sig = inspect.signature(reader.open)
    params = sig.parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not takes_any:
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            accepted = [
                p.name
                for p in params.values()
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "path"
            ]
            msg = (
                f"reader {reader.name!r} got unexpected keyword argument(s) "
                f"{', '.join(map(repr, unknown))} for '{path}'; it accepts: "
                f"{', '.join(accepted) or 'no options'}"
            )
            raise TypeError(msg)
    return reader.open(path, **kwargs)
