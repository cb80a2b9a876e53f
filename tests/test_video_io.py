"""pyflowreg's video reader/writer API (flowreg_dask.io.video), used as a pyflowreg user would.

Every file is written into ``tmp_path`` and every read is compared exactly with the array that
was written (or with a plain numpy reference of the binning); movies have H != W and distinct
values so that swapped axes or channels always show.
"""

from __future__ import annotations

import os
import warnings

import dask.array as da
import h5py
import numpy as np
import pytest
import scipy.io
import tifffile
import zarr

from flowreg_dask.errors import (
    ClosedError,
    FlowRegWarning,
    InvalidInputError,
    InvalidOptionError,
)
from flowreg_dask.io import (
    ArrayReader,
    ArrayWriter,
    HDF5FileReader,
    HDF5FileWriter,
    MATFileReader,
    MATFileWriter,
    MULTICHANNELFileReader,
    MULTIFILEFileWriter,
    NPYFileWriter,
    NullVideoWriter,
    RecordingReader,
    SUBSETFileReader,
    TIFFFileReader,
    TIFFFileWriter,
    VideoReader,
    VideoWriter,
    clear_handle_cache,
    get_video_file_reader,
    get_video_file_writer,
)
from flowreg_dask.io.video import _mat as video_mat
from flowreg_dask.options import OutputFormat

T, H, W = 11, 6, 9


@pytest.fixture(autouse=True)
def _close_handles():
    yield
    clear_handle_cache()


def movie(t=T, h=H, w=W, c=2, dtype=np.uint16, seed=0):
    """(t, h, w, c) movie with distinct values, so swapped axes or channels always show."""
    rng = np.random.default_rng(seed)
    values = rng.permutation(t * h * w * c) % np.iinfo(np.uint16).max
    return values.reshape(t, h, w, c).astype(dtype)


def binned(a, b):
    """Reference binning: mean of b frames, last bin over the frames it has, rounded."""
    out = [a[i : i + b].astype(np.float64).mean(axis=0) for i in range(0, a.shape[0], b)]
    out = np.stack(out)
    if np.dtype(a.dtype).kind in "iu":
        out = np.rint(out)
    return out.astype(a.dtype)


def write(writer, a, batch=4):
    for i in range(0, a.shape[0], batch):
        writer.write_frames(a[i : i + batch])
    writer.close()
    return writer


def leftovers(folder):
    return sorted(n for n in os.listdir(folder) if n.endswith(".partial"))


# --------------------------------------------------------------------------------------------
# ArrayReader: shape rules, copies
# --------------------------------------------------------------------------------------------


def test_array_reader_shape_rules():
    frame = movie(1, c=1)[0, ..., 0]
    assert ArrayReader(frame).shape == (1, H, W, 1)
    hwc = movie(1, c=3)[0]
    assert ArrayReader(hwc).shape == (1, H, W, 3)  # last axis <= 4: one multi-channel frame
    thw = movie(c=1)[..., 0]
    assert ArrayReader(thw).shape == (T, H, W, 1)  # last axis W = 9 > 4: frames
    np.testing.assert_array_equal(ArrayReader(thw)[:][..., 0], thw)
    narrow = movie(5, 6, 3, c=1)[..., 0]  # (T, H, W) with W = 3 is taken as one frame
    assert ArrayReader(narrow).shape == (1, 5, 6, 3)
    a = movie()
    r = ArrayReader(a)
    assert (r.shape, r.unbinned_shape, len(r), r.buffer_size) == (a.shape, a.shape, T, 100)
    assert (r.height, r.width, r.n_channels, r.frame_count, r.dtype) == (H, W, 2, T, a.dtype)
    with pytest.raises(InvalidInputError, match=r"\(H, W\), \(H, W, C\)"):
        ArrayReader(np.zeros((2, 3, 4, 5, 6)))
    with pytest.raises(InvalidInputError, match="dtype"):
        ArrayReader(np.zeros((3, 4, 5), dtype=bool))


def test_array_reader_copies_unless_inplace():
    a = movie()
    copy = ArrayReader(a)[2:4]
    copy[:] = 0
    assert a[2:4].any()
    view = ArrayReader(a, inplace=True)[2:4]
    view[:] = 0
    assert not a[2:4].any()


