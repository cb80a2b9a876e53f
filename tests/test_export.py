"""Tests of flowreg_dask.store.export: every format round-trips values, orientation, dtype and
channel order; exports stream chunk by chunk; files appear only when complete; overwrite and errors.

Ground truth is what the store holds (``open_result``), compared exactly with what is read back
with h5py, tifffile, numpy and ``flowreg_dask.io.open_recording``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import scipy.io
import tifffile
import zarr

from flowreg_dask.errors import (
    FlowRegWarning,
    IncompleteStoreError,
    InvalidInputError,
    InvalidOptionError,
    OutputExistsError,
    UnsupportedFormatError,
)
from flowreg_dask.io import clear_handle_cache, open_recording
from flowreg_dask.store import export as export_mod
from flowreg_dask.store import layout as L
from flowreg_dask.store.export import export_formats, export_result
from flowreg_dask.store.reader import open_result
from flowreg_dask.store.writer import CorrectedStore, StoreSpec

STATS = list(L.DEFAULT_STAT_NAMES)
REPO_ROOT = Path(__file__).resolve().parents[1]
ALL_FORMATS = sorted(export_formats())


# --------------------------------------------------------------------------------------------------
# helpers and fixtures
# --------------------------------------------------------------------------------------------------
def make_store(
    path: Path,
    *,
    t: int = 20,
    h: int = 24,
    w: int = 32,
    c: int = 2,
    dtype: Any = np.uint16,
    bounds: list[tuple[int, int]] | None = None,
    frame_rate: float | None = 30.0,
    pixel_size: float | None = 0.5,
    finalize: bool = True,
    corrected: np.ndarray | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Create a store with known contents; return the ground truth (T, H, W, C) etc."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if corrected is None:
        if dtype.kind == "f":
            corrected = rng.normal(100, 30, (t, h, w, c)).astype(dtype)
        elif dtype.kind == "i":
            corrected = rng.integers(-3000, 3000, (t, h, w, c)).astype(dtype)
        else:
            corrected = rng.integers(0, min(4000, np.iinfo(dtype).max), (t, h, w, c)).astype(dtype)
    data = {
        "corrected": corrected,
        "flow": rng.normal(0, 2, (t, h, w, 2)).astype(np.float32),
        "valid": rng.random((t, h, w)) > 0.2,
        "stats": {s: rng.normal(size=t) for s in STATS},
        "reference": rng.normal(100, 10, (h, w, c)).astype(np.float32),
    }
    bounds = bounds or [(a, min(a + 8, t)) for a in range(0, t, 8)]
    store = CorrectedStore.create(
        path,
        StoreSpec(
            n_frames=t,
            height=h,
            width=w,
            n_channels=c,
            dtype=dtype,
            chunk_bounds=bounds,
            save_flow=True,
            save_valid=True,
            fingerprint="fp-export",
            metadata={"options": {"alpha": 1.5, "levels": 3}, "input": "synthetic"},
            channel_names=[f"chan{i}" for i in range(c)],
            frame_rate=frame_rate,
            pixel_size=pixel_size,
        ),
    )
    for i, (a, b) in enumerate(bounds):
        store.write_chunk(
            i,
            corrected=data["corrected"][a:b],
            flow=data["flow"][a:b],
            valid=data["valid"][a:b],
            stats={k: v[a:b] for k, v in data["stats"].items()},
        )
    if finalize:
        store.finalize(reference=data["reference"])
    data["path"] = path
    return data


def truth(path: Path) -> dict[str, Any]:
    """Ground truth read from a finished store: movie (T, H, W, C), flow (T, H, W, 2), ..."""
    ds = open_result(path)
    out = {
        "path": path,
        "corrected": ds["corrected"].values,
        "flow": ds["flow"].values,
        "valid": ds["valid"].values,
        "reference": ds["reference"].values,
        "stats": {s: ds[s].values for s in STATS},
    }
    ds.close()
    return out


@pytest.fixture(scope="module")
def pipeline_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real 2-channel uint16 run of the pipeline (20 frames, 24 x 32, chunks of 8 frames)."""
    from flowreg_dask.datasets import synthetic_recording
    from flowreg_dask.options import OFOptions
    from flowreg_dask.pipeline.api import RegistrationConfig, compensate_recording

    movie = synthetic_recording(n_frames=20, height=24, width=32, n_channels=2, seed=0).movie
    out = tmp_path_factory.mktemp("pipeline") / "r.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FlowRegWarning)
        compensate_recording(
            OFOptions(
                quality_setting="fast",
                buffer_size=8,
                reference_frames=list(range(8)),
                iterations=10,
                save_w=True,
                save_valid_idx=True,
            ),
            RegistrationConfig(progress=False),
            recording=movie,
            output=out,
        )
    gt = truth(out)
    assert gt["corrected"].dtype == np.uint16 and gt["corrected"].shape == (20, 24, 32, 2)
    return gt


