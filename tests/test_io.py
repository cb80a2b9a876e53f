"""Tests of the lazy reader layer (flowreg_dask.io).

Every file is written by the test itself into ``tmp_path`` and every read is compared with the
array that was written.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import struct
import warnings

import dask
import dask.array as da
import h5py
import numpy as np
import pytest
import scipy.io
import tifffile
import xarray as xr
import zarr

from flowreg_dask.errors import (
    FlowRegWarning,
    InvalidInputError,
    InvalidOptionError,
    RecordingNotFoundError,
    UnsupportedFormatError,
)
from flowreg_dask.io import (
    LazyFrames,
    Reader,
    clear_handle_cache,
    describe,
    get_reader,
    guess_reader,
    info,
    list_readers,
    natural_sort_key,
    open_recording,
)
from flowreg_dask.io._lazy import bin_frames
from flowreg_dask.io.hdf5 import Hdf5Frames
from flowreg_dask.io.tiff_ import TiffFrames

T, H, W = 12, 16, 20


@pytest.fixture(autouse=True)
def _close_handles():
    yield
    clear_handle_cache()


def movie(t=T, h=H, w=W, c=None, dtype=np.uint16, seed=0):
    """Random movie whose every pixel differs (so swapped axes are always detected)."""
    rng = np.random.default_rng(seed)
    shape = (t, h, w) if c is None else (t, h, w, c)
    if np.dtype(dtype).kind == "f":
        return rng.random(shape).astype(dtype)
    hi = min(np.iinfo(dtype).max, 60000)
    return rng.integers(0, hi, shape).astype(dtype)


def assert_recording(rec, expected, dtype=None):
    """DataArray dims/chunks/values equal to an expected (T, H, W, C) array."""
    assert isinstance(rec, xr.DataArray)
    assert rec.dims == ("t", "y", "x", "c")
    assert isinstance(rec.data, da.Array)
    assert rec.shape == expected.shape
    assert rec.dtype == (expected.dtype if dtype is None else np.dtype(dtype))
    np.testing.assert_array_equal(rec.values, expected)


def sha(path):
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


# ------------------------------------------------------------------------------------------
# TIFF
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"bigtiff": True}, {"compression": "zlib"}],
    ids=["plain", "bigtiff", "zlib"],
)
def test_tiff_multipage_roundtrip(tmp_path, kwargs):
    data = movie()
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, data, **kwargs)
    rec = open_recording(path, buffer_size=5)
    assert_recording(rec, data[..., None])
    assert rec.chunks == ((5, 5, 2), (H,), (W,), (1,))
    assert rec.attrs["format"] == "tiff"
    assert rec.attrs["source"] == str(path)
    assert rec.attrs["dtype"] == "uint16"
    np.testing.assert_array_equal(rec.coords["t"].values, np.arange(T))
    np.testing.assert_array_equal(rec[5:7].values[..., 0], data[5:7])


def test_tiff_generic_thwc_array(tmp_path):
    # tifffile writes a (T, H, W, 2) array as pages of (W, 2) -> pyflowreg mis-shaped it
    data = movie(c=2)
    path = tmp_path / "thwc.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tifffile.imwrite(path, data)
    assert_recording(open_recording(path, buffer_size=4), data)


def test_tiff_rgb_samples(tmp_path):
    data = movie(c=3, dtype=np.uint8)
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, data, photometric="rgb")
    assert_recording(open_recording(path, buffer_size=4), data)


def test_imagej_tcyx_two_channels_not_mixed(tmp_path):
    data = movie(c=2)
    data[..., 1] += 1  # make sure channel 1 is never equal to channel 0
    path = tmp_path / "ij.tif"
    tifffile.imwrite(
        path,
        data.transpose(0, 3, 1, 2),  # T, C, Y, X
        imagej=True,
        metadata={"axes": "TCYX", "finterval": 0.05, "unit": "um"},
        resolution=(1 / 0.8, 1 / 0.8),
    )
    rec = open_recording(path, buffer_size=5)
    assert_recording(rec, data)
    assert rec.attrs["frame_rate"] == pytest.approx(20.0)
    assert rec.attrs["pixel_size"] == pytest.approx(0.8)


def test_imagej_tzcyx_flattened_t_major(tmp_path):
    t, z, c = 4, 3, 2
    data = movie(t=t * z, c=c).reshape(t, z, H, W, c)
    path = tmp_path / "tz.tif"
    tifffile.imwrite(path, data.transpose(0, 1, 4, 2, 3), imagej=True, metadata={"axes": "TZCYX"})
    rec = open_recording(path, buffer_size=5)
    assert_recording(rec, data.reshape(t * z, H, W, c))


def test_ome_tiff_metadata(tmp_path):
    data = movie(c=2)
    path = tmp_path / "m.ome.tif"
    tifffile.imwrite(
        path,
        data.transpose(0, 3, 1, 2),
        ome=True,
        metadata={
            "axes": "TCYX",
            "PhysicalSizeX": 0.5,
            "PhysicalSizeY": 0.5,
            "TimeIncrement": 0.1,
            "Channel": {"Name": ["green", "red"]},
        },
    )
    rec = open_recording(path, buffer_size=4)
    assert_recording(rec, data)
    assert rec.attrs["channel_names"] == ["green", "red"]
    assert list(rec.coords["c"].values) == ["green", "red"]
    assert rec.attrs["frame_rate"] == pytest.approx(10.0)
    assert rec.attrs["pixel_size"] == pytest.approx(0.5)


def test_tiff_axes_override(tmp_path):
    data = movie(c=2)
    path = tmp_path / "cyx.tif"
    tifffile.imwrite(path, data.transpose(3, 0, 1, 2), metadata={"axes": "CTYX"})
    assert_recording(open_recording(path), data)
    # relabel the file's dims explicitly: read channel axis as frames of 2 * T
    rec = open_recording(path, axes="ztyx")
    assert_recording(rec, data.transpose(3, 0, 1, 2).reshape(2 * T, H, W, 1))


def test_tiff_deinterleave(tmp_path):
    data = movie(c=2)
    pages = data.transpose(0, 3, 1, 2).reshape(2 * T, H, W)  # f0c0, f0c1, f1c0, ...
    path = tmp_path / "inter.tif"
    tifffile.imwrite(path, pages)
    assert_recording(open_recording(path, deinterleave=2, buffer_size=5), data)
    # a page count that is not a multiple: the incomplete frame is dropped with a warning
    path2 = tmp_path / "odd.tif"
    tifffile.imwrite(path2, pages[:-1])
    with pytest.warns(FlowRegWarning, match="not a multiple"):
        rec = open_recording(path2, deinterleave=2)
    assert_recording(rec, data[:-1])


def test_warnings_point_at_the_callers_line(tmp_path):
    path = tmp_path / "odd.tif"
    tifffile.imwrite(path, movie(t=5))
    with pytest.warns(FlowRegWarning) as record:
        open_recording(path, deinterleave=2)
    assert record[0].filename == __file__


def test_scanimage_software_tag_autodeinterleave(tmp_path):
    data = movie(t=6, c=2)
    pages = data.transpose(0, 3, 1, 2).reshape(12, H, W)
    path = tmp_path / "si.tif"
    software = (
        "SI.LINE_FORMAT_VERSION = 1\nSI.hChannels.channelSave = [1;2]\n"
        "SI.hChannels.channelName = {'Green' 'Red' 'Ch3' 'Ch4'}\n"
        "SI.hRoiManager.scanFrameRate = 30\n"
    )
    tifffile.imwrite(path, pages, software=software, description="frameNumbers = 1\n")
    rec = open_recording(path, buffer_size=4)
    assert_recording(rec, data)
    assert rec.attrs["channel_names"] == ["Green", "Red"]
    assert rec.attrs["frame_rate"] == pytest.approx(30.0)
    assert rec.attrs["deinterleave"] == 2
    # scanimage=False reads the raw pages
    assert open_recording(path, scanimage=False).shape == (12, H, W, 1)


def _write_scanimage_bigtiff(path, pages, framedata):
    """Minimal ScanImage-style BigTIFF: static metadata block at byte 16, then pages."""
    n, h, w = pages.shape
    fd = framedata.encode() + b"\x00"
    out = bytearray(b"II" + struct.pack("<HHHQ", 43, 8, 0, 0))
    out += struct.pack("<IIII", 0x07030301, 3, len(fd), 0) + fd
    prev_next = 8  # where the offset of the next IFD is stored
    for i in range(n):
        data_off = len(out)
        out += pages[i].astype("<u2").tobytes()
        desc = f"frameNumbers = {i + 1}\n".encode() + b"\x00"
        soft = fd
        desc_off = len(out)
        out += desc
        soft_off = len(out)
        out += soft
        if len(out) % 2:
            out += b"\x00"
        tags = [
            (256, 4, 1, struct.pack("<I", w)),
            (257, 4, 1, struct.pack("<I", h)),
            (258, 3, 1, struct.pack("<H", 16)),
            (259, 3, 1, struct.pack("<H", 1)),
            (262, 3, 1, struct.pack("<H", 1)),
            (270, 2, len(desc), struct.pack("<Q", desc_off)),
            (273, 16, 1, struct.pack("<Q", data_off)),
            (277, 3, 1, struct.pack("<H", 1)),
            (278, 4, 1, struct.pack("<I", h)),
            (279, 16, 1, struct.pack("<Q", h * w * 2)),
            (305, 2, len(soft), struct.pack("<Q", soft_off)),
            (339, 3, 1, struct.pack("<H", 1)),
        ]
        ifd_off = len(out)
        struct.pack_into("<Q", out, prev_next, ifd_off)
        out += struct.pack("<Q", len(tags))
        for tag, typ, count, value in tags:
            out += struct.pack("<HHQ", tag, typ, count) + value.ljust(8, b"\x00")
        prev_next = len(out)
        out += struct.pack("<Q", 0)
    with open(path, "wb") as fh:
        fh.write(bytes(out))


def test_scanimage_bigtiff_header_channels(tmp_path):
    data = movie(t=5, c=2)
    pages = data.transpose(0, 3, 1, 2).reshape(10, H, W)
    framedata = (
        "SI.LINE_FORMAT_VERSION = 1\nSI.hChannels.channelSave = [1;2]\n"
        "SI.hStackManager.framesPerSlice = 5\nSI.hStackManager.numSlices = 1\n"
        "SI.hRoiManager.scanFrameRate = 15.5\n"
        "SI.hRoiManager.imagingFovUm = [-100 -100;100 -100;100 100;-100 100]"
    )
    path = tmp_path / "si_big.tif"
    _write_scanimage_bigtiff(path, pages, framedata)
    with tifffile.TiffFile(path) as tif:  # the test file is what tifffile calls ScanImage
        assert tif.is_scanimage and tif.scanimage_metadata["FrameData"]
    rec = open_recording(path, buffer_size=2)
    assert_recording(rec, data)
    assert rec.attrs["frame_rate"] == pytest.approx(15.5)
    assert rec.attrs["pixel_size"] == pytest.approx(200 / W)


def test_tiff_folder_natural_order(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    parts = [np.full((2, H, W), i, dtype=np.uint16) for i in range(12)]
    for i, part in enumerate(parts):
        tifffile.imwrite(folder / f"file{i + 1}.tif", part)
    (folder / "notes.txt").write_text("not an image")
    rec = open_recording(folder, buffer_size=5)
    assert_recording(rec, np.concatenate(parts)[..., None])
    assert rec.attrs["source"] == str(folder)
    assert [os.path.basename(f) for f in rec.attrs["files"]][:3] == [
        "file1.tif",
        "file2.tif",
        "file3.tif",
    ]
    # the same via a glob pattern
    rec2 = open_recording(str(folder / "file*.tif"), buffer_size=5)
    np.testing.assert_array_equal(rec2.values, rec.values)
    assert sorted(["f10", "f2", "f1"], key=natural_sort_key) == ["f1", "f2", "f10"]


def test_tiff_folder_frame_size_mismatch(tmp_path):
    tifffile.imwrite(tmp_path / "a1.tif", movie(t=2))
    tifffile.imwrite(tmp_path / "a2.tif", movie(t=2, w=W + 1))
    with pytest.raises(InvalidInputError, match="a2.tif"):
        open_recording(tmp_path)


def test_channel_file_list(tmp_path):
    green = movie(dtype=np.uint8, seed=1)
    red = movie(dtype=np.uint16, seed=2)
    tifffile.imwrite(tmp_path / "green.tif", green)
    tifffile.imwrite(tmp_path / "red.tif", red)
    with pytest.warns(FlowRegWarning, match="uint16"):
        rec = open_recording([tmp_path / "green.tif", tmp_path / "red.tif"], buffer_size=5)
    assert_recording(rec, np.stack([green.astype(np.uint16), red], axis=-1))
    assert rec.attrs["channel_names"] == ["green", "red"]


@pytest.mark.parametrize(
    ("other", "word"),
    [(movie(t=T - 1), "frame count"), (movie(h=H + 2), "height"), (movie(w=W - 2), "width")],
)
def test_channel_file_list_mismatch(tmp_path, other, word):
    tifffile.imwrite(tmp_path / "ch1.tif", movie())
    tifffile.imwrite(tmp_path / "ch2.tif", other)
    with pytest.raises(InvalidInputError, match=word) as err:
        open_recording([tmp_path / "ch1.tif", tmp_path / "ch2.tif"])
    assert "ch1.tif" in str(err.value) and "ch2.tif" in str(err.value)


# ------------------------------------------------------------------------------------------
# HDF5
# ------------------------------------------------------------------------------------------


def test_hdf5_channel_discovery(tmp_path):
    chans = [movie(seed=i) for i in range(3)]
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        # written out of order, plus arrays that are not movies
        f["ch2"] = chans[1]
        f["ch1"] = chans[0]
        f["ch3"] = chans[2]
        f["meta/scale"] = np.arange(3.0)
        f["mean_image"] = chans[0].mean(axis=0)
        f["reference"] = movie(t=H, h=W, w=3)  # (H, W, C): an export's reference image
    rec = open_recording(path, buffer_size=5)
    assert_recording(rec, np.stack(chans, axis=-1))
    assert rec.attrs["channel_names"] == ["ch1", "ch2", "ch3"]
    # another movie-shaped dataset makes the choice ambiguous: refused, not guessed
    clear_handle_cache()
    with h5py.File(path, "a") as f:
        f["ch10"] = movie(t=2, seed=9)
        f["mov"] = movie(seed=7)
    with pytest.raises(InvalidInputError) as err:
        open_recording(path)
    assert all(f"'{n}'" in str(err.value) for n in ("ch1", "ch3", "ch10", "mov"))


def test_hdf5_channel_numbers_sorted_numerically(tmp_path):
    chans = [movie(seed=i) for i in range(11)]
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        for i, ch in enumerate(chans):
            f[f"channel_{i + 1}"] = ch
    rec = open_recording(path, buffer_size=6)
    assert_recording(rec, np.stack(chans, axis=-1))


def test_hdf5_mov_4d_and_attrs(tmp_path):
    data = movie(c=2, dtype=np.float32)
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("mov", data=data, chunks=(1, H, W, 2))
        ds.attrs["frame_rate"] = 7.5
        f["timestamps"] = np.arange(T) / 7.5
        f["mean_image"] = data.mean(axis=(0, 3))
    rec = open_recording(path, buffer_size=4)
    assert_recording(rec, data)
    assert rec.attrs["frame_rate"] == pytest.approx(7.5)


def test_hdf5_two_candidates_refused_then_dataset_and_axes(tmp_path):
    # formerly the largest dataset was read silently; now the choice is the user's
    data = movie()
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f["small"] = movie(t=3)
        f["group/big"] = data.transpose(1, 2, 0)  # stored (H, W, T)
    with pytest.raises(InvalidInputError, match="'group/big'.*'small'"):
        open_recording(path)
    assert open_recording(path, dataset="group/big").shape == (H, W, T, 1)  # (T, H, W) default
    rec = open_recording(path, dataset="group/big", axes="yxt", buffer_size=5)
    assert_recording(rec, data[..., None])
    assert rec.attrs["dataset"] == "group/big"


def test_hdf5_explicit_datasets(tmp_path):
    a, b = movie(seed=1), movie(seed=2)
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f["green"], f["red"] = a, b
    rec = open_recording(path, dataset=["red", "green"])
    assert_recording(rec, np.stack([b, a], axis=-1))
    assert_recording(open_recording(path, dataset="/green"), a[..., None])


def test_hdf5_missing_dataset_lists_existing(tmp_path):
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f["mov"] = movie()
        f["other"] = movie(t=2)
    with pytest.raises(RecordingNotFoundError) as err:
        open_recording(path, dataset="data")
    msg = str(err.value)
    assert "'data'" in msg and "'mov'" in msg and "'other'" in msg and "x.h5" in msg


def test_hdf5_no_movie_dataset(tmp_path):
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f["vector"] = np.arange(10)
    with pytest.raises(InvalidInputError, match="vector"):
        open_recording(path)


# ------------------------------------------------------------------------------------------
# MAT
# ------------------------------------------------------------------------------------------


def test_mat_v5_channels(tmp_path):
    a, b = movie(seed=1), movie(seed=2)
    path = tmp_path / "v5.mat"
    # MATLAB layout: height x width x time
    scipy.io.savemat(path, {"ch1": a.transpose(1, 2, 0), "ch2": b.transpose(1, 2, 0)})
    rec = open_recording(path, buffer_size=5)
    assert_recording(rec, np.stack([a, b], axis=-1))
    assert rec.attrs["format"] == "mat"


def _write_mat73(path, variables):
    """A MAT v7.3 file as MATLAB writes it: HDF5 with a 512-byte header block and every
    array stored column-major, i.e. with its dimensions reversed for h5py."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, arr in variables.items():
            ds = f.create_dataset(name, data=np.asarray(arr).T)  # (H, W, T) -> h5py (T, W, H)
            ds.attrs["MATLAB_class"] = np.bytes_(arr.dtype.name)
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 "
    header += b"HDF5 schema 1.00 ."
    header = header.ljust(116, b" ") + b"\x00" * 8 + struct.pack("<H", 0x0200) + b"IM"
    with open(path, "r+b") as fh:
        fh.write(header)