# --------------------------------------------------------------------------------------------
# indexing on binned frames
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bin_size", [1, 3, 4])
def test_indexing_on_binned_frames(bin_size):
    a = movie()
    ref = binned(a, bin_size)
    r = ArrayReader(a, bin_size=bin_size)
    n = ref.shape[0]
    assert len(r) == n == -(-T // bin_size)
    assert r.shape == (n, H, W, 2) and r.unbinned_shape == (T, H, W, 2)
    np.testing.assert_array_equal(r[0], ref[0])
    np.testing.assert_array_equal(r[-1], ref[-1])  # the last, partial bin
    np.testing.assert_array_equal(r[-n], ref[0])
    np.testing.assert_array_equal(r[:], ref)
    np.testing.assert_array_equal(r[1:3], ref[1:3])
    np.testing.assert_array_equal(r[::2], ref[::2])
    np.testing.assert_array_equal(r[::-1], ref[::-1])
    np.testing.assert_array_equal(r[[n - 1, 0, 0]], ref[[n - 1, 0, 0]])
    np.testing.assert_array_equal(r[np.array([-1, 1])], ref[[-1, 1]])
    mask = np.arange(n) % 2 == 1
    np.testing.assert_array_equal(r[mask], ref[mask])
    np.testing.assert_array_equal(r[1, :, 2:5, 0], ref[1, :, 2:5, 0])
    np.testing.assert_array_equal(r[0:2, 3], ref[0:2, 3])
    np.testing.assert_array_equal(r[..., 1], ref[..., 1])
    assert r[5:2].shape == (0, H, W, 2) and r[[]].shape == (0, H, W, 2)
    assert r[0].dtype == a.dtype
    for bad in (n, -n - 1):
        with pytest.raises(IndexError, match="out of range"):
            r[bad]
    with pytest.raises(IndexError, match="out of range"):
        r[[0, n]]


def test_binning_rounds_and_averages_the_last_partial_bin():
    a = np.zeros((5, 2, 6, 1), dtype=np.uint8)
    a[1] = 1
    a[2] = 1  # bin 0 = mean(0, 1, 1) = 0.67 -> 1 (pyflowreg truncates to 0)
    a[3] = 10
    a[4] = 13  # bin 1 = mean(10, 13) = 11.5 -> 12 (pyflowreg pads with 13: 12.0)
    r = ArrayReader(a, bin_size=3)
    assert len(r) == 2
    assert r[0].max() == 1 and r[1].max() == 12
    np.testing.assert_array_equal(r.read_batch(), r[:])
    f = ArrayReader(a.astype(np.float32), bin_size=3)
    np.testing.assert_allclose(f[1], 11.5)


# --------------------------------------------------------------------------------------------
# batches and iteration
# --------------------------------------------------------------------------------------------


def test_read_batch_has_batch_reset_and_iteration():
    a = movie(19)
    r = ArrayReader(a, buffer_size=4, bin_size=2)
    ref = binned(a, 2)  # 10 binned frames: batches of 4, 4, 2
    assert r.has_batch() and r.current_frame == 0
    first = r.read_batch()
    np.testing.assert_array_equal(first, ref[:4])
    assert r.current_frame == 8  # raw frames
    rest = [r.read_batch(), r.read_batch()]
    assert [b.shape[0] for b in rest] == [4, 2]
    np.testing.assert_array_equal(np.concatenate([first, *rest]), ref)
    assert not r.has_batch()
    assert r.read_batch().shape == (0, H, W, 2)
    r.reset()
    assert r.has_batch()
    for _ in range(2):  # iteration starts from the beginning each time
        batches = list(r)
        assert [b.shape[0] for b in batches] == [4, 4, 2]
        np.testing.assert_array_equal(np.concatenate(batches), ref)
    r.current_frame = 17
    np.testing.assert_array_equal(next(iter(r)), ref[:4])  # iter() resets


def test_closed_reader_and_context_manager():
    with ArrayReader(movie()) as r:
        assert r[0].shape == (H, W, 2)
    with pytest.raises(ClosedError, match=r"ArrayReader was used after close\(\)"):
        r[0]
    with pytest.raises(ValueError):  # ClosedError is a ValueError
        r.read_batch()
    r.close()  # idempotent


def test_custom_subclass_of_video_reader():
    """A pyflowreg-style reader: _initialize + _read_raw_frames, everything else inherited."""

    class Ramp(VideoReader):
        def _initialize(self):
            self.height, self.width, self.n_channels = 3, 5, 1
            self.frame_count, self.dtype = 7, np.dtype(np.float32)

        def _read_raw_frames(self, frame_indices):
            idx = np.arange(7)[frame_indices]
            return np.broadcast_to(idx[:, None, None], (idx.size, 3, 5)).astype(np.float32)

    r = Ramp(buffer_size=2, bin_size=2)
    assert r.shape == (4, 3, 5, 1) and r.unbinned_shape == (7, 3, 5, 1)
    np.testing.assert_allclose(r[:, 0, 0, 0], [0.5, 2.5, 4.5, 6.0])
    assert [b.shape[0] for b in r] == [2, 2]


def test_to_pytorch_is_not_provided():
    with pytest.raises(NotImplementedError, match="torch.from_numpy"):
        ArrayReader(movie()).to_pytorch()


# --------------------------------------------------------------------------------------------
# writer -> reader round trips, every format
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "name", "reader_kwargs"),
    [
        ("HDF5", "out.h5", {}),
        ("TIFF", "out.tif", {}),
        ("SUITE2P_TIFF", "out.tif", {"deinterleave": 2}),
        ("MAT", "out.mat", {}),
        ("NPY", "out.npy", {}),
    ],
)
@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_round_trip_single_file_formats(tmp_path, fmt, name, reader_kwargs, dtype):
    a = movie(dtype=dtype)
    writer = write(get_video_file_writer(tmp_path / name, fmt), a)
    assert (writer.height, writer.width, writer.n_channels) == (H, W, 2)
    assert writer.dtype == a.dtype and writer.bit_depth == a.dtype.itemsize * 8
    assert writer.frames_written == T and writer.batches_written == 3
    assert os.listdir(tmp_path) == [name]
    reader = get_video_file_reader(str(tmp_path / name), buffer_size=4, **reader_kwargs)
    assert reader.shape == a.shape and reader.dtype == a.dtype
    np.testing.assert_array_equal(reader[:], a)
    batch = reader.read_batch()
    batch += 1  # batches belong to the caller (never read-only views of a mapped file)
    np.testing.assert_array_equal(reader[:4], a[:4])
    binned_reader = get_video_file_reader(
        str(tmp_path / name), bin_size=3, buffer_size=2, **reader_kwargs
    )
    np.testing.assert_array_equal(np.concatenate(list(binned_reader)), binned(a, 3))
    reader.close()
    binned_reader.close()


