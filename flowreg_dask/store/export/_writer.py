"""The writer interface every export format implements, and shared metadata helpers."""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..._version import __version__
from ._registry import _Format
from ._source import _Chunk, _Source
from ._staging import _Staging, _Target


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


def _write_chunk(writer: _Writer, chunk: _Chunk) -> None:
    """Write one chunk (a separate function so that tests can interrupt an export here)."""
    writer.write(chunk)