@pytest.fixture(scope="module")
def meta_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """2-channel uint16 store with frame rate, pixel size and channel names."""
    return make_store(tmp_path_factory.mktemp("meta") / "m.zarr")


@pytest.fixture(scope="module")
def float_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """1-channel float32 store, non-square (H=24, W=32), irregular chunks."""
    return make_store(
        tmp_path_factory.mktemp("float") / "f.zarr",
        c=1,
        dtype=np.float32,
        bounds=[(0, 5), (5, 10), (10, 15), (15, 20)],
        frame_rate=12.5,
        pixel_size=1.25,
    )


@pytest.fixture(autouse=True)
def _close_cached_handles():
    yield
    clear_handle_cache()


def read_back(path: Path | list[Path], **kw: Any) -> np.ndarray:
    arr = open_recording([str(p) for p in path] if isinstance(path, list) else str(path), **kw)
    values = arr.values
    clear_handle_cache()
    return values


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*"))


# --------------------------------------------------------------------------------------------------
# formats
# --------------------------------------------------------------------------------------------------
def test_export_formats_lists_every_format() -> None:
    formats = export_formats()
    assert set(formats) == {
        "hdf5",
        "caiman_hdf5",
        "tiff",
        "suite2p_tiff",
        "suite2p",
        "mat",
        "npy",
        "multifile_tiff",
        "multifile_hdf5",
        "multifile_mat",
    }
    assert all(isinstance(v, str) and v for v in formats.values())


@pytest.mark.parametrize("compression", [None, "gzip", "lzf"])
def test_hdf5_round_trip(pipeline_store: dict[str, Any], tmp_path: Path, compression) -> None:
    gt = pipeline_store
    out = export_result(
        gt["path"], tmp_path / "x.h5", format="HDF5", compression=compression, chunk_frames=3
    )
    assert out == tmp_path / "x.h5"
    t, h, w, c = gt["corrected"].shape
    with h5py.File(out, "r") as f:
        for ci in range(c):
            ds = f[f"ch{ci + 1}"]
            assert ds.shape == (t, h, w) and ds.dtype == np.uint16 and ds.chunks == (1, h, w)
            assert ds.compression == compression
            np.testing.assert_array_equal(ds[()], gt["corrected"][..., ci])
        np.testing.assert_array_equal(f["u"][()], gt["flow"][..., 0])
        np.testing.assert_array_equal(f["v"][()], gt["flow"][..., 1])
        assert f["u"].dtype == np.float32
        assert f["valid"].dtype == np.uint8
        np.testing.assert_array_equal(f["valid"][()], gt["valid"].astype(np.uint8) * 255)
        np.testing.assert_array_equal(f["reference"][()], gt["reference"])
        for s in STATS:
            np.testing.assert_array_equal(f[s][()], gt["stats"][s])
        attrs = dict(f.attrs)
        assert attrs["dimension_ordering"] == "THW"
        assert attrs["software_version"]
        assert json.loads(attrs["options"])["buffer_size"] == 8
        assert list(attrs["dataset_names"]) == ["ch1", "ch2"]
        assert "frame_rate" not in attrs  # unknown for an in-memory input
    np.testing.assert_array_equal(read_back(out), gt["corrected"])


def test_hdf5_metadata_and_without_flow(meta_store: dict[str, Any], tmp_path: Path) -> None:
    out = export_result(meta_store["path"], tmp_path / "m.h5", format="hdf5", include_flow=False)
    with h5py.File(out, "r") as f:
        assert "u" not in f and "v" not in f and "valid" not in f
        assert f.attrs["frame_rate"] == 30.0 and f.attrs["pixel_size"] == 0.5
        assert list(f.attrs["channel_names"]) == ["chan0", "chan1"]
        assert json.loads(f.attrs["options"]) == {"alpha": 1.5, "levels": 3}
    arr = open_recording(str(out))
    np.testing.assert_array_equal(arr.values, meta_store["corrected"])


def test_dataset_input_and_channel_selection(meta_store: dict[str, Any], tmp_path: Path) -> None:
    ds = open_result(meta_store["path"])
    out = export_result(ds.isel(c=[1]), tmp_path / "sel.h5", format="hdf5")
    with h5py.File(out, "r") as f:
        assert [k for k in f if k.startswith("ch")] == ["ch1"]
        np.testing.assert_array_equal(f["ch1"][()], meta_store["corrected"][..., 1])
        assert list(f.attrs["channel_names"]) == ["chan1"]
    # an in-memory (numpy-backed) Dataset is exported in chunks too
    out = export_result(ds.isel(t=slice(2, 15)).load(), tmp_path / "mem.npy", format="npy")
    np.testing.assert_array_equal(np.load(out), meta_store["corrected"][2:15])
    ds.close()


def test_caiman_one_file_per_channel(pipeline_store: dict[str, Any], tmp_path: Path) -> None:
    gt = pipeline_store
    out = export_result(gt["path"], tmp_path / "cm.h5", format="CAIMAN_HDF5")
    assert out == tmp_path
    files = [tmp_path / "cm_ch1.h5", tmp_path / "cm_ch2.h5"]
    assert listing(tmp_path) == ["cm_ch1.h5", "cm_ch2.h5"]
    for ci, f in enumerate(files):
        with h5py.File(f, "r") as h:
            assert h["mov"].shape == gt["corrected"].shape[:3]
            np.testing.assert_array_equal(h["mov"][()], gt["corrected"][..., ci])
            assert ("u" in h) == (ci == 0)  # flow only with channel 1
    np.testing.assert_array_equal(read_back(files), gt["corrected"])


def test_caiman_single_channel_is_one_file(float_store: dict[str, Any], tmp_path: Path) -> None:
    out = export_result(float_store["path"], tmp_path / "mov.h5", format="caiman_hdf5")
    assert out == tmp_path / "mov.h5"
    with h5py.File(out, "r") as h:
        assert h["mov"].dtype == np.float32
        np.testing.assert_array_equal(h["mov"][()], float_store["corrected"][..., 0])
        assert h["mov"].attrs["fr"] == 12.5


def test_tiff_imagej_hyperstack(pipeline_store: dict[str, Any], tmp_path: Path) -> None:
    gt = pipeline_store
    out = export_result(gt["path"], tmp_path / "x.tif", format="tiff")
    t, h, w, c = gt["corrected"].shape
    with tifffile.TiffFile(out) as tf:
        assert tf.is_bigtiff and tf.is_imagej
        assert tf.series[0].axes == "TCYX" and tf.series[0].shape == (t, c, h, w)
        assert len(tf.pages) == t * c
        for i in (0, 1, 2, 7, t * c - 1):  # page order: T major, C minor
            np.testing.assert_array_equal(
                tf.pages[i].asarray(), gt["corrected"][i // c, :, :, i % c]
            )
    np.testing.assert_array_equal(tifffile.imread(out), gt["corrected"].transpose(0, 3, 1, 2))
    back = open_recording(str(out))
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back.values, gt["corrected"])


def test_tiff_metadata_and_float32(float_store: dict[str, Any], tmp_path: Path) -> None:
    out = export_result(float_store["path"], tmp_path / "f.tif", format="TIFF")
    with tifffile.TiffFile(out) as tf:
        assert tf.is_imagej and tf.pages[0].dtype == np.float32
        assert tf.imagej_metadata["finterval"] == pytest.approx(1 / 12.5)
    back = open_recording(str(out))
    assert back.attrs["frame_rate"] == pytest.approx(12.5)
    assert back.attrs["pixel_size"] == pytest.approx(1.25)
    np.testing.assert_array_equal(back.values, float_store["corrected"])