@pytest.mark.parametrize(
    ("fmt", "file_type", "dataset"),
    [
        ("MULTIFILE_TIFF", "TIFF", None),
        ("MULTIFILE_HDF5", "HDF5", "ch{n}"),
        ("MULTIFILE_MAT", "MAT", "ch{n}"),
        ("CAIMAN_HDF5", "HDF5", "mov"),
    ],
)
def test_round_trip_multifile_formats(tmp_path, fmt, file_type, dataset):
    a = movie(c=3)
    writer = write(get_video_file_writer(tmp_path / f"compensated.{fmt}", fmt), a)
    files = [tmp_path / f"compensated_ch{n}.{file_type}" for n in (1, 2, 3)]
    assert sorted(os.listdir(tmp_path)) == sorted(f.name for f in files)
    assert writer.file_paths == [str(f) for f in files]
    for n, f in enumerate(files, start=1):
        single = get_video_file_reader(str(f))
        assert single.n_channels == 1
        np.testing.assert_array_equal(single[:][..., 0], a[..., n - 1])
        if dataset and file_type == "HDF5":
            with h5py.File(f) as h5:
                assert list(h5) == [dataset.format(n=n)]
    reader = get_video_file_reader([str(f) for f in files])
    assert isinstance(reader, MULTICHANNELFileReader)
    assert reader.input_file_name == "compensated_ch1_compensated_ch2_compensated_ch3"
    np.testing.assert_array_equal(reader[:], a)


def test_multifile_writer_folder_name(tmp_path):
    a = movie()
    write(MULTIFILEFileWriter(tmp_path / "out", "hdf5", compression="gzip"), a)
    assert sorted(os.listdir(tmp_path / "out")) == [
        "compensated_ch1.HDF5",
        "compensated_ch2.HDF5",
    ]
    with pytest.raises(InvalidOptionError, match="file_type"):
        MULTIFILEFileWriter(tmp_path / "x.tif", "avi")
    with pytest.raises(TypeError):  # options of the per-file writer are checked at once
        MULTIFILEFileWriter(tmp_path / "x.tif", "TIFF", dataset_names="ch*")


# --------------------------------------------------------------------------------------------
# HDF5 layout
# --------------------------------------------------------------------------------------------


