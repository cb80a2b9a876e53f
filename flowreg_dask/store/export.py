"""Export a finished corrected store to the file formats of other tools, streaming chunk by chunk.

:func:`export_result` reads a complete output store (see :func:`~flowreg_dask.store.open_result`)
one time chunk at a time and writes it as HDF5, CaImAn HDF5, TIFF (ImageJ hyperstack), suite2p
TIFF or binary, MATLAB v7.3, ``.npy`` or one file per channel. :func:`export_formats` lists the
formats.

Guarantees
----------
* **Bounded memory.** Each chunk (by default one storage object of the store along time, i.e.
  one pipeline chunk) is computed, written and dropped before the next one is read, so at most one
  chunk of the movie (plus its flow and mask when they are exported) is held in memory. Nothing is
  buffered until the end (pyflowreg's MAT writer kept the whole video in RAM), and each output file
  is opened once for the whole export (pyflowreg's TIFF writer reopened the file for every batch).
* **Nothing that looks complete before it is.** Every file is written under a hidden temporary
  name ``.<name>.<random>.partial`` in its destination folder and renamed into place only after all
  frames and metadata are written and the file is closed. An export that fails is cleaned up (its
  ``.partial`` files are deleted); one that is killed leaves only ``.partial`` files behind, which
  are safe to delete.
* **Safe overwrite.** An existing output is never touched without ``overwrite=True``; with it, the
  old file is replaced (atomically, :func:`os.replace`) only once the new one is complete. Formats
  writing several files rename them one after another at the very end; each renamed file is
  complete. Folders are never replaced.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flowreg_dask._version import __version__
from flowreg_dask.errors import (
    FlowRegWarning,
    IncompleteStoreError,
    InvalidInputError,
    InvalidOptionError,
    OutputExistsError,
    UnsupportedFormatError,
)
from flowreg_dask.options import OutputFormat, choice

__all__ = ["export_result", "export_formats", "check_export", "export_suffix"]

_PathLike = str | os.PathLike[str]

#: Frames per chunk when the source is not chunked along time (an in-memory Dataset).
_DEFAULT_CHUNK_FRAMES = 64
#: Stem of the output files when ``output`` names a folder (as in pyflowreg).
_DEFAULT_STEM = "compensated"
_PARTIAL_SUFFIX = ".partial"
#: Data types ImageJ hyperstacks can hold (else the TIFF gets tifffile's shaped metadata).
_IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
_MATLAB_CLASSES = {
    np.dtype(np.float64): "double",
    np.dtype(np.float32): "single",
    np.dtype(np.int8): "int8",
    np.dtype(np.uint8): "uint8",
    np.dtype(np.int16): "int16",
    np.dtype(np.uint16): "uint16",
    np.dtype(np.int32): "int32",
    np.dtype(np.uint32): "uint32",
    np.dtype(np.int64): "int64",
    np.dtype(np.uint64): "uint64",
}
_MAT_USERBLOCK = 512
_INT16 = np.iinfo(np.int16)


# --------------------------------------------------------------------------------------------------
# formats
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Format:
    name: str
    description: str
    suffix: str
    kind: str  # writer family: hdf5, caiman, mat, tiff, suite2p_tiff, suite2p, npy
    per_channel: bool = False  # always one file per channel
    compressions: tuple[str, ...] = ()


_FORMAT_LIST = (
    _Format(
        "hdf5",
        "HDF5 file (.h5): one (T, H, W) dataset per channel ch1, ch2, ... with chunks (1, H, W); "
        "flow u, v (T, H, W) float32, valid (T, H, W) uint8 0/255, reference (H, W, C) float32, "
        "per-frame statistics (T,) and metadata attributes; compression 'gzip' or 'lzf'",
        ".h5",
        "hdf5",
        compressions=("gzip", "lzf"),
    ),
    _Format(
        "caiman_hdf5",
        "CaImAn HDF5 (.h5): dataset 'mov' (T, H, W); with several channels one file per channel "
        "<stem>_ch<N>.h5 (CaImAn reads one channel per file); compression 'gzip' or 'lzf'",
        ".h5",
        "caiman",
        compressions=("gzip", "lzf"),
    ),
    _Format(
        "tiff",
        "BigTIFF (.tif), one page per frame and channel in the order T then C; an ImageJ "
        "hyperstack (axes TCYX, frame interval, pixel size) for uint8, uint16 and float32, "
        "tifffile's shaped metadata (axes TCYX) for other data types",
        ".tif",
        "tiff",
    ),
    _Format(
        "suite2p_tiff",
        "BigTIFF (.tif) in suite2p's channel order: single-channel pages interleaved frame0-ch1, "
        "frame0-ch2, frame1-ch1, ... (no ImageJ metadata; read with nchannels = C)",
        ".tif",
        "suite2p_tiff",
    ),
    _Format(
        "suite2p",
        "suite2p registered binary: <output>/plane0/data.bin (channel 1) and data_chan2.bin "
        "(channel 2) as int16 (T, H, W), values rounded and clipped to int16, plus ops.npy; for "
        "suite2p's cell detection on already registered data (at most 2 channels)",
        "",
        "suite2p",
    ),
    _Format(
        "mat",
        "MATLAB v7.3 MAT-file (.mat, HDF5-based): one H x W x T variable per channel ch1, "
        "ch2, ... plus u, v (single), valid (logical), reference (H x W x C), per-frame "
        "statistics (T x 1), frame_rate, pixel_size and metadata_json; compression 'gzip'",
        ".mat",
        "mat",
        compressions=("gzip",),
    ),
    _Format(
        "npy",
        "NumPy .npy file holding the movie (T, H, W, C) in the store's data type",
        ".npy",
        "npy",
    ),
    _Format(
        "multifile_tiff",
        "one TIFF per channel, <stem>_ch<N>.tif (ImageJ hyperstack TYX where the dtype allows)",
        ".tif",
        "tiff",
        per_channel=True,
    ),
    _Format(
        "multifile_hdf5",
        "one HDF5 file per channel, <stem>_ch<N>.h5 with dataset ch<N> (T, H, W); flow and mask "
        "go into the file of channel 1; compression 'gzip' or 'lzf'",
        ".h5",
        "hdf5",
        per_channel=True,
        compressions=("gzip", "lzf"),
    ),
    _Format(
        "multifile_mat",
        "one MATLAB v7.3 file per channel, <stem>_ch<N>.mat with variable ch<N> (H x W x T); "
        "flow and mask go into the file of channel 1; compression 'gzip'",
        ".mat",
        "mat",
        per_channel=True,
        compressions=("gzip",),
    ),
)
_FORMATS = {OutputFormat(f.name): f for f in _FORMAT_LIST}


def export_formats() -> dict[str, str]:
    """Return the export formats of :func:`export_result`.

    Returns
    -------
    dict of str to str
        Format name -> one-line description. Names are matched case-insensitively, so
        pyflowreg's ``OutputFormat`` names (``"HDF5"``, ``"TIFF"``, ``"MAT"``, ``"CAIMAN_HDF5"``,
        ``"SUITE2P_TIFF"``, ``"MULTIFILE_TIFF"``, ``"MULTIFILE_HDF5"``, ``"MULTIFILE_MAT"``) are
        accepted too.
    """
    return {f.name: f.description for f in _FORMAT_LIST}


def _resolve_format(format: Any) -> _Format:
    try:
        fmt = choice("format", format, OutputFormat)
    except ValueError:
        fmt = None
    if fmt not in _FORMATS:
        listing = "; ".join(f"'{f.name}'" for f in _FORMAT_LIST)
        raise UnsupportedFormatError(
            f"unknown export format {format!r}. Known formats (case-insensitive): {listing}. "
            "See flowreg_dask.store.export_formats() for what each one writes."
        )
    return _FORMATS[fmt]


# --------------------------------------------------------------------------------------------------
# the source: a complete store as an xarray.Dataset
# --------------------------------------------------------------------------------------------------
@dataclass
class _Source:
    corrected: Any  # xarray.DataArray (t, c, y, x)
    flow: Any  # (t, component, y, x) or None
    valid: Any  # (t, y, x) or None
    stats: dict[str, Any]  # name -> (t,)
    reference: np.ndarray | None  # (C, H, W) float32
    shape: tuple[int, int, int, int]  # T, H, W, C
    dtype: np.dtype[Any]
    bounds: list[tuple[int, int]]
    channel_names: list[str] | None
    frame_rate: float | None
    pixel_size: float | None
    metadata: dict[str, Any]
    attrs: dict[str, Any]
    store: str | None


@dataclass
class _Chunk:
    start: int
    stop: int
    corrected: np.ndarray  # (n, C, H, W) in the store dtype
    flow: np.ndarray | None  # (n, 2, H, W) float32
    valid: np.ndarray | None  # (n, H, W) bool
    stats: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (n,) float64


def _positive_or_none(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def _transposed(var: Any, dims: tuple[str, ...], name: str) -> Any:
    if tuple(var.dims) == dims:
        return var
    if set(var.dims) != set(dims):
        raise InvalidInputError(
            f"variable {name!r} of the result has dims {tuple(var.dims)}; expected {dims} (the "
            "layout of flowreg_dask.store.open_result)."
        )
    return var.transpose(*dims)


def _chunk_bounds(corrected: Any, n_frames: int, chunk_frames: int | None) -> list[tuple[int, int]]:
    if chunk_frames is None:
        chunks = getattr(corrected, "chunks", None)
        if chunks:  # dask-backed: one dask chunk (= one storage object of the store) at a time
            sizes = [int(s) for s in chunks[0]]
        else:
            step = _DEFAULT_CHUNK_FRAMES
            sizes = [min(step, n_frames - a) for a in range(0, n_frames, step)]
    else:
        sizes = [min(chunk_frames, n_frames - a) for a in range(0, n_frames, chunk_frames)]
    bounds, start = [], 0
    for s in sizes:
        if s > 0:
            bounds.append((start, start + s))
            start += s
    return bounds


def _load_source(result: Any, chunk_frames: int | None) -> _Source:
    import xarray as xr

    if chunk_frames is not None and (
        isinstance(chunk_frames, bool)
        or not isinstance(chunk_frames, int | np.integer)
        or chunk_frames < 1
    ):
        raise InvalidOptionError(
            f"chunk_frames must be a positive integer or None; got {chunk_frames!r}."
        )

    from flowreg_dask.store.reader import open_result

    if isinstance(result, xr.Dataset):
        ds = result
        status = ds.attrs.get("status")
        if status is not None and status != "complete":
            missing = ds.attrs.get("missing_chunks")
            raise IncompleteStoreError(
                f"the result {ds.attrs.get('store', '(in-memory Dataset)')!r} is {status!r} "
                f"(missing chunks: {missing}); only a complete store can be exported. Rerun the "
                "registration to finish it."
            )
    elif isinstance(result, str | os.PathLike):
        ds = open_result(result)  # IncompleteStoreError / RecordingNotFoundError / ...
    else:
        raise InvalidInputError(
            "result must be the path of an output store or the xarray.Dataset of "
            f"flowreg_dask.store.open_result; got {type(result).__name__}."
        )
    if "corrected" not in ds.data_vars:
        raise InvalidInputError(
            "the result has no variable 'corrected'; expected the Dataset of "
            "flowreg_dask.store.open_result."
        )
    corrected = _transposed(ds["corrected"], ("t", "c", "y", "x"), "corrected")
    n, c, h, w = (int(s) for s in corrected.shape)
    dtype = np.dtype(corrected.dtype).newbyteorder("=")
    if dtype.kind not in "iuf":
        raise InvalidInputError(f"'corrected' has dtype {dtype}; expected an integer or float.")
    if n < 1:
        raise InvalidInputError("the result holds no frames; nothing to export.")

    flow = None
    if "flow" in ds.data_vars:
        flow = _transposed(ds["flow"], ("t", "component", "y", "x"), "flow")
        if tuple(flow.shape) != (n, 2, h, w):
            raise InvalidInputError(f"'flow' has shape {flow.shape}; expected {(n, 2, h, w)}.")
    valid = None
    if "valid" in ds.data_vars:
        valid = _transposed(ds["valid"], ("t", "y", "x"), "valid")
    stats = {
        str(name): var
        for name, var in ds.data_vars.items()
        if tuple(var.dims) == ("t",) and np.dtype(var.dtype).kind in "biuf"
    }
    reference = None
    if "reference" in ds.data_vars:
        ref = _transposed(ds["reference"], ("c", "y", "x"), "reference")
        reference = np.asarray(ref.values, dtype=np.float32)

    names = None
    if "c" in ds.coords:
        vals = [v.item() if hasattr(v, "item") else v for v in ds["c"].values]
        if all(isinstance(v, str) for v in vals):
            names = [str(v) for v in vals]

    bounds = _chunk_bounds(corrected.data, n, None if chunk_frames is None else int(chunk_frames))
    metadata = ds.attrs.get("metadata")
    return _Source(
        corrected=corrected,
        flow=flow,
        valid=valid,
        stats=stats,
        reference=reference,
        shape=(n, h, w, c),
        dtype=dtype,
        bounds=bounds,
        channel_names=names,
        frame_rate=_positive_or_none(ds.attrs.get("frame_rate")),
        pixel_size=_positive_or_none(ds.attrs.get("pixel_size")),
        metadata=dict(metadata) if isinstance(metadata, Mapping) else {},
        attrs=dict(ds.attrs),
        store=ds.attrs.get("store"),
    )


def _read_chunk(src: _Source, start: int, stop: int, *, flow: bool, valid: bool) -> _Chunk:
    """Compute one time chunk of the source (and nothing else) into numpy arrays."""
    import dask

    sel = {"t": slice(start, stop)}
    lazy: dict[str, Any] = {"corrected": src.corrected.isel(sel).data}
    if flow and src.flow is not None:
        lazy["flow"] = src.flow.isel(sel).data
    if valid and src.valid is not None:
        lazy["valid"] = src.valid.isel(sel).data
    for name, var in src.stats.items():
        lazy[f"stat:{name}"] = var.isel(sel).data
    keys = list(lazy)
    values = dask.compute(*[lazy[k] for k in keys])
    got = dict(zip(keys, values, strict=True))
    corrected = np.asarray(got["corrected"])
    if corrected.dtype != src.dtype:
        corrected = corrected.astype(src.dtype)
    return _Chunk(
        start=start,
        stop=stop,
        corrected=corrected,
        flow=None if "flow" not in got else np.asarray(got["flow"], dtype=np.float32),
        valid=None if "valid" not in got else np.asarray(got["valid"], dtype=bool),
        stats={
            k[len("stat:") :]: np.asarray(v, dtype=np.float64)
            for k, v in got.items()
            if k.startswith("stat:")
        },
    )


# --------------------------------------------------------------------------------------------------
# output paths, temporary names, commit
# --------------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------------
# metadata helpers
# --------------------------------------------------------------------------------------------------
def _json(obj: Any) -> str:
    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, os.PathLike):
            return os.fspath(o)
        return str(o)

    return json.dumps(obj, default=default, sort_keys=True)


def _channel_label(src: _Source, c: int) -> str:
    return src.channel_names[c] if src.channel_names else f"ch{c + 1}"


def _provenance(src: _Source, targets_channels: Sequence[int]) -> dict[str, Any]:
    """Small description of the export (JSON-friendly)."""
    t, h, w, _ = src.shape
    return {
        "software": "flowreg_dask",
        "software_version": __version__,
        "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source_store": src.store,
        "fingerprint": src.attrs.get("fingerprint"),
        "store_software_version": src.attrs.get("software_version"),
        "frame_rate": src.frame_rate,
        "pixel_size": src.pixel_size,
        "pixel_size_unit": "micrometer",
        "frame_count": t,
        "height": h,
        "width": w,
        "channels": [c + 1 for c in targets_channels],
        "channel_names": [_channel_label(src, c) for c in targets_channels],
    }


# --------------------------------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------------------------------
class _Writer:
    """Base class: ``open`` creates the temporary files, ``write`` one chunk, ``finish`` closes.

    ``abort`` closes whatever is open without caring about errors (the caller deletes the files).
    """

    needs_flow = False
    needs_valid = False

    def __init__(
        self,
        fmt: _Format,
        src: _Source,
        targets: Sequence[_Target],
        staging: _Staging,
        *,
        include_flow: bool,
        compression: str | None,
    ) -> None:
        self.fmt = fmt
        self.src = src
        self.targets = list(targets)
        self.staging = staging
        self.include_flow = include_flow
        self.compression = compression

    def open(self) -> None:
        raise NotImplementedError

    def write(self, chunk: _Chunk) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


class _H5Writer(_Writer):
    """HDF5 (``hdf5``, ``multifile_hdf5``, ``caiman_hdf5``) and MATLAB v7.3 (``mat``, ...)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.matlab = self.fmt.kind == "mat"
        has = self.include_flow
        self.needs_flow = has and self.src.flow is not None
        self.needs_valid = has and self.src.valid is not None
        self._files: list[Any] = []  # h5py.File per target
        self._tmp: list[Path] = []
        self._movie: list[list[tuple[int, Any]]] = []  # per file: (channel, dataset)
        self._aux: list[dict[str, Any]] = []  # per file: u, v, valid, stats datasets

    # -- layout helpers ------------------------------------------------------------------------
    def _frame_shape(self) -> tuple[int, int]:
        _, h, w, _ = self.src.shape
        return (w, h) if self.matlab else (h, w)  # MATLAB is column-major: h5py sees (T, W, H)

    def _frames(self, arr: np.ndarray) -> np.ndarray:
        """(n, H, W) -> the stored layout."""
        return np.ascontiguousarray(arr.transpose(0, 2, 1) if self.matlab else arr)

    def _compression_kwargs(self) -> dict[str, Any]:
        if self.compression == "gzip":
            return {"compression": "gzip", "compression_opts": 4, "shuffle": True}
        if self.compression == "lzf":
            return {"compression": "lzf", "shuffle": True}
        return {}

    def _set_matlab_class(self, obj: Any, cls: str, int_decode: int | None = None) -> None:
        obj.attrs.create("MATLAB_class", np.bytes_(cls))
        if int_decode is not None:
            obj.attrs.create("MATLAB_int_decode", np.int32(int_decode))

    def _t_dataset(self, f: Any, name: str, dtype: Any, matlab_class: str | None) -> Any:
        t = self.src.shape[0]
        fh, fw = self._frame_shape()
        ds = f.create_dataset(
            name, shape=(t, fh, fw), dtype=dtype, chunks=(1, fh, fw), **self._compression_kwargs()
        )
        if self.matlab and matlab_class:
            self._set_matlab_class(ds, matlab_class, 1 if matlab_class == "logical" else None)
        elif not self.matlab:
            ds.attrs["dimension_ordering"] = "THW"
        return ds

    def _movie_name(self, c: int) -> str:
        return "mov" if self.fmt.kind == "caiman" else f"ch{c + 1}"

    # -- writer protocol -----------------------------------------------------------------------
    def open(self) -> None:
        import h5py

        for target in self.targets:
            tmp = self.staging.temp(target.path)
            try:
                if self.matlab:
                    f = h5py.File(tmp, "w", userblock_size=_MAT_USERBLOCK, libver="earliest")
                else:
                    f = h5py.File(tmp, "w", libver="earliest")
            except OSError as exc:
                raise _wrap_os_error(exc, target.path, "write the export file") from exc
            self._files.append(f)
            self._tmp.append(tmp)
            movies = []
            for c in target.channels:
                ds = self._t_dataset(
                    f, self._movie_name(c), self.src.dtype, _MATLAB_CLASSES.get(self.src.dtype)
                )
                if not self.matlab:
                    ds.attrs["channel"] = c + 1
                    ds.attrs["channel_name"] = _channel_label(self.src, c)
                    if self.fmt.kind == "caiman" and self.src.frame_rate:
                        ds.attrs["fr"] = self.src.frame_rate
                movies.append((c, ds))
            self._movie.append(movies)
            aux: dict[str, Any] = {}
            if target.primary and self.needs_flow:
                aux["u"] = self._t_dataset(f, "u", np.float32, "single")
                aux["v"] = self._t_dataset(f, "v", np.float32, "single")
            if target.primary and self.needs_valid:
                aux["valid"] = self._t_dataset(f, "valid", np.uint8, "logical")
            used = {name for name in f}
            for name in self.src.stats:
                key = name if name not in used else f"stat_{name}"
                t = self.src.shape[0]
                if self.matlab:
                    ds = f.create_dataset(key, shape=(1, t), dtype=np.float64)  # MATLAB T x 1
                    self._set_matlab_class(ds, "double")
                else:
                    ds = f.create_dataset(key, shape=(t,), dtype=np.float64)
                aux[f"stat:{name}"] = ds
            self._aux.append(aux)
            self._write_static(f, target)

    def _write_static(self, f: Any, target: _Target) -> None:
        """Reference, scalars and metadata (small; written up front)."""
        src = self.src
        chans = list(target.channels)
        info = _provenance(src, chans)
        if src.reference is not None and chans:
            ref = src.reference[chans]  # (k, H, W)
            if self.matlab:  # MATLAB H x W x k -> h5py (k, W, H)
                ds = f.create_dataset(
                    "reference", data=np.ascontiguousarray(ref.transpose(0, 2, 1))
                )
                self._set_matlab_class(ds, "single")
            else:
                f.create_dataset("reference", data=np.ascontiguousarray(ref.transpose(1, 2, 0)))
                f["reference"].attrs["dimension_ordering"] = "HWC"
        if self.matlab:
            for key in ("frame_rate", "pixel_size"):
                value = getattr(src, key)
                if value is not None:
                    ds = f.create_dataset(key, data=np.full((1, 1), value, dtype=np.float64))
                    self._set_matlab_class(ds, "double")
            meta = {
                **info,
                "dimension_ordering": "HWT",
                "variables": [self._movie_name(c) for c in chans],
                "metadata": src.metadata,
            }
            text = _json(meta)  # ASCII (json escapes the rest), i.e. UTF-16 code units = ord
            codes = np.frombuffer(text.encode("utf-16-le"), dtype="<u2").reshape(-1, 1)
            ds = f.create_dataset("metadata_json", data=codes)
            self._set_matlab_class(ds, "char", 2)
            return
        import h5py

        names = [self._movie_name(c) for c in chans]
        attrs = f.attrs
        attrs["format"] = (
            "flowreg_dask_caiman_hdf5_v1" if self.fmt.kind == "caiman" else "flowreg_dask_hdf5_v1"
        )
        attrs["software"] = "flowreg_dask"
        attrs["software_version"] = __version__
        attrs["dimension_ordering"] = "THW"
        attrs["n_channels"] = len(chans)
        attrs["frame_count"] = src.shape[0]
        attrs["height"] = src.shape[1]
        attrs["width"] = src.shape[2]
        attrs.create("dataset_names", data=np.array(names, dtype=h5py.string_dtype()))
        attrs.create(
            "channel_names",
            data=np.array(info["channel_names"], dtype=h5py.string_dtype()),
        )
        attrs["channels"] = np.asarray(info["channels"], dtype=np.int64)
        if src.frame_rate is not None:
            attrs["frame_rate"] = src.frame_rate
        if src.pixel_size is not None:
            attrs["pixel_size"] = src.pixel_size
            attrs["pixel_size_unit"] = "micrometer"
        attrs["options"] = _json(src.metadata.get("options"))
        attrs["metadata"] = _json(src.metadata)
        attrs["provenance"] = _json(info)
        if src.store:
            attrs["source_store"] = str(src.store)

    def write(self, chunk: _Chunk) -> None:
        a, b = chunk.start, chunk.stop
        for movies, aux in zip(self._movie, self._aux, strict=True):
            for c, ds in movies:
                ds[a:b] = self._frames(chunk.corrected[:, c])
            if "u" in aux and chunk.flow is not None:
                aux["u"][a:b] = self._frames(chunk.flow[:, 0])
                aux["v"][a:b] = self._frames(chunk.flow[:, 1])
            if "valid" in aux and chunk.valid is not None:
                scale = 1 if self.matlab else 255  # MATLAB logical 0/1; pyflowreg mask 0/255
                aux["valid"][a:b] = self._frames(chunk.valid.astype(np.uint8) * np.uint8(scale))
            for name, values in chunk.stats.items():
                ds = aux.get(f"stat:{name}")
                if ds is None:
                    continue
                if self.matlab:
                    ds[0, a:b] = values
                else:
                    ds[a:b] = values

    def finish(self) -> None:
        files, self._files = self._files, []
        for f in files:
            f.close()
        if self.matlab:
            for tmp in self._tmp:
                _write_mat_header(tmp)

    def abort(self) -> None:
        files, self._files = self._files, []
        for f in files:
            with contextlib.suppress(Exception):
                f.close()


