"""The run record of a corrected store, and the checks and helpers around it.

The record (root attribute ``flowreg_dask``) says what a store holds and how far its run got:
status, fingerprint, shape, dtype, chunk bounds, what is saved, time layout, metadata. A
:class:`StoreSpec` describes a run's store before it exists; :func:`new_record` validates it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import math
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.storage import LocalStore

from .._version import __version__
from ..errors import InvalidInputError, InvalidOptionError, OutputExistsError
from . import layout as L

_PathLike = str | os.PathLike[str]

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
            f"an object that is not: {exc}. Convert it first (e.g. options.to_json_dict())."
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


@dataclasses.dataclass(frozen=True)
class StoreSpec:
    """What a run's output store holds, before it exists.

    Attributes
    ----------
    n_frames, height, width, n_channels : int
        Shape of the corrected movie ``(T, H, W, C)``.
    dtype : numpy dtype-like
        dtype of the corrected movie (the input dtype, or float32); integer or float.
    chunk_bounds : sequence of (int, int)
        The pipeline's contiguous time chunks ``[(start, stop), ...]`` covering ``0..n_frames``;
        ``write_chunk(i, ...)`` writes frames ``chunk_bounds[i]``.
    save_flow, save_valid : bool
        Keep the displacement field (``flow``) / the in-bounds mask (``valid``).
    fingerprint : str
        Hash of (options, input identity, shapes): an incomplete store is resumed only by a run
        with the same fingerprint.
    metadata : mapping
        JSON-serialisable run description (options as dict, software, input), stored under
        ``flowreg_dask.metadata``.
    channel_names : sequence of str, optional
        One label per channel (OME ``omero`` labels and the ``c`` coordinate).
    frame_rate : float, optional
        Frames per second: the OME time scale (seconds) and the ``t`` coordinate.
    pixel_size : float, optional
        Pixel size in micrometres: the OME spatial scale.
    stat_names : sequence of str, optional
        Per-frame statistics every ``write_chunk`` provides (default
        :data:`~flowreg_dask.store.layout.DEFAULT_STAT_NAMES`).
    reference_states : bool
        Keep one reference per chunk (``update_reference`` runs resume from the last one).
    """

    n_frames: int
    height: int
    width: int
    n_channels: int
    dtype: Any
    chunk_bounds: Sequence[tuple[int, int]]
    save_flow: bool
    save_valid: bool
    fingerprint: str
    metadata: Mapping[str, Any]
    channel_names: Sequence[str] | None = None
    frame_rate: float | None = None
    pixel_size: float | None = None
    stat_names: Sequence[str] | None = None
    reference_states: bool = False


def new_record(target: Path, spec: StoreSpec) -> dict[str, Any]:
    """Validate ``spec`` and build the run record of a new store at ``target``."""
    n_frames = _validate_positive_int(spec.n_frames, "n_frames")
    height = _validate_positive_int(spec.height, "height")
    width = _validate_positive_int(spec.width, "width")
    n_channels = _validate_positive_int(spec.n_channels, "n_channels")
    dtype, chunk_bounds, save_flow, save_valid = (
        spec.dtype,
        spec.chunk_bounds,
        spec.save_flow,
        spec.save_valid,
    )
    run_fingerprint, metadata, channel_names = spec.fingerprint, spec.metadata, spec.channel_names
    frame_rate, pixel_size, stat_names = spec.frame_rate, spec.pixel_size, spec.stat_names
    reference_states = spec.reference_states
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
    frame_bytes = height * width * max(n_channels * np_dtype.itemsize, 2 * 4 if save_flow else 0)
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
