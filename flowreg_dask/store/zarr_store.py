"""OME-Zarr 0.5 store of a registration run: atomic per-chunk writes, resume, safe overwrite.

The pipeline creates a :class:`CorrectedStore` once (driver side), hands the picklable object to its
dask tasks, and each task calls :meth:`CorrectedStore.write_chunk` for its time chunk. A chunk
counts as done only once all of its arrays are written and its flag in the ``chunk_done`` array has
been set (one storage object per chunk, written atomically); :meth:`CorrectedStore.finalize` marks
the store ``"complete"`` last and consolidates its metadata. A killed run leaves an
``"incomplete"`` store that :func:`open_result` refuses to open and that ``create`` with the same
fingerprint resumes.

See :mod:`flowreg_dask.store.layout` for the arrays, attributes and the time (shard) layout.

Notes
-----
Guarantees, and what they rely on:

* **One writer per storage object.** Pipeline chunk ``i`` covers whole shards (see
  :func:`~flowreg_dask.store.layout.plan_time_layout`), so concurrent ``write_chunk`` calls from
  threads or processes never read-modify-write the same object. zarr's local store writes every
  object to a temporary file and renames it into place, so a killed writer leaves the old object or
  the new one.
* **Done flags last.** ``write_chunk`` first clears the chunk's flag (if a retry rewrites a done
  chunk), writes the data, then sets the flag (its own storage object, written atomically). A
  chunk without its flag is rewritten in full on resume.
* **Completion last.** ``finalize`` writes the status ``"complete"`` in the same atomic rewrite of
  the root ``zarr.json`` as the rest of the run record, after the reference.
* **One writer per store** is the caller's job: the pipeline holds
  :func:`flowreg_dask.store.lock.store_lock` around a run.
* **Overwrite never deletes first.** With ``overwrite=True`` over an existing store, the new store
  is built in a sibling ``<name>.tmp-<hash of fingerprint>``; ``finalize`` renames the old store to
  ``<name>.trash-<id>``, renames the new one into place, and only then deletes the old one. A rerun
  of a killed overwrite run resumes the same temporary store.
* Durability against power loss (``fsync``) is not attempted; the guarantees above hold for killed
  processes.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import re
import shutil
import threading
import uuid
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BloscCodec
from zarr.storage import LocalStore

from flowreg_dask._version import __version__
from flowreg_dask.errors import (
    FlowRegWarning,
    IncompleteStoreError,
    InvalidInputError,
    InvalidOptionError,
    OutputExistsError,
    RecordingNotFoundError,
)
from flowreg_dask.store import layout as L

__all__ = ["CorrectedStore", "open_result", "store_status"]

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED_VARIABLES = frozenset(
    {"corrected", "flow", "valid", "reference", "t", "c", "y", "x", "component", "frame"}
)
#: Record fields that fix the data layout; a resumed store must agree on all of them.
_LAYOUT_FIELDS = (
    "format_version",
    "n_frames",
    "height",
    "width",
    "n_channels",
    "dtype",
    "chunk_bounds",
    "save_flow",
    "save_valid",
    "stat_names",
    "time_layout",
    "reference_states",
)
_PathLike = str | os.PathLike[str]


# --------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------
def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _as_path(path: _PathLike) -> Path:
    return Path(os.fspath(path)).expanduser().absolute()


def _wrap_os_error(exc: OSError, path: Path, action: str) -> OSError:
    """Return an OSError of the same kind (errno) whose message names the store path and the fix."""
    reason = exc.strerror or str(exc)
    msg = (
        f"cannot {action} the output store at {str(path)!r}: {reason} "
        f"({type(exc).__name__} on {exc.filename!r}). Choose a writable location for the output, "
        "or fix the permissions of that folder."
    )
    if exc.errno is not None:
        return OSError(exc.errno, msg)  # OSError(errno, ...) becomes PermissionError etc.
    return OSError(msg)


def _sanitize_json(obj: Any) -> Any:
    """Replace non-finite floats by the strings zarr uses ("NaN", "Infinity", "-Infinity")."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, Mapping):
        return {k: _sanitize_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_sanitize_json(v) for v in obj]
    return obj


def _json_default(obj: Any) -> Any:
    """Convert numpy scalars/arrays and paths for :func:`json.dumps`."""
    if isinstance(obj, np.generic):
        return _sanitize_json(obj.item())
    if isinstance(obj, np.ndarray):
        return _sanitize_json(obj.tolist())
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _to_json(obj: Any, what: str) -> Any:
    """Return ``obj`` as plain JSON types (tuples become lists), or raise InvalidOptionError.

    numpy scalars and arrays become numbers and lists, paths become strings, and non-finite floats
    become the strings "NaN", "Infinity", "-Infinity".
    """
    try:
        return json.loads(json.dumps(_sanitize_json(obj), allow_nan=False, default=_json_default))
    except (TypeError, ValueError) as exc:
        raise InvalidOptionError(
            f"{what} must be JSON-serialisable (dicts, lists, str, numbers, bool, None); got "
            f"an object that is not: {exc}. Convert it first (e.g. options.to_dict())."
        ) from exc


def _atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and :func:`os.replace`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _format_ranges(indices: Sequence[int], limit: int = 12) -> str:
    """Format sorted integers compactly: ``[0, 1, 2, 5]`` -> ``"0-2, 5"``."""
    runs: list[tuple[int, int]] = []
    for i in sorted(indices):
        if runs and i == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    parts = [f"{a}" if a == b else f"{a}-{b}" for a, b in runs[:limit]]
    if len(runs) > limit:
        parts.append(f"... ({len(runs) - limit} more ranges)")
    return ", ".join(parts)


def _describe_missing(missing: Sequence[int], bounds: Sequence[Sequence[int]]) -> str:
    frames: list[int] = []
    for i in missing:
        frames.extend(range(bounds[i][0], bounds[i][1]))
    return (
        f"chunks {_format_ranges(missing)} of {len(bounds)} are missing "
        f"(frames {_format_ranges(frames)})"
    )


def _inspect_path(path: Path) -> tuple[str, dict[str, Any] | None]:
    """Classify ``path`` as ``absent``, ``empty`` (folder), ``store`` (+ record) or ``foreign``."""
    if not path.exists() and not path.is_symlink():
        return "absent", None
    if not path.is_dir():
        return "foreign", None
    root_meta = path / "zarr.json"
    if root_meta.is_file():
        try:
            meta = json.loads(root_meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return "foreign", None
        attrs = meta.get("attributes") if isinstance(meta, dict) else None
        record = attrs.get(L.ATTRS_KEY) if isinstance(attrs, dict) else None
        if isinstance(record, dict) and "fingerprint" in record and "status" in record:
            return "store", record
        return "foreign", None
    try:
        entries = list(path.iterdir())
    except OSError as exc:
        raise _wrap_os_error(exc, path, "read") from exc
    # a create killed before the root zarr.json existed leaves at most zarr's *.partial temp files
    if all(e.is_file() and e.name.endswith(".partial") for e in entries):
        return "empty", None
    return "foreign", None


def _remove_own_store(path: Path) -> None:
    """Delete ``path`` after checking that it is a flowreg_dask store (never anything else)."""
    kind, _ = _inspect_path(path)
    if kind == "absent":
        return
    if kind == "empty":
        shutil.rmtree(path)
        return
    if kind != "store":
        raise OutputExistsError(
            f"refusing to delete {str(path)!r}: it is not a flowreg_dask store. Move it away or "
            "choose another output path."
        )
    shutil.rmtree(path)


def _read_record(work: Path) -> dict[str, Any]:
    kind, record = _inspect_path(work)
    if kind != "store" or record is None:
        raise InvalidInputError(
            f"{str(work)!r} is not a flowreg_dask output store (no '{L.ATTRS_KEY}' record in its "
            "zarr.json). Expected a folder written by flowreg_dask.register."
        )
    return record


def _public_status(record: Mapping[str, Any]) -> str:
    return L.STATUS_COMPLETE if record.get("status") == L.STATUS_COMPLETE else L.STATUS_INCOMPLETE


def _done_indices(work: Path, n_chunks: int, format_version: int = L.FORMAT_VERSION) -> set[int]:
    if int(format_version) < 2:  # layout 1: marker files .flowreg/chunks/<i>.done
        try:
            names = os.listdir(work / ".flowreg" / "chunks")
        except FileNotFoundError:
            return set()
        stems = [n[: -len(".done")] for n in names if n.endswith(".done")]
        return {int(x) for x in stems if x.isdigit() and int(x) < n_chunks}
    try:
        flags = zarr.open_array(
            store=LocalStore(work, read_only=True), path=L.CHUNK_DONE, mode="r", zarr_format=3
        )[:]
    except (FileNotFoundError, KeyError, ValueError):
        return set()
    return {int(i) for i in np.flatnonzero(flags[:n_chunks])}


def _record_done(work: Path, record: Mapping[str, Any]) -> set[int]:
    return _done_indices(work, len(record.get("chunk_bounds", [])), record.get("format_version", 1))


def _validate_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or int(value) < 1:
        raise InvalidOptionError(f"{name} must be a positive integer; got {value!r}.")
    return int(value)


def _validate_chunk_bounds(bounds: Iterable[Sequence[int]], n_frames: int) -> list[list[int]]:
    out: list[list[int]] = []
    prev = 0
    for i, pair in enumerate(bounds):
        try:
            start, stop = (int(v) for v in pair)
        except (TypeError, ValueError) as exc:
            raise InvalidOptionError(
                f"chunk_bounds[{i}] must be a (start, stop) pair of integers; got {pair!r}."
            ) from exc
        if start != prev or stop <= start:
            raise InvalidOptionError(
                f"chunk_bounds must be contiguous, non-empty (start, stop) ranges starting at 0; "
                f"chunk_bounds[{i}] = ({start}, {stop}) but expected start {prev} and stop > start."
            )
        out.append([start, stop])
        prev = stop
    if not out or prev != n_frames:
        raise InvalidOptionError(
            f"chunk_bounds must cover all n_frames={n_frames} frames; they end at frame {prev}."
        )
    return out


def _validate_positive_float(value: Any, name: str) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidOptionError(
            f"{name} must be a positive number or None; got {value!r}."
        ) from exc
    if not math.isfinite(v) or v <= 0:
        raise InvalidOptionError(f"{name} must be a positive finite number or None; got {value!r}.")
    return v


def _cast_to(arr: np.ndarray, dtype: np.dtype[Any], name: str) -> np.ndarray:
    """Cast ``arr`` to the store dtype.

    Float targets take any real input. Integer targets round float input to the nearest integer
    (NaN becomes 0) and clip every input to the dtype's range, so nothing wraps around.
    """
    if arr.dtype == dtype:
        return arr
    if arr.dtype.kind not in "biuf":
        raise InvalidInputError(
            f"{name} has dtype {arr.dtype}, which cannot be stored as the store dtype {dtype}. "
            f"Convert it to {dtype} (or a float dtype) first."
        )
    if dtype.kind == "f" or np.can_cast(arr.dtype, dtype, casting="safe"):
        return arr.astype(dtype)
    info = np.iinfo(dtype)
    if arr.dtype.kind == "f":
        out = np.rint(arr)
        np.clip(out, info.min, info.max, out=out)
        out[np.isnan(out)] = 0
        return out.astype(dtype)
    src = np.iinfo(arr.dtype)
    return np.clip(arr, max(info.min, src.min), min(info.max, src.max)).astype(dtype)


# --------------------------------------------------------------------------------------------------
# the store
# --------------------------------------------------------------------------------------------------
class CorrectedStore:
    """Writer for the output store of a registration run (picklable; arrays are opened lazily).

    Build it with :meth:`create` (or :meth:`open` for an existing store), never directly. The object
    holds only paths and the small run record, so it can be pickled to dask workers; each process
    opens the zarr arrays on first use and caches them in an attribute that is not pickled.

    Parameters
    ----------
    path : pathlib.Path
        Final location of the store.
    work_path : pathlib.Path
        Folder written to now: ``path`` itself, or a sibling temporary store while overwriting.
    record : dict
        The ``flowreg_dask`` root attribute of the store.
    """

    def __init__(self, path: Path, work_path: Path, record: Mapping[str, Any]) -> None:
        self._path = Path(path)
        self._work = Path(work_path)
        self._record: dict[str, Any] = dict(record)
        self._init_runtime()

    # -- pickling / per-process array cache ------------------------------------------------------
    def _init_runtime(self) -> None:
        self._lock = threading.Lock()
        self._arrays: dict[str, Any] | None = None
        self._arrays_pid: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self._path, "work_path": self._work, "record": self._record}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._path = state["path"]
        self._work = state["work_path"]
        self._record = state["record"]
        self._init_runtime()

    def __repr__(self) -> str:
        where = "" if self._work == self._path else f", building in {str(self._work)!r}"
        try:
            status = self.status
        except (OSError, ValueError):
            status = "missing"
        return (
            f"CorrectedStore({str(self._path)!r}, status={status!r}, "
            f"chunks={len(self.done_chunks())}/{self.n_chunks}{where})"
        )

    def _open_arrays(self) -> dict[str, Any]:
        """Return this process's cached writable zarr arrays, opening them on first use."""
        with self._lock:
            if self._arrays is None or self._arrays_pid != os.getpid():
                group = zarr.open_group(store=LocalStore(self._work), mode="r+", zarr_format=3)
                names = [L.CORRECTED, L.REFERENCE, L.CHUNK_DONE]
                names += [L.REFERENCE_STATE] if L.REFERENCE_STATE in group else []
                names += [L.FLOW] if self.save_flow else []
                names += [L.VALID] if self.save_valid else []
                names += [L.stats_path(s) for s in self.stat_names]
                self._arrays = {name: group[name] for name in names}
                self._arrays_pid = os.getpid()
            return self._arrays

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: _PathLike,
        *,
        n_frames: int,
        height: int,
        width: int,
        n_channels: int,
        dtype: Any,
        chunk_bounds: Sequence[tuple[int, int]],
        save_flow: bool,
        save_valid: bool,
        run_fingerprint: str,
        metadata: Mapping[str, Any],
        channel_names: Sequence[str] | None = None,
        frame_rate: float | None = None,
        pixel_size: float | None = None,
        stat_names: Sequence[str] | None = None,
        reference_states: bool = False,
        overwrite: bool = False,
        resume: bool = True,
    ) -> CorrectedStore:
        """Create (or resume) the output store of a run, before any computation starts.

        Parameters
        ----------
        path : str or os.PathLike
            Output folder (conventionally ``*.zarr``). Missing parent folders are created.
        n_frames, height, width, n_channels : int
            Shape of the corrected movie ``(T, H, W, C)``.
        dtype : numpy dtype-like
            dtype of the corrected movie (the input dtype, or float32); integer or float.
        chunk_bounds : sequence of (int, int)
            The pipeline's contiguous time chunks ``[(start, stop), ...]`` covering ``0..n_frames``.
            ``write_chunk(i, ...)`` writes frames ``chunk_bounds[i]``.
        save_flow : bool
            Keep the displacement field (array ``flow``).
        save_valid : bool
            Keep the in-bounds mask (array ``valid``).
        run_fingerprint : str
            Hash of (options JSON, input identity, shapes). An incomplete store is resumed only if
            its fingerprint is the same.
        metadata : mapping
            JSON-serialisable run description (options as dict, software version, input
            description); stored under the root attribute ``flowreg_dask.metadata``.
        channel_names : sequence of str, optional
            One label per channel (OME ``omero`` channel labels and the ``c`` coordinate).
        frame_rate : float, optional
            Frames per second; sets the OME time scale (seconds) and the ``t`` coordinate.
        pixel_size : float, optional
            Pixel size in micrometres; sets the OME spatial scale.
        stat_names : sequence of str, optional
            Per-frame statistics that every ``write_chunk`` must provide. Default
            :data:`~flowreg_dask.store.layout.DEFAULT_STAT_NAMES` (mean_disp, max_disp, mean_div,
            mean_translation).
        reference_states : bool, default False
            Keep one reference per chunk (``update_reference`` runs resume from the last one).
        overwrite : bool, default False
            Replace a complete store (or an incomplete one of another run) at ``path``. The
            replacement is built next to it and swapped in by :meth:`finalize`, so the old result
            survives until the new one is complete.
        resume : bool, default True
            Continue an incomplete store of the same fingerprint, keeping its finished chunks.

        Returns
        -------
        CorrectedStore
            The store; ``done_chunks()`` tells which chunks a resumed run can skip.

        Raises
        ------
        OutputExistsError
            A complete store exists and ``overwrite`` is False; an incomplete store of this run
            exists and both ``resume`` and ``overwrite`` are False; or ``path`` holds something that
            is not a flowreg_dask store (never deleted, even with ``overwrite=True``).
        InvalidInputError
            An incomplete store made with other options or input exists and ``overwrite`` is False,
            or a store with the same fingerprint has a different layout.
        InvalidOptionError
            An argument has an invalid value.
        OSError
            The location is not writable (e.g. ``PermissionError``); the message names the path.
        """
        target = _as_path(path)
        record = cls._new_record(
            target,
            n_frames=n_frames,
            height=height,
            width=width,
            n_channels=n_channels,
            dtype=dtype,
            chunk_bounds=chunk_bounds,
            save_flow=save_flow,
            save_valid=save_valid,
            run_fingerprint=run_fingerprint,
            metadata=metadata,
            channel_names=channel_names,
            frame_rate=frame_rate,
            pixel_size=pixel_size,
            stat_names=stat_names,
            reference_states=reference_states,
        )
        fingerprint = record["fingerprint"]
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _wrap_os_error(exc, target, "create the parent folder of") from exc

        kind, existing = _inspect_path(target)
        temp = L.temp_sibling(target, fingerprint)
        if kind == "foreign":
            raise OutputExistsError(
                f"the output path {str(target)!r} exists and is not a flowreg_dask store "
                "(a file, or a folder with other content). It is never replaced, not even with "
                "overwrite=True / --overwrite. Choose another output path or move it away."
            )
        if kind in ("absent", "empty"):
            temp_kind, temp_record = _inspect_path(temp)
            if (
                resume
                and temp_kind == "store"
                and temp_record is not None
                and temp_record.get("fingerprint") == fingerprint
            ):
                # an overwrite run was killed during the swap in finalize: finish its temp store
                return cls._open_work(target, temp, record, resume=True)
            return cls._open_work(target, target, record, resume=False)

        assert existing is not None
        status = existing.get("status")
        same = existing.get("fingerprint") == fingerprint
        if status == L.STATUS_CREATING:
            # a create that was killed before the layout was finished: it holds no data
            return cls._open_work(target, target, record, resume=False)
        if status == L.STATUS_COMPLETE:
            if not overwrite:
                raise OutputExistsError(
                    f"a complete output store exists at {str(target)!r} (fingerprint "
                    f"{existing.get('fingerprint')!r}, finished {existing.get('completed_at')}). "
                    "Pass overwrite=True (--overwrite) to replace it once the new run is complete, "
                    "or choose another output path."
                )
            return cls._open_work(target, temp, record, resume=resume)
        # incomplete store at the target
        layout_ok = all(existing.get(f) == record.get(f) for f in _LAYOUT_FIELDS)
        if same and resume and (layout_ok or not overwrite):
            return cls._open_work(target, target, record, resume=True)  # explains a mismatch
        if overwrite:
            return cls._open_work(target, temp, record, resume=resume)
        n_done = len(_record_done(target, existing))
        n_total = len(existing.get("chunk_bounds", []))
        if same:
            raise OutputExistsError(
                f"an incomplete output store of this same run exists at {str(target)!r} "
                f"({n_done}/{n_total} chunks done). Pass resume=True to continue it, "
                "overwrite=True (--overwrite) to start it again, or choose another output path."
            )
        raise InvalidInputError(
            f"an incomplete output store exists at {str(target)!r} ({n_done}/{n_total} chunks "
            "done), but it was made with other options or another input (fingerprint "
            f"{existing.get('fingerprint')!r}, this run {fingerprint!r}), so it cannot be resumed. "
            "Pass overwrite=True (--overwrite) to replace it, or choose another output path."
        )

    @classmethod
    def open(cls, path: _PathLike) -> CorrectedStore:
        """Open an existing store (complete or not) for inspection or further writing.

        Parameters
        ----------
        path : str or os.PathLike
            The store folder.

        Returns
        -------
        CorrectedStore
            A store whose ``work_path`` is ``path``.

        Raises
        ------
        RecordingNotFoundError
            Nothing exists at ``path``.
        InvalidInputError
            ``path`` is not a flowreg_dask store.
        """
        target = _as_path(path)
        if not target.exists():
            raise RecordingNotFoundError(f"no output store at {str(target)!r}.")
        return cls(target, target, _read_record(target))

    @staticmethod
    def _new_record(
        target: Path,
        *,
        n_frames: int,
        height: int,
        width: int,
        n_channels: int,
        dtype: Any,
        chunk_bounds: Sequence[tuple[int, int]],
        save_flow: bool,
        save_valid: bool,
        run_fingerprint: str,
        metadata: Mapping[str, Any],
        channel_names: Sequence[str] | None,
        frame_rate: float | None,
        pixel_size: float | None,
        stat_names: Sequence[str] | None,
        reference_states: bool = False,
    ) -> dict[str, Any]:
        """Validate the arguments of :meth:`create` and build the run record."""
        n_frames = _validate_positive_int(n_frames, "n_frames")
        height = _validate_positive_int(height, "height")
        width = _validate_positive_int(width, "width")
        n_channels = _validate_positive_int(n_channels, "n_channels")
        try:
            np_dtype = np.dtype(dtype)
        except TypeError as exc:
            raise InvalidOptionError(f"dtype must be a numpy dtype; got {dtype!r}.") from exc
        if np_dtype.kind not in "iuf":
            raise InvalidOptionError(
                f"dtype of the corrected movie must be an integer or float dtype; got {np_dtype}."
            )
        bounds = _validate_chunk_bounds(chunk_bounds, n_frames)
        if not isinstance(run_fingerprint, str) or not run_fingerprint:
            raise InvalidOptionError(
                f"run_fingerprint must be a non-empty string; got {run_fingerprint!r}."
            )
        if not isinstance(metadata, Mapping):
            raise InvalidOptionError(f"metadata must be a dict; got {type(metadata).__name__}.")
        names: list[str] | None = None
        if channel_names is not None:
            names = [str(n) for n in channel_names]
            if len(names) != n_channels:
                raise InvalidOptionError(
                    f"channel_names must have one label per channel ({n_channels}); got {names!r}."
                )
        stats = list(L.DEFAULT_STAT_NAMES if stat_names is None else stat_names)
        for s in stats:
            if not isinstance(s, str) or not _NAME_RE.match(s) or s in _RESERVED_VARIABLES:
                raise InvalidOptionError(
                    f"stat name {s!r} must be an identifier (letters, digits, _) and not one of "
                    f"{sorted(_RESERVED_VARIABLES)}."
                )
        if len(set(stats)) != len(stats):
            raise InvalidOptionError(f"stat_names must be unique; got {stats!r}.")
        fr = _validate_positive_float(frame_rate, "frame_rate")
        ps = _validate_positive_float(pixel_size, "pixel_size")
        frame_bytes = (
            height * width * max(n_channels * np_dtype.itemsize, 2 * 4 if save_flow else 0)
        )
        tl = L.plan_time_layout([(a, b) for a, b in bounds], frame_bytes)
        return {
            "format_version": L.FORMAT_VERSION,
            "status": L.STATUS_CREATING,
            "fingerprint": run_fingerprint,
            "n_frames": n_frames,
            "height": height,
            "width": width,
            "n_channels": n_channels,
            "dtype": np_dtype.name,
            "chunk_bounds": bounds,
            "save_flow": bool(save_flow),
            "save_valid": bool(save_valid),
            "stat_names": stats,
            "channel_names": names,
            "frame_rate": fr,
            "pixel_size": ps,
            "time_layout": {"shard_frames": tl.shard_frames, "chunk_frames": tl.chunk_frames},
            "reference_states": bool(reference_states),
            "metadata": _to_json(dict(metadata), "metadata"),
            "software_version": __version__,
            "name": target.stem,
            "created_at": _now(),
            "resumed_at": [],
            "completed_at": None,
            "extra": {},
        }

    @classmethod
    def _open_work(
        cls, target: Path, work: Path, record: dict[str, Any], *, resume: bool
    ) -> CorrectedStore:
        """Resume the store at ``work`` if allowed and compatible, else build it afresh there."""
        kind, existing = _inspect_path(work)
        try:
            if kind == "foreign":
                raise OutputExistsError(
                    f"cannot build the output store in {str(work)!r}: it exists and is not a "
                    "flowreg_dask store. Move it away or choose another output path."
                )
            if (
                kind == "store"
                and existing is not None
                and resume
                and existing.get("status") != L.STATUS_CREATING
                and existing.get("fingerprint") == record["fingerprint"]
            ):
                diff = [f for f in _LAYOUT_FIELDS if existing.get(f) != record.get(f)]
                if diff:
                    raise InvalidInputError(
                        f"the incomplete store {str(work)!r} has the same run fingerprint but a "
                        f"different layout ({', '.join(diff)}), so it cannot be resumed. Pass "
                        "overwrite=True (--overwrite) or choose another output path."
                    )
                store = cls(target, work, existing)
                store._prepare_resume(record)
                return store
            if kind == "store":
                # our own skeleton, or a temporary store that may not be resumed
                _remove_own_store(work)
            store = cls(target, work, record)
            store._build()
            return store
        except OSError as exc:
            if isinstance(exc, OutputExistsError):
                raise
            raise _wrap_os_error(exc, work, "write") from exc

    def _build(self) -> None:
        """Create the folder, the root group, the image group and all arrays; status last."""
        rec = self._record
        work = self._work
        work.mkdir(exist_ok=True)
        rec["status"] = L.STATUS_CREATING
        root = zarr.create_group(
            store=LocalStore(work),
            zarr_format=3,
            attributes={"ome": L.root_ome_attributes(), L.ATTRS_KEY: rec},
        )
        image = root.create_group(L.IMAGE_GROUP, attributes={"ome": self._image_ome(rec)})
        n, h, w, c = rec["n_frames"], rec["height"], rec["width"], rec["n_channels"]
        dtype = np.dtype(rec["dtype"])
        sf = rec["time_layout"]["shard_frames"]
        cf = rec["time_layout"]["chunk_frames"]
        sharded = cf < sf
        codec = BloscCodec(**L.BLOSC)

        def t_array(
            group: Any, name: str, shape: tuple[int, ...], dt: Any, fill: Any, dims: list[str]
        ) -> Any:
            return group.create_array(
                name,
                shape=shape,
                dtype=dt,
                chunks=(cf, *shape[1:]),
                shards=(sf, *shape[1:]) if sharded else None,
                compressors=codec,
                fill_value=fill,
                dimension_names=dims,
            )

        t_array(
            image,
            L.CORRECTED.split("/")[-1],
            (n, c, h, w),
            dtype,
            np.nan if dtype.kind == "f" else 0,
            list("tcyx"),
        )
        if rec["save_flow"]:
            flow = t_array(
                root, L.FLOW, (n, 2, h, w), "float32", np.nan, ["t", "component", "y", "x"]
            )
            flow.attrs.update(
                {
                    "components": list(L.FLOW_COMPONENTS),
                    "units": "pixel",
                    "description": "displacement field: u along x (columns), v along y (rows)",
                }
            )
        if rec["save_valid"]:
            valid = t_array(root, L.VALID, (n, h, w), "bool", False, ["t", "y", "x"])
            valid.attrs["description"] = "True where the warped sample lies inside the moving frame"
        root.create_array(
            L.REFERENCE,
            shape=(c, h, w),
            dtype="float32",
            chunks=(c, h, w),
            compressors=codec,
            fill_value=np.nan,
            dimension_names=["c", "y", "x"],
        )
        n_chunks = len(rec["chunk_bounds"])
        done = root.create_array(
            L.CHUNK_DONE,
            shape=(n_chunks,),
            dtype="bool",
            chunks=(1,),
            fill_value=False,
            dimension_names=["chunk"],
        )
        done.attrs["description"] = (
            "True once every array of pipeline chunk i (frames chunk_bounds[i]) is written"
        )
        if rec.get("reference_states"):
            root.create_array(
                L.REFERENCE_STATE,
                shape=(n_chunks, c, h, w),
                dtype="float32",
                chunks=(1, c, h, w),
                compressors=codec,
                fill_value=np.nan,
                dimension_names=["chunk", "c", "y", "x"],
            )
        stats = root.create_group(L.STATS_GROUP)
        for s in rec["stat_names"]:
            stats.create_array(
                s,
                shape=(n,),
                dtype="float64",
                chunks=(sf,),
                compressors=codec,
                fill_value=np.nan,
                dimension_names=["t"],
            )
        rec["status"] = L.STATUS_INCOMPLETE
        root.update_attributes({L.ATTRS_KEY: rec})
        self._record = rec

    @staticmethod
    def _image_ome(rec: Mapping[str, Any]) -> dict[str, Any]:
        return L.ome_attributes(
            name=rec["name"],
            channel_names=rec["channel_names"],
            frame_rate=rec["frame_rate"],
            pixel_size=rec["pixel_size"],
        )

    def _prepare_resume(self, new: Mapping[str, Any]) -> None:
        """Check writability, drop stale temporary files, refresh descriptive attributes."""
        work = self._work
        probe = work / f".probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
        for dirpath, _dirs, files in os.walk(work):
            for fname in files:
                if fname.endswith((".partial", ".tmp")):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(dirpath, fname))
        rec = dict(self._record)
        for key in ("metadata", "channel_names", "frame_rate", "pixel_size", "software_version"):
            rec[key] = new[key]
        rec["resumed_at"] = [*rec.get("resumed_at", []), _now()]
        if rec.get("status") != L.STATUS_COMPLETE:
            rec["status"] = L.STATUS_INCOMPLETE
        root = zarr.open_group(store=LocalStore(work), mode="r+", zarr_format=3)
        root[L.IMAGE_GROUP].update_attributes({"ome": self._image_ome(rec)})
        root.update_attributes({L.ATTRS_KEY: rec})
        self._record = rec

    # -- properties ------------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        """Final location of the store (where :func:`open_result` finds it after ``finalize``)."""
        return self._path

    @property
    def work_path(self) -> Path:
        """Folder written to now: ``path``, or the sibling temporary store while overwriting."""
        return self._work

    @property
    def status(self) -> str:
        """``"complete"`` once :meth:`finalize` has run, else ``"incomplete"`` (read from disk)."""
        return _public_status(_read_record(self._work))

    @property
    def fingerprint(self) -> str:
        """Run fingerprint the store was created with."""
        return str(self._record["fingerprint"])

    @property
    def metadata(self) -> dict[str, Any]:
        """The run description given at create (options, software, input, ...)."""
        return dict(self._record.get("metadata") or {})

    @property
    def chunk_bounds(self) -> list[tuple[int, int]]:
        """The pipeline time chunks ``[(start, stop), ...]``."""
        return [(int(a), int(b)) for a, b in self._record["chunk_bounds"]]

    @property
    def n_chunks(self) -> int:
        """Number of pipeline time chunks."""
        return len(self._record["chunk_bounds"])

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """Shape ``(T, H, W, C)`` of the corrected movie, as the pipeline hands it over."""
        r = self._record
        return (r["n_frames"], r["height"], r["width"], r["n_channels"])

    @property
    def dtype(self) -> np.dtype[Any]:
        """dtype of the stored corrected movie."""
        return np.dtype(self._record["dtype"])

    @property
    def save_flow(self) -> bool:
        """Whether the displacement field is stored."""
        return bool(self._record["save_flow"])

    @property
    def save_valid(self) -> bool:
        """Whether the in-bounds mask is stored."""
        return bool(self._record["save_valid"])

    @property
    def stat_names(self) -> list[str]:
        """Per-frame statistics each ``write_chunk`` must provide."""
        return list(self._record["stat_names"])

    @property
    def time_layout(self) -> L.TimeLayout:
        """Shard and inner-chunk lengths along time."""
        tl = self._record["time_layout"]
        return L.TimeLayout(int(tl["shard_frames"]), int(tl["chunk_frames"]))

    # -- chunk bookkeeping -----------------------------------------------------------------------
    def done_chunks(self) -> set[int]:
        """Return the indices of the chunks whose done marker exists.

        Returns
        -------
        set of int
            Chunks that are completely written; the others must be (re)written.
        """
        return _record_done(self._work, self._record)

    def missing_chunks(self) -> list[int]:
        """Return the sorted indices of the chunks not yet written."""
        done = self.done_chunks()
        return [i for i in range(self.n_chunks) if i not in done]

    def _check_index(self, index: int) -> tuple[int, int]:
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise InvalidOptionError(f"chunk index must be an integer; got {index!r}.")
        if not 0 <= int(index) < self.n_chunks:
            raise InvalidOptionError(f"chunk index must be in 0..{self.n_chunks - 1}; got {index}.")
        start, stop = self._record["chunk_bounds"][int(index)]
        return int(start), int(stop)

    def _check_writable(self) -> None:
        kind, record = _inspect_path(self._work)
        if kind != "store" or record is None:
            raise IncompleteStoreError(
                f"the store folder {str(self._work)!r} no longer exists (it was finalized and "
                f"moved to {str(self._path)!r}, or removed); nothing can be written to it."
            )
        if record.get("status") == L.STATUS_COMPLETE:
            raise OutputExistsError(
                f"the store {str(self._work)!r} is complete (finalized); its chunks cannot be "
                "rewritten. Create a new store with overwrite=True to recompute."
            )

    # -- writing ---------------------------------------------------------------------------------
    def write_chunk(
        self,
        index: int,
        *,
        corrected: np.ndarray,
        flow: np.ndarray | None,
        valid: np.ndarray | None,
        stats: Mapping[str, np.ndarray],
    ) -> None:
        """Write all arrays of pipeline chunk ``index``, then mark it done (atomically).

        Safe to call concurrently for different chunks from threads and processes. Calling it again
        for a done chunk (e.g. a retried task) rewrites the chunk; its flag is cleared first so a
        crash in between leaves the chunk "not done".

        Parameters
        ----------
        index : int
            Chunk index; the frames are ``chunk_bounds[index]`` (``T = stop - start`` of them).
        corrected : numpy.ndarray
            Corrected frames ``(T, H, W, C)`` (``(T, H, W)`` accepted when C == 1). Cast to the
            store dtype; floats stored into integer dtypes are rounded and clipped to the dtype
            range.
        flow : numpy.ndarray or None
            Displacements ``(T, H, W, 2)`` (u, v) in pixels, stored as float32. Required when the
            store saves flow, ignored otherwise.
        valid : numpy.ndarray or None
            In-bounds mask ``(T, H, W)``, stored as bool. Required when the store saves it, ignored
            otherwise.
        stats : mapping of str to numpy.ndarray
            Per-frame ``(T,)`` statistics, exactly the store's ``stat_names``; stored as float64.

        Raises
        ------
        InvalidInputError
            An array has the wrong shape or dtype, or ``stats`` does not match ``stat_names``.
        InvalidOptionError
            ``index`` is out of range.
        OutputExistsError
            The store is already finalized.
        """
        start, stop = self._check_index(index)
        n = stop - start
        _, h, w, c = self.shape
        cor = np.asarray(corrected)
        if cor.ndim == 3 and c == 1:
            cor = cor[..., np.newaxis]
        if cor.shape != (n, h, w, c):
            raise InvalidInputError(
                f"corrected for chunk {index} (frames {start}-{stop - 1}) must have shape "
                f"(T, H, W, C) = {(n, h, w, c)}; got {cor.shape}."
            )
        cor_tcyx = np.ascontiguousarray(np.moveaxis(_cast_to(cor, self.dtype, "corrected"), 3, 1))
        flow_t: np.ndarray | None = None
        if self.save_flow:
            if flow is None:
                raise InvalidInputError(
                    f"flow for chunk {index} is required because the store saves flow (save_flow)."
                )
            fl = np.asarray(flow)
            if fl.shape != (n, h, w, 2):
                raise InvalidInputError(
                    f"flow for chunk {index} must have shape (T, H, W, 2) = {(n, h, w, 2)}; "
                    f"got {fl.shape}."
                )
            flow_t = np.ascontiguousarray(np.moveaxis(fl.astype(np.float32, copy=False), 3, 1))
        valid_b: np.ndarray | None = None
        if self.save_valid:
            if valid is None:
                raise InvalidInputError(
                    f"valid for chunk {index} is required because the store saves the mask "
                    "(save_valid)."
                )
            va = np.asarray(valid)
            if va.shape != (n, h, w):
                raise InvalidInputError(
                    f"valid for chunk {index} must have shape (T, H, W) = {(n, h, w)}; "
                    f"got {va.shape}."
                )
            valid_b = va.astype(bool, copy=False)
        expected = set(self.stat_names)
        given = set(stats)
        if given != expected:
            raise InvalidInputError(
                f"stats for chunk {index} must have exactly the keys {sorted(expected)} declared "
                f"at create (stat_names); missing {sorted(expected - given)}, unexpected "
                f"{sorted(given - expected)}."
            )
        stat_arrays: dict[str, np.ndarray] = {}
        for name in self.stat_names:
            v = np.asarray(stats[name], dtype=np.float64)
            if v.shape != (n,):
                raise InvalidInputError(
                    f"stats[{name!r}] for chunk {index} must have shape (T,) = ({n},); "
                    f"got {v.shape}."
                )
            stat_arrays[name] = v

        self._check_writable()
        arrays = self._open_arrays()
        arrays[L.CHUNK_DONE][int(index)] = False
        arrays[L.CORRECTED][start:stop] = cor_tcyx
        if flow_t is not None:
            arrays[L.FLOW][start:stop] = flow_t
        if valid_b is not None:
            arrays[L.VALID][start:stop] = valid_b
        for name, v in stat_arrays.items():
            arrays[L.stats_path(name)][start:stop] = v
        arrays[L.CHUNK_DONE][int(index)] = True

    # -- run state ---------------------------------------------------------------------------------
    def save_reference(self, reference: np.ndarray) -> None:
        """Write the run's reference ``(H, W, C)`` (``(H, W)`` when C == 1) as soon as it is built,
        so that a resumed run reuses it exactly."""
        self._check_writable()
        self._write_reference(reference)

    def _write_reference(self, reference: np.ndarray) -> None:
        self._open_arrays()[L.REFERENCE][...] = self._as_cyx(reference, "reference")

    def load_reference(self) -> np.ndarray | None:
        """The saved reference ``(H, W, C)`` float32, or None if none was saved yet."""
        ref = np.asarray(self._open_arrays()[L.REFERENCE][...])
        if not np.all(np.isfinite(ref)):
            return None
        return np.ascontiguousarray(np.moveaxis(ref, 0, -1))

    def save_state(self, index: int, reference: np.ndarray) -> None:
        """Write the reference after chunk ``index`` (``update_reference`` runs)."""
        self._check_index(index)
        arrays = self._open_arrays()
        if L.REFERENCE_STATE not in arrays:
            raise InvalidOptionError(
                "this store keeps no reference states; create it with reference_states=True"
            )
        arrays[L.REFERENCE_STATE][int(index)] = self._as_cyx(reference, "reference state")

    def load_state(self, index: int) -> np.ndarray | None:
        """The reference after chunk ``index`` ``(H, W, C)``, or None if it was not saved."""
        self._check_index(index)
        arrays = self._open_arrays()
        if L.REFERENCE_STATE not in arrays:
            return None
        state = np.asarray(arrays[L.REFERENCE_STATE][int(index)])
        if not np.all(np.isfinite(state)):
            return None
        return np.ascontiguousarray(np.moveaxis(state, 0, -1))

    def read_chunk(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Corrected frames ``(T, H, W, C)`` and flows ``(T, H, W, 2)`` (None when not saved) of
        chunk ``index``, as written."""
        start, stop = self._check_index(index)
        arrays = self._open_arrays()
        corrected = np.moveaxis(np.asarray(arrays[L.CORRECTED][start:stop]), 1, -1)
        flow = None
        if self.save_flow:
            flow = np.moveaxis(np.asarray(arrays[L.FLOW][start:stop]), 1, -1)
        return corrected, flow

    def _as_cyx(self, image: np.ndarray, name: str) -> np.ndarray:
        _, h, w, c = self.shape
        img = np.asarray(image)
        if img.ndim == 2 and c == 1:
            img = img[..., np.newaxis]
        if img.shape != (h, w, c):
            raise InvalidInputError(
                f"{name} must have shape (H, W, C) = {(h, w, c)}; got {img.shape}."
            )
        return np.ascontiguousarray(np.moveaxis(img.astype(np.float32, copy=False), 2, 0))

    def finalize(
        self, *, reference: np.ndarray | None = None, extra_attrs: Mapping[str, Any] | None = None
    ) -> Path:
        """Write the reference (unless saved already), mark the store complete (last), and swap it
        into place if overwriting.

        Parameters
        ----------
        reference : numpy.ndarray, optional
            Reference frame ``(H, W, C)`` (``(H, W)`` accepted when C == 1), stored as float32 (c,
            y, x); optional when :meth:`save_reference` wrote it.
        extra_attrs : mapping, optional
            JSON-serialisable attributes stored under ``flowreg_dask.extra`` (e.g. summary numbers).

        Returns
        -------
        pathlib.Path
            The final store path.

        Raises
        ------
        IncompleteStoreError
            Some chunks are not done, or no reference was given or saved; the message says which.
        InvalidInputError
            ``reference`` has the wrong shape.
        OutputExistsError
            While overwriting, the target path now holds something that is not a flowreg_dask store.
        """
        missing = self.missing_chunks()
        if missing:
            raise IncompleteStoreError(
                f"cannot finalize the store {str(self._path)!r}: "
                f"{_describe_missing(missing, self._record['chunk_bounds'])}. Write them with "
                "write_chunk first (rerun the same command to resume)."
            )
        extra = _to_json(dict(extra_attrs or {}), "extra_attrs")
        if reference is not None:
            self._write_reference(reference)
        elif self.load_reference() is None:
            raise IncompleteStoreError(
                f"cannot finalize the store {str(self._path)!r}: it holds no reference; pass "
                "reference= or call save_reference first."
            )
        rec = dict(_read_record(self._work))
        rec["extra"] = {**rec.get("extra", {}), **extra}
        rec["completed_at"] = _now()
        rec["status"] = L.STATUS_COMPLETE
        with warnings.catch_warnings():
            # zarr notes that consolidated metadata is not part of the v3 spec yet; xarray and
            # zarr read it, and it spares them listing every array
            warnings.simplefilter("ignore")
            root = zarr.consolidate_metadata(LocalStore(self._work))
        root.update_attributes({L.ATTRS_KEY: rec})  # one atomic rewrite, status included
        self._record = rec
        with self._lock:
            self._arrays = None
        if self._work != self._path:
            self._swap_into_place()
        return self._path

    def _swap_into_place(self) -> None:
        """Move the finished temporary store to ``path``; delete the old store only afterwards."""
        target, work = self._path, self._work
        kind, _ = _inspect_path(target)
        trash: Path | None = None
        if kind == "foreign":
            raise OutputExistsError(
                f"the finished store is at {str(work)!r}, but {str(target)!r} now holds something "
                "that is not a flowreg_dask store, so it was not replaced. Move it away and rename "
                "the finished store yourself."
            )
        if kind == "store":
            trash = target.with_name(f"{L.trash_sibling_prefix(target)}{uuid.uuid4().hex[:8]}")
            os.rename(target, trash)
        elif kind == "empty":
            shutil.rmtree(target)
        os.rename(work, target)
        self._work = target
        stale = [
            p
            for p in target.parent.glob(f"{L.trash_sibling_prefix(target)}*")
            if p.is_dir() and _inspect_path(p)[0] == "store"
        ]
        for old in stale:
            try:
                shutil.rmtree(old)
            except OSError as exc:
                warnings.warn(
                    f"the new store is in place at {str(target)!r}, but the old one at "
                    f"{str(old)!r} could not be deleted ({exc}); delete it yourself.",
                    FlowRegWarning,
                    stacklevel=3,
                )


# --------------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------------
def _existing_store(path: _PathLike) -> tuple[Path, dict[str, Any]]:
    target = _as_path(path)
    if not target.exists():
        raise RecordingNotFoundError(
            f"no output store at {str(target)!r}. Check the path (expected a folder written by "
            "flowreg_dask.register)."
        )
    return target, _read_record(target)


def store_status(path: _PathLike) -> dict[str, Any]:
    """Summarise an output store (for ``flowreg-dask info OUT.zarr``).

    Parameters
    ----------
    path : str or os.PathLike
        The store folder.

    Returns
    -------
    dict
        ``path``, ``status`` ("complete" | "incomplete"), ``chunks_done``, ``n_chunks``,
        ``missing_chunks`` (list), ``fingerprint``, ``shape`` (dict t/c/y/x), ``dtype``,
        ``save_flow``, ``save_valid``, ``stat_names``, ``frame_rate``, ``pixel_size``,
        ``software_version``, ``created_at``, ``resumed_at``, ``completed_at``, ``time_layout``,
        ``metadata`` and ``pending_overwrites`` (temporary stores of unfinished overwrite runs next
        to it: path, status, chunks done, fingerprint).

    Raises
    ------
    RecordingNotFoundError
        Nothing exists at ``path``.
    InvalidInputError
        ``path`` is not a flowreg_dask store.
    """
    target, rec = _existing_store(path)
    n_chunks = len(rec.get("chunk_bounds", []))
    done = _record_done(target, rec)
    pending = []
    for p in sorted(target.parent.glob(f"{L.temp_sibling_prefix(target)}*")):
        kind, prec = _inspect_path(p)
        if kind == "store" and prec is not None:
            pn = len(prec.get("chunk_bounds", []))
            pending.append(
                {
                    "path": str(p),
                    "status": _public_status(prec),
                    "chunks_done": len(_record_done(p, prec)),
                    "n_chunks": pn,
                    "fingerprint": prec.get("fingerprint"),
                }
            )
    return {
        "path": str(target),
        "status": _public_status(rec),
        "chunks_done": len(done),
        "n_chunks": n_chunks,
        "missing_chunks": [i for i in range(n_chunks) if i not in done],
        "fingerprint": rec.get("fingerprint"),
        "shape": {
            "t": rec.get("n_frames"),
            "c": rec.get("n_channels"),
            "y": rec.get("height"),
            "x": rec.get("width"),
        },
        "dtype": rec.get("dtype"),
        "save_flow": rec.get("save_flow"),
        "save_valid": rec.get("save_valid"),
        "stat_names": rec.get("stat_names"),
        "frame_rate": rec.get("frame_rate"),
        "pixel_size": rec.get("pixel_size"),
        "software_version": rec.get("software_version"),
        "created_at": rec.get("created_at"),
        "resumed_at": rec.get("resumed_at", []),
        "completed_at": rec.get("completed_at"),
        "time_layout": rec.get("time_layout"),
        "metadata": rec.get("metadata"),
        "pending_overwrites": pending,
    }


def open_result(path: _PathLike, *, allow_incomplete: bool = False) -> xr.Dataset:
    """Open a finished output store lazily as an :class:`xarray.Dataset` backed by dask.

    Parameters
    ----------
    path : str or os.PathLike
        The store folder.
    allow_incomplete : bool, default False
        Open an unfinished store anyway (with a :class:`~flowreg_dask.errors.FlowRegWarning`);
        frames of missing chunks read as NaN (0 for integer movies, False for ``valid``).

    Returns
    -------
    xarray.Dataset
        Variables ``corrected`` (t, c, y, x) in the stored dtype, ``flow`` (t, component, y, x)
        float32 when saved, ``valid`` (t, y, x) bool when saved, ``reference`` (c, y, x) float32,
        and one (t,) float64 variable per statistic. Coordinates ``t`` (seconds if the frame rate is
        known, else frame index), ``frame`` (index), ``c`` (channel names or indices), ``y``/``x``
        (micrometres if the pixel size is known, else pixels), ``component`` ("u", "v"). Dask chunks
        are one storage object (one pipeline chunk for regular chunking) along ``t``. ``attrs`` hold
        the run record (status, fingerprint, metadata, ...).

    Raises
    ------
    RecordingNotFoundError
        Nothing exists at ``path``.
    InvalidInputError
        ``path`` is not a flowreg_dask store.
    IncompleteStoreError
        The store is not complete and ``allow_incomplete`` is False; the message lists the missing
        chunks.
    """
    import dask.array as da
    from dask.base import tokenize

    target, rec = _existing_store(path)
    n_chunks = len(rec["chunk_bounds"])
    done = _record_done(target, rec)
    missing = [i for i in range(n_chunks) if i not in done]
    complete = rec.get("status") == L.STATUS_COMPLETE
    if not complete:
        what = (
            _describe_missing(missing, rec["chunk_bounds"])
            if missing
            else "all chunks are written but the run was not finalized"
        )
        if not allow_incomplete:
            raise IncompleteStoreError(
                f"the output store {str(target)!r} is incomplete: {what}. Its run was interrupted "
                "(or is still running). Rerun the same command (same options and input) to resume "
                "it, or pass allow_incomplete=True to open it anyway (missing frames read as NaN, "
                "or 0 for integer movies)."
            )
        warnings.warn(
            f"opening the incomplete output store {str(target)!r}: {what}; those frames read as "
            "fill values (NaN, or 0 for integer movies).",
            FlowRegWarning,
            stacklevel=2,
        )

    group = zarr.open_group(store=LocalStore(target, read_only=True), mode="r", zarr_format=3)
    sf = int(rec["time_layout"]["shard_frames"])
    token = tokenize(str(target), rec.get("fingerprint"), rec.get("completed_at"), sorted(done))

    def lazy(name: str) -> Any:
        arr = group[name]
        chunks = (sf, *arr.shape[1:]) if arr.metadata.dimension_names[0] == "t" else arr.shape
        return da.from_array(
            arr,
            chunks=chunks,
            name=f"flowreg-{name.replace('/', '-')}-{token}",
            lock=False,
            asarray=False,
            fancy=False,
        )

    n, h, w, c = rec["n_frames"], rec["height"], rec["width"], rec["n_channels"]
    fr, ps = rec.get("frame_rate"), rec.get("pixel_size")
    frame = np.arange(n)
    coords: dict[str, Any] = {
        "t": (
            ("t", frame / fr, {"type": "time", "units": "second"})
            if fr
            else ("t", frame, {"type": "time", "long_name": "frame index"})
        ),
        "frame": ("t", frame),
        "c": ("c", rec.get("channel_names") or list(range(c)), {"type": "channel"}),
    }
    for axis, size in (("y", h), ("x", w)):
        coords[axis] = (
            (axis, np.arange(size) * ps, {"type": "space", "units": "micrometer"})
            if ps
            else (axis, np.arange(size), {"type": "space", "units": "pixel"})
        )
    variables: dict[str, Any] = {
        "corrected": (("t", "c", "y", "x"), lazy(L.corrected_path(rec.get("format_version", 1)))),
        "reference": (("c", "y", "x"), lazy(L.REFERENCE)),
    }
    if rec.get("save_flow"):
        coords["component"] = ("component", list(L.FLOW_COMPONENTS))
        variables["flow"] = (
            ("t", "component", "y", "x"),
            lazy(L.FLOW),
            {"units": "pixel", "description": "u along x (columns), v along y (rows)"},
        )
    if rec.get("save_valid"):
        variables["valid"] = (("t", "y", "x"), lazy(L.VALID))
    for s in rec.get("stat_names", []):
        variables[s] = (("t",), lazy(L.stats_path(s)))
    attrs: dict[str, Any] = {
        **rec.get("extra", {}),
        "status": _public_status(rec),
        "fingerprint": rec.get("fingerprint"),
        "chunk_bounds": rec.get("chunk_bounds"),
        "missing_chunks": missing,
        "frame_rate": fr,
        "pixel_size": ps,
        "metadata": rec.get("metadata"),
        "software_version": rec.get("software_version"),
        "created_at": rec.get("created_at"),
        "completed_at": rec.get("completed_at"),
        "store": str(target),
    }
    return xr.Dataset(variables, coords=coords, attrs=attrs)