def _write_mat_header(path: Path) -> None:
    """Fill the 512-byte userblock with the MAT v7.3 header (text, version 0x0200, 'IM')."""
    now = _dt.datetime.now().strftime("%a %b %d %H:%M:%S %Y")
    text = (
        f"MATLAB 7.3 MAT-file, Platform: flowreg_dask {__version__}, Created on: {now} "
        "HDF5 schema 1.00 ."
    ).encode("ascii")[:116]
    header = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as fh:
        fh.seek(0)
        fh.write(header.ljust(_MAT_USERBLOCK, b"\x00"))


class _TiffWriter(_Writer):
    """TIFF (``tiff``, ``multifile_tiff``, ``suite2p_tiff``): one TiffWriter per file.

    The series (all pages, their IFDs and the ImageJ/shaped metadata with the final shape) is
    declared once with ``TiffWriter.write(None, shape, dtype, returnoffset=True)``, which reserves
    the image data as one contiguous block (the layout of ``tifffile.memmap``); each chunk's
    pages are then written into that block through the same, still open, TiffWriter.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._writers: list[Any] = []
        self._layout: list[tuple[int, int]] = []  # (data offset, end of file) per file
        self._dtype = self.src.dtype.newbyteorder("<")

    def open(self) -> None:
        import tifffile

        src = self.src
        t, h, w, _ = src.shape
        imagej = self.fmt.kind == "tiff" and src.dtype in _IMAGEJ_DTYPES
        for target in self.targets:
            k = len(target.channels)
            tmp = self.staging.temp(target.path)
            with warnings.catch_warnings():
                # ImageJ itself reads classic TIFF only; Fiji (Bio-Formats) and tifffile read these
                warnings.filterwarnings("ignore", message=".*nonconformant BigTIFF ImageJ")
                try:
                    tw = tifffile.TiffWriter(
                        tmp, bigtiff=True, byteorder="<", imagej=imagej, ome=False
                    )
                except OSError as exc:
                    raise _wrap_os_error(exc, target.path, "write the export file") from exc
            self._writers.append(tw)
            kwargs: dict[str, Any] = {"photometric": "minisblack", "software": "flowreg_dask"}
            if self.fmt.kind == "suite2p_tiff":
                shape: tuple[int, ...] = (t * k, h, w)  # frame0-ch1, frame0-ch2, frame1-ch1, ...
                kwargs["metadata"] = None
            elif imagej:
                shape = (t, k, h, w)
                meta: dict[str, Any] = {"axes": "TCYX"}
                if src.frame_rate:
                    meta["finterval"] = 1.0 / src.frame_rate
                    meta["fps"] = src.frame_rate
                if src.pixel_size:
                    meta["unit"] = "um"
                    kwargs["resolution"] = (1.0 / src.pixel_size, 1.0 / src.pixel_size)
                meta["Info"] = _json(_provenance(src, target.channels))
                kwargs["metadata"] = meta
            else:  # tifffile's shaped JSON description; resolution in the TIFF tags (cm)
                shape = (t, k, h, w)
                meta = {"axes": "TCYX", **_provenance(src, target.channels)}
                if src.pixel_size:
                    px_per_cm = 1e4 / src.pixel_size
                    kwargs["resolution"] = (px_per_cm, px_per_cm)
                    kwargs["resolutionunit"] = "CENTIMETER"
                kwargs["metadata"] = meta
            result = tw.write(None, shape=shape, dtype=self._dtype, returnoffset=True, **kwargs)
            if result is None:  # pragma: no cover - uncompressed strips are always contiguous
                raise RuntimeError(f"tifffile did not reserve contiguous data for {tmp}")
            self._layout.append((int(result[0]), int(tw.filehandle.tell())))

    def write(self, chunk: _Chunk) -> None:
        _, h, w, _ = self.src.shape
        for tw, (offset, _), target in zip(self._writers, self._layout, self.targets, strict=True):
            k = len(target.channels)
            frames = chunk.corrected[:, list(target.channels)]  # (n, k, H, W), T then C
            frames = np.ascontiguousarray(frames, dtype=self._dtype)
            fh = tw.filehandle
            fh.seek(offset + chunk.start * k * h * w * self._dtype.itemsize)
            fh.write_array(frames)

    def finish(self) -> None:
        writers, self._writers = self._writers, []
        for tw, (_, end) in zip(writers, self._layout, strict=True):
            tw.filehandle.seek(end)  # leave the file position where tifffile left it
            tw.close()

    def abort(self) -> None:
        writers, self._writers = self._writers, []
        for tw in writers:
            with contextlib.suppress(Exception):
                tw.close()


class _NpyWriter(_Writer):
    """``.npy`` (T, H, W, C) through :func:`numpy.lib.format.open_memmap`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._mm: np.memmap | None = None

    def open(self) -> None:
        target = self.targets[0]
        tmp = self.staging.temp(target.path)
        try:
            self._mm = np.lib.format.open_memmap(
                tmp, mode="w+", dtype=self.src.dtype, shape=self.src.shape
            )
        except OSError as exc:
            raise _wrap_os_error(exc, target.path, "write the export file") from exc

    def write(self, chunk: _Chunk) -> None:
        assert self._mm is not None
        self._mm[chunk.start : chunk.stop] = chunk.corrected.transpose(0, 2, 3, 1)
        self._mm.flush()  # written pages go to the file, not kept dirty in memory

    def finish(self) -> None:
        if self._mm is not None:
            self._mm.flush()
        self._mm = None  # the last reference: unmaps and closes the file

    def abort(self) -> None:
        self._mm = None


