"""TIFF reader (tifffile): multi-page, BigTIFF, ImageJ hyperstacks, OME-TIFF, ScanImage.

Which pages are read
--------------------
Every page of the file, or an error. tifffile groups the pages into image series; a file
written by several write calls (``tifffile.imwrite(path, batch, append=True)`` per batch or
per page, as pyflowreg's writer and acquisition software do) holds one series per call.

* ``series=N`` (CLI ``--series N``): only series N.
* Otherwise every *full-resolution* series is read. Reduced-resolution series (thumbnails,
  previews, pyramid levels: NewSubfileType bit 0) are not frames and are left out.
* Several full-resolution series written without a format of their own (tifffile's shaped
  metadata, or none) are joined in time, in file order, when they fit together: the same
  frame size, channels and data type, and no ``T`` series joined to a ``Z`` series. A file
  written one page per call reads as one frame per page.
* Several series that do not fit together (a different frame size or data type), or several
  series that a format defines as separate images (OME-TIFF images, e.g. positions; LSM,
  Micro-Manager, ...): :class:`~flowreg_dask.errors.InvalidInputError` listing the series
  (index, shape, dtype, axes) and saying how to choose one (``series=N``).
* Pages that belong to no series (format metadata describing fewer images than the file
  holds): :class:`~flowreg_dask.errors.InvalidInputError` naming the pages left out;
  ``plain=True`` ignores the format metadata and reads every page as one plain sequence.

The series read is in ``DataArray.attrs["dataset"]`` (``"series 0-2 of 3, joined in time"``)
when the file has more than one, and printed by ``flowreg-dask info``.

How a series becomes ``(T, H, W, C)``
-------------------------------------
Each series has a shape and axis letters from tifffile (``TZCYXS`` order for ImageJ,
``TCZYX`` etc. for OME, ``ZTCYX`` for ScanImage, ``QYX``/``IYX`` for plain multi-page files).
Its axes are read as:

* ``Y`` and ``X``: the frame; ``C`` and ``S`` (samples, e.g. RGB): channels, outer axes
  major, samples minor;
* every other axis (``T``, ``Z``, ``I``, ``Q``, ...): frames, flattened in the order they
  are stored (for ImageJ ``TZCYX``: t major, z minor).

So a multi-channel ImageJ hyperstack (``TCYX``, ``TZCYX``) or OME-TIFF is read with its
channels separated, without ``deinterleave``. Arrays written by ``tifffile.imwrite`` without
axes metadata are read positionally as (H, W), (T, H, W) or (T, H, W, C). ``axes="tcyx"``
(one letter per dimension of the series, squeezed) overrides the file's labels. An ImageJ file
that declares only channels (more than 4) and no time or z axis is read with the channels as
frames, with a warning.

``deinterleave=N`` makes N consecutive single-channel frames one N-channel frame (files saved
with channels as alternating pages, e.g. suite2p or ScanImage). ScanImage files are
recognised (``TiffFile.is_scanimage``) and the number of saved channels in their metadata
de-interleaves them automatically when tifffile has not already split the channels; an
explicit ``deinterleave > 1`` overrides the metadata, ``scanimage=False`` disables it.

Reading is lazy: opening parses the TIFF structure only. Frames are read from a memory map of
the series when its data are contiguous and uncompressed, otherwise page by page
(``TiffFile.asarray(key=pages)``), touching only the pages of the requested frames; joined
series are addressed by page number in one small wrapper, however many series there are.

Frame rate and pixel size come from ImageJ metadata (``finterval``/``fps``, resolution and
``unit``), OME-XML (``TimeIncrement``, ``PhysicalSizeX/Y``, channel names), ScanImage metadata
(``scanFrameRate``, ``imagingFovUm``, channel names) or the TIFF resolution tags when their unit
is a length.
"""

from __future__ import annotations

import contextlib
import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import numpy as np
import tifffile

from ..errors import InvalidInputError
from ._arrays import parse_axes
from ._lazy import (
    ConcatFrames,
    DeinterleavedFrames,
    LazyFrames,
    cached_handle,
    check_unchanged,
    file_stamp,
)
from ._registry import Reader
from ._util import (
    format_frame_ranges,
    frame_runs,
    interval_to_rate,
    length_to_um,
    positive_float,
    warn_user,
)

__all__ = ["TiffReader", "TiffFrames"]

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_FRAME_AXES = "TZIQ"
_CHANNEL_AXES = "CS"
# tifffile log messages that mean the file structure is cut off or damaged
_STRUCTURAL_LOG = (
    "invalid page offset",
    "invalid offset",
    "invalid value offset",
    "corrupted",
    "truncated",
    "failed to reshape",
    "metadata invalid",
    "suspicious number of tags",
)


#: tifffile format flags switched off by ``plain=True`` (every kind of series metadata)
_FORMAT_FLAGS = (
    "shaped",
    "lsm",
    "mmstack",
    "ome",
    "imagej",
    "ndtiff",
    "fluoview",
    "stk",
    "sis",
    "svs",
    "scn",
    "qpi",
    "ndpi",
    "bif",
    "avs",
    "eer",
    "philips",
    "scanimage",
    "nih",
    "mdgel",
)
#: series kinds that several write calls produce (tifffile's own metadata, or none); only
#: these are joined in time. Formats that define several series themselves (OME images,
#: positions, LSM, ...) are never joined.
_APPENDED_KINDS = ("shaped", "generic", "uniform")


def _open_tifffile(path: str, plain: bool) -> tifffile.TiffFile:
    flags = {f"is_{name}": False for name in _FORMAT_FLAGS} if plain else {}
    return tifffile.TiffFile(path, mode="rb", **flags)


class TiffFrames(LazyFrames):
    """Frames of one TIFF image series, or of several compatible series one after the other.

    The data are addressed as ``n_planes`` planes (one per combination of the outer, non-
    image axes), each of ``plane_shape`` stored contiguously in page order; a plane is one page
    in all common files. With ``series_index=None`` the planes are pages of the whole file:
    plane ``k`` lies in page ``page_runs[j, 1] + k - page_runs[j, 0]`` of the run ``j`` that
    holds it (runs of consecutive pages; one run for a file written in several batches).
    """

    __slots__ = (
        "path",
        "stamp",
        "series_index",
        "outer_shape",
        "outer_kinds",
        "plane_shape",
        "plane_perm",
        "page_elems",
        "contiguous",
        "page_runs",
        "plain",
    )

    def __init__(
        self,
        *,
        path: str,
        stamp: tuple[int, int],
        series_index: int | None,
        outer_shape: tuple[int, ...],
        outer_kinds: str,
        plane_shape: tuple[int, ...],
        plane_perm: tuple[int, ...],
        page_elems: int,
        contiguous: tuple[int, str] | None,
        dtype: Any,
        metadata: dict[str, Any],
        page_runs: np.ndarray | None = None,
        plain: bool = False,
    ) -> None:
        pairs = list(zip(outer_shape, outer_kinds, strict=True))
        n_frames = int(np.prod([s for s, k in pairs if k == "f"]))
        n_co = int(np.prod([s for s, k in pairs if k == "c"]))
        plane_sorted = [plane_shape[i] for i in plane_perm]
        h, w = plane_sorted[0], plane_sorted[1]
        n_ci = int(np.prod(plane_sorted[2:]))
        super().__init__((n_frames, h, w, n_co * n_ci), dtype, metadata)
        self.path = path
        self.stamp = stamp
        self.series_index = series_index
        self.outer_shape = tuple(outer_shape)
        self.outer_kinds = outer_kinds
        self.plane_shape = tuple(plane_shape)
        self.plane_perm = tuple(plane_perm)
        self.page_elems = int(page_elems)
        self.contiguous = contiguous
        self.page_runs = None if page_runs is None else np.asarray(page_runs, dtype=np.int64)
        self.plain = bool(plain)

    # -- plane bookkeeping ---------------------------------------------------------------
    def _plane_indices(self, start: int, stop: int) -> np.ndarray:
        """Plane index for every (frame, outer channel) pair: shape (n, n_outer_channels)."""
        frames = np.arange(start, stop)
        fshape = [s for s, k in zip(self.outer_shape, self.outer_kinds, strict=True) if k == "f"]
        cshape = [s for s, k in zip(self.outer_shape, self.outer_kinds, strict=True) if k == "c"]
        n, n_co = frames.size, int(np.prod(cshape))
        if not self.outer_shape:
            return np.zeros((n, 1), dtype=np.int64)
        fidx = np.unravel_index(frames, fshape) if fshape else ()
        cidx = np.unravel_index(np.arange(n_co), cshape) if cshape else ()
        coords, fi, ci = [], 0, 0
        for kind in self.outer_kinds:
            if kind == "f":
                coords.append(np.broadcast_to(fidx[fi][:, None], (n, n_co)))
                fi += 1
            else:
                coords.append(np.broadcast_to(cidx[ci][None, :], (n, n_co)))
                ci += 1
        return np.ravel_multi_index(coords, self.outer_shape).astype(np.int64)

    def _tiff(self) -> tifffile.TiffFile:
        return cached_handle(
            ("tiff", self.path, self.stamp, self.plain),
            lambda: _open_tifffile(self.path, self.plain),
        )

    def _read_pages(self, tif: tifffile.TiffFile, pages: np.ndarray) -> np.ndarray:
        """Pages (indices into the series, or planes of the file) as ``(n, page_elems)``."""
        if self.page_runs is None:
            data = tif.asarray(key=pages.tolist(), series=self.series_index, maxworkers=1)
        else:
            runs = self.page_runs
            j = np.searchsorted(runs[:, 0], pages, side="right") - 1
            absolute = runs[j, 1] + pages - runs[j, 0]
            data = tif.asarray(key=absolute.tolist(), maxworkers=1)
        return np.asarray(data).reshape(pages.size, self.page_elems)

    def _read_planes(self, planes: np.ndarray) -> np.ndarray:
        """Planes as a (len(planes), plane_elems) array in file dtype."""
        plane_elems = int(np.prod(self.plane_shape))
        if self.contiguous is not None:
            offset, typecode = self.contiguous
            return _read_contiguous(self.path, offset, np.dtype(typecode), plane_elems, planes)
        tif = self._tiff()
        p = self.page_elems
        if plane_elems == p:
            pages = planes
        else:
            first = planes * plane_elems // p
            last = ((planes + 1) * plane_elems - 1) // p
            pages = np.concatenate([np.arange(a, b + 1) for a, b in zip(first, last, strict=True)])
        uniq, inverse = np.unique(pages, return_inverse=True)
        with _capture_tifffile_log():  # logged (and judged) when the file was opened
            data = self._read_pages(tif, uniq)
        if plane_elems == p:
            return data[inverse.reshape(-1)]
        row = {int(pg): i for i, pg in enumerate(uniq)}
        out = np.empty((planes.size, plane_elems), dtype=data.dtype)
        for j, q in enumerate(planes):
            a, b = int(first[j]), int(last[j])
            flat = data[[row[k] for k in range(a, b + 1)]].reshape(-1)
            lo = int(q) * plane_elems - a * p
            out[j] = flat[lo : lo + plane_elems]
        return out

    def _read(self, start: int, stop: int) -> np.ndarray:
        check_unchanged(self.path, self.stamp)
        planes = self._plane_indices(start, stop)
        n, n_co = planes.shape
        data = self._read_planes(planes.reshape(-1))
        data = data.reshape(n, n_co, *self.plane_shape)
        data = data.transpose(0, 1, *[2 + i for i in self.plane_perm])  # (n, n_co, Y, X, ...)
        _, h, w, c = self.shape
        data = data.reshape(n, n_co, h, w, c // n_co).transpose(0, 2, 3, 1, 4)
        return data.reshape(n, h, w, c).astype(self.dtype, copy=False)


# --------------------------------------------------------------------------------------------
# opening
# --------------------------------------------------------------------------------------------


class _LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _capture_tifffile_log() -> Iterator[list[str]]:
    logger = logging.getLogger("tifffile")
    handler = _LogCapture()
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def _truncated(path: str, detail: str) -> InvalidInputError:
    return InvalidInputError(
        f"TIFF file '{path}' seems truncated or corrupted ({detail}). Check that it was copied "
        "completely and that the acquisition software finished writing it; re-export or "
        "re-copy it."
    )


def _shaped_metadata(tif: tifffile.TiffFile, series: Any) -> dict[str, Any]:
    """The tifffile "shaped" JSON metadata written with this series (empty if none)."""
    with contextlib.suppress(Exception):
        desc = series.keyframe.shaped_description
        if desc:
            return dict(tifffile.shaped_description_metadata(desc))
    shaped = tif.shaped_metadata or ({},)
    return dict(shaped[0] or {})


def _semantic_axes(tif: tifffile.TiffFile, series: Any, axes: str | None, path: str) -> str:
    """Axis letters of ``series.shape`` as this reader interprets them (tifffile letters)."""
    shape, tax = tuple(series.shape), series.axes
    if axes is not None:
        ax = parse_axes(axes, len(shape), where=f"TIFF file '{path}' (series shape {shape})")
        return ax.upper()
    if series.kind == "shaped":
        if "axes" not in _shaped_metadata(tif, series):
            # written by tifffile without axes: the shape is the user's array shape
            if tax.endswith("YXS") and len(shape) <= 4:
                return "T" * (len(shape) - 3) + "YXS"
            positional = {2: "YX", 3: "TYX", 4: "TYXC"}.get(len(shape))
            if positional is None:
                msg = (
                    f"TIFF file '{path}' holds a {len(shape)}-D array {shape} without axis "
                    "labels; pass axes='...' (letters t, z, y, x, c), e.g. axes='tzyxc'"
                )
                raise InvalidInputError(msg)
            return positional
    return tax


def _layout(
    tif: tifffile.TiffFile, series: Any, ax: str, path: str
) -> tuple[tuple[int, ...], str, tuple[int, ...], tuple[int, ...]]:
    """Split series axes into outer axes (frames/channels) and the image plane."""
    shape = tuple(int(s) for s in series.shape)
    if "Y" not in ax or "X" not in ax:
        msg = (
            f"TIFF file '{path}' has axes {ax!r} (shape {shape}) without both Y and X; pass "
            "axes='...' to say which dimensions are the image rows (y) and columns (x)"
        )
        raise InvalidInputError(msg)
    ps = min(ax.index("Y"), ax.index("X"))
    plane_ax = ax[ps:]
    bad = [a for a in plane_ax if a not in "YX" + _CHANNEL_AXES]
    if bad:
        msg = (
            f"TIFF file '{path}' has axes {ax!r} with {bad[0]!r} inside the image plane; pass "
            "axes='...' to relabel the dimensions"
        )
        raise InvalidInputError(msg)
    outer_ax, outer_shape = ax[:ps], shape[:ps]
    kinds = []
    for a in outer_ax:
        if a in _CHANNEL_AXES:
            kinds.append("c")
        else:
            kinds.append("f")
            if a not in _FRAME_AXES:
                warn_user(
                    f"TIFF file '{path}': axis {a!r} ({tifffile.TIFF.AXES_NAMES.get(a, a)}) is "
                    "read as frames; pass axes='...' to relabel it"
                )
    if "f" not in kinds and "c" in kinds:
        i = kinds.index("c")
        if outer_shape[i] > 4:
            warn_user(
                f"TIFF file '{path}' declares {outer_shape[i]} channels and no time or z axis; "
                "reading the channels as frames. Pass axes='cyx' (or similar) to keep them as "
                "channels."
            )
            kinds[i] = "f"
    plane_shape = shape[ps:]
    perm = [plane_ax.index("Y"), plane_ax.index("X")] + [
        i for i, a in enumerate(plane_ax) if a in _CHANNEL_AXES
    ]
    return outer_shape, "".join(kinds), plane_shape, tuple(perm)


def _read_contiguous(
    path: str, offset: int, dtype: np.dtype, plane_elems: int, planes: np.ndarray
) -> np.ndarray:
    """Planes ``planes`` of uncompressed data stored contiguously from byte ``offset``, as a
    ``(len(planes), plane_elems)`` array of ``dtype``.

    Each run of consecutive planes is read straight into the result (``readinto``): no memory
    map, whose pages would fault in one by one (about a fifth of a run's page faults) and, kept
    open, stay in the resident set. A file shorter than its pages say is an error, never zeros.
    """
    out = np.empty((len(planes), plane_elems), dtype)
    nbytes = plane_elems * dtype.itemsize
    flat = out.reshape(-1).view(np.uint8)
    with open(path, "rb", buffering=0) as f:
        for lo, hi in _runs(planes):
            view = memoryview(flat[lo * nbytes : hi * nbytes])
            f.seek(offset + int(planes[lo]) * nbytes)
            got = 0
            while got < len(view):
                n = f.readinto(view[got:])
                if not n:
                    raise _truncated(
                        path,
                        f"image data end at byte {offset + int(planes[lo]) * nbytes + got}, "
                        f"before plane {int(planes[lo]) + got // nbytes}",
                    )
                got += n
    return out


def _runs(planes: np.ndarray) -> list[tuple[int, int]]:
    """``[lo, hi)`` positions of ``planes`` that hold consecutive plane indices."""
    breaks = np.flatnonzero(np.diff(planes) != 1) + 1
    edges = [0, *breaks.tolist(), len(planes)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def _metadata_fallback(message: str) -> bool:
    """tifffile messages about metadata it then ignores (it falls back to plain pages).

    "invalid shaped series metadata or corrupted file" is logged for a file whose first pages
    carry tifffile's shaped metadata and later ones none (pages appended by another writer);
    the pages themselves are fine and :func:`_check_all_pages_read` makes sure none is lost.
    """
    return "invalid shaped series metadata" in message.lower()


def _check_complete(
    tif: tifffile.TiffFile, series: Any, n_elems: int, log: list[str], path: str
) -> tuple[int, str] | None:
    """Raise if the file is cut off; return ``(offset, typecode)`` if the data is contiguous."""
    filesize = os.path.getsize(path)
    # walk the whole IFD chain (tifffile has usually done so already): a chain cut off by
    # truncation is logged by tifffile as an invalid page offset
    if len(tif.pages) == 0:
        raise _truncated(path, "no image pages were found")
    structural = [
        m for m in log if any(s in m.lower() for s in _STRUCTURAL_LOG) and not _metadata_fallback(m)
    ]
    if structural:
        raise _truncated(path, "tifffile: " + structural[0].split("> ", 1)[-1][:200])
    keyframe = series.keyframe
    itemsize = series.dtype.itemsize
    offset = series.dataoffset
    if offset is not None and keyframe.is_final and keyframe.parent.filehandle.is_file:
        if offset + n_elems * itemsize > filesize:
            raise _truncated(
                path,
                f"image data end at byte {offset + n_elems * itemsize} but the file has "
                f"{filesize} bytes",
            )
        return int(offset), tif.byteorder + series.dtype.char
    page_elems = int(np.prod(keyframe.shape))
    if len(series) * page_elems < n_elems:
        raise _truncated(
            path,
            f"its metadata describe {n_elems // page_elems} images but only "
            f"{len(series)} pages were found",
        )
    if not series.is_multifile:
        last = series[len(series) - 1]
        if last is None or len(last.dataoffsets) == 0:
            raise _truncated(path, "the last page cannot be located")
        ends = zip(last.dataoffsets, last.databytecounts, strict=True)
        end = max(int(o) + int(c) for o, c in ends)
        if end > filesize:
            raise _truncated(
                path, f"the last page's data end at byte {end} but the file has {filesize} bytes"
            )
    return None


# --------------------------------------------------------------------------------------------
# several series
# --------------------------------------------------------------------------------------------

_Layout = tuple[tuple[int, ...], str, tuple[int, ...], tuple[int, ...]]


def _frames_shape(layout: _Layout) -> tuple[int, int, int, int]:
    """``(T, H, W, C)`` that a series with this layout is read as."""
    outer_shape, kinds, plane_shape, perm = layout
    pairs = list(zip(outer_shape, kinds, strict=True))
    n_frames = int(np.prod([n for n, k in pairs if k == "f"]))
    n_co = int(np.prod([n for n, k in pairs if k == "c"]))
    plane_sorted = [plane_shape[i] for i in perm]
    return n_frames, plane_sorted[0], plane_sorted[1], n_co * int(np.prod(plane_sorted[2:]))


def _is_reduced(series: Any) -> bool:
    """A reduced-resolution image (thumbnail, preview; NewSubfileType bit 0)."""
    with contextlib.suppress(Exception):
        return bool(series.keyframe.is_reduced)
    return False


def _describe_series(series: Any, index: int) -> str:
    shape = tuple(int(n) for n in series.shape)
    extra = ", reduced resolution" if _is_reduced(series) else ""
    return f"series {index}: shape {shape} {series.dtype} axes {series.axes}{extra}"


def _list_series(all_series: Any, indices: Any, limit: int = 8) -> str:
    indices = list(indices)
    shown = "; ".join(_describe_series(all_series[i], i) for i in indices[:limit])
    more = len(indices) - limit
    return shown + (f"; ... ({more} more)" if more > 0 else "")


def _series_label(chosen: list[int], n_series: int) -> str:
    if len(chosen) == 1:
        return f"series {chosen[0]} of {n_series}"
    if chosen == list(range(chosen[0], chosen[-1] + 1)):
        return f"series {chosen[0]}-{chosen[-1]} of {n_series}, joined in time"
    return f"series {', '.join(map(str, chosen))} of {n_series}, joined in time"


def _series_pages(series: Any) -> list[int] | None:
    """Indices (in ``TiffFile.pages``) of the pages of a series, None if unknown.

    Uses tifffile's list of the series' pages; a series given by its first page and a length
    (contiguous ImageJ or shaped data) covers consecutive pages. None for pages in SubIFDs or
    other files.
    """
    pages = getattr(series, "_pages", None)  # tifffile keeps the series' pages here
    if pages is None:
        return None
    n = len(series)
    if len(pages) == 1 and n > 1:
        first = pages[0]
        if first is None or not isinstance(first.index, (int, np.integer)):
            return None
        return list(range(int(first.index), int(first.index) + n))
    out = []
    for page in pages:
        if page is None or not isinstance(page.index, (int, np.integer)):
            return None
        out.append(int(page.index))
    return out


def _choose_series(
    tif: tifffile.TiffFile, all_series: Any, axes: str | None, path: str
) -> tuple[list[int], str]:
    """The series to read when ``series=`` is not given, and why (see the module docstring)."""
    n = len(all_series)
    full = [i for i, s in enumerate(all_series) if not _is_reduced(s)] or list(range(n))
    if len(full) == 1:
        if n == 1:
            return full, "the only image series"
        return full, "the only full-resolution series; the others are reduced-resolution"
    how = (
        "Read one of them with series=N (CLI: --series N), e.g. series="
        f"{full[0]}; join other series yourself if they belong to one recording."
    )
    kinds = sorted({all_series[i].kind for i in full})
    if any(k not in _APPENDED_KINDS for k in kinds):
        msg = (
            f"TIFF file '{path}' holds {len(full)} full-resolution image series defined by its "
            f"{'/'.join(kinds)} metadata (separate images, e.g. positions or fields of view): "
            f"{_list_series(all_series, full)}. {how}"
        )
        raise InvalidInputError(msg)
    keys, letters = set(), set()
    for i in full:
        s_i = all_series[i]
        ax = _semantic_axes(tif, s_i, axes, path)
        layout = _layout(tif, s_i, ax, path)
        outer_shape, kinds_i, plane_shape, perm = layout
        _, h, w, c = _frames_shape(layout)
        co = tuple(n_ for n_, k in zip(outer_shape, kinds_i, strict=True) if k == "c")
        keys.add((h, w, c, s_i.dtype.str, tuple(plane_shape), tuple(perm), co))
        outer_ax = ax[: len(outer_shape)]
        frame_ax = {a for a, k in zip(outer_ax, kinds_i, strict=True) if k == "f"} & set("TZ")
        if frame_ax:
            letters.add(frozenset(frame_ax))
    if len(keys) > 1 or len(letters) > 1:
        msg = (
            f"TIFF file '{path}' holds {len(full)} image series that do not fit together as one "
            "recording (different frame size, channels, data type or axes): "
            f"{_list_series(all_series, full)}. {how}"
        )
        raise InvalidInputError(msg)
    return full, f"{len(full)} compatible series (written in batches), joined in time"


def _check_all_pages_read(
    tif: tifffile.TiffFile, all_series: Any, chosen: list[int], path: str, plain: bool
) -> None:
    """Refuse a file whose series leave full-resolution pages unread."""
    if any(getattr(s, "is_multifile", False) for s in all_series):
        return  # pages in other files: the page count of this one says nothing
    n_pages = len(tif.pages)
    covered = np.zeros(n_pages, dtype=bool)
    for s in all_series:
        for level in getattr(s, "levels", [s]):
            pages = _series_pages(level)
            if pages is None:
                if level is s:
                    return  # cannot tell which pages the series reads
                continue
            idx = np.asarray(pages, dtype=np.int64)
            covered[idx[idx < n_pages]] = True
    left = []
    try:
        for i in np.flatnonzero(~covered):
            tif.pages.set_keyframe(int(i))  # a full TiffPage, not a TiffFrame
            page = tif.pages.keyframe
            shape = tuple(page.shape)
            if page.is_reduced or not shape or not int(np.prod(shape)):
                continue  # thumbnails and empty pages are not frames
            left.append(int(i))
    finally:
        tif.pages.set_keyframe(0)
    if not left:
        return
    ranges = frame_runs(np.isin(np.arange(n_pages), left))
    kind = "/".join(sorted({all_series[i].kind for i in chosen}))
    fix = (
        "check how the file was written"
        if plain
        else "if they belong to the recording, read every page as a plain sequence of pages "
        "with plain=True (CLI: --reader-option plain=true), or check how the file was written"
    )
    msg = (
        f"TIFF file '{path}' has {n_pages} pages, but its image series ({kind} metadata) "
        f"cover only {int(covered.sum())} of them: pages {format_frame_ranges(ranges)} would "
        f"not be read. Expected every full-resolution page to belong to a series; {fix}."
    )
    raise InvalidInputError(msg)


def _series_frames(
    tif: tifffile.TiffFile,
    all_series: Any,
    layouts: list[tuple[Any, ...]],
    path: str,
    stamp: tuple[int, int],
    plain: bool,
    meta: dict[str, Any],
) -> LazyFrames:
    """The lazy wrapper over the chosen series: one, or several joined in time."""

    def one(entry: tuple[Any, ...]) -> TiffFrames:
        i, contiguous, _, outer_shape, kinds, plane_shape, perm = entry
        return TiffFrames(
            path=path,
            stamp=stamp,
            series_index=i,
            outer_shape=outer_shape,
            outer_kinds=kinds,
            plane_shape=plane_shape,
            plane_perm=perm,
            page_elems=int(np.prod(all_series[i].keyframe.shape)),
            contiguous=contiguous,
            dtype=all_series[i].dtype,
            metadata=meta,
            plain=plain,
        )

    if len(layouts) == 1:
        return one(layouts[0])
    # several compatible series: when each plane is one page, address the pages of the file
    # directly (one small wrapper however many series: files written one page per call)
    first = all_series[layouts[0][0]]
    page_elems = int(np.prod(first.keyframe.shape))
    page_lists, frame_counts = [], []
    for entry in layouts:
        i, _, _, outer_shape, kinds, plane_shape, perm = entry
        s_i = all_series[i]
        pages = _series_pages(s_i)
        simple = (
            pages is not None
            and int(np.prod(plane_shape)) == page_elems
            and kinds == "f" * kinds.count("f") + "c" * kinds.count("c")
            and s_i.keyframe.hash == first.keyframe.hash
        )
        if not simple:
            return ConcatFrames([one(e) for e in layouts], meta)
        page_lists.append(pages)
        frame_counts.append(_frames_shape((outer_shape, kinds, plane_shape, perm))[0])
    pages = np.concatenate([np.asarray(p, dtype=np.int64) for p in page_lists])
    starts = np.concatenate([[0], np.flatnonzero(np.diff(pages) != 1) + 1])
    page_runs = np.stack([starts, pages[starts]], axis=1)
    _, _, _, outer_shape, kinds, plane_shape, perm = layouts[0]
    co = tuple(n for n, k in zip(outer_shape, kinds, strict=True) if k == "c")
    return TiffFrames(
        path=path,
        stamp=stamp,
        series_index=None,
        outer_shape=(int(sum(frame_counts)), *co),
        outer_kinds="f" + "c" * len(co),
        plane_shape=plane_shape,
        plane_perm=perm,
        page_elems=page_elems,
        contiguous=None,
        dtype=first.dtype,
        metadata=meta,
        page_runs=page_runs,
        plain=plain,
    )


def _imagej_metadata(tif: tifffile.TiffFile) -> dict[str, Any]:
    meta = tif.imagej_metadata or {}
    out: dict[str, Any] = {}
    rate = interval_to_rate(meta.get("finterval"), "s") if meta.get("finterval") else None
    if rate is None:
        rate = positive_float(meta.get("fps"))
    out["frame_rate"] = rate
    unit = meta.get("unit")
    if unit:
        xres, yres = tif.pages.first.get_resolution()
        px = length_to_um(1.0 / xres, unit) if xres else None
        py = length_to_um(1.0 / yres, unit) if yres else None
        out["pixel_size"] = px
        if px and py and abs(px - py) > 1e-9 * px:
            out["pixel_size_yx"] = [py, px]
    return out


def _ome_metadata(tif: tifffile.TiffFile, series_index: int) -> dict[str, Any]:
    try:
        root = ET.fromstring(tif.ome_metadata)  # noqa: S314 - local file, read-only
    except (ET.ParseError, TypeError, ValueError):
        return {}
    images = root.findall("{*}Image")
    if not images:
        return {}
    pixels = images[min(series_index, len(images) - 1)].find("{*}Pixels")
    if pixels is None:
        return {}
    a = pixels.attrib
    out: dict[str, Any] = {}
    px = length_to_um(a.get("PhysicalSizeX"), a.get("PhysicalSizeXUnit", "µm"))
    py = length_to_um(a.get("PhysicalSizeY"), a.get("PhysicalSizeYUnit", "µm"))
    if px is not None:
        out["pixel_size"] = px
        if py and abs(px - py) > 1e-9 * px:
            out["pixel_size_yx"] = [py, px]
    if a.get("TimeIncrement"):
        out["frame_rate"] = interval_to_rate(a["TimeIncrement"], a.get("TimeIncrementUnit", "s"))
    names = [ch.attrib.get("Name") for ch in pixels.findall("{*}Channel")]
    if names and all(names):
        out["channel_names"] = names
    return out


def _resolution_metadata(tif: tifffile.TiffFile) -> dict[str, Any]:
    page = tif.pages.first
    unit = {2: "inch", 3: "cm", 4: "mm", 5: "um"}.get(int(page.resolutionunit))
    if unit is None:
        return {}
    xres, yres = page.get_resolution()
    if not xres or (xres == 1 and yres == 1):
        return {}
    scale = 25400.0 if unit == "inch" else length_to_um(1.0, unit)
    return {"pixel_size": scale / xres}


def _scanimage_framedata(tif: tifffile.TiffFile) -> dict[str, Any]:
    """Non-varying ScanImage frame data (``SI.*`` keys, or ``state.*`` for ScanImage 3)."""
    framedata: dict[str, Any] = {}
    with contextlib.suppress(Exception):
        framedata.update((tif.scanimage_metadata or {}).get("FrameData") or {})
    if framedata:
        return framedata
    page = tif.pages.first
    for text in (page.software, page.description):
        if "SI." in (text or ""):
            with contextlib.suppress(Exception):
                parsed = tifffile.matlabstr2py(text)
                if isinstance(parsed, dict):
                    framedata.update({k: v for k, v in parsed.items() if k.startswith("SI")})
    if not framedata and (page.description or "").startswith("state."):
        for line in page.description.replace("\r", "\n").split("\n"):
            key, sep, value = line.partition("=")
            if sep:
                framedata[key.strip()] = value.strip().strip("'")
    return framedata


def _scanimage_info(tif: tifffile.TiffFile, width: int) -> dict[str, Any]:
    fd = _scanimage_framedata(tif)
    out: dict[str, Any] = {"scanimage": True}
    saved = fd.get("SI.hChannels.channelSave")
    if saved is not None:
        ids = [int(v) for v in np.ravel(np.asarray(saved, dtype=object)).tolist()]
    elif "state.acq.numberOfChannelsSave" in fd:
        ids = list(range(1, int(float(fd["state.acq.numberOfChannelsSave"])) + 1))
    else:
        ids = [1]
    out["n_channels"] = len(ids)
    names = fd.get("SI.hChannels.channelName")
    if isinstance(names, (list, tuple)) and all(1 <= i <= len(names) for i in ids):
        out["channel_names"] = [str(names[i - 1]) for i in ids]
    out["frame_rate"] = positive_float(
        fd.get("SI.hRoiManager.scanFrameRate", fd.get("state.acq.frameRate"))
    )
    fov = fd.get("SI.hRoiManager.imagingFovUm")
    if fov is not None:
        with contextlib.suppress(Exception):
            corners = np.asarray(fov, dtype=float).reshape(-1, 2)
            out["pixel_size"] = positive_float(np.ptp(corners[:, 0]) / width)
    return out


class TiffReader(Reader):
    """TIFF, BigTIFF, ImageJ hyperstack, OME-TIFF and ScanImage files via tifffile."""

    name = "tiff"
    description = "TIFF / BigTIFF / ImageJ hyperstack / OME-TIFF / ScanImage (tifffile)"
    url = "https://github.com/cgohlke/tifffile"
    extensions = (".tif", ".tiff", ".ome.tif", ".ome.tiff", ".btf", ".tf8", ".stk", ".lsm")

    def sniff(self, path: str, header: bytes) -> bool:
        return header[:4] in _TIFF_MAGIC

    def open(
        self,
        path: str,
        *,
        deinterleave: int = 1,
        axes: str | None = None,
        scanimage: bool = True,
        series: int | None = None,
        plain: bool = False,
    ) -> LazyFrames:
        """Open a TIFF file.

        Parameters
        ----------
        path : str
            The file.
        deinterleave : int
            ``N > 1``: N consecutive single-channel frames form one N-channel frame. 1 (default)
            uses the channel count from ScanImage metadata when present.
        axes : str, optional
            Letters (t, z, y, x, c) for the dimensions of the (squeezed) image series, to
            override the labels in the file (applied to every series that is read).
        scanimage : bool
            Use ScanImage metadata to de-interleave channels (default True).
        series : int, optional
            Read only this image series (index as tifffile counts them). Default: every
            full-resolution series, joined in time when they are compatible, else an error
            listing them.
        plain : bool
            Ignore the format metadata (ImageJ, OME, tifffile's shaped metadata, ScanImage,
            ...) and read the file as a plain sequence of pages (default False). For files
            whose metadata describe fewer pages than the file holds.
        """
        stamp = file_stamp(path)
        with _capture_tifffile_log() as log:
            try:
                tif = _open_tifffile(path, plain)
            except Exception as exc:
                raise _truncated(path, f"tifffile could not parse it: {exc}") from exc
            try:
                with tif:
                    return self._open(
                        tif, path, stamp, deinterleave, axes, scanimage, series, plain, log
                    )
            except InvalidInputError:
                raise
            except Exception as exc:
                raise _truncated(path, f"reading its structure failed: {exc!r}") from exc

    def _open(
        self,
        tif: tifffile.TiffFile,
        path: str,
        stamp: tuple[int, int],
        deinterleave: int,
        axes: str | None,
        scanimage: bool,
        series_index: int | None,
        plain: bool,
        log: list[str],
    ) -> LazyFrames:
        all_series = tif.series
        if not all_series:
            raise _truncated(path, "no image pages were found")
        n_series = len(all_series)
        if series_index is not None:
            if isinstance(series_index, bool) or not 0 <= int(series_index) < n_series:
                msg = (
                    f"TIFF file '{path}' has {n_series} image series (0..{n_series - 1}); "
                    f"series={series_index!r} does not exist. Its series: "
                    f"{_list_series(all_series, range(n_series))}"
                )
                raise InvalidInputError(msg)
            chosen = [int(series_index)]
            reason = "given with series="
        else:
            chosen, reason = _choose_series(tif, all_series, axes, path)
        layouts = []
        for i in chosen:
            s_i = all_series[i]
            n_elems = int(np.prod(s_i.shape))
            contiguous = _check_complete(tif, s_i, n_elems, log, path)
            ax = _semantic_axes(tif, s_i, axes, path)
            layouts.append((i, contiguous, ax, *_layout(tif, s_i, ax, path)))
        if series_index is None:
            _check_all_pages_read(tif, all_series, chosen, path, plain)

        first = all_series[chosen[0]]
        meta: dict[str, Any] = {
            "source": path,
            "format": self.name,
            "files": [path],
            "tiff_axes": layouts[0][2],
            "tiff_series_kind": first.kind,
        }
        if n_series > 1 or series_index is not None:
            meta["dataset"] = _series_label(chosen, n_series)
            meta["dataset_reason"] = reason
            meta["tiff_series"] = list(chosen)
        meta.update(_resolution_metadata(tif))
        if tif.is_imagej:
            meta.update({k: v for k, v in _imagej_metadata(tif).items() if v is not None})
        if tif.is_ome:
            ome = _ome_metadata(tif, chosen[0])
            meta.update({k: v for k, v in ome.items() if v is not None})

        frames = _series_frames(tif, all_series, layouts, path, stamp, plain, meta)

        n = int(deinterleave)
        names = meta.get("channel_names")
        if tif.is_scanimage and scanimage:
            si = _scanimage_info(tif, frames.shape[2])
            meta.update({k: v for k, v in si.items() if v is not None and k != "channel_names"})
            n_si = si["n_channels"]
            if frames.shape[3] == 1 and n_si > 1:
                if n == 1:
                    n = n_si
                elif n != n_si:
                    warn_user(
                        f"ScanImage file '{path}' saved {n_si} channels but deinterleave={n} was "
                        f"given; using deinterleave={n}"
                    )
            if frames.shape[3] * n == n_si:
                names = si.get("channel_names")
            frames.metadata.update(meta)
        if names is not None and len(names) != frames.shape[3] * n:
            names = None
        frames.metadata["channel_names"] = names if n == 1 else None
        if n > 1:
            t = frames.shape[0]
            if t < n:
                msg = (
                    f"TIFF file '{path}' has {t} frame(s), fewer than deinterleave={n}; nothing "
                    "to de-interleave"
                )
                raise InvalidInputError(msg)
            if t % n:
                warn_user(
                    f"TIFF file '{path}' has {t} frames, not a multiple of deinterleave={n}; the "
                    f"last {t % n} frame(s) are ignored"
                )
            frames = DeinterleavedFrames(frames, n, channel_names=names)
            frames.metadata["deinterleave"] = n
        return frames
