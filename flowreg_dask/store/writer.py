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
  threads or processes never read-modify-write the same object. Whole objects of the time arrays
  are encoded in the writing thread (:mod:`._objects`, the same bytes as zarr's); both that and
  zarr's local store write every object to a temporary file and rename it into place, so a killed
  writer leaves the old object or the new one.
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

import asyncio
import contextlib
import os
import shutil
import threading
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec
from zarr.storage import LocalStore

from ..errors import (
    FlowRegWarning,
    IncompleteStoreError,
    InvalidInputError,
    InvalidOptionError,
    OutputExistsError,
    RecordingNotFoundError,
)
from . import layout as L
from ._objects import ObjectWriter
from ._record import (
    _LAYOUT_FIELDS,
    StoreSpec,
    _as_path,
    _cast_to,
    _describe_missing,
    _inspect_path,
    _now,
    _PathLike,
    _public_status,
    _read_record,
    _record_done,
    _remove_own_store,
    _to_json,
    _wrap_os_error,
    new_record,
)

__all__ = ["CorrectedStore", "StoreSpec"]


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
        self._objects: dict[str, ObjectWriter | None] = {}
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
                self._arrays = {name: _writable(group[name]) for name in names}
                self._objects = {
                    name: ObjectWriter.for_array(self._arrays[name])
                    for name in names
                    if name not in (L.REFERENCE, L.REFERENCE_STATE)
                }
                self._arrays_pid = os.getpid()
            return self._arrays

    # -- construction ----------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: _PathLike,
        spec: StoreSpec,
        *,
        overwrite: bool = False,
        resume: bool = True,
    ) -> CorrectedStore:
        """Create (or resume) the output store of a run, before any computation starts.

        Parameters
        ----------
        path : str or os.PathLike
            Output folder (conventionally ``*.zarr``). Missing parent folders are created.
        spec : StoreSpec
            What the store holds (shape, dtype, chunk bounds, what is saved, the run's
            fingerprint and metadata, ...).
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
            A value of ``spec`` is invalid.
        OSError
            The location is not writable (e.g. ``PermissionError``); the message names the path.
        """
        target = _as_path(path)
        record = new_record(target, spec)
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

        def codec(dt: Any) -> BloscCodec:
            return BloscCodec(**L.blosc_for(dt))

        def t_array(
            group: Any, name: str, shape: tuple[int, ...], dt: Any, fill: Any, dims: list[str]
        ) -> Any:
            return group.create_array(
                name,
                shape=shape,
                dtype=dt,
                chunks=(cf, *shape[1:]),
                shards=(sf, *shape[1:]) if sharded else None,
                compressors=codec(dt),
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
            compressors=codec("float32"),
            fill_value=np.nan,
            dimension_names=["c", "y", "x"],
        )
        n_chunks = len(rec["chunk_bounds"])
        done = root.create_array(
            L.CHUNK_DONE,
            shape=(n_chunks,),
            dtype="bool",
            chunks=(1,),
            compressors=codec("bool"),  # a codec ObjectWriter writes (a flag in ~0.4 ms)
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
                compressors=codec("float32"),
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
                compressors=codec("float64"),
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
        self._set_done(index, False)
        values = {L.CORRECTED: cor_tcyx}
        if flow_t is not None:
            values[L.FLOW] = flow_t
        if valid_b is not None:
            values[L.VALID] = valid_b
        values.update({L.stats_path(name): v for name, v in stat_arrays.items()})
        writes = []
        for name, value in values.items():
            objects = self._objects.get(name)
            rest = objects.write(value, start) if objects is not None else [(start, stop)]
            writes += [(arrays[name], value[a - start : b - start], slice(a, b)) for a, b in rest]
        _write_together(writes)
        self._set_done(index, True)

    def _set_done(self, index: int, value: bool) -> None:
        """Set chunk ``index``'s done flag. A flag never written reads False already, so clearing
        it is skipped; flags are written as whole objects where the store's codec allows (a trip
        through zarr's event loop took ~2 ms per flag, with two registration threads waiting on
        each other's)."""
        index = int(index)
        arrays = self._open_arrays()  # also builds self._objects
        objects = self._objects.get(L.CHUNK_DONE)
        if objects is not None:
            if not value and not objects.stored(index):
                return
            if not objects.write(np.array([value]), index):
                return
        arrays[L.CHUNK_DONE][index] = value

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

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        """Frames ``start .. stop`` of one array in the library's axis order: ``"corrected"``
        (T, H, W, C), ``"flow"`` (T, H, W, 2), ``"valid"`` (T, H, W), or a statistic (T,)."""
        arrays = self._open_arrays()
        if name == "corrected":
            return np.moveaxis(np.asarray(arrays[L.CORRECTED][start:stop]), 1, -1)
        if name == "flow" and self.save_flow:
            return np.moveaxis(np.asarray(arrays[L.FLOW][start:stop]), 1, -1)
        if name == "valid" and self.save_valid:
            return np.asarray(arrays[L.VALID][start:stop])
        if name in self.stat_names:
            return np.asarray(arrays[L.stats_path(name)][start:stop])
        raise InvalidOptionError(
            f"read: the store {str(self._path)!r} holds no {name!r} (it holds corrected"
            + (", flow" if self.save_flow else "")
            + (", valid" if self.save_valid else "")
            + f" and the statistics {', '.join(self.stat_names)})."
        )

    def read_chunk(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Corrected frames ``(T, H, W, C)`` and flows ``(T, H, W, 2)`` (None when not saved) of
        chunk ``index``, as written."""
        start, stop = self._check_index(index)
        flow = self.read("flow", start, stop) if self.save_flow else None
        return self.read("corrected", start, stop), flow

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


def _writable(array: Any) -> Any:
    """``array`` set to write every chunk it is given. By default zarr first compares each chunk
    with the fill value to skip "empty" ones; every chunk the pipeline writes is data, and that
    scan cost a fifth of the time of writing flows (256x256x1000 float32 flows: 1.5 against 1.9
    CPU seconds)."""
    with_config = getattr(array, "with_config", None)
    return with_config({"write_empty_chunks": True}) if with_config is not None else array


def _write_together(writes: list[tuple[Any, np.ndarray, slice]]) -> None:
    """Write ``value`` to ``array[sel]`` for every (array, value, sel) in one trip to zarr's event
    loop, so their encodes and file writes overlap. Falls back to plain writes where zarr lacks
    the asynchronous API."""
    if not writes:
        return
    try:
        from zarr.core.sync import sync

        triples = [(arr.async_array, value, sel) for arr, value, sel in writes]
    except (ImportError, AttributeError):  # pragma: no cover - other zarr versions
        for arr, value, sel in writes:
            arr[sel] = value
        return

    async def write_all() -> None:
        await asyncio.gather(*(arr.setitem(sel, value) for arr, value, sel in triples))

    sync(write_all())