class _Suite2pWriter(_Writer):
    """suite2p registered binary: ``plane0/data.bin`` (+ ``data_chan2.bin``) and ``ops.npy``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bins: list[tuple[int, Any]] = []  # (channel, open file)
        self._ops_tmp: Path | None = None
        self._sums: dict[int, np.ndarray] = {}
        self._clipped = 0

    def open(self) -> None:
        _, h, w, _ = self.src.shape
        for target in self.targets:
            tmp = self.staging.temp(target.path)
            if not target.channels:
                self._ops_tmp = tmp
                continue
            try:
                fh = open(tmp, "wb")  # noqa: SIM115 - kept open for the whole export
            except OSError as exc:
                raise _wrap_os_error(exc, target.path, "write the export file") from exc
            c = target.channels[0]
            self._bins.append((c, fh))
            self._sums[c] = np.zeros((h, w), dtype=np.float64)

    def _to_int16(self, frames: np.ndarray) -> np.ndarray:
        if frames.dtype == np.int16:
            return frames
        if frames.dtype.kind == "f":
            out = np.rint(frames)
            out[np.isnan(out)] = 0
        else:
            out = frames
        over = (out < _INT16.min) | (out > _INT16.max)
        self._clipped += int(np.count_nonzero(over))
        return np.clip(out, _INT16.min, _INT16.max).astype(np.int16)

    def write(self, chunk: _Chunk) -> None:
        for c, fh in self._bins:
            data = np.ascontiguousarray(self._to_int16(chunk.corrected[:, c]), dtype="<i2")
            self._sums[c] += data.sum(axis=0, dtype=np.float64)
            fh.write(data.tobytes())

    def finish(self) -> None:
        bins, self._bins = self._bins, []
        for _, fh in bins:
            fh.close()
        t, h, w, c = self.src.shape
        folder = self.targets[0].path.parent
        ops: dict[str, Any] = {
            "Ly": h,
            "Lx": w,
            "nframes": t,
            "nchannels": c,
            "nplanes": 1,
            "functional_chan": 1,
            "align_by_chan": 1,
            "fs": float(self.src.frame_rate) if self.src.frame_rate else 10.0,
            "do_registration": 0,
            "reg_file": str(folder / "data.bin"),
            "save_path": str(folder),
            "ops_path": str(folder / "ops.npy"),
            "yrange": [0, h],
            "xrange": [0, w],
            "meanImg": (self._sums.get(0, np.zeros((h, w))) / t).astype(np.float32),
            "flowreg_dask": _provenance(self.src, list(range(c))),
        }
        if c == 2:
            ops["reg_file_chan2"] = str(folder / "data_chan2.bin")
            ops["meanImg_chan2"] = (self._sums[1] / t).astype(np.float32)
        assert self._ops_tmp is not None
        with open(self._ops_tmp, "wb") as fh:
            np.save(fh, np.array(ops, dtype=object), allow_pickle=True)
        if self._clipped:
            warnings.warn(
                f"{self._clipped} pixel values of the movie lie outside the int16 range of "
                "suite2p's binary and were clipped to [-32768, 32767]. Scale the data first "
                "(suite2p itself halves uint16 TIFF data) if that matters.",
                FlowRegWarning,
                stacklevel=3,
            )

    def abort(self) -> None:
        bins, self._bins = self._bins, []
        for _, fh in bins:
            with contextlib.suppress(Exception):
                fh.close()


_WRITERS: dict[str, type[_Writer]] = {
    "hdf5": _H5Writer,
    "caiman": _H5Writer,
    "mat": _H5Writer,
    "tiff": _TiffWriter,
    "suite2p_tiff": _TiffWriter,
    "npy": _NpyWriter,
    "suite2p": _Suite2pWriter,
}


def _write_chunk(writer: _Writer, chunk: _Chunk) -> None:
    """Write one chunk (a separate function so that tests can interrupt an export here)."""
    writer.write(chunk)


# --------------------------------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------------------------------
def check_export(
    store: str | os.PathLike,
    output: str | os.PathLike,
    *,
    format: str,
    n_channels: int,
    overwrite: bool = False,
) -> list[Path]:
    """Check, before a run, that :func:`export_result` could write ``output`` from ``store``.

    Returns
    -------
    list of pathlib.Path
        The files the export would write.

    Raises
    ------
    UnsupportedFormatError, InvalidOptionError, InvalidInputError, OutputExistsError
        As :func:`export_result` would, before any registration work is done.
    """
    fmt = _resolve_format(format)
    out = Path(os.fspath(output)).expanduser().absolute()
    _, targets, _ = _plan(fmt, out, n_channels)
    _check_destination(targets, store, overwrite)
    return [t.path for t in targets]


def export_suffix(format: str) -> str | None:
    """The file suffix of a one-file export format (None for per-channel / folder formats)."""
    fmt = _resolve_format(format)
    return None if fmt.per_channel or fmt.kind == "suite2p" else fmt.suffix


def export_result(
    result: Any,
    output: _PathLike,
    *,
    format: str,
    overwrite: bool = False,
    chunk_frames: int | None = None,
    include_flow: bool = True,
    compression: str | None = None,
) -> Path:
    """Convert a complete corrected store into another file format, streaming chunk by chunk.

    Parameters
    ----------
    result : str, os.PathLike or xarray.Dataset
        The output store of a registration run, or the Dataset of
        :func:`~flowreg_dask.store.open_result` (a selection of it, e.g. ``ds.isel(c=[0])`` or a
        time range, is exported as it is).
    output : str or os.PathLike
        Where to write. Single-file formats: the file (an existing folder gets
        ``compensated.<ext>`` inside it); the name is used as given. Formats with one file per
        channel (``multifile_*``, ``caiman_hdf5`` with several channels): ``<folder>/<stem>.<ext>``
        gives ``<folder>/<stem>_ch<N>.<ext>``; a name without suffix (or an existing folder) is a
        folder with stem ``compensated``. ``suite2p``: the suite2p folder; the files go to
        ``<output>/plane0/``. Missing parent folders are created.
    format : str
        One of :func:`export_formats` (case-insensitive; pyflowreg's ``OutputFormat`` names work):

        * ``hdf5``: datasets ``ch1``, ``ch2``, ... (T, H, W), chunks (1, H, W); with
          ``include_flow`` also ``u``, ``v`` (T, H, W) float32 and ``valid`` (T, H, W) uint8
          0/255 (when the store has them); ``reference`` (H, W, C) float32; each per-frame
          statistic as a (T,) float64 dataset; file attributes ``frame_rate``, ``pixel_size``
          (µm; only when known), ``options`` and ``metadata`` (JSON), ``software_version``,
          ``dimension_ordering`` = "THW", ``n_channels``, ``frame_count``, ``height``,
          ``width``, ``dataset_names``, ``channel_names``.
        * ``caiman_hdf5``: the same with the movie as dataset ``mov`` (T, H, W); with C > 1, one
          file per channel ``<stem>_ch<N>.h5``.
        * ``tiff``: BigTIFF, one page per frame and channel, T then C. uint8, uint16 and float32
          movies are ImageJ hyperstacks (axes TCYX, ``finterval``, pixel size in µm); other
          dtypes keep their type with tifffile's shaped metadata (axes TCYX) and the pixel size
          in the resolution tags.
        * ``suite2p_tiff``: plain BigTIFF of single-channel pages interleaved frame0-ch1,
          frame0-ch2, frame1-ch1, ... (suite2p's order, ``nchannels`` = C).
        * ``suite2p``: suite2p's registered binary ``plane0/data.bin`` (channel 1) and
          ``plane0/data_chan2.bin`` (channel 2), int16 (T, H, W) C-order, values rounded and
          clipped to int16 (a warning tells how many were clipped), and ``plane0/ops.npy`` with
          ``Ly``, ``Lx``, ``nframes``, ``nchannels``, ``fs`` (10.0 when the frame rate is
          unknown), ``reg_file``, ``reg_file_chan2``, ``save_path``, ``ops_path``,
          ``do_registration`` = 0, ``yrange``, ``xrange``, ``meanImg`` (``meanImg_chan2``). It
          is meant as input for suite2p's detection/extraction on already registered data.
          Verified here: file sizes, int16 values and channel files, the ops dict; *not* verified:
          running suite2p itself on it (suite2p is not installed in this project's test setup).
        * ``mat``: MATLAB v7.3 MAT-file (HDF5 with a 512-byte MATLAB userblock header): per
          channel a variable ``ch<N>`` that MATLAB sees as H x W x T (stored transposed, h5py
          shows (T, W, H)) with its ``MATLAB_class``; ``u``, ``v`` (single), ``valid``
          (logical), ``reference`` (H x W x C single), each statistic as T x 1 double,
          ``frame_rate``/``pixel_size`` (1 x 1 double, when known) and ``metadata_json`` (char).
        * ``npy``: the movie as (T, H, W, C).
        * ``multifile_tiff`` / ``multifile_hdf5`` / ``multifile_mat``: one file per channel
          ``<stem>_ch<N>.<ext>`` in the layout of the single-file format; flow and mask go into
          the file of channel 1.

        TIFF, suite2p and npy exports hold the movie only (no flow).
    overwrite : bool, default False
        Replace existing output files, once the new ones are complete. Folders are never
        replaced.
    chunk_frames : int, optional
        Frames per chunk (the unit read and written at once). Default: the store's own time
        chunks (one storage object, i.e. one pipeline chunk).
    include_flow : bool, default True
        Export the displacement field and the valid mask (HDF5 and MAT formats) when the store
        has them.
    compression : str, optional
        ``"gzip"`` or ``"lzf"`` for the HDF5 formats, ``"gzip"`` for MAT; other formats are
        written uncompressed (anything else raises :class:`InvalidOptionError`).

    Returns
    -------
    pathlib.Path
        The written file; for formats writing several files, the folder holding them (for
        ``suite2p`` the ``plane0`` folder).

    Raises
    ------
    UnsupportedFormatError
        ``format`` is unknown; the message lists the formats.
    IncompleteStoreError
        The store (or the Dataset's ``status``) is not complete.
    OutputExistsError
        An output file exists and ``overwrite`` is False, or an output path is a folder.
    InvalidOptionError
        ``chunk_frames`` or ``compression`` is invalid, or the output lies inside the store.
    InvalidInputError
        ``result`` is not a store / open_result Dataset, or the data do not fit the format
        (suite2p with more than 2 channels).
    OSError
        The destination is not writable; the message names the path.

    Notes
    -----
    Integer movies keep their dtype and values (the store already holds rounded, clipped values);
    float32 movies are exported as float32. Only suite2p's binary converts (to int16).

    Examples
    --------
    >>> export_result("run.zarr", "run.h5", format="hdf5")  # doctest: +SKIP
    PosixPath('/data/run.h5')
    """
    fmt = _resolve_format(format)
    if compression is not None:
        key = str(compression).strip().lower()
        if key not in fmt.compressions:
            allowed = ", ".join(repr(c) for c in fmt.compressions) or "none"
            raise InvalidOptionError(
                f"compression={compression!r} is not available for the {fmt.name!r} format "
                f"(allowed: {allowed}, or None)."
            )
        compression = key
    if not isinstance(output, str | os.PathLike):
        raise InvalidOptionError(f"output must be a path; got {type(output).__name__}.")
    src = _load_source(result, chunk_frames)
    out = Path(os.fspath(output)).expanduser().absolute()
    returned, targets, stale = _plan(fmt, out, src.shape[3])
    _check_destination(targets, src.store, overwrite)
    created = _make_folders(sorted({t.path.parent for t in targets}))

    staging = _Staging()
    writer = _WRITERS[fmt.kind](
        fmt, src, targets, staging, include_flow=include_flow, compression=compression
    )
    try:
        writer.open()
        for start, stop in src.bounds:
            chunk = _read_chunk(src, start, stop, flow=writer.needs_flow, valid=writer.needs_valid)
            _write_chunk(writer, chunk)
            del chunk
        writer.finish()
        staging.commit(overwrite)
    except BaseException:
        writer.abort()
        staging.discard()
        for folder in reversed(created):  # folders this export created, if still empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    if overwrite:
        for path in stale:
            with contextlib.suppress(OSError):
                path.unlink()
    return returned
