"""Nothing silently lost: readers read every frame of a file or refuse it with a clear error.

Each test writes its input with tifffile / h5py / scipy / zarr, checks the error class and what
the message names (file, frames, candidates, the fix), that the input file is unchanged, and
for the files that are read, that every frame equals what was written.
"""

from __future__ import annotations

import hashlib
import os
import struct

import h5py
import numpy as np
import pytest
import scipy.io
import tifffile
import zarr

from flowreg_dask.errors import InvalidInputError
from flowreg_dask.io import clear_handle_cache, describe, info, open_recording
from flowreg_dask.io.hdf5 import unwritten_frames
from flowreg_dask.io.tiff_ import TiffFrames

H, W = 16, 20


@pytest.fixture(autouse=True)
def _close_handles():
    yield
    clear_handle_cache()


def frames(t, *, h=H, w=W, c=None, dtype=np.uint16, seed=0):
    """Random frames, every pixel different (a frame read twice or in the wrong place shows)."""
    rng = np.random.default_rng(seed)
    shape = (t, h, w) if c is None else (t, h, w, c)
    if np.dtype(dtype).kind == "f":
        return rng.random(shape).astype(dtype)
    return rng.integers(1, 60000, shape).astype(dtype)


def sha(path) -> str:
    digest = hashlib.sha256()
    if os.path.isdir(path):
        for root, _, files in sorted(os.walk(path)):
            for name in sorted(files):
                with open(os.path.join(root, name), "rb") as fh:
                    digest.update(name.encode() + fh.read())
        return digest.hexdigest()
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def read_all(path, **kwargs) -> np.ndarray:
    rec = open_recording(path, buffer_size=4, **kwargs)
    return rec.values


# ------------------------------------------------------------------------------------------
# TIFF: several series
# ------------------------------------------------------------------------------------------


def test_tiff_appended_batches_read_in_full(tmp_path, monkeypatch):
    path = tmp_path / "batches.tif"
    batches = [frames(n, seed=i) for i, n in enumerate((10, 8, 5))]
    for batch in batches:  # one series per write call, as acquisition software writes
        tifffile.imwrite(path, batch, append=True)
    with tifffile.TiffFile(path) as tif:
        assert [len(s) for s in tif.series] == [10, 8, 5]  # the layout the bug came from
    digest = sha(path)
    expected = np.concatenate(batches)

    page_reads = []
    original = TiffFrames._read_pages

    def spy(self, tif, pages):
        page_reads.append(pages.tolist())
        return original(self, tif, pages)

    monkeypatch.setattr(TiffFrames, "_read_pages", spy)
    rec = open_recording(path, buffer_size=4)
    assert page_reads == []  # opening reads no pixels
    assert rec.shape == (23, H, W, 1)
    assert rec.attrs["dataset"] == "series 0-2 of 3, joined in time"
    # a chunk across the border of two batches reads only its own pages
    np.testing.assert_array_equal(
        rec[9:11].compute(scheduler="sync").values[..., 0], expected[9:11]
    )
    assert page_reads and all(set(p) <= set(range(8, 12)) for p in page_reads)
    np.testing.assert_array_equal(rec.values[..., 0], expected)
    assert "series 0-2 of 3" in describe(rec)
    assert sha(path) == digest


def test_tiff_one_page_per_write_call(tmp_path):
    path = tmp_path / "pages.tif"
    pages = frames(8, seed=3)
    for page in pages:  # 8 calls, one 2-D page each: 8 series of one page
        tifffile.imwrite(path, page, append=True)
    digest = sha(path)
    rec = open_recording(path, buffer_size=3)
    assert rec.shape == (8, H, W, 1)
    np.testing.assert_array_equal(rec.values[..., 0], pages)
    np.testing.assert_array_equal(open_recording(path, frames=[6, 1]).values[..., 0], pages[[6, 1]])
    assert info(path)["dataset"] == "series 0-7 of 8, joined in time"
    assert sha(path) == digest


def test_tiff_appended_multichannel_batches(tmp_path):
    # (T, H, W, C) batches: tifffile stores them as pages of (W, C), so each frame spans several
    # pages; the series are joined one after the other
    path = tmp_path / "mc.tif"
    batches = [frames(n, c=2, seed=i) for i, n in enumerate((5, 3))]
    for batch in batches:
        tifffile.imwrite(path, batch, append=True)
    digest = sha(path)
    np.testing.assert_array_equal(read_all(path), np.concatenate(batches))
    assert sha(path) == digest