def test_hdf5_writer_layout(tmp_path):
    a = movie()
    path = tmp_path / "out.h5"
    write(HDF5FileWriter(path), a)
    with h5py.File(path) as f:
        assert sorted(f) == ["ch1", "ch2"]
        for c in range(2):
            ds = f[f"ch{c + 1}"]
            assert ds.shape == (T, H, W) and ds.chunks == (1, H, W)
            assert ds.maxshape == (None, H, W)
            np.testing.assert_array_equal(ds[:], a[..., c])
            assert tuple(ds.attrs["dimension_ordering"]) == (1, 2, 0)
            assert tuple(ds.attrs["original_shape_THWC"]) == (T, H, W, 2)
        assert list(f.attrs["dataset_names"]) == ["ch1", "ch2"]
        attrs = {k: f.attrs[k] for k in ("n_channels", "frame_count", "height", "width")}
        assert attrs == {"n_channels": 2, "frame_count": T, "height": H, "width": W}


def test_hdf5_writer_options(tmp_path):
    a = movie()
    write(HDF5FileWriter(tmp_path / "g.h5", "mov", compression="gzip", chunk_size=4), a)
    with h5py.File(tmp_path / "g.h5") as f:
        assert sorted(f) == ["mov1", "mov2"]  # a plain name is a prefix for several channels
        assert f["mov1"].compression == "gzip" and f["mov1"].chunks == (4, H, W)
    np.testing.assert_array_equal(HDF5FileReader(str(tmp_path / "g.h5"))[:], a)
    write(HDF5FileWriter(tmp_path / "l.h5", ["green", "red"], compression="lzf"), a)
    r = HDF5FileReader(str(tmp_path / "l.h5"), dataset_names=["red", "green"])
    np.testing.assert_array_equal(r[:], a[..., ::-1])
    # stored (H, W, T): the reader follows the dimension_ordering attribute
    write(HDF5FileWriter(tmp_path / "hwt.h5", dimension_ordering=(0, 1, 2)), a)
    with h5py.File(tmp_path / "hwt.h5") as f:
        assert f["ch1"].shape == (H, W, T)
    np.testing.assert_array_equal(HDF5FileReader(str(tmp_path / "hwt.h5"))[:], a)
    with pytest.raises(InvalidOptionError, match="3 name"):
        HDF5FileWriter(tmp_path / "x.h5", ["a", "b", "c"]).write_frames(a)
    assert leftovers(tmp_path) == []
    with pytest.raises(InvalidOptionError, match="compression"):
        HDF5FileWriter(tmp_path / "x.h5", compression="zstd")
    with pytest.raises(InvalidOptionError, match="permutation"):
        HDF5FileWriter(tmp_path / "x.h5", dimension_ordering=(0, 0, 1))


def test_hdf5_reader_on_a_pyflowreg_style_file(tmp_path):
    a = movie(c=2, dtype=np.int16)
    path = tmp_path / "rec.hdf5"
    with h5py.File(path, "w") as f:
        f["ch1"] = a[..., 0]
        f["ch2"] = a[..., 1]
        f["timestamps"] = np.arange(T, dtype=np.float64)
    r = get_video_file_reader(str(path), buffer_size=5)
    assert isinstance(r, HDF5FileReader)
    np.testing.assert_array_equal(r[:], a)
    np.testing.assert_array_equal(HDF5FileReader(path, dataset_names="ch2")[:][..., 0], a[..., 1])


# --------------------------------------------------------------------------------------------
# TIFF layouts
# --------------------------------------------------------------------------------------------


def test_tiff_writer_default_layout(tmp_path):
    a = movie()
    write(TIFFFileWriter(tmp_path / "m.tif", metadata={"experiment": "x1"}), a)
    with tifffile.TiffFile(tmp_path / "m.tif") as tif:
        assert tif.is_bigtiff and len(tif.series) == 1 and len(tif.pages) == T
        assert '"experiment": "x1"' in tif.pages[0].description
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "m.tif"), a)
    single = a[..., :1]
    write(TIFFFileWriter(tmp_path / "s.tif", bigtiff=False), single)
    with tifffile.TiffFile(tmp_path / "s.tif") as tif:
        assert not tif.is_bigtiff
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "s.tif"), single[..., 0])
    np.testing.assert_array_equal(TIFFFileReader(tmp_path / "s.tif")[:], single)


def test_tiff_writer_suite2p_order(tmp_path):
    a = movie(c=2)
    write(get_video_file_writer(tmp_path / "s2p.tif", "suite2p_tiff"), a)
    pages = tifffile.imread(tmp_path / "s2p.tif")
    assert pages.shape == (2 * T, H, W)
    for t in (0, 1, T - 1):  # frame0-ch1, frame0-ch2, frame1-ch1, ...
        np.testing.assert_array_equal(pages[2 * t], a[t, ..., 0])
        np.testing.assert_array_equal(pages[2 * t + 1], a[t, ..., 1])
    np.testing.assert_array_equal(TIFFFileReader(tmp_path / "s2p.tif", deinterleave=2)[:], a)


def test_tiff_writer_compression_and_imagej(tmp_path):
    a = movie()
    write(TIFFFileWriter(tmp_path / "z.tif", compression="zlib", metadata={"k": 1}), a)
    with tifffile.TiffFile(tmp_path / "z.tif") as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "z.tif"), a)
    np.testing.assert_array_equal(TIFFFileReader(tmp_path / "z.tif")[:], a)
    write(TIFFFileWriter(tmp_path / "ij.tif", imagej=True, metadata={"finterval": 0.25}), a)
    with tifffile.TiffFile(tmp_path / "ij.tif") as tif:
        assert tif.is_imagej
        assert (tif.series[0].axes, tif.series[0].shape) == ("TCYX", (T, 2, H, W))
        assert tif.imagej_metadata["finterval"] == 0.25
    r = TIFFFileReader(tmp_path / "ij.tif")
    np.testing.assert_array_equal(r[:], a)
    assert r.get_metadata()["frame_rate"] == 4.0
    with pytest.raises(InvalidInputError, match="ImageJ"):
        TIFFFileWriter(tmp_path / "i16.tif", imagej=True).write_frames(a.astype(np.int16))
    with pytest.raises(InvalidOptionError, match="compression"):
        TIFFFileWriter(tmp_path / "x.tif", compression="bzip9")
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        with pytest.raises(InvalidOptionError, match="imagecodecs"):
            TIFFFileWriter(tmp_path / "x.tif", compression="lzw")


# --------------------------------------------------------------------------------------------
# MAT
# --------------------------------------------------------------------------------------------


def test_mat_v73_axes_with_h5py_and_readers(tmp_path):
    a = movie()
    path = tmp_path / "out.mat"
    writer = write(MATFileWriter(path), a)
    assert writer.version == "7.3"
    with open(path, "rb") as fh:
        header = fh.read(128)
    assert header.startswith(b"MATLAB 7.3 MAT-file") and header[124:128] == b"\x00\x02IM"
    with h5py.File(path) as f:  # MATLAB H x W x T, column-major: h5py shows (T, W, H)
        assert f["ch1"].shape == (T, W, H)
        np.testing.assert_array_equal(f["ch2"][:], a[..., 1].transpose(0, 2, 1))
        assert f["ch1"].attrs["MATLAB_class"] == b"uint16"
    r = MATFileReader(str(path))
    np.testing.assert_array_equal(r[:], a)  # not H/W-swapped as pyflowreg read v7.3
    np.testing.assert_array_equal(MATFileReader(path, dataset_names="ch2")[:][..., 0], a[..., 1])


def test_mat_v5_readable_by_scipy(tmp_path):
    a = movie(dtype=np.float32)
    path = tmp_path / "v5.mat"
    writer = write(MATFileWriter(path, ["green", "red"], use_v73=False), a)
    assert writer.version == "5"
    m = scipy.io.loadmat(path)
    assert m["green"].shape == (H, W, T) and m["green"].dtype == np.float32
    np.testing.assert_array_equal(m["green"], a[..., 0].transpose(1, 2, 0))
    np.testing.assert_array_equal(m["red"], a[..., 1].transpose(1, 2, 0))
    np.testing.assert_array_equal(MATFileReader(path, dataset_names=["green", "red"])[:], a)
    assert leftovers(tmp_path) == []


def test_mat_v5_too_large_becomes_v73(tmp_path, monkeypatch):
    monkeypatch.setattr(video_mat, "V5_MAX_BYTES", 100)
    a = movie()
    with pytest.warns(FlowRegWarning, match="v7.3 instead"):
        writer = write(MATFileWriter(tmp_path / "big.mat", use_v73=False), a)
    assert writer.version == "7.3" and leftovers(tmp_path) == []
    np.testing.assert_array_equal(MATFileReader(tmp_path / "big.mat")[:], a)