def test_tiff_int16_keeps_dtype_without_imagej(tmp_path: Path) -> None:
    data = make_store(tmp_path / "i.zarr", dtype=np.int16, c=3, t=10)
    out = export_result(data["path"], tmp_path / "i.tif", format="tiff")
    with tifffile.TiffFile(out) as tf:
        assert not tf.is_imagej and tf.is_bigtiff and tf.series[0].axes == "TCYX"
        assert tf.pages[0].dtype == np.int16
    back = open_recording(str(out))
    assert back.attrs["pixel_size"] == pytest.approx(0.5)
    np.testing.assert_array_equal(back.values, data["corrected"])


def test_suite2p_tiff_interleaves_channels(pipeline_store: dict[str, Any], tmp_path: Path) -> None:
    gt = pipeline_store
    out = export_result(gt["path"], tmp_path / "s.tif", format="SUITE2P_TIFF")
    t, h, w, c = gt["corrected"].shape
    with tifffile.TiffFile(out) as tf:
        assert tf.is_bigtiff and not tf.is_imagej and not tf.is_shaped
        assert len(tf.pages) == t * c
        pages = tf.asarray(key=range(len(tf.pages)))
    assert pages.shape == (t * c, h, w)
    np.testing.assert_array_equal(pages[0], gt["corrected"][0, ..., 0])  # frame0-ch1
    np.testing.assert_array_equal(pages[1], gt["corrected"][0, ..., 1])  # frame0-ch2
    np.testing.assert_array_equal(pages[2], gt["corrected"][1, ..., 0])  # frame1-ch1
    np.testing.assert_array_equal(read_back(out, deinterleave=2), gt["corrected"])


def test_suite2p_binary(pipeline_store: dict[str, Any], tmp_path: Path) -> None:
    gt = pipeline_store
    out = export_result(gt["path"], tmp_path / "suite2p", format="suite2p")
    assert out == tmp_path / "suite2p" / "plane0"
    assert listing(out) == ["data.bin", "data_chan2.bin", "ops.npy"]
    t, h, w, _ = gt["corrected"].shape
    assert gt["corrected"].max() <= 32767  # no clipping needed for these values
    for name, ci in (("data.bin", 0), ("data_chan2.bin", 1)):
        raw = np.fromfile(out / name, dtype="<i2")
        assert raw.size == t * h * w
        np.testing.assert_array_equal(raw.reshape(t, h, w), gt["corrected"][..., ci])
    ops = np.load(out / "ops.npy", allow_pickle=True).item()
    assert (ops["Ly"], ops["Lx"], ops["nframes"], ops["nchannels"]) == (h, w, t, 2)
    assert ops["fs"] == 10.0  # unknown frame rate -> suite2p's default
    assert ops["reg_file"] == str(out / "data.bin")
    assert ops["reg_file_chan2"] == str(out / "data_chan2.bin")
    np.testing.assert_allclose(ops["meanImg"], gt["corrected"][..., 0].mean(axis=0), rtol=1e-6)
    # read back as one recording: the layout comes from ops.npy, the channels from the file list
    back = open_recording([out / "data.bin", out / "data_chan2.bin"])
    np.testing.assert_array_equal(back.values, gt["corrected"].astype(np.int16))


def test_suite2p_binary_clips_and_rounds(tmp_path: Path) -> None:
    movie = np.zeros((6, 8, 10, 1), dtype=np.uint16)
    movie[0, 0, 0, 0] = 40000
    movie[1, 1, 1, 0] = 32767
    data = make_store(tmp_path / "u.zarr", t=6, h=8, w=10, c=1, corrected=movie, frame_rate=7.0)
    with pytest.warns(FlowRegWarning, match="1 pixel values"):
        out = export_result(data["path"], tmp_path / "s2p", format="suite2p")
    assert listing(out) == ["data.bin", "ops.npy"]
    raw = np.fromfile(out / "data.bin", dtype="<i2").reshape(6, 8, 10)
    assert raw[0, 0, 0] == 32767 and raw[1, 1, 1] == 32767 and raw.sum() == 2 * 32767
    ops = np.load(out / "ops.npy", allow_pickle=True).item()
    assert ops["nchannels"] == 1 and ops["fs"] == 7.0 and "reg_file_chan2" not in ops

    floats = np.array([-1.6, 2.5, 3.4, 1e6], dtype=np.float32).reshape(1, 2, 2, 1)
    floats = np.repeat(floats, 2, axis=0)
    data = make_store(tmp_path / "f.zarr", t=2, h=2, w=2, c=1, dtype=np.float32, corrected=floats)
    with pytest.warns(FlowRegWarning):
        out = export_result(data["path"], tmp_path / "s2pf", format="suite2p")
    raw = np.fromfile(out / "data.bin", dtype="<i2").reshape(2, 2, 2)
    np.testing.assert_array_equal(raw[0].ravel(), [-2, 2, 3, 32767])


def test_suite2p_rejects_three_channels(tmp_path: Path) -> None:
    data = make_store(tmp_path / "c3.zarr", c=3, t=4)
    with pytest.raises(InvalidInputError, match="at most 2 channels"):
        export_result(data["path"], tmp_path / "s2p", format="suite2p")
    assert not (tmp_path / "s2p").exists() or listing(tmp_path / "s2p") == []


@pytest.mark.parametrize("fmt", ["mat", "MULTIFILE_MAT"])
def test_mat_v73_orientation(float_store: dict[str, Any], meta_store, tmp_path: Path, fmt) -> None:
    for gt in (float_store, meta_store):
        t, h, w, c = gt["corrected"].shape
        assert h != w  # a non-square frame catches swapped axes
        folder = tmp_path / gt["path"].stem
        out = export_result(gt["path"], folder / "x.mat", format=fmt)
        files = [out] if fmt == "mat" else [folder / f"x_ch{i + 1}.mat" for i in range(c)]
        for ci, path in enumerate(files):
            with open(path, "rb") as fh:
                header = fh.read(128)
            assert header.startswith(b"MATLAB 7.3 MAT-file") and header[124:128] == b"\x00\x02IM"
            assert scipy.io.matlab.matfile_version(str(path)) == (2, 0)
            assert h5py.is_hdf5(path)
            with h5py.File(path, "r") as f:
                chans = range(c) if fmt == "mat" else [ci]
                for cj in chans:
                    ds = f[f"ch{cj + 1}"]
                    assert ds.shape == (t, w, h)  # MATLAB sees H x W x T
                    cls = "single" if gt["corrected"].dtype == np.float32 else "uint16"
                    assert ds.attrs["MATLAB_class"] == cls.encode()
                    np.testing.assert_array_equal(
                        ds[()].transpose(0, 2, 1), gt["corrected"][..., cj]
                    )
                if ci == 0:
                    np.testing.assert_array_equal(f["u"][()].transpose(0, 2, 1), gt["flow"][..., 0])
                    np.testing.assert_array_equal(f["v"][()].transpose(0, 2, 1), gt["flow"][..., 1])
                    assert f["valid"].attrs["MATLAB_class"] == b"logical"
                    np.testing.assert_array_equal(f["valid"][()].transpose(0, 2, 1), gt["valid"])
                else:
                    assert "u" not in f
                assert f["mean_disp"].shape == (1, t)  # MATLAB T x 1
                np.testing.assert_array_equal(f["mean_disp"][0], gt["stats"]["mean_disp"])
                assert f["reference"].shape == (len(chans), w, h)
                text = (
                    f["metadata_json"][()].ravel().astype(np.uint16).tobytes().decode("utf-16-le")
                )
                meta = json.loads(text)
                assert meta["frame_rate"] == pytest.approx(f["frame_rate"][0, 0])
                assert meta["metadata"]["options"]["alpha"] == 1.5
        np.testing.assert_array_equal(
            read_back(files if len(files) > 1 else files[0]), gt["corrected"]
        )


def test_npy_round_trip(pipeline_store: dict[str, Any], float_store, tmp_path: Path) -> None:
    for gt in (pipeline_store, float_store):
        out = export_result(gt["path"], tmp_path / f"{gt['path'].stem}.npy", format="npy")
        arr = np.load(out)
        assert arr.dtype == gt["corrected"].dtype and arr.shape == gt["corrected"].shape
        np.testing.assert_array_equal(arr, gt["corrected"])
        np.testing.assert_array_equal(read_back(out), gt["corrected"])


@pytest.mark.parametrize(("fmt", "ext"), [("multifile_tiff", ".tif"), ("MULTIFILE_HDF5", ".h5")])
def test_multifile(pipeline_store: dict[str, Any], tmp_path: Path, fmt, ext) -> None:
    gt = pipeline_store
    out = export_result(gt["path"], tmp_path / f"run{ext}", format=fmt)
    assert out == tmp_path
    files = [tmp_path / f"run_ch1{ext}", tmp_path / f"run_ch2{ext}"]
    assert listing(tmp_path) == [f.name for f in files]
    for ci, f in enumerate(files):
        np.testing.assert_array_equal(read_back(f)[..., 0], gt["corrected"][..., ci])
    np.testing.assert_array_equal(read_back(files), gt["corrected"])
    # an output without suffix (or an existing folder) is a folder with stem "compensated"
    out2 = export_result(gt["path"], tmp_path / "folder", format=fmt)
    assert listing(out2) == [f"compensated_ch1{ext}", f"compensated_ch2{ext}"]


def test_existing_folder_gets_default_name(pipeline_store: dict[str, Any], tmp_path: Path) -> None:
    out = export_result(pipeline_store["path"], tmp_path, format="npy")
    assert out == tmp_path / "compensated.npy" and out.is_file()


# --------------------------------------------------------------------------------------------------
# streaming
# --------------------------------------------------------------------------------------------------
def _record_reads(monkeypatch: pytest.MonkeyPatch, events: list[tuple[Any, ...]]) -> None:
    original_getitem = zarr.Array.__getitem__

    def spy_getitem(self, key):  # noqa: ANN001
        if self.path == L.CORRECTED:
            sl = key[0] if isinstance(key, tuple) else key
            events.append(
                ("read", sl.start or 0, sl.stop if sl.stop is not None else self.shape[0])
            )
        return original_getitem(self, key)

    original_write = export_mod._write_chunk

    def spy_write(writer, chunk):  # noqa: ANN001
        events.append(("write", chunk.start, chunk.stop))
        return original_write(writer, chunk)

    monkeypatch.setattr(zarr.Array, "__getitem__", spy_getitem)
    monkeypatch.setattr(export_mod, "_write_chunk", spy_write)