def test_mat_v73_orientation(tmp_path):
    data = movie(h=9, w=14)  # non-square, non-symmetric frames
    path = tmp_path / "v73.mat"
    _write_mat73(path, {"mov": data.transpose(1, 2, 0)})  # MATLAB variable (H, W, T)
    assert guess_reader(path).name == "mat"
    rec = open_recording(path, buffer_size=5)
    assert rec.sizes == {"t": T, "y": 9, "x": 14, "c": 1}
    assert_recording(rec, data[..., None])


# ------------------------------------------------------------------------------------------
# zarr, npy, raw
# ------------------------------------------------------------------------------------------


def test_zarr_v3_array_dimension_names(tmp_path):
    data = movie()
    path = tmp_path / "a.zarr"
    arr = zarr.create_array(
        path, shape=(H, W, T), chunks=(H, W, 4), dtype="uint16", dimension_names=("y", "x", "t")
    )
    arr[:] = data.transpose(1, 2, 0)
    assert_recording(open_recording(path, buffer_size=5), data[..., None])


def test_zarr_v2_plain_array(tmp_path):
    data = movie(c=2)
    path = tmp_path / "v2.zarr"
    arr = zarr.create_array(
        path, shape=data.shape, chunks=(4, H, W, 2), dtype="uint16", zarr_format=2
    )
    arr[:] = data
    assert_recording(open_recording(path), data)


def test_ome_zarr_05_tcyx(tmp_path):
    data = movie(c=2)
    path = tmp_path / "out.ome.zarr"
    group = zarr.open_group(path, mode="w")
    group.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [
            {
                "axes": [
                    {"name": "t", "type": "time", "unit": "millisecond"},
                    {"name": "c", "type": "channel"},
                    {"name": "y", "type": "space", "unit": "micrometer"},
                    {"name": "x", "type": "space", "unit": "micrometer"},
                ],
                "datasets": [
                    {
                        "path": "0",
                        "coordinateTransformations": [
                            {"type": "scale", "scale": [50.0, 1.0, 0.7, 0.7]}
                        ],
                    }
                ],
            }
        ],
        "omero": {"channels": [{"label": "gcamp"}, {"label": "tdtomato"}]},
    }
    arr = group.create_array(
        "0",
        shape=(T, 2, H, W),
        chunks=(4, 2, H, W),
        dtype="uint16",
        dimension_names=("t", "c", "y", "x"),
    )
    arr[:] = data.transpose(0, 3, 1, 2)
    group.create_array("flow", shape=(T, H, W, 2), dtype="float32")  # another array: ignored
    rec = open_recording(path, buffer_size=5)
    assert_recording(rec, data)
    assert rec.attrs["frame_rate"] == pytest.approx(20.0)
    assert rec.attrs["pixel_size"] == pytest.approx(0.7)
    assert rec.attrs["channel_names"] == ["gcamp", "tdtomato"]


def test_ome_zarr_04_tczyx_z1(tmp_path):
    data = movie()
    path = tmp_path / "v04.zarr"
    group = zarr.open_group(path, mode="w", zarr_format=2)
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": n} for n in "tczyx"],
            "datasets": [{"path": "0"}, {"path": "1"}],
        }
    ]
    arr = group.create_array("0", shape=(T, 1, 1, H, W), dtype="uint16")
    arr[:] = data[:, None, None]
    group.create_array("1", shape=(T, 1, 1, H // 2, W // 2), dtype="uint16")
    assert_recording(open_recording(path), data[..., None])


def test_npy(tmp_path):
    data = movie(c=3, dtype=np.float32)
    np.save(tmp_path / "m.npy", data)
    assert_recording(open_recording(tmp_path / "m.npy", buffer_size=5), data)
    frame = movie(t=1)[0]
    np.save(tmp_path / "f.npy", frame)
    assert_recording(open_recording(tmp_path / "f.npy"), frame[None, ..., None])


def test_raw_binary(tmp_path):
    data = movie(dtype=np.int16)
    path = tmp_path / "data.bin"
    data.tofile(path)
    rec = open_recording(path, format="raw", shape=(T, H, W), dtype="int16", buffer_size=5)
    assert_recording(rec, data[..., None])
    rec = open_recording(path, shape=(-1, H, W), dtype=np.int16)  # .bin is guessed as raw
    assert rec.shape == (T, H, W, 1)
    with pytest.raises(InvalidInputError, match="shape="):
        open_recording(path, format="raw")
    with pytest.raises(InvalidInputError, match="truncated"):
        open_recording(path, format="raw", shape=(T + 1, H, W), dtype="int16")
    with pytest.raises(TypeError, match="'raw'.*'dataset'"):
        open_recording(path, format="raw", shape=(T, H, W), dtype="int16", dataset="x")
    with pytest.raises(TypeError, match="'raw'.*'bogus'"):
        open_recording(path, format="raw", shape=(T, H, W), dtype="int16", bogus=1)


def test_suite2p_binary_with_ops_needs_no_shape(tmp_path):
    data = movie(dtype=np.int16)
    folder = tmp_path / "suite2p" / "plane0"
    folder.mkdir(parents=True)
    data.tofile(folder / "data.bin")
    ops = {"Ly": H, "Lx": W, "nframes": T, "fs": 30.0, "nchannels": 1}
    np.save(folder / "ops.npy", np.array(ops, dtype=object), allow_pickle=True)
    rec = open_recording(folder / "data.bin", buffer_size=5)
    assert_recording(rec, data[..., None])
    assert rec.attrs["frame_rate"] == 30.0
    # an explicit layout still wins over the ops file
    rec = open_recording(folder / "data.bin", shape=(T, H, W), dtype="uint16")
    assert rec.dtype == np.uint16
    np.testing.assert_array_equal(rec.values[..., 0], data.view(np.uint16))
    (folder / "ops.npy").write_bytes(b"not a numpy file")
    with pytest.raises(InvalidInputError, match="ops.npy.*shape="):
        open_recording(folder / "data.bin")


# ------------------------------------------------------------------------------------------
# in-memory sources
# ------------------------------------------------------------------------------------------


def test_numpy_sources():
    data = movie(c=2)
    assert_recording(open_recording(data, buffer_size=5), data)
    assert_recording(open_recording(data[..., 0]), data[..., :1])
    assert_recording(open_recording(data[0, ..., 0]), data[:1, ..., :1])
    rec = open_recording(data, buffer_size=5)
    assert rec.attrs["source"] == "<array>"
    assert rec.chunks[0] == (5, 5, 2)


def test_dask_and_xarray_sources():
    data = movie(c=2)
    lazy = da.from_array(data, chunks=(3, H, W, 2))
    rec = open_recording(lazy, buffer_size=4)
    assert rec.chunks[0] == (4, 4, 4)
    assert_recording(rec, data)
    named = xr.DataArray(
        data.transpose(3, 0, 2, 1),
        dims=("channel", "time", "x", "y"),
        coords={"channel": ["g", "r"]},
        attrs={"frame_rate": 10.0},
    )
    rec = open_recording(named)
    assert_recording(rec, data)
    assert list(rec.coords["c"].values) == ["g", "r"]
    assert rec.attrs["frame_rate"] == 10.0
    assert_recording(open_recording(xr.DataArray(data[..., 0])), data[..., :1])


def test_z_axis_flattened_with_warning(tmp_path):
    data = movie(t=4 * 3).reshape(4, 3, H, W)
    with pytest.warns(FlowRegWarning, match="z axis of 3 planes"):
        rec = open_recording(xr.DataArray(data, dims=("t", "z", "y", "x")))
    assert_recording(rec, data.reshape(12, H, W, 1))
    path = tmp_path / "z.h5"
    with h5py.File(path, "w") as f:
        f["mov"] = data.transpose(1, 0, 2, 3)  # (z, t, y, x)
    with pytest.warns(FlowRegWarning, match="z axis"):
        rec = open_recording(path, axes="ztyx", buffer_size=5)
    assert_recording(rec, data.reshape(12, H, W, 1))


def test_single_frame_tiff_and_fancy_indexing(tmp_path):
    frame = movie(t=1)[0]
    tifffile.imwrite(tmp_path / "one.tif", frame)
    assert_recording(open_recording(tmp_path / "one.tif"), frame[None, ..., None])
    data = movie()
    tifffile.imwrite(tmp_path / "m.tif", data)
    rec = open_recording(tmp_path / "m.tif", buffer_size=5)
    np.testing.assert_array_equal(rec.isel(t=[9, 1, 6]).values[..., 0], data[[9, 1, 6]])
    np.testing.assert_array_equal(rec[::4, 2:5, -3:].values[..., 0], data[::4, 2:5, -3:])


# ------------------------------------------------------------------------------------------
# binning, frame subsets, deinterleave of arrays
# ------------------------------------------------------------------------------------------


def expected_bins(data, b):
    out = []
    for i in range(0, data.shape[0], b):
        mean = data[i : i + b].astype(np.float64).mean(axis=0)
        out.append(np.clip(np.rint(mean), 0, np.iinfo(data.dtype).max).astype(data.dtype))
    return np.stack(out)


def test_bin_frames_partial_last_bin_rounds():
    block = np.array([1, 2, 4, 5, 9], dtype=np.uint8).reshape(5, 1, 1, 1)
    np.testing.assert_array_equal(bin_frames(block, 2).ravel(), [2, 4, 9])  # 1.5->2, 4.5->4
    block = np.array([1.0, 2.0, 4.0], dtype=np.float32).reshape(3, 1, 1, 1)
    out = bin_frames(block, 2)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.ravel(), [1.5, 4.0])


def test_binning_and_frames_file_and_array(tmp_path):
    data = movie(t=20, c=2)
    path = tmp_path / "b.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("mov", data=data).attrs["frame_rate"] = 30.0
    for source in (path, data):
        rec = open_recording(source, bin_size=3, buffer_size=4)
        assert_recording(rec, expected_bins(data, 3))
        assert rec.chunks[0] == (4, 3)
        rec = open_recording(source, frames=slice(2, 17, 2), buffer_size=3)
        assert_recording(rec, data[2:17:2])
        rec = open_recording(source, frames=[5, 1, 1, -1], buffer_size=3)
        assert_recording(rec, data[[5, 1, 1, -1]])
        rec = open_recording(source, frames=slice(1, 19), bin_size=4, buffer_size=2)
        assert_recording(rec, expected_bins(data[1:19], 4))
    rec = open_recording(path, frames=slice(0, 20, 2), bin_size=5)
    assert rec.attrs["frame_rate"] == pytest.approx(3.0)


def test_deinterleave_generic_reader_and_array(tmp_path):
    data = movie(c=3)
    pages = data.transpose(0, 3, 1, 2).reshape(3 * T, H, W)
    np.save(tmp_path / "p.npy", pages)
    assert_recording(open_recording(tmp_path / "p.npy", deinterleave=3, buffer_size=5), data)
    assert_recording(open_recording(pages, deinterleave=3, buffer_size=5), data)


# ------------------------------------------------------------------------------------------
# laziness, chunking, pickling, schedulers
# ------------------------------------------------------------------------------------------


def _spy(monkeypatch, cls):
    calls = []
    original = cls._read

    def spy(self, start, stop):
        calls.append((start, stop))
        return original(self, start, stop)

    monkeypatch.setattr(cls, "_read", spy)
    return calls


def test_tiff_is_lazy(tmp_path, monkeypatch):
    data = movie(t=20)
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, data, compression="zlib")
    calls = _spy(monkeypatch, TiffFrames)
    page_reads = []
    original_asarray = tifffile.TiffFile.asarray

    def asarray_spy(self, *args, **kwargs):
        page_reads.append(kwargs.get("key"))
        return original_asarray(self, *args, **kwargs)

    monkeypatch.setattr(tifffile.TiffFile, "asarray", asarray_spy)
    rec = open_recording(path, buffer_size=4)
    assert calls == [] and page_reads == []
    assert rec.chunks[0] == (4,) * 5
    out = rec[5:7].compute(scheduler="sync")
    np.testing.assert_array_equal(out.values[..., 0], data[5:7])
    assert calls and all(4 <= a and b <= 8 for a, b in calls)
    assert all(set(k) <= {4, 5, 6, 7} for k in page_reads)


def test_hdf5_is_lazy_and_chunked(tmp_path, monkeypatch):
    data = movie(t=30)
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f["mov"] = data
    calls = _spy(monkeypatch, Hdf5Frames)
    rec = open_recording(path, buffer_size=7)
    assert calls == []
    assert rec.data.chunks == ((7, 7, 7, 7, 2), (H,), (W,), (1,))
    np.testing.assert_array_equal(rec[15:16].values[..., 0], data[15:16])
    assert calls and all(14 <= a and b <= 21 for a, b in calls)


def test_deterministic_dask_names(tmp_path):
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, movie())
    a = open_recording(path, buffer_size=5)
    b = open_recording(str(path), buffer_size=5)
    c = open_recording(path, buffer_size=6)
    d = open_recording(path, buffer_size=5, bin_size=2)
    assert a.data.name == b.data.name
    assert len({a.data.name, c.data.name, d.data.name}) == 3


def test_lazyframes_pickle_roundtrip(tmp_path):
    data = movie(c=2)
    tif_path = tmp_path / "ij.tif"
    tifffile.imwrite(tif_path, data.transpose(0, 3, 1, 2), imagej=True, metadata={"axes": "TCYX"})
    h5_path = tmp_path / "m.h5"
    with h5py.File(h5_path, "w") as f:
        f["mov"] = data
    for reader, path in (("tiff", tif_path), ("hdf5", h5_path)):
        frames = get_reader(reader).open(str(path))
        assert isinstance(frames, LazyFrames)
        frames.read(0, 2)  # opens and caches a handle in this thread
        clone = pickle.loads(pickle.dumps(frames))
        assert clone.shape == (T, H, W, 2) and clone.dtype == frames.dtype
        np.testing.assert_array_equal(clone.read(3, 8), data[3:8])
        np.testing.assert_array_equal(clone[[1, 9]], data[[1, 9]])


def test_processes_scheduler_tiff_and_hdf5(tmp_path):
    data = movie(c=2)
    tif_path = tmp_path / "m.tif"
    tifffile.imwrite(tif_path, data.transpose(0, 3, 1, 2), imagej=True, metadata={"axes": "TCYX"})
    h5_path = tmp_path / "m.h5"
    with h5py.File(h5_path, "w") as f:
        f["ch1"], f["ch2"] = data[..., 0], data[..., 1]
    recs = [open_recording(p, buffer_size=5).data for p in (tif_path, h5_path)]
    out_tif, out_h5 = dask.compute(*recs, scheduler="processes", num_workers=2)
    np.testing.assert_array_equal(out_tif, data)
    np.testing.assert_array_equal(out_h5, data)


def test_input_file_is_not_modified(tmp_path):
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, movie())
    before, mtime = sha(path), os.stat(path).st_mtime_ns
    open_recording(path, buffer_size=5).values  # noqa: B018
    assert sha(path) == before and os.stat(path).st_mtime_ns == mtime


def test_file_changed_after_open(tmp_path):
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f["mov"] = movie()
    rec = open_recording(path)
    with h5py.File(path, "w") as f:
        f["mov"] = movie(t=T + 5)
    with pytest.raises(InvalidInputError, match="changed"):
        rec.values  # noqa: B018


# ------------------------------------------------------------------------------------------
# registry, info
# ------------------------------------------------------------------------------------------


def test_registry(tmp_path):
    readers = list_readers()
    assert {"tiff", "hdf5", "mat", "zarr", "npy", "raw"} <= set(readers)
    for reader in readers.values():
        assert isinstance(reader, Reader) and reader.name and reader.description
    assert get_reader("tif") is readers["tiff"]
    assert get_reader("H5") is readers["hdf5"]
    with pytest.raises(UnsupportedFormatError, match="tiff"):
        get_reader("avi")
    # magic bytes win over the extension
    path = tmp_path / "actually_tiff.h5"
    tifffile.imwrite(path, movie(t=2))
    assert guess_reader(path).name == "tiff"
    assert readers["tiff"].guess_can_open(path)
    assert readers["hdf5"].guess_can_open(tmp_path / "missing.h5")  # by extension
    assert open_recording(path).shape == (2, H, W, 1)


def test_recognising_a_tiff_imports_no_other_reader(tmp_path):
    """Readers are imported in their order only until one recognises the file: opening a TIFF
    does not import h5py or scipy.io (their import is start-up time of every run)."""
    import subprocess
    import sys

    path = tmp_path / "a.tif"
    tifffile.imwrite(path, movie(t=2))
    code = (
        "import sys; import flowreg_dask.io as io; "
        f"rec = io.open_recording({str(path)!r}); "
        "print(io.guess_reader(" + repr(str(path)) + ").name, rec.shape[0], "
        "sorted(m for m in ('h5py', 'scipy.io') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["tiff", "2", "[]"]
    # listing still imports every reader; asking for one by name imports that one
    assert get_reader("mat").name == "mat" and "hdf5" in list_readers()


def test_reader_plugins_from_entry_points(tmp_path, monkeypatch):
    """Plugins come after the built-ins (which keep their names); a broken one is reported and
    skipped; a file no built-in recognises reaches a plugin by its extension."""
    from flowreg_dask.io import _registry

    class FooReader(Reader):
        name = "foo"
        description = "test format"
        extensions = (".foo",)

        def open(self, path, **kwargs):
            raise NotImplementedError

    class EP:
        def __init__(self, name, target):
            self.name, self.value, self._target = name, f"tests:{name}", target

        def load(self):
            if isinstance(self._target, Exception):
                raise self._target
            return self._target

    eps = [EP("foo", FooReader), EP("tiff", FooReader), EP("broken", ImportError("no module"))]
    monkeypatch.setattr(_registry, "entry_points", lambda group: eps)
    _registry._plugins.cache_clear()
    try:
        with pytest.warns(UserWarning, match="broken"):
            readers = list_readers()
        assert list(readers)[-1] == "foo" and isinstance(readers["tiff"], type(get_reader("tif")))
        assert not isinstance(readers["tiff"], FooReader)
        assert isinstance(get_reader("foo"), FooReader)
        path = tmp_path / "x.foo"
        path.write_bytes(b"not a known format")
        assert guess_reader(path).name == "foo"
    finally:
        _registry._plugins.cache_clear()


def test_info_and_describe(tmp_path):
    data = movie(c=2)
    path = tmp_path / "ij.tif"
    tifffile.imwrite(
        path,
        data.transpose(0, 3, 1, 2),
        imagej=True,
        metadata={"axes": "TCYX", "finterval": 0.1},
    )
    d = info(path, buffer_size=5)
    assert d["shape"] == (T, H, W, 2) and d["format"] == "tiff"
    assert d["chunk_frames"] == 5 and d["n_chunks"] == 3
    assert d["size_on_disk"] == os.path.getsize(path)
    assert d["frame_rate"] == pytest.approx(10.0)
    text = describe(open_recording(path, buffer_size=5))
    assert "tiff" in text and f"{T} frames" in text and "10 Hz" in text


# ------------------------------------------------------------------------------------------
# bad input: one clear error, naming the file
# ------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.tif"
    with pytest.raises(RecordingNotFoundError, match="nope.tif"):
        open_recording(path)
    with pytest.raises(FileNotFoundError):  # builtin base class
        open_recording(path)
    with pytest.raises(RecordingNotFoundError, match=r"\*.tif"):
        open_recording(str(tmp_path / "*.tif"))
    tifffile.imwrite(tmp_path / "ok.tif", movie())
    with pytest.raises(RecordingNotFoundError, match="nope.tif"):
        open_recording([tmp_path / "ok.tif", path])


def test_unsupported_extension(tmp_path):
    path = tmp_path / "movie.xyz"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(UnsupportedFormatError) as err:
        open_recording(path)
    msg = str(err.value)
    assert "movie.xyz" in msg and "tiff" in msg and ".tif" in msg and "hdf5" in msg
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(UnsupportedFormatError, match="empty"):
        open_recording(folder)


@pytest.mark.parametrize("kwargs", [{}, {"compression": "zlib"}, {"imagej": True}])
@pytest.mark.parametrize("fraction", [0.35, 0.7, 0.97])
def test_truncated_tiff(tmp_path, kwargs, fraction):
    src = tmp_path / "full.tif"
    tifffile.imwrite(src, movie(t=20), **kwargs)
    raw = src.read_bytes()
    path = tmp_path / "cut.tif"
    path.write_bytes(raw[: int(len(raw) * fraction)])
    with pytest.raises(InvalidInputError, match="truncated") as err:
        open_recording(path)
    assert "cut.tif" in str(err.value)


def test_corrupted_hdf5(tmp_path):
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"this is not an HDF5 file" * 20)
    with pytest.raises(InvalidInputError, match="garbage.h5"):
        open_recording(garbage)
    good = tmp_path / "good.h5"
    with h5py.File(good, "w") as f:
        f["mov"] = movie(t=40)
    cut = tmp_path / "cut.h5"
    cut.write_bytes(good.read_bytes()[:3000])
    with pytest.raises(InvalidInputError, match="cut.h5"):
        open_recording(cut)


def test_zero_frames(tmp_path):
    path = tmp_path / "empty.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("mov", shape=(0, H, W), dtype="uint16")
    with pytest.raises(InvalidInputError, match="zero frames") as err:
        open_recording(path)
    assert "empty.h5" in str(err.value)
    with pytest.raises(InvalidInputError, match="zero frames"):
        open_recording(np.zeros((0, H, W), np.uint16))
    np.save(tmp_path / "z.npy", np.zeros((0, H, W), np.uint8))
    with pytest.raises(InvalidInputError, match="z.npy"):
        open_recording(tmp_path / "z.npy")


@pytest.mark.parametrize("shape", [(5,), (2, 3, H, W, 2)])
def test_bad_array_dimensions(shape):
    with pytest.raises(InvalidInputError, match="dimension"):
        open_recording(np.zeros(shape, np.uint16))


def test_bad_options_and_sources(tmp_path):
    data = movie()
    with pytest.raises(InvalidInputError, match="empty list"):
        open_recording([])
    for bad in (0, -3, 2.5):
        with pytest.raises(InvalidOptionError, match="buffer_size"):
            open_recording(data, buffer_size=bad)
    with pytest.raises(InvalidOptionError, match="bin_size"):
        open_recording(data, bin_size=0)
    with pytest.raises(InvalidOptionError, match="out of range"):
        open_recording(data, frames=[0, T])
    with pytest.raises(InvalidOptionError, match="no frames"):
        open_recording(data, frames=slice(5, 5))
    with pytest.raises(InvalidInputError, match="dtype"):
        open_recording(np.array(["a", "b"] * 160).reshape(1, 16, 20))
    with pytest.raises(InvalidInputError, match="type int"):
        open_recording(42)
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, data)
    with pytest.raises(TypeError, match="'tiff'.*'dataset'"):
        open_recording(path, dataset="mov")
    with pytest.raises(UnsupportedFormatError, match="Unknown format"):
        open_recording(path, format="avi")


def test_bigtiff_beyond_4gb_read_lazily(tmp_path):
    """A BigTIFF whose frames lie past the 4 GiB offset limit of classic TIFF (a sparse file, so
    the test uses little disk): only the frames asked for are read, with the right values."""
    import tifffile

    path = tmp_path / "big.tif"
    t, h, w = 2200, 1024, 1024  # 2200 * 2 MiB = 4.3 GiB of pixel data
    mm = tifffile.memmap(path, shape=(t, h, w), dtype=np.uint16, bigtiff=True)
    for k in (0, 1, t - 2, t - 1):
        mm[k] = (np.arange(h * w, dtype=np.uint32).reshape(h, w) + 7 * k) % 65536
    mm.flush()
    del mm
    assert path.stat().st_size > 4 * 2**30
    rec = open_recording(path, buffer_size=100)
    assert rec.shape == (t, h, w, 1)
    tail = rec[t - 2 :].values[..., 0]
    expected = (np.arange(h * w, dtype=np.uint32).reshape(h, w) + 7 * (t - 1)) % 65536
    np.testing.assert_array_equal(tail[1], expected.astype(np.uint16))
    assert int(rec[t // 2].values.max()) == 0  # never written: a hole of the sparse file