def test_mat_reader_dimension_ordering(tmp_path):
    a = movie(c=1)[..., 0]
    scipy.io.savemat(tmp_path / "thw.mat", {"mov": a})  # stored T x H x W
    r = MATFileReader(tmp_path / "thw.mat", dimension_ordering=(1, 2, 0))
    np.testing.assert_array_equal(r[:][..., 0], a)
    r = get_video_file_reader(str(tmp_path / "thw.mat"), dimension_ordering=[1, 2, 0])
    np.testing.assert_array_equal(r[:][..., 0], a)


def test_mat_writer_errors_leave_nothing(tmp_path):
    with pytest.raises(InvalidOptionError, match="variable name"):
        MATFileWriter(tmp_path / "x.mat", "1st*").write_frames(movie())
    with pytest.raises(InvalidInputError, match="MATLAB"):
        MATFileWriter(tmp_path / "y.mat").write_frames(movie(dtype=np.float16))
    with pytest.raises(InvalidOptionError, match="v5"):
        MATFileWriter(tmp_path / "z.mat", dimension_ordering=(2, 0, 1), use_v73=False)
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------------------------
# SUBSET, MULTICHANNEL, RecordingReader
# --------------------------------------------------------------------------------------------


def test_subset_reader_takes_raw_frames(tmp_path):
    a = movie()
    write(HDF5FileWriter(tmp_path / "r.h5"), a)
    inner = HDF5FileReader(tmp_path / "r.h5", buffer_size=3, bin_size=2)
    sub = SUBSETFileReader(inner, [4, -1, 0, 0])
    assert sub.shape == (4, H, W, 2) and sub.buffer_size == 3
    np.testing.assert_array_equal(sub[:], a[[4, T - 1, 0, 0]])
    assert [b.shape[0] for b in sub] == [3, 1]
    np.testing.assert_array_equal(sub[1], a[T - 1])
    binned_sub = SUBSETFileReader(inner, [1, 2, 3], bin_size=2, buffer_size=10)
    np.testing.assert_array_equal(binned_sub[:], binned(a[1:4], 2))
    with pytest.raises(IndexError, match="out of range"):
        SUBSETFileReader(inner, [T])
    sub.close()
    assert inner[0].shape == (H, W, 2)  # the wrapped reader stays open


def test_multichannel_reader(tmp_path):
    a = movie(c=2)
    tifffile.imwrite(tmp_path / "green.tif", a[..., 0])
    tifffile.imwrite(tmp_path / "red.tif", a[..., 1].astype(np.uint8))
    with pytest.warns(FlowRegWarning, match="different data types"):
        r = MULTICHANNELFileReader([tmp_path / "green.tif", tmp_path / "red.tif"], 4, 1)
    assert r.input_file_name == "green_red" and r.dtype == np.uint16
    np.testing.assert_array_equal(r[:, ..., 0], a[..., 0])
    np.testing.assert_array_equal(r[:, ..., 1], a[..., 1].astype(np.uint8))
    tifffile.imwrite(tmp_path / "short.tif", a[:5, ..., 0])
    with pytest.raises(InvalidInputError, match="frame count"):
        MULTICHANNELFileReader([str(tmp_path / "green.tif"), str(tmp_path / "short.tif")])
    with pytest.raises(InvalidInputError, match="non-empty list"):
        MULTICHANNELFileReader([])


def test_recording_reader_over_other_formats(tmp_path):
    a = movie()
    zarr.save_array(str(tmp_path / "rec.zarr"), a)
    r = get_video_file_reader(str(tmp_path / "rec.zarr"), bin_size=2)
    assert isinstance(r, RecordingReader)
    np.testing.assert_array_equal(r[:], binned(a, 2))
    lazy = get_video_file_reader(da.from_array(a, chunks=(3, H, W, 2)), buffer_size=4)
    np.testing.assert_array_equal(np.concatenate(list(lazy)), a)
    assert get_video_file_reader(str(tmp_path / "rec.zarr")).input_file_name == "rec"


# --------------------------------------------------------------------------------------------
# factories
# --------------------------------------------------------------------------------------------


