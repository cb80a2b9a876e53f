"""Where a session keeps its files, status records, atomic writes and array-job task ids."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import struct
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError, InvalidOptionError, RecordingNotFoundError
from .config import SessionConfig

#: Environment variables holding an array-job task id (1-based), in the order they are looked up.
ARRAY_TASK_VARIABLES = (
    "SLURM_ARRAY_TASK_ID",  # SLURM
    "SGE_TASK_ID",  # SGE / UGE
    "PBS_ARRAY_INDEX",  # PBS Pro
    "PBS_ARRAYID",  # Torque
    "LSB_JOBINDEX",  # LSF
)

STORE_NAME = "compensated.zarr"
AVERAGE_NAME = "temporal_average.npy"
FLOW_NAME = "w_to_reference.npz"
STATUS_NAME = "status.json"


def now() -> str:
    """UTC time stamp (seconds)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Recording:
    """One recording of a session and its output files.

    Attributes
    ----------
    name : str
        Output name: the file's stem, with the sub-folders below root joined by ``__`` for
        recursive patterns (``day1/rec.tif`` -> ``day1__rec``).
    path : Path
        The recording.
    folder : Path
        ``output_root/<name>/``: its store, temporal average, flow to the centre and status.
    """

    name: str
    path: Path
    folder: Path

    @property
    def store(self) -> Path:
        """Stage-1 corrected store."""
        return self.folder / STORE_NAME

    @property
    def average(self) -> Path:
        """Stage-1 temporal average (H, W, C) float64."""
        return self.folder / AVERAGE_NAME

    @property
    def flow(self) -> Path:
        """Stage-2 displacement to the centre (``u``, ``v``)."""
        return self.folder / FLOW_NAME

    @property
    def status(self) -> Path:
        """Per-recording status of stages 1 and 2."""
        return self.folder / STATUS_NAME


def _name_for(path: Path, root: Path) -> str:
    try:
        rel = path.relative_to(root)
    except ValueError:
        rel = Path(path.name)
    stem = rel.name[: -len(".ome.tif")] if rel.name.lower().endswith(".ome.tif") else rel.stem
    return "__".join([*rel.parent.parts, stem])


def discover(config: SessionConfig) -> list[Recording]:
    """The recordings of a session: ``root.glob(pattern)``, sorted, outputs excluded.

    Raises
    ------
    RecordingNotFoundError
        Nothing matches ``pattern``.
    InvalidInputError
        Two recordings would share an output folder (same stem, e.g. ``a.tif`` and ``a.h5``).
    """
    root = config.root
    out_dirs = [config.output_dir.absolute(), config.final_dir.absolute()]

    def inside_outputs(p: Path) -> bool:
        return any(p == d or d in p.parents for d in out_dirs)

    paths = sorted(
        p.absolute()
        for p in root.glob(config.pattern)
        if (p.is_file() or p.is_dir()) and not inside_outputs(p.absolute())
    )
    if not paths:
        raise RecordingNotFoundError(
            f"no recording matches pattern={config.pattern!r} under root={str(root)!r}. Fix: "
            "check root and pattern (e.g. '*.tif', '*.h5', '**/*.tif' for sub-folders)."
        )
    recs: list[Recording] = []
    seen: dict[str, Path] = {}
    for p in paths:
        name = _name_for(p, root)
        if name in seen:
            raise InvalidInputError(
                f"recordings {str(seen[name])!r} and {str(p)!r} would share the output folder "
                f"{name!r}. Fix: narrow pattern={config.pattern!r} so it matches one of them, or "
                "rename one."
            )
        seen[name] = p
        recs.append(Recording(name=name, path=p, folder=config.output_dir / name))
    return recs


def center_index(config: SessionConfig, recordings: list[Recording]) -> int:
    """Index of the centre recording: ``config.center`` or the middle, ``(N + 1) // 2 - 1``."""
    if config.center is None:
        return (len(recordings) + 1) // 2 - 1
    want = str(config.center)
    for i, r in enumerate(recordings):
        rel = r.path.relative_to(config.root) if config.root in r.path.parents else r.path
        if want in (r.name, r.path.name, str(rel), r.path.stem):
            return i
    names = ", ".join(r.path.name for r in recordings)
    raise InvalidOptionError(
        f"center={want!r} is not one of the session's recordings ({names}). Fix: give one of "
        "these file names, or leave center unset for the middle one."
    )


# ----------------------------------------------------------------------------------- atomic io
def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` to a temporary file, then rename into place."""
    import io

    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def atomic_save_npz(path: Path, **arrays: Any) -> None:
    """``np.savez`` to a temporary file, then rename into place."""
    import io

    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write_bytes(path, buf.getvalue())


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; ``{}`` if missing or unreadable (a damaged status is redone)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write a JSON object atomically."""
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def update_status(path: Path, key: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """Set ``status[key] = entry`` in the JSON file at ``path`` (read, modify, atomic write).

    One writer per file: each recording's folder is written by one process at a time.
    """
    status = read_json(path)
    status[key] = dict(entry)
    write_json(path, status)
    return status


# ---------------------------------------------------------------------------------- array jobs
def array_task_index(environ: Mapping[str, str] | None = None) -> int | None:
    """0-based recording index of an array-job task, or None outside array jobs.

    The task id is read from ``SLURM_ARRAY_TASK_ID``, ``SGE_TASK_ID``, ``PBS_ARRAY_INDEX``,
    ``PBS_ARRAYID`` or ``LSB_JOBINDEX`` (first one set) and is 1-based, as in pyflowreg: submit
    ``--array=1-N`` for N recordings.

    Raises
    ------
    InvalidOptionError
        The variable is set but is not an integer >= 1.
    """
    env = os.environ if environ is None else environ
    for var in ARRAY_TASK_VARIABLES:
        raw = env.get(var)
        if raw is None or raw.strip() == "" or raw.strip().lower() == "undefined":
            continue
        try:
            task = int(raw)
        except ValueError:
            raise InvalidOptionError(
                f"{var}={raw!r} is not an integer task id. Fix: run inside an array job, or pass "
                "the recording index explicitly (task_index= / --index)."
            ) from None
        if task < 1:
            raise InvalidOptionError(
                f"{var}={task}: array task ids are 1-based (task 1 = the first recording). Fix: "
                "submit the array as 1-N (e.g. sbatch --array=1-N), or pass --index (0-based)."
            )
        return task - 1
    return None


# --------------------------------------------------------------------------------------- masks
def png_bytes(mask: np.ndarray) -> bytes:
    """An 8-bit grayscale PNG of a 2-D boolean mask (True = 255); no imaging library needed."""
    img = np.where(np.asarray(mask, bool), 255, 0).astype(np.uint8)
    h, w = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return (
            struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )
