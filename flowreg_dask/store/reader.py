"""Reading corrected stores: :func:`open_result` (lazy xarray) and :func:`store_status`."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr
from zarr.storage import LocalStore

from ..errors import FlowRegWarning, IncompleteStoreError, RecordingNotFoundError
from . import layout as L
from ._record import (
    _as_path,
    _describe_missing,
    _format_ranges,
    _inspect_path,
    _PathLike,
    _public_status,
    _read_record,
    _record_done,
)

__all__ = ["open_result", "store_status", "describe_store"]


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


def describe_store(path: _PathLike) -> str:
    """A short human-readable summary of an output store (what ``flowreg-dask info OUT.zarr``
    prints; :func:`store_status` has the full record)."""
    st = store_status(path)
    shape = st["shape"]
    options = (st.get("metadata") or {}).get("options") or {}
    saved = ", ".join(
        name
        for name, on in (("flows", st.get("save_flow")), ("valid masks", st.get("save_valid")))
        if on
    )
    rate = f"{st['frame_rate']:.6g} Hz" if st.get("frame_rate") else "unknown"
    px = f"{st['pixel_size']:.6g} µm" if st.get("pixel_size") else "unknown"
    state = st["status"]
    if state != "complete":
        missing = st.get("missing_chunks") or []
        state += f" ({st['chunks_done']} of {st['n_chunks']} chunks done; rerun to resume)"
        if missing:
            state += f"; missing chunks {_format_ranges(missing)}"
    lines = [
        f"Store:        {st['path']}",
        f"status:       {state}",
        f"movie:        {shape['t']} frames x {shape['y']} x {shape['x']} px x {shape['c']} "
        f"channel(s), {st['dtype']}  (t, y, x, c)",
        f"also saved:   {saved or 'reference and statistics only'}",
        f"input:        {(st.get('metadata') or {}).get('input', 'unknown')}",
        f"preset:       {options.get('quality_setting', 'unknown')}"
        f" (alpha {options.get('alpha')}, data term {options.get('constancy_assumption')})",
        f"frame rate:   {rate}",
        f"pixel size:   {px}",
        f"chunks:       {st['n_chunks']}",
        f"software:     flowreg_dask {st.get('software_version')}",
        f"created:      {st.get('created_at')}",
        f"completed:    {st.get('completed_at') or '-'}",
    ]
    for pending in st.get("pending_overwrites") or []:
        lines.append(
            f"unfinished overwrite: {pending['path']} ({pending['chunks_done']} of "
            f"{pending['n_chunks']} chunks)"
        )
    return "\n".join(lines)


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
        Variables ``corrected`` (t, y, x, c) in the stored dtype, ``flow`` (t, y, x, component)
        float32 when saved, ``valid`` (t, y, x) bool when saved, ``reference`` (y, x, c) float32,
        and one (t,) float64 variable per statistic: the axis order of
        :func:`flowreg_dask.open_recording` and :func:`flowreg_dask.register` (on disk the movie is
        OME-Zarr's (t, c, y, x); the transpose is lazy). Coordinates ``t`` (seconds if the frame
        rate is known, else frame index), ``frame`` (index), ``c`` (channel names or indices),
        ``y``/``x`` (micrometres if the pixel size is known, else pixels), ``component`` ("u",
        "v"). Dask chunks
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
    ds = xr.Dataset(variables, coords=coords, attrs=attrs)
    # the library's one axis order for movies (as open_recording and register give them); the
    # store keeps OME-Zarr's (t, c, y, x) on disk, and the transpose is lazy
    return ds.transpose("t", "y", "x", ...).transpose(
        ..., *[d for d in ("c", "component") if d in ds.dims]
    )