def test_get_video_file_reader_dispatch_and_errors(tmp_path):
    a = movie()
    r = get_video_file_reader(a, buffer_size=7, bin_size=2, inplace=True)
    assert isinstance(r, ArrayReader) and (r.buffer_size, r.bin_size, r.inplace) == (7, 2, True)
    assert get_video_file_reader(r) is r
    tifffile.imwrite(tmp_path / "x.tiff", a[..., 0])
    assert isinstance(get_video_file_reader(str(tmp_path / "x.tiff")), TIFFFileReader)
    with pytest.raises(FileNotFoundError, match="not found"):
        get_video_file_reader(str(tmp_path / "missing.tif"))
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "f0.png").write_bytes(b"\x89PNG")
    with pytest.raises(NotImplementedError, match="folder of 1 image"):
        get_video_file_reader(str(tmp_path / "frames"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="folder without image"):
        get_video_file_reader(str(tmp_path / "empty"))
    (tmp_path / "notes.xyz").write_text("hello")
    with pytest.raises(ValueError, match="No reader recognises"):
        get_video_file_reader(str(tmp_path / "notes.xyz"))
    (tmp_path / "scan.mdf").write_bytes(b"\x00" * 16)
    with pytest.raises(NotImplementedError, match="MDF"):
        get_video_file_reader(str(tmp_path / "scan.mdf"))


@pytest.mark.parametrize(
    ("fmt", "cls"),
    [
        ("TIFF", TIFFFileWriter),
        ("suite2p_tiff", TIFFFileWriter),
        (OutputFormat.HDF5, HDF5FileWriter),
        ("h5", HDF5FileWriter),
        ("MAT", MATFileWriter),
        ("NPY", NPYFileWriter),
        ("MULTIFILE_TIFF", MULTIFILEFileWriter),
        ("multifile_mat", MULTIFILEFileWriter),
        ("CAIMAN_HDF5", MULTIFILEFileWriter),
        ("ARRAY", ArrayWriter),
        ("NULL", NullVideoWriter),
    ],
)
def test_get_video_file_writer_formats(tmp_path, fmt, cls):
    writer = get_video_file_writer(str(tmp_path / "out.x"), fmt)
    assert isinstance(writer, cls)
    if fmt == "suite2p_tiff":
        assert writer.format == "suite2p"
    writer.discard()


def test_get_video_file_writer_refusals(tmp_path):
    with pytest.raises(NotImplementedError, match="BEGONIA"):
        get_video_file_writer(tmp_path / "o", "BEGONIA")
    with pytest.raises(ValueError, match="writes its OME-Zarr store itself"):
        get_video_file_writer(tmp_path / "o", OutputFormat.ZARR)
    with pytest.raises(ValueError, match="export_result"):
        get_video_file_writer(tmp_path / "o", "SUITE2P")
    with pytest.raises(ValueError, match="expected one of"):
        get_video_file_writer(tmp_path / "o", "AVI")


# --------------------------------------------------------------------------------------------
# writer shape rules and consistency
# --------------------------------------------------------------------------------------------


def test_writer_shape_heuristics():
    w = ArrayWriter()
    w.write_frames(np.zeros((H, W), np.uint8))  # (H, W): one single-channel frame
    w.write_frames(np.ones((3, H, W), np.uint8))  # now known: (T, H, W) frames
    w.write_frames(np.full((2, H, W, 1), 2, np.uint8))
    assert w.get_array().shape == (6, H, W, 1)
    assert w.get_array()[:, 0, 0, 0].tolist() == [0, 1, 1, 1, 2, 2]

    w = ArrayWriter()
    w.write_frames(np.zeros((H, W, 3), np.uint8))  # last axis <= 4: one 3-channel frame
    w.write_frames(np.zeros((H, W, 3), np.uint8))
    assert w.get_array().shape == (2, H, W, 3)
    with pytest.raises(InvalidInputError, match="neither one such frame"):
        w.write_frames(np.zeros((5, H, W), np.uint8))

    w = ArrayWriter()
    w.write_frames(np.zeros((5, H, W), np.uint8))  # last axis W = 9 > 4: five frames
    assert w.get_array().shape == (5, H, W, 1)


def test_writer_consistency_checks(tmp_path):
    w = HDF5FileWriter(tmp_path / "c.h5")
    w.write_frames(np.zeros((2, H, W, 2), np.uint16))
    with pytest.raises(InvalidInputError, match=r"\(H, W, C\) = \(6, 9, 2\)"):
        w.write_frames(np.zeros((2, H + 1, W, 2), np.uint16))
    with pytest.raises(InvalidInputError, match="channel"):
        w.write_frames(np.zeros((2, H, W, 3), np.uint16))
    with pytest.raises(InvalidInputError, match="float64"):
        w.write_frames(np.zeros((2, H, W, 2), np.float64))
    w.write_frames(np.full((1, H, W, 2), 7, np.uint8))  # converts without loss: accepted
    with pytest.raises(InvalidInputError, match=r"\(T, H, W, C\)"):
        w.write_frames(np.zeros((1, 1, H, W, 2)))
    w.close()
    with h5py.File(tmp_path / "c.h5") as f:
        assert f["ch1"].dtype == np.uint16 and f["ch1"][2].max() == 7
    with pytest.raises(ClosedError):
        w.write_frames(np.zeros((1, H, W, 2), np.uint16))
    with pytest.raises(InvalidInputError, match="dtype"):
        TIFFFileWriter(tmp_path / "b.tif").write_frames(np.zeros((2, H, W), bool))


# --------------------------------------------------------------------------------------------
# atomic files
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["HDF5", "TIFF", "MAT", "NPY"])
def test_unclosed_or_failed_writer_leaves_no_file(tmp_path, fmt):
    a = movie()
    path = tmp_path / "out"
    writer = get_video_file_writer(path, fmt)
    writer.write_frames(a[:4])
    assert not path.exists() and len(leftovers(tmp_path)) == 1  # hidden .partial only
    writer.close()
    writer.close()  # idempotent
    assert path.exists() and leftovers(tmp_path) == []

    old = path.read_bytes()
    with pytest.raises(RuntimeError, match="crash"), get_video_file_writer(path, fmt) as w:
        w.write_frames(a)
        raise RuntimeError("crash")
    assert path.read_bytes() == old and leftovers(tmp_path) == []  # old file untouched

    with get_video_file_writer(path, fmt) as w:
        w.write_frames(a)
        assert path.read_bytes() == old  # replaced only when complete
    assert leftovers(tmp_path) == []
    reader = get_video_file_reader(str(path))  # no extension: recognised by content
    np.testing.assert_array_equal(reader[:], a)
    reader.close()