def test_tiff_incompatible_series_refused_and_series_picks_one(tmp_path):
    path = tmp_path / "mixed.tif"
    movie, other = frames(5, seed=1), frames(6, h=8, w=10, seed=2)
    tifffile.imwrite(path, movie, append=True)
    tifffile.imwrite(path, other, append=True)
    digest = sha(path)
    with pytest.raises(InvalidInputError) as err:
        open_recording(path)
    msg = str(err.value)
    assert "mixed.tif" in msg
    assert (
        "series 0: shape (5, 16, 20) uint16" in msg and "series 1: shape (6, 8, 10) uint16" in msg
    )
    assert "series=N" in msg and "--series N" in msg
    np.testing.assert_array_equal(read_all(path, series=1)[..., 0], other)
    np.testing.assert_array_equal(read_all(path, series=0)[..., 0], movie)
    assert info(path, series=1)["dataset"] == "series 1 of 2"
    with pytest.raises(InvalidInputError, match="series=2 does not exist"):
        open_recording(path, series=2)
    assert sha(path) == digest


def test_tiff_reduced_resolution_thumbnail_is_not_a_frame(tmp_path):
    path = tmp_path / "thumb.tif"
    movie = frames(6, seed=4)
    with tifffile.TiffWriter(path) as tw:
        tw.write(movie)
        tw.write(movie[0, ::4, ::4], subfiletype=1)  # NewSubfileType: reduced resolution
    digest = sha(path)
    rec = open_recording(path)
    np.testing.assert_array_equal(rec.values[..., 0], movie)
    assert "reduced-resolution" in rec.attrs["dataset_reason"]
    assert sha(path) == digest


def test_tiff_pages_appended_without_metadata_are_read(tmp_path):
    # tifffile metadata on the first batch, then pages from a writer without it: tifffile
    # logs "invalid shaped series metadata or corrupted file" and groups all pages; they are
    # all read, not refused as corrupted
    path = tmp_path / "mixed_writers.tif"
    first, rest = frames(10, seed=5), frames(13, seed=6)
    tifffile.imwrite(path, first, append=True)
    for page in rest:
        tifffile.imwrite(path, page, append=True, metadata=None)
    digest = sha(path)
    np.testing.assert_array_equal(read_all(path)[..., 0], np.concatenate([first, rest]))
    assert sha(path) == digest


def test_tiff_pages_outside_every_series_refused_and_plain_reads_them(tmp_path):
    # OME metadata describing 10 planes of a file with 23 pages: tifffile's series holds 10
    movie = frames(23, seed=7)
    full = tmp_path / "full.ome.tif"
    tifffile.imwrite(full, movie, ome=True, metadata={"axes": "TYX"})
    raw = full.read_bytes()
    raw = raw.replace(b'SizeT="23"', b'SizeT="10"').replace(b'PlaneCount="23"', b'PlaneCount="10"')
    path = tmp_path / "short_meta.ome.tif"
    path.write_bytes(raw)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == 23 and len(tif.series[0]) == 10
    digest = sha(path)
    with pytest.raises(InvalidInputError) as err:
        open_recording(path)
    msg = str(err.value)
    assert "short_meta.ome.tif" in msg and "23 pages" in msg and "pages 10-22" in msg
    assert "plain=True" in msg
    np.testing.assert_array_equal(read_all(path, plain=True)[..., 0], movie)
    assert sha(path) == digest


# ------------------------------------------------------------------------------------------
# HDF5: frames never written
# ------------------------------------------------------------------------------------------


def _no_pixel_reads(monkeypatch):
    def refuse(self, *args, **kwargs):
        raise AssertionError("pixel data read while opening")

    monkeypatch.setattr(h5py.Dataset, "__getitem__", refuse)


def test_hdf5_partially_written_chunked_refused(tmp_path, monkeypatch):
    path = tmp_path / "interrupted.h5"
    data = frames(12, seed=8)
    with h5py.File(path, "w") as f:  # created with its final length, acquisition stopped
        ds = f.create_dataset("mov", shape=(24, H, W), chunks=(4, H, W), dtype="uint16")
        ds[:12] = data
    digest = sha(path)
    with monkeypatch.context() as m:
        _no_pixel_reads(m)  # the check uses metadata only
        with pytest.raises(InvalidInputError) as err:
            open_recording(path)
    msg = str(err.value)
    assert "interrupted.h5" in msg and "'mov'" in msg
    assert "frames 12-23 of 24 were never written" in msg
    assert "frames=slice(0, 12)" in msg and "--frames 0:12" in msg
    np.testing.assert_array_equal(read_all(path, frames=slice(0, 12))[..., 0], data)
    with pytest.raises(InvalidInputError, match=r"frames= selects 4 of them \(12-15\)"):
        open_recording(path, frames=slice(8, 16))
    with pytest.raises(InvalidInputError, match="frames 12-23 of 24"):
        open_recording(path, frames=slice(0, 24, 2), bin_size=2)
    assert sha(path) == digest


def test_hdf5_never_written_contiguous_dataset_refused(tmp_path):
    path = tmp_path / "empty.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", shape=(20, H, W), dtype="uint16")  # contiguous, no storage
    digest = sha(path)
    with pytest.raises(InvalidInputError) as err:
        open_recording(path)
    msg = str(err.value)
    assert "empty.h5" in msg and "'data'" in msg and "frames 0-19 of 20 were never written" in msg
    assert "nothing to read" in msg
    assert sha(path) == digest


def test_hdf5_partly_allocated_frames_and_channels(tmp_path):
    # chunks split the frames too: a frame counts as written only if all its chunks exist; of
    # two channel datasets, frames unwritten in either are refused
    path = tmp_path / "tiles.h5"
    ch1, ch2 = frames(12, seed=9), frames(12, seed=10)
    with h5py.File(path, "w") as f:
        a = f.create_dataset("ch1", shape=(12, H, W), chunks=(2, 8, 10), dtype="uint16")
        b = f.create_dataset("ch2", shape=(12, H, W), chunks=(2, 8, 10), dtype="uint16")
        a[:8] = ch1[:8]
        a[8:10, :8, :10] = ch1[8:10, :8, :10]  # one tile of frames 8-9
        b[:] = ch2
        assert unwritten_frames(a, "tyx") == ((8, 12),)
        assert unwritten_frames(b, "tyx") == ()
    digest = sha(path)
    with pytest.raises(InvalidInputError, match="'ch1'.*frames 8-11 of 12"):
        open_recording(path)
    got = read_all(path, frames=slice(0, 8))
    np.testing.assert_array_equal(got, np.stack([ch1[:8], ch2[:8]], axis=-1))
    assert sha(path) == digest


def test_mat_v73_partially_written_variable_refused(tmp_path):
    path = tmp_path / "interrupted.mat"
    data = frames(6, h=9, w=14, seed=11)
    with h5py.File(path, "w", userblock_size=512) as f:  # MATLAB (H, W, T) = h5py (T, W, H)
        ds = f.create_dataset("mov", shape=(12, 14, 9), chunks=(2, 14, 9), dtype="uint16")
        ds[:6] = data.transpose(0, 2, 1)
        ds.attrs["MATLAB_class"] = np.bytes_("uint16")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 "
    header = header.ljust(116, b" ") + b"\x00" * 8 + struct.pack("<H", 0x0200) + b"IM"
    with open(path, "r+b") as fh:
        fh.write(header)
    digest = sha(path)
    with pytest.raises(InvalidInputError, match="interrupted.mat.*variable 'mov'.*frames 6-11"):
        open_recording(path)
    np.testing.assert_array_equal(read_all(path, frames=slice(0, 6))[..., 0], data)
    assert sha(path) == digest


# ------------------------------------------------------------------------------------------
# which dataset is the movie
# ------------------------------------------------------------------------------------------


def test_hdf5_two_candidates_refused_dataset_chooses(tmp_path):
    path = tmp_path / "session.h5"
    raw, dff = frames(10, seed=12), frames(10, dtype=np.float32, seed=13)
    with h5py.File(path, "w") as f:
        f["imaging/raw"] = raw
        f["imaging/dff"] = dff
        f["imaging/timestamps"] = np.arange(10) / 30.0
    digest = sha(path)
    with pytest.raises(InvalidInputError) as err:
        open_recording(path)
    msg = str(err.value)
    assert "session.h5" in msg
    assert "'imaging/dff' (10, 16, 20) float32" in msg
    assert "'imaging/raw' (10, 16, 20) uint16" in msg
    assert "timestamps" not in msg  # 1-D: never a candidate
    assert "dataset='imaging/dff'" in msg and "--dataset imaging/dff" in msg
    rec = open_recording(path, dataset="imaging/raw", buffer_size=4)
    np.testing.assert_array_equal(rec.values[..., 0], raw)
    assert rec.dtype == np.uint16
    d = info(rec)
    assert d["dataset"] == "imaging/raw" and d["dataset_reason"] == "given with dataset="
    assert "dataset:      'imaging/raw'  (given with dataset=)" in describe(rec)
    assert sha(path) == digest


def test_hdf5_unambiguous_choices(tmp_path):
    movie = frames(10, seed=14)
    # one movie-shaped dataset among metadata arrays and an export's flow/reference arrays
    path = tmp_path / "one.h5"
    with h5py.File(path, "w") as f:
        f["mov"] = movie
        f["u"] = np.zeros((10, H, W), np.float32)
        f["valid"] = np.zeros((10, H, W), np.uint8)
        f["reference"] = np.zeros((H, W, 1), np.float32)
        f["mean_image"] = movie.mean(axis=0)
    rec = open_recording(path)
    np.testing.assert_array_equal(rec.values[..., 0], movie)
    assert rec.attrs["dataset"] == "mov"
    assert rec.attrs["dataset_reason"] == "the only movie-shaped dataset"
    # the file lists its movie datasets: they win over other candidates
    path = tmp_path / "declared.h5"
    with h5py.File(path, "w") as f:
        f["green"], f["dff"] = movie, movie.astype(np.float32)
        f.attrs["dataset_names"] = np.array(["green"], dtype=h5py.string_dtype())
    rec = open_recording(path)
    np.testing.assert_array_equal(rec.values[..., 0], movie)
    assert "dataset_names" in rec.attrs["dataset_reason"]


def test_mat_two_variables_refused_dataset_chooses(tmp_path):
    path = tmp_path / "vars.mat"
    raw, dff = frames(6, seed=15), frames(6, dtype=np.float32, seed=16)
    scipy.io.savemat(path, {"raw": raw.transpose(1, 2, 0), "dff": dff.transpose(1, 2, 0)})
    digest = sha(path)
    with pytest.raises(InvalidInputError) as err:
        open_recording(path)
    msg = str(err.value)
    assert "vars.mat" in msg and "variables" in msg and "'dff'" in msg and "'raw'" in msg
    np.testing.assert_array_equal(read_all(path, dataset="raw")[..., 0], raw)
    assert sha(path) == digest


def test_zarr_group_two_arrays_refused_dataset_chooses(tmp_path):
    path = tmp_path / "group.zarr"
    raw, dff = frames(6, seed=17), frames(6, dtype=np.float32, seed=18)
    group = zarr.open_group(path, mode="w")
    group.create_array("raw", data=raw, chunks=(2, H, W))
    group.create_array("dff", data=dff, chunks=(2, H, W))
    digest = sha(path)
    with pytest.raises(InvalidInputError) as err:
        open_recording(path)
    msg = str(err.value)
    assert "group.zarr" in msg and "arrays" in msg and "'dff'" in msg and "'raw'" in msg
    np.testing.assert_array_equal(read_all(path, dataset="dff")[..., 0], dff)
    assert sha(path) == digest


def test_tiff_contiguous_planes_read_in_any_order_and_short_file_refused(tmp_path):
    """Contiguous uncompressed data is read with ``readinto`` per run of consecutive planes: any
    order and repeats give exactly those planes; a file shorter than its pages say is an error,
    never zeros."""
    from flowreg_dask.io.tiff_ import _read_contiguous

    data = frames(9, dtype=np.dtype(">u2"))
    raw = tmp_path / "planes.raw"
    offset = 7
    raw.write_bytes(b"x" * offset + data.tobytes())
    planes = np.array([3, 4, 5, 0, 8, 8, 1])
    got = _read_contiguous(str(raw), offset, data.dtype, H * W, planes)
    assert got.dtype == data.dtype
    np.testing.assert_array_equal(got, data.reshape(9, -1)[planes])
    np.testing.assert_array_equal(
        _read_contiguous(str(raw), offset, data.dtype, H * W, np.array([], np.int64)),
        np.empty((0, H * W), data.dtype),
    )
    raw.write_bytes(b"x" * offset + data.tobytes()[: -H * W])  # the last plane cut in half
    with pytest.raises(InvalidInputError, match="truncated") as err:
        _read_contiguous(str(raw), offset, data.dtype, H * W, np.array([7, 8]))
    assert "planes.raw" in str(err.value) and "before plane 8" in str(err.value)


def test_tiff_contiguous_recording_reads_every_frame(tmp_path):
    path = tmp_path / "rec.tif"
    data = frames(12)
    tifffile.imwrite(path, data, contiguous=True)
    rec = open_recording(path, buffer_size=5)
    lazy = rec.encoding["frames"]
    assert isinstance(lazy, TiffFrames) and lazy.contiguous is not None
    np.testing.assert_array_equal(rec.data.compute()[..., 0], data)
    np.testing.assert_array_equal(np.asarray(lazy[[9, 2, 3]])[..., 0], data[[9, 2, 3]])
