"""Names, paths and attributes of a corrected store (the single source of truth for its layout).

A corrected store is a zarr v3 hierarchy laid out as an OME-Zarr 0.5 container (the
``bioformats2raw.layout`` convention: the image is the sub-group ``0``) with the run's other
results beside it::

    OUT.zarr/
    ├── zarr.json           root group; attributes "ome" ({"version": "0.5",
    │                       "bioformats2raw.layout": 3}) and "flowreg_dask" (the run record);
    │                       consolidated metadata once the run is complete
    ├── 0/                  OME-Zarr 0.5 image group (multiscales, omero channel labels)
    │   └── 0/              corrected movie (t, c, y, x), the image's only level
    ├── flow/               displacement (t, component=2, y, x) float32, components ("u", "v"), px
    ├── valid/              in-bounds mask (t, y, x) bool
    ├── reference/          reference frame (c, y, x) float32, written as soon as it is built
    ├── chunk_done/         (chunk,) bool, one storage object per pipeline chunk: True once all
    │                       arrays of that chunk are written (the resume bookkeeping)
    ├── reference_state/    (chunk, c, y, x) float32, update_reference runs only: the reference
    │                       after each chunk
    └── stats/<name>/       per-frame statistics (t,) float64

Everything is a zarr array or group, so ``zarr``, ``xarray`` (the root's arrays) and
OME-Zarr readers list the store without warnings, and napari's built-in reader (which opens
the first sub-group) shows the corrected movie.

Time layout
-----------
Every array with a ``t`` axis uses the same time grid. Its storage objects (shards, or plain chunks
when sharding is off) have ``shard_frames`` frames, a divisor of every internal pipeline chunk
boundary, so each pipeline chunk covers whole storage objects and no two writers ever touch the same
object:

* regular chunk bounds (all of ``buffer_size`` frames, the last one shorter) give ``shard_frames ==
  buffer_size``: chunk ``i`` is exactly shard ``i``;
* irregular bounds use the greatest common divisor of the internal boundaries;
* if a shard would exceed :data:`MAX_SHARD_BYTES` (1 GiB), ``shard_frames`` drops to the largest
  divisor that fits, so one pipeline chunk writes several whole shards.

Inside a shard, inner chunks hold ``chunk_frames`` full frames (at most :data:`INNER_CHUNK_FRAMES`
and :data:`MAX_INNER_CHUNK_BYTES`, a divisor of ``shard_frames``) for fast random frame access in
viewers. When the inner chunk would be the whole shard, sharding is switched off and plain chunks
are used.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._constants import STAT_NAMES

__all__ = [
    "FORMAT_VERSION",
    "ATTRS_KEY",
    "CORRECTED",
    "FLOW",
    "VALID",
    "REFERENCE",
    "STATS_GROUP",
    "IMAGE_GROUP",
    "CHUNK_DONE",
    "REFERENCE_STATE",
    "corrected_path",
    "FLOW_COMPONENTS",
    "DEFAULT_STAT_NAMES",
    "STATUS_CREATING",
    "STATUS_INCOMPLETE",
    "STATUS_COMPLETE",
    "MAX_SHARD_BYTES",
    "MAX_INNER_CHUNK_BYTES",
    "INNER_CHUNK_FRAMES",
    "BLOSC",
    "BLOSC_FLOAT",
    "blosc_for",
    "TimeLayout",
    "plan_time_layout",
    "stats_path",
    "root_ome_attributes",
    "temp_sibling",
    "trash_sibling_prefix",
    "temp_sibling_prefix",
    "ome_attributes",
]

#: Version of the flowreg_dask store layout (bump on incompatible changes). Version 1 had the
#: movie at the root (``0``) and done markers as files in ``.flowreg/chunks``.
FORMAT_VERSION: int = 2
#: Root attribute holding the run record (status, fingerprint, chunk bounds, metadata).
ATTRS_KEY: str = "flowreg_dask"

#: OME-Zarr image group of the corrected movie.
IMAGE_GROUP: str = "0"
#: Corrected movie (t, c, y, x); the one dataset of the image's multiscales.
CORRECTED: str = f"{IMAGE_GROUP}/0"
#: Displacement field (t, component, y, x) float32.
FLOW: str = "flow"
#: In-bounds mask (t, y, x) bool.
VALID: str = "valid"
#: Reference frame (c, y, x) float32.
REFERENCE: str = "reference"
#: Group of per-frame statistics arrays ``stats/<name>`` (t,) float64.
STATS_GROUP: str = "stats"
#: Per-chunk done flags (chunk,) bool, one storage object per chunk.
CHUNK_DONE: str = "chunk_done"
#: Reference after each chunk (chunk, c, y, x) float32 (update_reference runs).
REFERENCE_STATE: str = "reference_state"


def corrected_path(format_version: int) -> str:
    """Path of the corrected movie in a store of the given layout version."""
    return "0" if int(format_version) < 2 else CORRECTED


#: Names of the flow components along the ``component`` axis: u (x / columns), v (y / rows).
FLOW_COMPONENTS: tuple[str, str] = ("u", "v")
#: Per-frame statistics every store holds unless told otherwise.
DEFAULT_STAT_NAMES: tuple[str, ...] = STAT_NAMES

STATUS_CREATING: str = "creating"
STATUS_INCOMPLETE: str = "incomplete"
STATUS_COMPLETE: str = "complete"

#: Upper bound of one storage object (shard) along time, in uncompressed bytes.
MAX_SHARD_BYTES: int = 1 << 30
#: Upper bound of one inner chunk, in uncompressed bytes (at least one frame is always allowed).
MAX_INNER_CHUNK_BYTES: int = 16 << 20
#: Preferred number of frames per inner chunk.
INNER_CHUNK_FRAMES: int = 8
#: Compression of integer arrays: blosc lz4 on bit-shuffled values. On corrected uint16 movies it
#: is both smaller and faster than zstd (measured on 256x256 synthetic 2P data: 0.78 of the raw size
#: at 1.2-1.3 GB/s, against zstd level 3's 0.85 at 0.6-0.75 GB/s); byte shuffling leaves them at
#: 0.88 of the raw size.
BLOSC = {"cname": "lz4", "clevel": 5, "shuffle": "bitshuffle"}
#: Compression of float arrays (flows, float movies, reference): blosc lz4 on byte-shuffled values.
#: On the stored flows of a 256x256x1000 synthetic run, writing them cost 0.95 CPU seconds against
#: 1.5 with bit shuffling (zarr encodes each inner chunk in one thread), at the same size (0.79 of
#: the raw size against 0.79).
BLOSC_FLOAT = {"cname": "lz4", "clevel": 5, "shuffle": "shuffle"}


def blosc_for(dtype: Any) -> dict[str, Any]:
    """The blosc settings of an array of ``dtype``: byte shuffling for floats, bits otherwise."""
    return BLOSC_FLOAT if np.dtype(dtype).kind == "f" else BLOSC


@dataclass(frozen=True)
class TimeLayout:
    """Storage layout along ``t`` shared by every time-indexed array of a store.

    Attributes
    ----------
    shard_frames : int
        Frames per storage object (a shard, or a plain chunk when ``sharded`` is False). Divides
        every internal pipeline chunk boundary.
    chunk_frames : int
        Frames per inner chunk (the unit of reading); divides ``shard_frames``.
    """

    shard_frames: int
    chunk_frames: int

    @property
    def sharded(self) -> bool:
        """Whether the arrays use the sharding codec (inner chunk smaller than the shard)."""
        return self.chunk_frames < self.shard_frames


def _largest_divisor_at_most(n: int, limit: int) -> int:
    """Return the largest divisor of ``n`` that is ``<= limit`` (at least 1)."""
    limit = max(1, min(n, limit))
    for d in range(limit, 0, -1):
        if n % d == 0:
            return d
    return 1  # pragma: no cover - 1 always divides n


def plan_time_layout(
    chunk_bounds: list[tuple[int, int]],
    frame_bytes: int,
    *,
    max_shard_bytes: int = MAX_SHARD_BYTES,
    max_inner_bytes: int = MAX_INNER_CHUNK_BYTES,
    inner_frames: int = INNER_CHUNK_FRAMES,
) -> TimeLayout:
    """Choose shard and inner-chunk lengths along time so every pipeline chunk owns whole objects.

    Parameters
    ----------
    chunk_bounds : list of (int, int)
        Contiguous pipeline time chunks ``[(start, stop), ...]`` starting at 0 (already validated).
    frame_bytes : int
        Uncompressed bytes of one frame of the largest time-indexed array (corrected or flow).
    max_shard_bytes : int, optional
        Upper bound of one storage object.
    max_inner_bytes : int, optional
        Upper bound of one inner chunk (one frame is always allowed).
    inner_frames : int, optional
        Preferred frames per inner chunk.

    Returns
    -------
    TimeLayout
        ``shard_frames`` divides every internal boundary ``chunk_bounds[i][0]`` (i > 0), so pipeline
        chunk ``i`` covers whole storage objects; ``chunk_frames`` divides ``shard_frames``.

    Examples
    --------
    >>> plan_time_layout([(0, 16), (16, 32), (32, 40)], 1000)
    TimeLayout(shard_frames=16, chunk_frames=8)
    >>> plan_time_layout([(0, 10), (10, 15), (15, 30)], 1000)
    TimeLayout(shard_frames=5, chunk_frames=5)
    """
    frame_bytes = max(1, int(frame_bytes))
    internal = [int(start) for start, _ in chunk_bounds[1:]]
    grid = math.gcd(*internal) if internal else int(chunk_bounds[0][1] - chunk_bounds[0][0])
    shard = _largest_divisor_at_most(grid, max(1, max_shard_bytes // frame_bytes))
    inner_limit = max(1, min(inner_frames, max_inner_bytes // frame_bytes))
    chunk = _largest_divisor_at_most(shard, inner_limit)
    return TimeLayout(shard_frames=shard, chunk_frames=chunk)


def stats_path(name: str) -> str:
    """Return the array path of the per-frame statistic ``name`` inside the store."""
    return f"{STATS_GROUP}/{name}"


def temp_sibling_prefix(path: Path) -> str:
    """Return the name prefix of temporary stores built next to ``path`` by overwriting runs."""
    return f"{path.name}.tmp-"


def trash_sibling_prefix(path: Path) -> str:
    """Return the name prefix under which an old store waits for deletion during a swap."""
    return f"{path.name}.trash-"


def temp_sibling(path: Path, fingerprint: str) -> Path:
    """Return the deterministic temporary store used when overwriting ``path`` with run
    ``fingerprint``.

    The name depends only on the target and the fingerprint, so a rerun of a killed overwrite run
    finds and resumes the same temporary store.
    """
    digest = hashlib.sha256(fingerprint.encode("utf-8")).hexdigest()[:12]
    return path.with_name(f"{temp_sibling_prefix(path)}{digest}")


def root_ome_attributes() -> dict[str, Any]:
    """The ``ome`` attribute of the store's root: a container whose image is the group ``0``."""
    return {"version": "0.5", "bioformats2raw.layout": 3}


