"""MATLAB MAT-file video writer: v7.3 (HDF5) written batch by batch, or v5 assembled on close.

MAT v7.3 is an HDF5 file, so its variables grow batch by batch like the HDF5 writer's datasets,
and nothing is held in memory. A v5 file cannot grow: its variables are written one after the
other, each with its size in front. With ``use_v73=False`` every channel's frames are therefore
spooled to a hidden file next to the output (already in MATLAB's column-major byte order) and
copied into the v5 file on :meth:`~MATFileWriter.close`, again without holding the video in
memory. v5 variables are limited to 2 GiB; a larger output is written as v7.3 instead, with a
warning (pyflowreg's fallback too).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
import shutil
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..._matlab import MAT_USERBLOCK, MATLAB_CLASSES, set_matlab_class, write_mat73_header
from ..._version import __version__
from ...errors import InvalidInputError, InvalidOptionError, warn_user
from ._common import PARTIAL_SUFFIX, ordering_axes
from ._hdf5 import append_frames, block_to_stored, check_dataset_names, resolve_dataset_names
from ._writer import FileVideoWriter

__all__ = ["MATFileWriter"]

#: Largest variable a v5 MAT-file holds (MATLAB's limit for ``-v6``/``-v7``).
V5_MAX_BYTES = 2**31 - 1
_COPY_BLOCK = 16 * 2**20
# MAT v5 data types (miXXX) and array classes (mxXXX_CLASS) of the numeric dtypes
_MI_TYPES = {
    "i1": 1,
    "u1": 2,
    "i2": 3,
    "u2": 4,
    "i4": 5,
    "u4": 6,
    "f4": 7,
    "f8": 9,
    "i8": 12,
    "u8": 13,
}
_MX_CLASSES = {
    "f8": 6,
    "f4": 7,
    "i1": 8,
    "u1": 9,
    "i2": 10,
    "u2": 11,
    "i4": 12,
    "u4": 13,
    "i8": 14,
    "u8": 15,
}
_MI_MATRIX, _MI_INT8, _MI_INT32, _MI_UINT32 = 14, 1, 5, 6
_VARIABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}")


def _pad8(n: int) -> bytes:
    return b"\x00" * (-n % 8)


def _v5_file_header() -> bytes:
    now = _dt.datetime.now().strftime("%a %b %d %H:%M:%S %Y")
    text = f"MATLAB 5.0 MAT-file, Platform: flowreg_dask {__version__}, Created on: {now}"
    version = struct.pack("<H", 0x0100)
    return text.encode("ascii")[:116].ljust(116, b" ") + b"\x00" * 8 + version + b"IM"


def _v5_variable_head(name: str, dims: Sequence[int], dtype: np.dtype, nbytes: int) -> bytes:
    """Tag and sub-elements of a numeric miMATRIX up to the start of its real data."""
    code = dtype.str[1:]
    flags = struct.pack("<IIII", _MI_UINT32, 8, _MX_CLASSES[code], 0)
    dim_data = struct.pack(f"<{len(dims)}i", *dims)
    dim_el = struct.pack("<II", _MI_INT32, len(dim_data)) + dim_data + _pad8(len(dim_data))
    raw_name = name.encode("ascii")
    name_el = struct.pack("<II", _MI_INT8, len(raw_name)) + raw_name + _pad8(len(raw_name))
    data_tag = struct.pack("<II", _MI_TYPES[code], nbytes)
    size = len(flags) + len(dim_el) + len(name_el) + len(data_tag) + nbytes + (-nbytes % 8)
    return struct.pack("<II", _MI_MATRIX, size) + flags + dim_el + name_el + data_tag


class MATFileWriter(FileVideoWriter):
    """MATLAB MAT-file with one ``H x W x T`` variable per channel (``ch1``, ``ch2``, ...).

    Parameters
    ----------
    file_path : str or path
        The output file; replaced on :meth:`close` if it exists.
    dataset_names : str or list of str
        Variable names: ``"ch*"`` (default; ``*`` = channel number), a prefix, or one name per
        channel (MATLAB names: a letter, then letters, digits, ``_``; at most 63).
    dimension_ordering : sequence of int
        Permutation ``p`` with ``variable.transpose(p)`` = ``(H, W, T)`` in MATLAB's order;
        default ``(0, 1, 2)``: ``H x W x T``.
    use_v73 : bool
        True (default): MAT v7.3 (HDF5-based, no size limit), written batch by batch; read it
        with MATLAB, h5py (axes reversed: ``(T, W, H)``), :class:`MATFileReader` or
        :func:`flowreg_dask.io.open_recording` (``scipy.io.loadmat`` cannot read v7.3).
        False: MAT v5, uncompressed, readable by ``scipy.io.loadmat``; the frames are spooled
        to disk and the file is assembled on :meth:`close`; variables over 2 GiB make it v7.3
        with a warning.

    Notes
    -----
    pyflowreg wrote compressed v5 by default, holding the whole video in memory until
    ``close()``, and v7.3 only as a fallback; here v7.3 is the default because it can be written
    incrementally. Metadata are not stored as a MATLAB struct.
    """

    def __init__(
        self,
        file_path: str | os.PathLike[str],
        dataset_names: str | Sequence[str] = "ch*",
        dimension_ordering: Sequence[int] = (0, 1, 2),
        use_v73: bool = True,
    ) -> None:
        super().__init__(file_path)
        where = self._where()
        self.dataset_names = check_dataset_names(dataset_names, where=where)
        self.dimension_ordering = tuple(int(v) for v in dimension_ordering)
        #: letters of the variables' dimensions in MATLAB's order (default "yxt")
        self._matlab_axes = ordering_axes(
            dimension_ordering, "yxt", name="dimension_ordering", where=where
        )
        self.use_v73 = bool(use_v73)
        if not self.use_v73 and self._matlab_axes[-1] != "t":
            msg = (
                f"dimension_ordering={self.dimension_ordering} for {where} puts time before the "
                "last MATLAB dimension, which a v5 file cannot be written in frame by frame; "
                "use use_v73=True or an ordering with time last, (0, 1, 2) or (1, 0, 2)"
            )
            raise InvalidOptionError(msg)
        self.version: str | None = None
        self._names: list[str] = []
        self._file: Any = None  # h5py.File of a v7.3 output
        self._datasets: list[Any] = []
        self._spools: list[tuple[Path, BinaryIO]] = []

    @property
    def _h5_axes(self) -> str:
        """The variables' axes as h5py sees them (MATLAB's reversed)."""
        return self._matlab_axes[::-1]

    # -- writing ---------------------------------------------------------------------------
    def _open(self) -> None:
        where = self._where()
        if self.dtype not in MATLAB_CLASSES:
            msg = (
                f"{where}: MATLAB numeric arrays are (u)int8-64, single or double; got "
                f"{self.dtype} frames. Cast them, e.g. frames.astype(np.float32)."
            )
            raise InvalidInputError(msg)
        n_channels = int(self.n_channels or 0)
        self._names = resolve_dataset_names(self.dataset_names, n_channels, where=where)
        bad = [n for n in self._names if not _VARIABLE_NAME.fullmatch(n)]
        if bad:
            msg = (
                f"{where}: {bad[0]!r} is not a MATLAB variable name (a letter, then letters, "
                "digits or '_', at most 63); choose other dataset_names"
            )
            raise InvalidOptionError(msg)
        tmp = self._target.prepare()
        if self.use_v73:
            self._file = self._create_v73(tmp)
            return
        for name in self._names:
            spool = tmp.with_name(f"{tmp.name[: -len(PARTIAL_SUFFIX)]}.{name}{PARTIAL_SUFFIX}")
            self._spools.append((spool, open(spool, "wb")))  # noqa: SIM115 - open until close

    def _create_v73(self, tmp: Path) -> Any:
        import h5py

        f = h5py.File(tmp, "w", userblock_size=MAT_USERBLOCK)
        hw = (int(self.height), int(self.width))  # type: ignore[arg-type]
        cls = MATLAB_CLASSES[self.dtype]  # type: ignore[index]
        sizes = {"t": 0, "y": hw[0], "x": hw[1]}
        axes = self._h5_axes
        for name in self._names:
            ds = f.create_dataset(
                name,
                shape=tuple(sizes[a] for a in axes),
                maxshape=tuple(None if a == "t" else sizes[a] for a in axes),
                chunks=tuple(1 if a == "t" else sizes[a] for a in axes),
                dtype=self.dtype,
            )
            set_matlab_class(ds, cls)
            self._datasets.append(ds)
        return f

    def _write(self, frames: np.ndarray) -> None:
        if self.use_v73:
            for c, ds in enumerate(self._datasets):
                append_frames(ds, self._h5_axes, self.frames_written, frames[..., c])
            self._file.flush()
            return
        little = self.dtype.newbyteorder("<")  # type: ignore[union-attr]
        for c, (_, fh) in enumerate(self._spools):
            block = block_to_stored(frames[..., c], self._h5_axes)  # column-major bytes
            fh.write(memoryview(np.ascontiguousarray(block, dtype=little)).cast("B"))

    # -- finishing -------------------------------------------------------------------------
    def _dims(self) -> list[int]:
        sizes = {"t": self.frames_written, "y": self.height, "x": self.width}
        return [int(sizes[a]) for a in self._matlab_axes]  # type: ignore[arg-type]

    def _finish(self) -> None:
        if self.use_v73:
            f, self._file = self._file, None
            self._datasets = []
            f.close()
            write_mat73_header(self._target.tmp)
            self.version = "7.3"
            self._target.commit()
            return
        for _, fh in self._spools:
            fh.close()
        nbytes = self.frames_written * int(self.height) * int(self.width) * self.dtype.itemsize  # type: ignore[arg-type,union-attr]
        if nbytes > V5_MAX_BYTES:
            warn_user(
                f"{self._where()}: each variable holds {nbytes / 2**30:.1f} GiB, more than a MAT "
                "v5 file can (2 GiB); writing MAT v7.3 instead (read it with h5py, MATLAB or "
                "flowreg_dask, not scipy.io.loadmat)"
            )
            self._v73_from_spools()
            self.version = "7.3"
        else:
            self._v5_from_spools(nbytes)
            self.version = "5"
        self._remove_spools()
        self._target.commit()

    def _v5_from_spools(self, nbytes: int) -> None:
        dims = self._dims()
        with open(self._target.tmp, "wb") as out:
            out.write(_v5_file_header())
            for name, (spool, _) in zip(self._names, self._spools, strict=True):
                out.write(_v5_variable_head(name, dims, self.dtype, nbytes))  # type: ignore[arg-type]
                with open(spool, "rb") as src:
                    shutil.copyfileobj(src, out, _COPY_BLOCK)
                out.write(_pad8(nbytes))

    def _v73_from_spools(self) -> None:
        f = self._create_v73(self._target.tmp)
        try:
            h, w = int(self.height), int(self.width)  # type: ignore[arg-type]
            per_block = max(1, _COPY_BLOCK // (h * w * self.dtype.itemsize))  # type: ignore[union-attr]
            little = self.dtype.newbyteorder("<")  # type: ignore[union-attr]
            stored_frame = tuple({"y": h, "x": w}[a] for a in self._h5_axes[1:])
            for ds, (spool, _) in zip(self._datasets, self._spools, strict=True):
                mm = np.memmap(spool, dtype=little, mode="r")
                frames = mm.reshape(self.frames_written, *stored_frame)
                for a in range(0, self.frames_written, per_block):
                    b = min(a + per_block, self.frames_written)
                    ds.resize(b, axis=0)
                    ds[a:b] = frames[a:b]
                del frames, mm
        finally:
            self._datasets = []
            f.close()
        write_mat73_header(self._target.tmp)

    def _remove_spools(self) -> None:
        spools, self._spools = self._spools, []
        for path, fh in spools:
            with contextlib.suppress(Exception):
                fh.close()
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _abort(self) -> None:
        f, self._file = self._file, None
        self._datasets = []
        if f is not None:
            with contextlib.suppress(Exception):
                f.close()
        self._remove_spools()
        self._target.discard()
