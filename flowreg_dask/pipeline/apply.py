"""Warp recordings with displacement fields that were estimated before, out of core.

:func:`apply_flow` warps a recording with the per-frame flows of a finished store (registered with
``save_w=True``); :func:`warp_store` warps every frame of a finished store with one displacement
field (the multi-session alignment, :mod:`flowreg_dask.session`). Both write a store with the
standard layout (:class:`~flowreg_dask.store.writer.CorrectedStore`) chunk by chunk: one dask
task per time chunk reads its frames and flows, warps them and writes them, so memory is bounded by
a chunk whatever the recording's length, and a killed run resumes where it stopped.

Structural channel recipe
-------------------------
Register on a structural channel and carry the motion over to a functional one. Two ways:

* **One two-channel recording** (channel 0 structural, e.g. tdTomato; channel 1 functional, e.g.
  GCaMP): ``OFOptions(weight=[1, 0])`` lets only channel 0 drive the flow, while both channels
  are warped with it; nothing else is needed.
* **Separate recordings** of the same frames (or a structural recording and the raw functional
  data): register the structural one with ``save_w=True``, then warp the functional one with
  the stored flows::

      from flowreg_dask import OFOptions, apply_flow, compensate_recording

      store = compensate_recording(
          OFOptions(save_w=True), recording="structural.tif", output="structural.zarr"
      )
      apply_flow(store, "functional.tif", output="functional.zarr", fill="zeros")

  The functional recording must have the same number of frames (after the store's binning) and
  the same frame size. ``fill="zeros"`` (or a value) is the usual choice here: the default fill,
  the store's reference, is an image of the structural channel. The CLI equivalent is
  ``flowreg-dask apply structural.zarr functional.tif -o functional.zarr --fill zeros``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from .._constants import DIMS, bounds_from_chunks
from .._version import __version__
from ..errors import InvalidInputError, InvalidOptionError
from ..options import OFOptions, RegistrationConfig
from ..store.reader import open_result
from ..store.writer import CorrectedStore, StoreSpec
from .blocks import frame_statistics, warp_frames
from .execute import run_chunks
from .graph import ChunkWritten
from .progress import FrameProgress
from .run import runner

__all__ = ["apply_flow", "warp_store"]

FillSpec = str | float | int | np.ndarray


# --------------------------------------------------------------------------------- chunk work
@dataclasses.dataclass(frozen=True)
class WarpSpec:
    """Everything a chunk task needs besides its frames (small; sent to every task).

    Exactly one of ``flow_store`` (per-frame flows read from that store's ``flow`` array) and
    ``field`` (one (H, W, 2) field for every frame) is set.
    """

    fill: np.ndarray  # (H, W, C) float32 image for out-of-bounds pixels
    interpolation: str
    out_dtype: np.dtype
    flow_store: str | None = None
    field: np.ndarray | None = None
    valid_store: str | None = None  # AND in the nearest-warped per-frame masks of this store
    stats_store: str | None = None  # copy the per-frame statistics from here (else from flows)
    save_flow: bool = False


def warp_chunk(frames: np.ndarray, *, start: int, stop: int, spec: WarpSpec) -> dict[str, Any]:
    """Warp frames ``start .. stop`` ((T, H, W, C)) as ``spec`` says.

    Returns
    -------
    dict
        ``corrected`` (T, H, W, C) in ``spec.out_dtype``, ``flow`` (T, H, W, 2) float32,
        ``valid`` (T, H, W) bool and the per-frame statistics (``stats``: name -> (T,)).
    """
    n = stop - start
    if spec.field is not None:
        flow = np.broadcast_to(spec.field, (n, *spec.field.shape))
    else:
        flow = CorrectedStore.open(spec.flow_store).read("flow", start, stop)
    corrected, valid = warp_frames(frames, flow, spec.fill, spec.interpolation, spec.out_dtype)
    if spec.valid_store is not None:
        src_valid = CorrectedStore.open(spec.valid_store).read("valid", start, stop)
        hwc = src_valid[..., None].astype(np.float32)
        zeros = np.zeros(hwc.shape[1:], np.float32)
        moved, _ = warp_frames(hwc, flow, zeros, "nearest", np.float32)
        valid &= moved[..., 0] > 0.5
    if spec.stats_store is not None:
        src = CorrectedStore.open(spec.stats_store)
        stats = {name: src.read(name, start, stop) for name in src.stat_names}
    else:
        stats = frame_statistics(np.ascontiguousarray(flow, np.float32))
    return {"corrected": corrected, "flow": flow, "valid": valid, "stats": stats}


def _warp_task(
    block: np.ndarray,
    *,
    block_id: tuple[int, ...],
    bounds: tuple[tuple[int, int], ...],
    spec: WarpSpec,
    store: CorrectedStore,
) -> np.ndarray:
    i = block_id[0]
    start, stop = bounds[i]
    out = warp_chunk(np.asarray(block), start=start, stop=stop, spec=spec)
    store.write_chunk(
        i,
        corrected=out["corrected"],
        flow=out["flow"] if store.save_flow else None,
        valid=out["valid"] if store.save_valid else None,
        stats={k: out["stats"][k] for k in store.stat_names},
    )
    done = np.empty((1, 1, 1, 1), object)
    done[0, 0, 0, 0] = ChunkWritten(i, stop - start)
    return done


def _temporal_mean(store: CorrectedStore) -> np.ndarray:
    """(H, W, C) float64 mean of the written movie, read back one chunk at a time."""
    n, h, w, c = store.shape
    total = np.zeros((h, w, c), np.float64)
    for start, stop in store.chunk_bounds:
        total += store.read("corrected", start, stop).sum(axis=0, dtype=np.float64)
    return total / n


def write_warped(
    data: da.Array,
    *,
    spec: WarpSpec,
    output: Path,
    bounds: Sequence[tuple[int, int]],
    fingerprint: str,
    metadata: dict[str, Any],
    stat_names: Sequence[str],
    save_valid: bool = True,
    reference: np.ndarray | None = None,
    channel_names: Sequence[str] | None = None,
    frame_rate: float | None = None,
    pixel_size: float | None = None,
    overwrite: bool = False,
    resume: bool = True,
    config: RegistrationConfig | None = None,
    progress_callback: Callable[[int, int], None] | None = None,
    desc: str = "warping",
) -> Path:
    """Warp the (T, H, W, C) dask array ``data`` chunk by chunk into a new store at ``output``.

    ``bounds`` are the output's time chunks (one task each); ``reference`` is stored as the output's
    reference (None: the temporal mean of the output movie).
    """
    n, h, w, c = data.shape
    store = CorrectedStore.create(
        output,
        StoreSpec(
            n_frames=n,
            height=h,
            width=w,
            n_channels=c,
            dtype=spec.out_dtype,
            chunk_bounds=bounds,
            save_flow=spec.save_flow,
            save_valid=save_valid,
            fingerprint=fingerprint,
            metadata=metadata,
            channel_names=channel_names,
            frame_rate=frame_rate,
            pixel_size=pixel_size,
            stat_names=list(stat_names),
        ),
        overwrite=overwrite,
        resume=resume,
    )
    lengths = tuple(b - a for a, b in bounds)
    if data.chunks[0] != lengths or any(len(ch) > 1 for ch in data.chunks[1:]):
        data = data.rechunk({0: lengths, 1: -1, 2: -1, 3: -1})
    writes = data.map_blocks(
        _warp_task,
        chunks=((1,) * len(bounds), (1,), (1,), (1,)),
        meta=np.empty((0, 0, 0, 0), dtype=object),
        bounds=tuple(tuple(b) for b in bounds),
        spec=spec,
        store=store,
    )
    done = store.done_chunks()
    todo = [i for i in range(len(bounds)) if i not in done]
    show = True if config is None else config.progress
    progress = FrameProgress(
        n,
        initial=sum(bounds[i][1] - bounds[i][0] for i in done),
        show=show and bool(todo),
        callbacks=[progress_callback] if progress_callback else None,
        desc=desc,
    )
    try:
        with runner(config) as run:
            run_chunks(writes, todo, run, lambda done: progress.advance(done.n_frames))
    finally:
        progress.close()
    ref = _temporal_mean(store) if reference is None else reference
    return store.finalize(reference=np.asarray(ref, np.float32))


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(str((p.dtype.str, p.shape)).encode())
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:32]


# ------------------------------------------------------------------------------------ inputs
def _store_options(ds: xr.Dataset) -> dict[str, Any]:
    meta = ds.attrs.get("metadata") or {}
    opts = meta.get("options") if isinstance(meta, dict) else None
    return dict(opts) if isinstance(opts, dict) else {}


def _resolve_fill(fill: Any, *, reference: np.ndarray | None, hwc: tuple[int, int, int], what: str):
    """(H, W, C) float32 fill image from ``"reference"``, ``"zeros"``, a number or an image."""
    h, w, c = hwc
    if isinstance(fill, str):
        key = fill.lower()
        if key == "zeros":
            return np.zeros((h, w, c), np.float32)
        if key == "reference":
            if reference is None or reference.shape != (h, w, c):
                found = "none" if reference is None else f"shape {reference.shape}"
                raise InvalidOptionError(
                    f"fill='reference': {what} has a reference of {found}, but the frames to "
                    f"warp are (H, W, C) = {(h, w, c)}. Pass fill='zeros' or a number instead."
                )
            return np.ascontiguousarray(reference, np.float32)
        raise InvalidOptionError(
            f"fill: expected 'reference', 'zeros', a number or an (H, W[, C]) image, got {fill!r}"
        )
    arr = np.asarray(fill, dtype=np.float32)
    if arr.ndim == 0:
        return np.full((h, w, c), float(arr), np.float32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[:2] != (h, w) or arr.shape[2] not in (1, c):
        raise InvalidOptionError(
            f"fill: an image must have shape ({h}, {w}) or ({h}, {w}, {c}), got {np.shape(fill)}"
        )
    return np.ascontiguousarray(np.broadcast_to(arr, (h, w, c)))


def _check_fill_dtype(fill: np.ndarray, out_dtype: np.dtype) -> None:
    if out_dtype.kind in "iu" and not np.all(np.isfinite(fill)):
        raise InvalidOptionError(
            f"fill: NaN/inf cannot be stored in the {out_dtype} output. Pass a finite fill, or "
            "output_dtype='float32' to keep NaN."
        )


def _open_recording(recording: Any, *, buffer_size: int, bin_size: int) -> xr.DataArray:
    if isinstance(recording, xr.DataArray) and tuple(recording.dims) == DIMS:
        return recording
    from ..io import open_recording

    return open_recording(recording, buffer_size=buffer_size, bin_size=bin_size)


def _select_channels(rec: xr.DataArray, channels: Sequence[int] | int | None) -> xr.DataArray:
    if channels is None:
        return rec
    idx = [channels] if isinstance(channels, (int, np.integer)) else list(channels)
    n = rec.shape[-1]
    bad = [i for i in idx if isinstance(i, bool) or not isinstance(i, (int, np.integer))]
    bad += [i for i in idx if i not in bad and not -n <= int(i) < n]
    if not idx or bad:
        raise InvalidOptionError(
            f"channels: expected channel indices in 0..{n - 1} of the recording, got {channels!r}"
        )
    return rec.isel(c=[int(i) % n for i in idx])


def apply_flow(
    store: str | Path,
    recording: Any,
    *,
    output: str | Path,
    channels: Sequence[int] | int | None = None,
    fill: FillSpec = "reference",
    interpolation: str | None = None,
    output_dtype: Any = None,
    save_flow: bool = False,
    overwrite: bool = False,
    resume: bool = True,
    config: RegistrationConfig | None = None,
    progress_callback: Callable[[int, int], None] | None = None,
) -> Path:
    """Warp a recording with the flows stored in a finished registration store.

    Frame ``t`` of ``recording`` is warped with the store's flow of frame ``t`` exactly as the
    registration warped its own input, so applying a store's flows to the recording it was made
    from reproduces its corrected movie. Typical use: carry the motion estimated on a structural
    recording or channel over to a functional one (see the module docstring).

    Parameters
    ----------
    store : str or Path
        A complete output store of :func:`~flowreg_dask.compensate_recording` registered with
        ``save_w=True`` (``--save-w``).
    recording : path, array or xarray.DataArray
        Anything :func:`~flowreg_dask.open_recording` accepts, or a (t, y, x, c) DataArray. Paths
        are read with the store's ``bin_size``. It must have the store's frame count and frame
        size; its channel count may differ.
    output : str or Path
        The output store (``*.zarr``), written with the same layout as the registration's.
    channels : int or sequence of int, optional
        Channels of ``recording`` to warp (default: all).
    fill : {"reference", "zeros"}, number or ndarray
        Value of pixels whose source lies outside the frame: the store's reference (as in the
        registration; needs the store's channel count), zeros, a constant, or an (H, W[, C])
        image. The ``valid`` masks of the output mark the pixels that are not filled.
    interpolation : {"cubic", "linear", "nearest"}, optional
        Interpolation of the warp; default: the store's ``interpolation_method``.
    output_dtype : numpy dtype-like, optional
        dtype of the output movie; default: the store's ``output_typename`` if it set one, else
        the recording's dtype (integers rounded and clipped).
    save_flow : bool
        Copy the flows into the output store as well (default False: they stay in ``store``).
    overwrite, resume : bool
        As in :func:`~flowreg_dask.compensate_recording`: an existing complete output is replaced
        only with ``overwrite`` (and only once the new one is complete); an unfinished run of the
        same inputs continues from its missing chunks.
    config : RegistrationConfig, optional
        Run mode (``sequential``, ``threading``, ``multiprocessing``, ``distributed``), workers,
        progress bar.
    progress_callback : callable, optional
        ``progress_callback(frames_done, total)`` after each chunk.

    Returns
    -------
    pathlib.Path
        The complete output store (open it with :func:`~flowreg_dask.open_result`). Its
        ``corrected`` holds the warped frames, ``valid`` the in-bounds masks, the
        per-frame statistics are copied from ``store``, and its ``reference`` is the temporal mean
        of the warped movie (the store's reference when ``fill="reference"``).

    Raises
    ------
    IncompleteStoreError
        ``store`` is not complete.
    InvalidInputError
        ``store`` has no flows, or the recording's frame count or frame size differs from the
        store's. Nothing is written in these cases.
    InvalidOptionError
        A bad ``channels``, ``fill``, ``interpolation`` or ``output_dtype``.
    OutputExistsError
        ``output`` is complete and ``overwrite`` is False.

    Examples
    --------
    >>> apply_flow("structural.zarr", "functional.tif", output="functional.zarr",
    ...            fill="zeros")  # doctest: +SKIP
    """
    from ..core.warp import interpolation_order

    src = Path(store).expanduser().absolute()
    _check_output(src, output)
    ds = open_result(src)
    if "flow" not in ds:
        raise InvalidInputError(
            f"store {str(src)!r} has no flows: it was registered with save_w=False. Rerun the "
            "registration with save_w=True (CLI: flowreg-dask correct ... --save-w) to apply its "
            "flows to other recordings."
        )
    opts = _store_options(ds)
    n, h, w, _ = ds["corrected"].shape
    bounds = [(int(a), int(b)) for a, b in ds.attrs["chunk_bounds"]]
    bin_size = int(opts.get("bin_size", 1) or 1)
    rec = _open_recording(recording, buffer_size=bounds[0][1] - bounds[0][0], bin_size=bin_size)
    what = f"recording {rec.attrs.get('source', type(recording).__name__)!r}"
    if rec.shape[0] != n:
        binned = f" after binning by {bin_size} (the store's bin_size)" if bin_size > 1 else ""
        raise InvalidInputError(
            f"{what} has {rec.shape[0]} frames{binned}, but store {str(src)!r} has flows for {n} "
            "frames. Pass the recording of the same frames (a selection can be made with "
            "open_recording(..., frames=START:STOP))."
        )
    if rec.shape[1:3] != (h, w):
        raise InvalidInputError(
            f"{what} has frames of (H, W) = {tuple(rec.shape[1:3])}, but the flows of store "
            f"{str(src)!r} are {(h, w)}. Pass a recording of the same field of view."
        )
    rec = _select_channels(rec, channels)
    c = rec.shape[-1]
    interp = interpolation or opts.get("interpolation_method") or "cubic"
    interpolation_order(interp)  # validates
    if output_dtype is not None:
        try:
            out_dtype = np.dtype(output_dtype)
        except TypeError as exc:
            raise InvalidOptionError(
                f"output_dtype: expected a numpy dtype, got {output_dtype!r}"
            ) from exc
    elif opts.get("output_typename"):
        out_dtype = OFOptions(output_typename=opts["output_typename"]).resolved_output_dtype()
    else:
        out_dtype = np.dtype(rec.dtype)
    reference = np.asarray(ds["reference"].values, np.float32)
    fill_img = _resolve_fill(fill, reference=reference, hwc=(h, w, c), what=f"store {str(src)!r}")
    _check_fill_dtype(fill_img, out_dtype)
    spec = WarpSpec(
        fill=fill_img,
        interpolation=str(interp),
        out_dtype=out_dtype,
        flow_store=str(src),
        stats_store=str(src),
        save_flow=bool(save_flow),
    )
    fingerprint = _digest(
        "apply_flow",
        ds.attrs.get("fingerprint"),
        rec.data.name,
        list(rec.shape),
        str(rec.dtype),
        fill_img,
        str(interp),
        out_dtype.str,
        bool(save_flow),
        __version__,
    )
    metadata = {
        "software": f"flowreg_dask {__version__}",
        "input": str(rec.attrs.get("source", "<array>")),
        "options": opts,
        "apply_flow": {
            "flows_from": str(src),
            "flows_fingerprint": ds.attrs.get("fingerprint"),
            "channels": None if channels is None else np.atleast_1d(channels).tolist(),
            "fill": fill if isinstance(fill, str) else "custom",
            "interpolation": str(interp),
        },
    }
    names = rec.attrs.get("channel_names")
    is_ref_fill = isinstance(fill, str) and fill.lower() == "reference"
    return write_warped(
        rec.data,
        spec=spec,
        output=Path(output),
        bounds=bounds,
        fingerprint=fingerprint,
        metadata=metadata,
        stat_names=_stat_names(ds),
        reference=reference if is_ref_fill else None,
        channel_names=list(names) if names is not None and len(names) == c else None,
        frame_rate=rec.attrs.get("frame_rate") or ds.attrs.get("frame_rate"),
        pixel_size=rec.attrs.get("pixel_size") or ds.attrs.get("pixel_size"),
        overwrite=overwrite,
        resume=resume,
        config=config,
        progress_callback=progress_callback,
        desc="applying flows",
    )


def _check_output(src: Path, output: str | Path) -> None:
    if Path(output).expanduser().absolute() == src:
        raise InvalidOptionError(
            f"output: {str(src)!r} is the store whose flows are read; choose another output path."
        )


def _stat_names(ds: xr.Dataset) -> list[str]:
    skip = {"corrected", "flow", "valid", "reference"}
    return [k for k, v in ds.data_vars.items() if k not in skip and v.dims == ("t",)]


def warp_store(
    store: str | Path,
    flow: np.ndarray,
    *,
    output: str | Path,
    fill: FillSpec = "reference",
    interpolation: str | None = None,
    chunk_size: int | None = None,
    reference: np.ndarray | None = None,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
    resume: bool = True,
    config: RegistrationConfig | None = None,
    progress_callback: Callable[[int, int], None] | None = None,
) -> Path:
    """Warp every frame of a finished store's corrected movie with one displacement field.

    Used to bring the recordings of a session into the frame of the centre recording
    (:func:`flowreg_dask.session.run_stage3`).

    Parameters
    ----------
    store : str or Path
        A complete output store.
    flow : ndarray
        (H, W, 2) float backward displacement (u, v) in pixels:
        ``out(y, x) = frame(y + v, x + u)``.
    output : str or Path
        The output store (same layout; dtype of ``store``).
    fill : {"reference", "zeros"}, number or ndarray
        Out-of-bounds value: the store's reference, zeros, a constant or an (H, W[, C]) image
        (the session uses the centre recording's temporal average).
    interpolation : {"cubic", "linear", "nearest"}, optional
        Default: the store's ``interpolation_method``.
    chunk_size : int, optional
        Frames per task and output time chunk (default: the store's chunks).
    reference : ndarray, optional
        (H, W, C) image stored as the output's reference (default: the fill image).
    metadata : dict, optional
        Extra JSON-serialisable run description stored with the output.
    overwrite, resume, config, progress_callback
        As in :func:`apply_flow`.

    Returns
    -------
    pathlib.Path
        The complete output store. Its ``valid`` (when ``store`` has masks) is the store's mask
        warped with nearest neighbour, AND the field's in-bounds mask; statistics are copied.
    """
    from ..core.warp import interpolation_order

    src = Path(store).expanduser().absolute()
    _check_output(src, output)
    ds = open_result(src)
    n, h, w, c = ds["corrected"].shape
    field = np.ascontiguousarray(flow, np.float32)
    if field.shape != (h, w, 2):
        raise InvalidInputError(
            f"flow: expected an (H, W, 2) field of shape {(h, w, 2)} for store {str(src)!r}, got "
            f"{np.shape(flow)}"
        )
    opts = _store_options(ds)
    interp = interpolation or opts.get("interpolation_method") or "cubic"
    interpolation_order(interp)
    ref_src = np.asarray(ds["reference"].values, np.float32)
    fill_img = _resolve_fill(fill, reference=ref_src, hwc=(h, w, c), what=f"store {str(src)!r}")
    out_dtype = np.dtype(ds["corrected"].dtype)
    _check_fill_dtype(fill_img, out_dtype)
    if chunk_size is None:
        bounds = [(int(a), int(b)) for a, b in ds.attrs["chunk_bounds"]]
    else:
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
            raise InvalidOptionError(f"chunk_size: expected an integer >= 1, got {chunk_size!r}")
        if chunk_size < 1:
            raise InvalidOptionError(f"chunk_size: expected an integer >= 1, got {chunk_size}")
        bounds = bounds_from_chunks(tuple(da.core.normalize_chunks(int(chunk_size), (n,))[0]))
    has_valid = "valid" in ds
    spec = WarpSpec(
        fill=fill_img,
        interpolation=str(interp),
        out_dtype=out_dtype,
        field=field,
        valid_store=str(src) if has_valid else None,
        stats_store=str(src),
    )
    data = ds["corrected"].data
    fingerprint = _digest(
        "warp_store",
        ds.attrs.get("fingerprint"),
        ds.attrs.get("completed_at"),
        field,
        fill_img,
        str(interp),
        bounds,
        __version__,
    )
    meta = {
        "software": f"flowreg_dask {__version__}",
        "input": str(src),
        "options": opts,
        "warp_store": {"source": str(src), "interpolation": str(interp)},
        **(metadata or {}),
    }
    names = ds["c"].values.tolist()
    return write_warped(
        data,
        spec=spec,
        output=Path(output),
        bounds=bounds,
        fingerprint=fingerprint,
        metadata=meta,
        stat_names=_stat_names(ds),
        save_valid=has_valid,
        reference=fill_img if reference is None else reference,
        channel_names=[str(x) for x in names] if names != list(range(c)) else None,
        frame_rate=ds.attrs.get("frame_rate"),
        pixel_size=ds.attrs.get("pixel_size"),
        overwrite=overwrite,
        resume=resume,
        config=config,
        progress_callback=progress_callback,
        desc="aligning",
    )
