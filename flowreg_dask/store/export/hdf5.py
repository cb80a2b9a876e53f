"""HDF5, CaImAn HDF5 and MATLAB v7.3 exports (h5py)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np

from ..._matlab import MAT_USERBLOCK, MATLAB_CLASSES, set_matlab_class, write_mat73_header
from ..._version import __version__
from ._source import _Chunk
from ._staging import _Target, _wrap_os_error
from ._writer import _channel_label, _json, _provenance, _Writer


class _H5Writer(_Writer):
    """HDF5 (``hdf5``, ``multifile_hdf5``, ``caiman_hdf5``) and MATLAB v7.3 (``mat``, ...)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.matlab = self.fmt.kind == "mat"
        has = self.include_flow
        self.needs_flow = has and self.src.flow is not None
        self.needs_valid = has and self.src.valid is not None
        self._files: list[Any] = []  # h5py.File per target
        self._tmp: list[Path] = []
        self._movie: list[list[tuple[int, Any]]] = []  # per file: (channel, dataset)
        self._aux: list[dict[str, Any]] = []  # per file: u, v, valid, stats datasets

    # -- layout helpers ------------------------------------------------------------------------
    def _frame_shape(self) -> tuple[int, int]:
        _, h, w, _ = self.src.shape
        return (w, h) if self.matlab else (h, w)  # MATLAB is column-major: h5py sees (T, W, H)

    def _frames(self, arr: np.ndarray) -> np.ndarray:
        """(n, H, W) -> the stored layout."""
        return np.ascontiguousarray(arr.transpose(0, 2, 1) if self.matlab else arr)

    def _compression_kwargs(self) -> dict[str, Any]:
        if self.compression == "gzip":
            return {"compression": "gzip", "compression_opts": 4, "shuffle": True}
        if self.compression == "lzf":
            return {"compression": "lzf", "shuffle": True}
        return {}

    def _set_matlab_class(self, obj: Any, cls: str, int_decode: int | None = None) -> None:
        set_matlab_class(obj, cls, int_decode)

    def _t_dataset(self, f: Any, name: str, dtype: Any, matlab_class: str | None) -> Any:
        t = self.src.shape[0]
        fh, fw = self._frame_shape()
        ds = f.create_dataset(
            name, shape=(t, fh, fw), dtype=dtype, chunks=(1, fh, fw), **self._compression_kwargs()
        )
        if self.matlab and matlab_class:
            self._set_matlab_class(ds, matlab_class, 1 if matlab_class == "logical" else None)
        elif not self.matlab:
            ds.attrs["dimension_ordering"] = "THW"
        return ds

    def _movie_name(self, c: int) -> str:
        return "mov" if self.fmt.kind == "caiman" else f"ch{c + 1}"

    # -- writer protocol -----------------------------------------------------------------------
    def open(self) -> None:
        import h5py

        for target in self.targets:
            tmp = self.staging.temp(target.path)
            try:
                if self.matlab:
                    f = h5py.File(tmp, "w", userblock_size=MAT_USERBLOCK, libver="earliest")
                else:
                    f = h5py.File(tmp, "w", libver="earliest")
            except OSError as exc:
                raise _wrap_os_error(exc, target.path, "write the export file") from exc
            self._files.append(f)
            self._tmp.append(tmp)
            movies = []
            for c in target.channels:
                ds = self._t_dataset(
                    f, self._movie_name(c), self.src.dtype, MATLAB_CLASSES.get(self.src.dtype)
                )
                if not self.matlab:
                    ds.attrs["channel"] = c + 1
                    ds.attrs["channel_name"] = _channel_label(self.src, c)
                    if self.fmt.kind == "caiman" and self.src.frame_rate:
                        ds.attrs["fr"] = self.src.frame_rate
                movies.append((c, ds))
            self._movie.append(movies)
            aux: dict[str, Any] = {}
            if target.primary and self.needs_flow:
                aux["u"] = self._t_dataset(f, "u", np.float32, "single")
                aux["v"] = self._t_dataset(f, "v", np.float32, "single")
            if target.primary and self.needs_valid:
                aux["valid"] = self._t_dataset(f, "valid", np.uint8, "logical")
            used = {name for name in f}
            for name in self.src.stats:
                key = name if name not in used else f"stat_{name}"
                t = self.src.shape[0]
                if self.matlab:
                    ds = f.create_dataset(key, shape=(1, t), dtype=np.float64)  # MATLAB T x 1
                    self._set_matlab_class(ds, "double")
                else:
                    ds = f.create_dataset(key, shape=(t,), dtype=np.float64)
                aux[f"stat:{name}"] = ds
            self._aux.append(aux)
            self._write_static(f, target)

    def _write_static(self, f: Any, target: _Target) -> None:
        """Reference, scalars and metadata (small; written up front)."""
        src = self.src
        chans = list(target.channels)
        info = _provenance(src, chans)
        if src.reference is not None and chans:
            ref = src.reference[chans]  # (k, H, W)
            if self.matlab:  # MATLAB H x W x k -> h5py (k, W, H)
                ds = f.create_dataset(
                    "reference", data=np.ascontiguousarray(ref.transpose(0, 2, 1))
                )
                self._set_matlab_class(ds, "single")
            else:
                f.create_dataset("reference", data=np.ascontiguousarray(ref.transpose(1, 2, 0)))
                f["reference"].attrs["dimension_ordering"] = "HWC"
        if self.matlab:
            for key in ("frame_rate", "pixel_size"):
                value = getattr(src, key)
                if value is not None:
                    ds = f.create_dataset(key, data=np.full((1, 1), value, dtype=np.float64))
                    self._set_matlab_class(ds, "double")
            meta = {
                **info,
                "dimension_ordering": "HWT",
                "variables": [self._movie_name(c) for c in chans],
                "metadata": src.metadata,
            }
            text = _json(meta)  # ASCII (json escapes the rest), i.e. UTF-16 code units = ord
            codes = np.frombuffer(text.encode("utf-16-le"), dtype="<u2").reshape(-1, 1)
            ds = f.create_dataset("metadata_json", data=codes)
            self._set_matlab_class(ds, "char", 2)
            return
        import h5py

        names = [self._movie_name(c) for c in chans]
        attrs = f.attrs
        attrs["format"] = (
            "flowreg_dask_caiman_hdf5_v1" if self.fmt.kind == "caiman" else "flowreg_dask_hdf5_v1"
        )
        attrs["software"] = "flowreg_dask"
        attrs["software_version"] = __version__
        attrs["dimension_ordering"] = "THW"
        attrs["n_channels"] = len(chans)
        attrs["frame_count"] = src.shape[0]
        attrs["height"] = src.shape[1]
        attrs["width"] = src.shape[2]
        attrs.create("dataset_names", data=np.array(names, dtype=h5py.string_dtype()))
        attrs.create(
            "channel_names",
            data=np.array(info["channel_names"], dtype=h5py.string_dtype()),
        )
        attrs["channels"] = np.asarray(info["channels"], dtype=np.int64)
        if src.frame_rate is not None:
            attrs["frame_rate"] = src.frame_rate
        if src.pixel_size is not None:
            attrs["pixel_size"] = src.pixel_size
            attrs["pixel_size_unit"] = "micrometer"
        attrs["options"] = _json(src.metadata.get("options"))
        attrs["metadata"] = _json(src.metadata)
        attrs["provenance"] = _json(info)
        if src.store:
            attrs["source_store"] = str(src.store)

    def write(self, chunk: _Chunk) -> None:
        a, b = chunk.start, chunk.stop
        for movies, aux in zip(self._movie, self._aux, strict=True):
            for c, ds in movies:
                ds[a:b] = self._frames(chunk.corrected[:, c])
            if "u" in aux and chunk.flow is not None:
                aux["u"][a:b] = self._frames(chunk.flow[:, 0])
                aux["v"][a:b] = self._frames(chunk.flow[:, 1])
            if "valid" in aux and chunk.valid is not None:
                scale = 1 if self.matlab else 255  # MATLAB logical 0/1; pyflowreg mask 0/255
                aux["valid"][a:b] = self._frames(chunk.valid.astype(np.uint8) * np.uint8(scale))
            for name, values in chunk.stats.items():
                ds = aux.get(f"stat:{name}")
                if ds is None:
                    continue
                if self.matlab:
                    ds[0, a:b] = values
                else:
                    ds[a:b] = values

    def finish(self) -> None:
        files, self._files = self._files, []
        for f in files:
            f.close()
        if self.matlab:
            for tmp in self._tmp:
                write_mat73_header(tmp)

    def abort(self) -> None:
        files, self._files = self._files, []
        for f in files:
            with contextlib.suppress(Exception):
                f.close()