def ome_attributes(
    *,
    name: str,
    channel_names: list[str] | None,
    frame_rate: float | None,
    pixel_size: float | None,
) -> dict[str, Any]:
    """Build the OME-Zarr 0.5 ``ome`` attribute of the store's image group.

    Parameters
    ----------
    name : str
        Name of the image (shown by viewers).
    channel_names : list of str or None
        Channel labels, written as ``omero`` channel metadata when given.
    frame_rate : float or None
        Frames per second; the time scale is ``1 / frame_rate`` seconds (1 without a unit if None).
    pixel_size : float or None
        Pixel size in micrometres; the spatial scale (1 without a unit if None).

    Returns
    -------
    dict
        The value of the root attribute ``ome``.
    """
    t_axis: dict[str, Any] = {"name": "t", "type": "time"}
    if frame_rate is not None:
        t_axis["unit"] = "second"
    space_axes: list[dict[str, Any]] = []
    for axis in ("y", "x"):
        entry: dict[str, Any] = {"name": axis, "type": "space"}
        if pixel_size is not None:
            entry["unit"] = "micrometer"
        space_axes.append(entry)
    dt = 1.0 / frame_rate if frame_rate is not None else 1.0
    ps = float(pixel_size) if pixel_size is not None else 1.0
    ome: dict[str, Any] = {
        "version": "0.5",
        "multiscales": [
            {
                "name": name,
                "axes": [t_axis, {"name": "c", "type": "channel"}, *space_axes],
                "datasets": [
                    {
                        "path": CORRECTED.split("/")[-1],
                        "coordinateTransformations": [
                            {"type": "scale", "scale": [dt, 1.0, ps, ps]}
                        ],
                    }
                ],
            }
        ],
    }
    if channel_names is not None:
        colors = ("FFFFFF", "00FF00", "FF00FF", "00FFFF", "FFFF00", "FF0000", "0000FF")
        ome["omero"] = {
            "channels": [
                {"label": label, "color": colors[i % len(colors)], "active": True}
                for i, label in enumerate(channel_names)
            ]
        }
    return ome