def test_writer_without_frames_writes_nothing(tmp_path):
    with pytest.warns(FlowRegWarning, match="without frames"):
        HDF5FileWriter(tmp_path / "e.h5").close()
    assert os.listdir(tmp_path) == []


def test_null_and_array_writers():
    null = get_video_file_writer(None, "NULL")
    for n in (3, 0, 5):
        null.write_frames(np.zeros((n, H, W, 2), np.float32))
    assert (null.frames_written, null.batches_written) == (8, 2)
    null.close()
    arr = ArrayWriter()
    assert arr.get_array() is None
    a = movie()
    arr.write_frames(a[:4])
    arr.write_frames(a[4:])
    a[:] = 0  # the writer kept copies
    np.testing.assert_array_equal(arr.get_array(), movie())
    assert isinstance(arr, VideoWriter)


def test_pyflowreg_style_loop(tmp_path):
    """Read a file in batches with binning and write the batches, as the pipeline does."""
    a = movie(23)
    tifffile.imwrite(tmp_path / "in.tif", a, photometric="minisblack")
    reader = get_video_file_reader(str(tmp_path / "in.tif"), buffer_size=5, bin_size=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with get_video_file_writer(str(tmp_path / "out.HDF5"), "HDF5") as writer:
            while reader.has_batch():
                writer.write_frames(reader.read_batch())
    reader.close()
    assert writer.batches_written == 3
    np.testing.assert_array_equal(HDF5FileReader(tmp_path / "out.HDF5")[:], binned(a, 2))


@pytest.mark.parametrize(("fmt", "name"), [("MAT", "b.mat"), ("TIFF", "b.tif"), ("NPY", "b.npy")])
def test_writers_accept_big_endian_frames(tmp_path, fmt, name):
    a = movie().astype(">u2")
    writer = write(get_video_file_writer(tmp_path / name, fmt), a)
    assert writer.dtype == np.dtype(np.uint16)  # native byte order
    reader = get_video_file_reader(str(tmp_path / name))
    np.testing.assert_array_equal(reader[:], a)
    reader.close()


def test_close_releases_the_file_handles(tmp_path):
    from flowreg_dask.io import _lazy

    def cached(path):
        caches = [getattr(_lazy._local, "cache", {}), _lazy._shared["cache"]]
        return [k for cache in caches for k in cache if str(path) in k]

    a = movie()
    for name, fmt, codec in (("h.h5", "HDF5", "gzip"), ("t.tif", "TIFF", "zlib")):
        write(get_video_file_writer(tmp_path / name, fmt, compression=codec), a)
        reader = get_video_file_reader(str(tmp_path / name))
        reader[3]
        assert cached(tmp_path / name)
        reader.close()
        assert not cached(tmp_path / name)
