"""Stage 3: every corrected recording in the centre's frame, and the pixels valid in all of them.

Writes to ``final_results/``:

* ``aligned_<name>.zarr``: the recording's corrected movie warped with its stage-2 displacement
  (out of core, ``align_chunk_size`` frames per task, resumable; dtype kept; out-of-bounds pixels
  filled with the centre's temporal average; interpolation of the stage-1 options). Its ``valid``
  is, per frame, the recording's mask warped by nearest neighbour AND the displacement's in-bounds
  mask; its ``reference`` is the centre's temporal average.
* ``aligned_<name>.<ext>`` when ``align_output_format`` is not ``"zarr"`` (exported from the store);
* ``<name>_valid_idx.png`` (the recording's own mask: AND over time of its ``valid``) and
  ``<name>_valid_idx_aligned.png`` (warped to the centre: nearest neighbour AND in-bounds);
* ``final_valid_idx.npz`` / ``.mat`` / ``.png``: ``final_valid`` = AND of the aligned masks, with
  the per-recording masks, displacements, temporal averages, names and paths (``middle_idx`` is
  0-based in the ``.npz`` and 1-based in the ``.mat``, as in pyflowreg);
* ``status.json``: ``{"stage3": {"state": "done", ...}, "recordings": {...}}``.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..options import OutputFormat, RegistrationConfig
from ._files import (
    atomic_save_npz,
    atomic_write_bytes,
    center_index,
    discover,
    now,
    png_bytes,
    read_json,
    write_json,
)
from .config import SessionConfig
from .stage2 import load_flow

__all__ = ["run_stage3", "sequence_mask", "align_mask"]

log = logging.getLogger("flowreg_dask.session")


def sequence_mask(store: Any) -> np.ndarray:
    """(H, W) bool: pixels valid in every frame of a store (AND over time), read chunk by chunk.

    A store without masks counts as valid everywhere.
    """
    from ..store.reader import open_result

    ds = open_result(store)
    _, h, w, _ = ds["corrected"].shape
    mask = np.ones((h, w), bool)
    if "valid" not in ds:
        return mask
    for start, stop in ds.attrs["chunk_bounds"]:
        block = np.asarray(ds["valid"].data[start:stop].compute(scheduler="synchronous"))
        mask &= block.all(axis=0)
    return mask


def align_mask(mask: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """A mask in the centre's frame: nearest-neighbour warp by ``flow`` AND its in-bounds test."""
    from ..core.warp import valid_mask, warp

    moved = warp(
        mask.astype(np.float32),
        flow,
        fill=np.zeros(mask.shape, np.float32),
        interpolation="nearest",
    )
    return (moved > 0.5) & valid_mask(flow)


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(
            np.ascontiguousarray(p).tobytes() if isinstance(p, np.ndarray) else repr(p).encode()
        )
    return h.hexdigest()[:32]


def _export_target(final_dir: Path, name: str, fmt: str) -> Path:
    from ..store.export import export_suffix

    suffix = export_suffix(fmt)  # None: a folder or one file per channel
    return final_dir / f"aligned_{name}{suffix or ''}"


def run_stage3(
    config: SessionConfig,
    *,
    registration: RegistrationConfig | None = None,
    of_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Warp every corrected recording to the centre and combine the valid masks.

    Parameters
    ----------
    config : SessionConfig
        The session; stages 1 and 2 must be done.
    registration : RegistrationConfig, optional
        Run mode of the warps (default: from the config).
    of_params : dict, optional
        The stage-1 OFOptions overrides (the warps use their ``interpolation_method``).

    Returns
    -------
    dict
        The stage-3 status entry: ``final_valid`` path, aligned store and export paths, the number
        of valid pixels.

    Raises
    ------
    InvalidInputError
        Stage 2 is not done for some recording.
    """
    from ..pipeline.apply import warp_store
    from ..store.reader import store_status
    from .cluster import registration_config
    from .stage1 import stage1_options

    if registration is None:  # called on its own: the session's scheduler for this stage
        from .cluster import session_client

        with session_client(config) as client:
            return run_stage3(
                config, registration=registration_config(config, client), of_params=of_params
            )
    recs = discover(config)
    missing = [r.name for r in recs if not r.flow.exists() or not r.average.exists()]
    if missing:
        raise InvalidInputError(
            f"stage 3 needs the displacements of stage 2, missing for: {', '.join(missing)}. "
            "Fix: run stages 1 and 2 first (flowreg-dask session run --config FILE --stage 2)."
        )
    ci = center_index(config, recs)
    final_dir = config.final_dir
    final_dir.mkdir(parents=True, exist_ok=True)
    status_path = final_dir / "status.json"
    status = read_json(status_path)
    status["stage3"] = {"state": "running", "started_at": now()}
    per_rec: dict[str, Any] = status.setdefault("recordings", {})
    write_json(status_path, status)
    reg = registration
    if reg.resolved_parallelization() == "multiprocessing":
        # the warps are light and release the GIL: a process pool per recording would cost
        # more to start than it saves (measured: 12.7 s instead of 0.3 s for 3 x 60 frames)
        reg = reg.model_copy(update={"parallelization": "threading"})
    interpolation = stage1_options(config, of_params).interpolation_method
    averages = [np.load(r.average) for r in recs]
    flows = [load_flow(r) for r in recs]
    center_avg = averages[ci].astype(np.float32)
    masks, aligned_masks, aligned_paths, exports = [], [], [], []
    for rec, flow in zip(recs, flows, strict=True):
        mask = sequence_mask(rec.store)
        amask = align_mask(mask, flow)
        masks.append(mask)
        aligned_masks.append(amask)
        atomic_write_bytes(final_dir / f"{rec.name}_valid_idx.png", png_bytes(mask))
        atomic_write_bytes(final_dir / f"{rec.name}_valid_idx_aligned.png", png_bytes(amask))
        out = final_dir / f"aligned_{rec.name}.zarr"
        src = store_status(rec.store)
        digest = _digest(
            flow,
            center_avg,
            src["fingerprint"],
            src["completed_at"],
            interpolation,
            config.align_chunk_size,
        )
        entry = per_rec.get(rec.name) or {}
        current = (
            config.resume
            and entry.get("digest") == digest
            and out.exists()
            and store_status(out)["status"] == "complete"
        )
        if current:
            log.info("stage 3: %s is aligned already, skipped", rec.name)
        else:
            log.info("stage 3: aligning %s to %s", rec.name, recs[ci].name)
            warp_store(
                rec.store,
                flow,
                output=out,
                fill=center_avg,
                interpolation=interpolation,
                chunk_size=config.align_chunk_size,
                reference=center_avg,
                metadata={"session": {"center": recs[ci].name, "recording": str(rec.path)}},
                overwrite=True,
                resume=config.resume,
                config=reg,
            )
        export = None
        if config.align_output_format is not OutputFormat.ZARR:
            target = _export_target(final_dir, rec.name, config.align_output_format)
            if not (current and entry.get("export") == str(target) and target.exists()):
                from ..store.export import export_result

                target = export_result(
                    out, target, format=config.align_output_format, overwrite=True
                )
            export = str(target)
        per_rec[rec.name] = {
            "digest": digest,
            "aligned": str(out),
            "export": export,
            "valid_pixels": int(amask.sum()),
            "finished_at": now(),
        }
        write_json(status_path, status)
        aligned_paths.append(str(out))
        exports.append(export)
    final = np.logical_and.reduce(aligned_masks)
    names = np.array([r.name for r in recs])
    arrays = dict(
        final_valid=final,
        valid_masks=np.stack(masks),
        aligned_valid_masks=np.stack(aligned_masks),
        displacement_fields_u=np.stack([f[..., 0] for f in flows]),
        displacement_fields_v=np.stack([f[..., 1] for f in flows]),
        temporal_averages=np.stack(averages),
        reference_average=averages[ci],
        recordings=names,
        recording_paths=np.array([str(r.path) for r in recs]),
        compensated_paths=np.array([str(r.store) for r in recs]),
        aligned_video_paths=np.array(aligned_paths),
        center=np.array(recs[ci].name),
    )
    atomic_save_npz(final_dir / "final_valid_idx.npz", middle_idx=np.int64(ci), **arrays)
    _save_mat(final_dir / "final_valid_idx.mat", ci, arrays)
    atomic_write_bytes(final_dir / "final_valid_idx.png", png_bytes(final))
    status["stage3"] = {
        "state": "done",
        "center": recs[ci].name,
        "final_valid": str(final_dir / "final_valid_idx.npz"),
        "valid_pixels": int(final.sum()),
        "total_pixels": int(final.size),
        "aligned": aligned_paths,
        "exports": exports,
        "finished_at": now(),
    }
    write_json(status_path, status)
    return status["stage3"]


def _save_mat(path: Path, center: int, arrays: dict[str, np.ndarray]) -> None:
    import io

    from scipy.io import savemat

    mat = {k: (v.astype(np.uint8) if v.dtype == bool else v) for k, v in arrays.items()}
    mat["recordings"] = np.array(arrays["recordings"], dtype=object)
    for key in ("recording_paths", "compensated_paths", "aligned_video_paths"):
        mat[key] = np.array(arrays[key], dtype=object)
    mat["middle_idx"] = np.int64(center + 1)  # 1-based, as in MATLAB / pyflowreg
    buf = io.BytesIO()
    savemat(buf, mat, do_compression=True)
    atomic_write_bytes(path, buf.getvalue())