@pytest.mark.parametrize("fmt", ["hdf5", "tiff", "mat", "npy", "suite2p"])
@pytest.mark.parametrize("chunk_frames", [None, 3])
def test_reads_one_chunk_at_a_time(
    meta_store: dict[str, Any], tmp_path: Path, monkeypatch, fmt, chunk_frames
) -> None:
    events: list[tuple[Any, ...]] = []
    _record_reads(monkeypatch, events)
    export_result(meta_store["path"], tmp_path / "out", format=fmt, chunk_frames=chunk_frames)
    writes = [e for e in events if e[0] == "write"]
    step = chunk_frames or 8  # default: the store's time chunks (8 frames)
    expected = [(a, min(a + step, 20)) for a in range(0, 20, step)]
    assert [(a, b) for _, a, b in writes] == expected
    # every read of the movie happens right before the write of the chunk it belongs to, and
    # touches only the storage objects (8 frames) overlapping that chunk
    pending: list[tuple[int, int]] = []
    for kind, a, b in events:
        if kind == "read":
            pending.append((a, b))
            continue
        assert pending, f"chunk {a}:{b} was written without reading it"
        lo, hi = (a // 8) * 8, -(-b // 8) * 8
        assert all(lo <= ra and rb <= hi for ra, rb in pending), (a, b, pending)
        pending = []
    assert not pending
    if chunk_frames is None:  # aligned chunks: every frame is read exactly once
        assert sum(b - a for kind, a, b in events if kind == "read") == 20


def _export_peak(path: Path, out: Path, fmt: str, **kw: Any) -> int:
    tracemalloc.start()
    try:
        export_result(path, out, format=fmt, **kw)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_length(tmp_path: Path) -> None:
    # 64 x 64 x 2 uint16 frames with flow and mask, store chunks of 8 frames (0.4 MB): an 8x longer
    # movie must not need much more memory (a non-streaming export would need 8x), and the peak
    # stays a small fraction of the data (a few copies of one chunk: decoded store chunks, the
    # chunk's arrays, transposed/converted copies for the writer)
    short = make_store(tmp_path / "short.zarr", t=24, h=64, w=64, c=2, frame_rate=None)
    long = make_store(tmp_path / "long.zarr", t=192, h=64, w=64, c=2, frame_rate=None, seed=1)
    total = sum(long[k].nbytes for k in ("corrected", "flow", "valid"))  # 10.2 MB
    export_result(short["path"], tmp_path / "warm.h5", format="hdf5")  # imports, caches
    for fmt in ("hdf5", "tiff"):
        p_short = _export_peak(short["path"], tmp_path / f"s.{fmt}", fmt)
        p_long = _export_peak(long["path"], tmp_path / f"l.{fmt}", fmt)
        assert p_long < 2.5 * p_short, (fmt, p_short, p_long)  # measured: ~1.6x (hdf5)
        assert p_long < total / 3, (fmt, p_long, total)  # measured: ~2 MB of 10.2 MB (hdf5)
    # sanity: the measurement does see the arrays when everything is one chunk
    assert _export_peak(long["path"], tmp_path / "one.h5", "hdf5", chunk_frames=192) > total
    with h5py.File(tmp_path / "l.hdf5", "r") as f:
        np.testing.assert_array_equal(f["ch2"][()], long["corrected"][..., 1])


# --------------------------------------------------------------------------------------------------
# temporary names, failures, overwrite
# --------------------------------------------------------------------------------------------------
def _fail_on_second_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    original = export_mod._write_chunk
    calls = {"n": 0}

    def failing(writer, chunk):  # noqa: ANN001
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated failure")
        return original(writer, chunk)

    monkeypatch.setattr(export_mod, "_write_chunk", failing)


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_failed_export_leaves_nothing(meta_store: dict[str, Any], tmp_path: Path, monkeypatch, fmt):
    _fail_on_second_chunk(monkeypatch)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(RuntimeError, match="simulated failure"):
        export_result(meta_store["path"], dest / "out.x", format=fmt)
    assert list(dest.rglob("*")) == []  # no final file, no .partial file, no new folder


def test_killed_export_leaves_only_partial_files(meta_store, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, signal
        from flowreg_dask.store import export as ex
        original = ex._write_chunk
        calls = []
        def kill_on_second(writer, chunk):
            calls.append(chunk.start)
            if len(calls) == 2:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(writer, chunk)
        ex._write_chunk = kill_on_second
        ex.export_result({str(meta_store["path"])!r}, {str(tmp_path / "x.h5")!r}, format="hdf5")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    names = [p.name for p in tmp_path.iterdir()]
    assert len(names) == 1 and names[0].startswith(".x.h5.") and names[0].endswith(".partial")
    assert not (tmp_path / "x.h5").exists()
    # the next export is not disturbed by the leftover
    export_result(meta_store["path"], tmp_path / "x.h5", format="hdf5")
    with h5py.File(tmp_path / "x.h5", "r") as f:
        np.testing.assert_array_equal(f["ch1"][()], meta_store["corrected"][..., 0])


@pytest.mark.parametrize("fmt", ["hdf5", "tiff", "multifile_mat", "suite2p", "npy"])
def test_failed_overwrite_keeps_old_output(meta_store, tmp_path: Path, monkeypatch, fmt) -> None:
    first = export_result(meta_store["path"], tmp_path / "out.x", format=fmt)
    files = sorted(p for p in (first.rglob("*") if first.is_dir() else [first]) if p.is_file())
    before = {p: p.read_bytes() for p in files}
    _fail_on_second_chunk(monkeypatch)
    with pytest.raises(RuntimeError, match="simulated failure"):
        export_result(meta_store["path"], tmp_path / "out.x", format=fmt, overwrite=True)
    for p, content in before.items():
        assert p.read_bytes() == content
    assert not [p for p in tmp_path.rglob("*.partial")]


def test_temporary_name_until_complete(meta_store, tmp_path: Path, monkeypatch) -> None:
    seen: list[list[str]] = []
    original = export_mod._write_chunk

    def spy(writer, chunk):  # noqa: ANN001
        seen.append(sorted(p.name for p in tmp_path.iterdir()))
        return original(writer, chunk)

    monkeypatch.setattr(export_mod, "_write_chunk", spy)
    export_result(meta_store["path"], tmp_path / "x.h5", format="hdf5")
    assert seen and all(len(names) == 1 for names in seen)
    assert all(n.startswith(".x.h5.") and n.endswith(".partial") for names in seen for n in names)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.h5"]


def test_overwrite_semantics(meta_store: dict[str, Any], float_store, tmp_path: Path) -> None:
    target = tmp_path / "x.npy"
    target.write_bytes(b"not an export")
    with pytest.raises(OutputExistsError, match="overwrite=True"):
        export_result(meta_store["path"], target, format="npy")
    assert target.read_bytes() == b"not an export"
    export_result(meta_store["path"], target, format="npy", overwrite=True)
    np.testing.assert_array_equal(np.load(target), meta_store["corrected"])
    # multi-file: one existing channel file is enough to refuse
    (tmp_path / "m_ch2.tif").write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="m_ch2.tif"):
        export_result(meta_store["path"], tmp_path / "m.tif", format="multifile_tiff")
    assert not (tmp_path / "m_ch1.tif").exists()
    # a folder is never replaced
    (tmp_path / "f_ch1.h5").mkdir()
    with pytest.raises(OutputExistsError, match="folder"):
        export_result(
            float_store["path"], tmp_path / "f.h5", format="multifile_hdf5", overwrite=True
        )
    # suite2p: a 1-channel export over a 2-channel one removes the stale data_chan2.bin
    s2p = export_result(meta_store["path"], tmp_path / "s2p", format="suite2p")
    assert (s2p / "data_chan2.bin").exists()
    with pytest.raises(OutputExistsError):
        export_result(float_store["path"], tmp_path / "s2p", format="suite2p")
    export_result(float_store["path"], tmp_path / "s2p", format="suite2p", overwrite=True)
    assert listing(s2p) == ["data.bin", "ops.npy"]


# --------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------
def test_unknown_format_lists_formats(meta_store: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFormatError, match="'suite2p_tiff'") as info:
        export_result(meta_store["path"], tmp_path / "x.avi", format="avi")
    for name in export_formats():
        assert f"'{name}'" in str(info.value)
    with pytest.raises(UnsupportedFormatError):
        export_result(meta_store["path"], tmp_path / "x", format=None)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_incomplete_store_is_refused(tmp_path: Path) -> None:
    data = make_store(tmp_path / "inc.zarr", finalize=False, t=10)
    with pytest.raises(IncompleteStoreError):
        export_result(data["path"], tmp_path / "x.h5", format="hdf5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FlowRegWarning)
        ds = open_result(data["path"], allow_incomplete=True)
    with pytest.raises(IncompleteStoreError):
        export_result(ds, tmp_path / "x.h5", format="hdf5")
    assert not (tmp_path / "x.h5").exists()


def test_unwritable_destination_names_path(meta_store: dict[str, Any], tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    with pytest.raises(OSError, match="file") as info:
        export_result(meta_store["path"], blocker / "sub" / "x.h5", format="hdf5")
    assert str(blocker) in str(info.value)


def test_invalid_options(meta_store: dict[str, Any], tmp_path: Path) -> None:
    path = meta_store["path"]
    with pytest.raises(InvalidOptionError, match="compression"):
        export_result(path, tmp_path / "x.tif", format="tiff", compression="gzip")
    with pytest.raises(InvalidOptionError, match="compression"):
        export_result(path, tmp_path / "x.mat", format="mat", compression="lzf")
    for bad in (0, -2, 1.5, True):
        with pytest.raises(InvalidOptionError, match="chunk_frames"):
            export_result(path, tmp_path / "x.h5", format="hdf5", chunk_frames=bad)
    with pytest.raises(InvalidOptionError, match="inside the store"):
        export_result(path, path / "x.h5", format="hdf5")
    with pytest.raises(InvalidInputError):
        export_result(np.zeros((2, 3, 4)), tmp_path / "x.h5", format="hdf5")
    assert list(tmp_path.iterdir()) == []
