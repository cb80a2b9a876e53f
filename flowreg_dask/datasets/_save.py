"""Synthetic recordings written to files (TIFF, HDF5, ...) with their ground truth."""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import numpy as np

from ..errors import InvalidOptionError
from ._common import _as_int
from ._spec import SyntheticSpec


def _sidecar_path(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(path.name + ".truth.json")


def _flow_npy_path(path: pathlib.Path) -> pathlib.Path:
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return path.with_name(stem + ".flow.npy")


def save_synthetic_recording(
    path: str | os.PathLike[str],
    *,
    spec: SyntheticSpec,
    chunk_frames: int = 200,
    save_flow: bool = True,
) -> pathlib.Path:
    """Generate a recording chunk by chunk and stream it to disk.

    Parameters
    ----------
    path : str or os.PathLike
        Output file; the suffix picks the format:

        * ``.tif`` / ``.tiff``: one page per frame, ``(H, W)`` for one channel, else contiguous
          ``(H, W, C)`` pages (``minisblack``) with axes metadata, so that ``tifffile.imread``
          returns ``(T, H, W)`` or ``(T, H, W, C)``. BigTIFF when larger than 2 GB.
        * ``.h5`` / ``.hdf5``: datasets ``"mov"`` ``(T, H, W, C)`` and ``"flow"``
          ``(T, H, W, 2)``.
        * ``.npy``: the movie ``(T, H, W, C)``.

        For TIFF and NPY the flow goes to ``<stem>.flow.npy`` next to it.
    spec : SyntheticSpec
        What to generate.
    chunk_frames : int
        Frames generated at a time. Peak memory is about
        ``chunk_frames * H * W * (C * itemsize + 8)`` bytes (the 8 for the flow).
    save_flow : bool
        Also write the ground-truth flow (8 bytes per pixel and frame).

    Returns
    -------
    pathlib.Path
        ``path``. A sidecar ``<path>.truth.json`` holds the spec (see :func:`spec_from_json`)
        and the names of the written files.
    """
    if not isinstance(spec, SyntheticSpec):
        raise InvalidOptionError(
            f"save_synthetic_recording: spec must be a SyntheticSpec, got {type(spec).__name__}"
        )
    chunk_frames = _as_int("chunk_frames", chunk_frames, 1)
    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".tif", ".tiff", ".h5", ".hdf5", ".npy"):
        raise InvalidOptionError(
            f"save_synthetic_recording: unsupported suffix {path.suffix!r} of path; "
            "use .tif, .tiff, .h5, .hdf5 or .npy"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    T, H, W, C = spec.shape
    chunks = [(s, min(s + chunk_frames, T)) for s in range(0, T, chunk_frames)]
    layout = "TYX" if suffix in (".tif", ".tiff") and C == 1 else "TYXC"
    stored = [T, H, W] if layout == "TYX" else [T, H, W, C]
    info: dict[str, Any] = {"movie": {"file": path.name, "layout": layout, "shape": stored}}

    flow_mm = None
    if save_flow and suffix in (".tif", ".tiff", ".npy"):
        flow_path = _flow_npy_path(path)
        flow_mm = np.lib.format.open_memmap(
            flow_path, mode="w+", dtype=np.float32, shape=(T, H, W, 2)
        )
        info["flow"] = {"file": flow_path.name, "layout": "TYX2 (u, v)"}

    try:
        if suffix in (".tif", ".tiff"):
            _save_tiff(path, spec, chunks, flow_mm)
        elif suffix == ".npy":
            mov = np.lib.format.open_memmap(path, mode="w+", dtype=spec.dtype, shape=(T, H, W, C))
            for s, e in chunks:
                m, f = spec.frames(s, e)
                mov[s:e] = m
                if flow_mm is not None:
                    flow_mm[s:e] = f
            mov.flush()
            del mov
        else:
            import h5py

            with h5py.File(path, "w") as h5:
                ct = min(T, 8)
                dmov = h5.create_dataset(
                    "mov", shape=(T, H, W, C), dtype=spec.dtype, chunks=(ct, H, W, C)
                )
                dflow = None
                if save_flow:
                    dflow = h5.create_dataset(
                        "flow", shape=(T, H, W, 2), dtype=np.float32, chunks=(ct, H, W, 2)
                    )
                    info["flow"] = {"file": path.name, "dataset": "flow", "layout": "TYX2 (u, v)"}
                h5.attrs["synthetic_spec"] = json.dumps(spec.to_dict())
                for s, e in chunks:
                    m, f = spec.frames(s, e)
                    dmov[s:e] = m
                    if dflow is not None:
                        dflow[s:e] = f
            info["movie"]["dataset"] = "mov"
    finally:
        if flow_mm is not None:
            flow_mm.flush()
            del flow_mm

    sidecar = {
        "format": "flowreg_dask.synthetic",
        "version": 1,
        "spec": spec.to_dict(),
        "dtype": spec.dtype,
        "flow_convention": "backward: registered(y, x) = movie(y + v, x + u); flow[..., 0] = u (x)",
        **info,
    }
    _sidecar_path(path).write_text(json.dumps(sidecar, indent=2))
    return path


def _save_tiff(path: pathlib.Path, spec: SyntheticSpec, chunks, flow_mm) -> None:
    import tifffile

    T, H, W, C = spec.shape
    nbytes = T * H * W * C * np.dtype(spec.dtype).itemsize
    bigtiff = nbytes > 2_000_000_000

    def pages():
        for s, e in chunks:
            m, f = spec.frames(s, e)
            if flow_mm is not None:
                flow_mm[s:e] = f
            for frame in m:
                yield frame[..., 0] if C == 1 else frame

    if C == 1:
        shape, axes = (T, H, W), "TYX"
    else:
        shape, axes = (T, H, W, C), "TYXS"
    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tif:
        tif.write(
            pages(),
            shape=shape,
            dtype=spec.dtype,
            photometric="minisblack",
            planarconfig="contig" if C > 1 else None,
            metadata={"axes": axes},
        )


def spec_from_json(path: str | os.PathLike[str]) -> SyntheticSpec:
    """Read the spec back from a sidecar written by :func:`save_synthetic_recording`.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.truth.json`` sidecar, or the recording itself (its sidecar is then used).

    Returns
    -------
    SyntheticSpec
        The spec; ``spec.frames(a, b)`` regenerates the movie and the ground-truth flow.
    """
    path = pathlib.Path(path)
    if not path.name.endswith(".json"):
        path = _sidecar_path(path)
    data = json.loads(path.read_text())
    params = data.get("spec", data) if isinstance(data, dict) else None
    if not isinstance(params, dict):
        raise InvalidOptionError(f"spec_from_json: {path} holds no synthetic spec")
    return SyntheticSpec(**params)
