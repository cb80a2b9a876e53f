"""A pyflowreg user's script, with only the imports changed.

Each test is written the way pyflowreg 0.1.0a9's documentation and examples call the API
(``pyflowreg.motion_correction``, ``pyflowreg.core``): positional arguments, enums, callbacks,
the files a run leaves in ``output_path``. The imports are the one thing that differs.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pydantic
import pytest

# pyflowreg: from pyflowreg.motion_correction import OFOptions, compensate_arr, ...
from flowreg_dask import (
    BatchMotionCorrector,
    ChannelNormalization,
    ConstancyAssumption,
    InterpolationMethod,
    NamingConvention,
    OFOptions,
    OutputFormat,
    QualitySetting,
    RegistrationConfig,
    backward_valid_mask,
    compensate_arr,
    compensate_pair,
    compensate_recording,
    compute_batch_valid_masks,
    estimate_rigid_shift,
    flow_to_color,
    get_backend,
    get_displacement,
    get_mcp_schema,
    imregister_wrapper,
    is_backend_available,
    list_backends,
    register_backend,
)
from flowreg_dask.datasets import synthetic_recording

SEQ = RegistrationConfig(parallelization="sequential")
T, H, W = 48, 40, 44


@pytest.fixture(scope="module")
def video():
    rec = synthetic_recording(n_frames=T, height=H, width=W, n_channels=2, seed=11)
    return rec


def _options(**kw) -> OFOptions:
    base = dict(quality_setting=QualitySetting.FAST, buffer_size=24, reference_frames=[0, 1, 2, 3])
    base.update(kw)
    return OFOptions(**base)


# ---- enums ------------------------------------------------------------------------------------


def test_enums_are_str_enums_with_pyflowreg_members() -> None:
    assert OutputFormat.HDF5.value == "HDF5" and OutputFormat.HDF5 == "HDF5"
    assert OutputFormat.MAT == "MAT" and OutputFormat.TIFF == "TIFF"
    assert OutputFormat.NULL.value == "NULL" and OutputFormat.ARRAY == "ARRAY"
    assert QualitySetting.BALANCED == "balanced" and QualitySetting.CUSTOM.value == "custom"
    assert ChannelNormalization.JOINT == "joint" and ChannelNormalization.SEPARATE == "separate"
    assert InterpolationMethod.CUBIC == "cubic" and InterpolationMethod.LINEAR == "linear"
    assert ConstancyAssumption.GC == "gc" and ConstancyAssumption.GRAY == "gray"
    assert NamingConvention.DEFAULT == "default" and NamingConvention.BATCH == "batch"
    o = OFOptions(output_format=OutputFormat.HDF5, quality_setting=QualitySetting.BALANCED)
    assert o.output_format is OutputFormat.HDF5
    assert o.quality_setting is QualitySetting.BALANCED
    assert OFOptions(output_format="hdf5").output_format is OutputFormat.HDF5
    assert OFOptions(flow_backend="flowreg").flow_backend == "numba"
    cfg = RegistrationConfig(n_jobs=-1, verbose=True, parallelization="multiprocessing_spawn")
    assert cfg.parallelization == "multiprocessing"


# ---- OFOptions --------------------------------------------------------------------------------


def test_options_as_pyflowreg_builds_them(tmp_path, video) -> None:
    o = OFOptions(
        input_file=video.movie,  # an array as input, as in pyflowreg
        output_path=tmp_path / "out",
        output_format=OutputFormat.HDF5,
        output_typename="",
        alpha=4,
        weight=[0.7, 0.3],
        channel_idx=None,
        save_valid_mask=False,
        n_references=1,
        min_frames_per_reference=20,
        preproc_funct=None,
        get_displacement_impl=None,
        get_displacement_factory=None,
    )
    assert o.alpha == (4.0, 4.0) and o.output_typename is None
    assert o.get_weight_at(0, 2) == pytest.approx(0.7)
    kw = o.to_dict()
    assert kw["alpha"] == (4.0, 4.0) and kw["const_assumption"] == "gc"
    assert o.output_file() == tmp_path / "out" / "compensated.HDF5"
    o.output_file_name = "x.h5"
    assert o.output_file() == tmp_path / "out" / "x.h5"
    path = o.save_options(tmp_path / "opts.json")
    back = OFOptions.load_options(path)
    assert back.alpha == o.alpha and back.output_format is OutputFormat.HDF5
    schema = get_mcp_schema()
    assert "alpha" in json.dumps(schema)


def test_bad_options_raise_pydantic_validation_errors() -> None:
    with pytest.raises(pydantic.ValidationError):
        OFOptions(alpha=-1)
    with pytest.raises(pydantic.ValidationError):
        OFOptions(levls=3)
    with pytest.raises(ValueError):  # pydantic's ValidationError is a ValueError too
        OFOptions(quality_setting="best")


def test_n_references_above_one_is_refused_with_what_to_do() -> None:
    with pytest.raises(pydantic.ValidationError, match="separately"):
        OFOptions(n_references=3)


def test_get_reference_frame(video) -> None:
    o = _options(input_file=video.movie[:8])
    ref = o.get_reference_frame()
    assert ref.shape == (H, W, 2) and ref.dtype == np.float32
    assert np.allclose(o.get_reference_frame(), ref)
    given = _options(reference_frames=video.reference)
    assert np.array_equal(
        given.get_reference_frame(video.movie), video.reference.astype(np.float32)
    )


# ---- compensate_arr ---------------------------------------------------------------------------


def test_compensate_arr_pyflowreg_call_forms(video) -> None:
    mov = video.movie
    progress, flows_cb, frames_cb = [], [], []
    registered, w = compensate_arr(
        mov,
        video.reference,
        _options(output_typename="double", quality_setting=QualitySetting.BALANCED),
        lambda done, total: progress.append((done, total)),
        w_callback=lambda w, s, e: flows_cb.append((s, e, w.shape)),
        registered_callback=lambda x, s, e: frames_cb.append((s, e, x.dtype)),
        registration_config=SEQ,
    )
    assert registered.shape == mov.shape and registered.dtype == np.float64
    assert w.shape == (T, H, W, 2) and w.dtype == np.float32
    # per batch, in order, ending at the total
    assert [p[1] for p in progress] == [T] * len(progress)
    assert [p[0] for p in progress] == sorted(p[0] for p in progress)
    assert progress[-1] == (T, T) and len(progress) >= 2
    starts = [s for s, _, _ in flows_cb]
    assert starts == sorted(starts) and flows_cb[0][0] == 0 and flows_cb[-1][1] == T
    assert [(s, e) for s, e, _ in frames_cb] == [(s, e) for s, e, _ in flows_cb]
    # accuracy against the ground truth (flow of frame t maps it onto the reference)
    inner = (slice(None), slice(6, -6), slice(6, -6))
    epe = np.linalg.norm(w[inner] - video.flow[inner], axis=-1).mean()
    assert epe < 0.45  # 0.36 measured (balanced, 40x44 frames, up to 5 px motion)


def test_compensate_arr_shapes_like_pyflowreg(video) -> None:
    one_channel = video.movie[..., 0]
    reg, w = compensate_arr(one_channel, video.reference[..., 0], _options())
    assert reg.shape == (T, H, W) and w.shape == (T, H, W, 2)
    frame_reg, frame_w = compensate_arr(one_channel[5], video.reference[..., 0], _options())
    assert frame_reg.shape == (H, W) and frame_w.shape == (H, W, 2)
    with pytest.raises(ValueError):
        compensate_arr(np.zeros((0, H, W)), None, _options())


def test_compensate_arr_with_own_flow_function(video) -> None:
    seen = []

    def my_flow(fixed, moving, uv=None, **params):
        seen.append(sorted(params))
        return np.zeros(fixed.shape[:2] + (2,), np.float32)

    reg, w = compensate_arr(video.movie[:6], video.reference, _options(), get_displacement=my_flow)
    assert np.all(w == 0) and seen and "alpha" in seen[0]
    assert np.array_equal(reg, video.movie[:6])  # zero flow: frames unchanged


def test_compensate_pair(video) -> None:
    ref = video.reference[..., 0]
    moved = np.roll(ref, 2, axis=1)
    flow = compensate_pair(ref, moved, _options())
    assert flow.shape == (H, W, 2)
    assert np.median(flow[8:-8, 8:-8, 0]) == pytest.approx(2.0, abs=0.25)


# ---- compensate_recording ---------------------------------------------------------------------


def test_compensate_recording_writes_pyflowreg_files(tmp_path, video) -> None:
    np.save(tmp_path / "rec.npy", video.movie)
    options = _options(
        input_file=tmp_path / "rec.npy",
        output_path=tmp_path / "out",
        output_format=OutputFormat.HDF5,
        save_w=True,
        save_valid_idx=True,
        reference_frames=video.reference,  # an image as the reference, as pyflowreg allows
    )
    flows_cb = []
    ref = compensate_recording(options, None, SEQ, w_callback=lambda w, s, e: flows_cb.append(s))
    assert isinstance(ref, np.ndarray) and ref.shape == (H, W, 2)
    out = tmp_path / "out"
    names = {p.name for p in out.iterdir()}
    assert {"compensated.HDF5", "w.h5", "idx.hdf", "reference_frame.npy", "statistics.npz"} <= names
    with h5py.File(out / "compensated.HDF5") as f:
        assert f["ch1"].shape == (T, H, W) and f["ch2"].shape == (T, H, W)
        assert f["ch1"].dtype == video.movie.dtype
    with h5py.File(out / "w.h5") as f:
        assert f["u"].shape == (T, H, W) and f["u"].dtype == np.float32
        u = f["u"][:]
    with h5py.File(out / "idx.hdf") as f:
        assert f["idx"].dtype == np.uint8 and set(np.unique(f["idx"][:])) <= {0, 255}
        assert np.array_equal(f["ch1"][:], f["idx"][:])  # pyflowreg's actual dataset name
    stats = np.load(out / "statistics.npz")
    assert set(stats.files) == {"mean_disp", "max_disp", "mean_div", "mean_translation"}
    assert stats["mean_disp"].shape == (T,)
    assert np.allclose(np.load(out / "reference_frame.npy"), ref)
    assert flows_cb == sorted(flows_cb) and flows_cb[0] == 0  # in order, though save_w is on
    inner = (slice(None), slice(6, -6), slice(6, -6))
    assert np.abs(u[inner] - video.flow[inner][..., 0]).mean() < 0.5


def test_compensate_recording_reference_positional_and_callbacks_without_save_w(
    tmp_path, video
) -> None:
    np.save(tmp_path / "rec.npy", video.movie)
    options = _options(
        input_file=str(tmp_path / "rec.npy"), output_path=str(tmp_path / "o"), save_w=False
    )
    got = []
    ref = compensate_recording(
        options, video.reference, SEQ, w_callback=lambda w, s, e: got.append((s, e, w.shape))
    )
    assert np.array_equal(ref, video.reference.astype(np.float32))
    assert got and got[0][0] == 0 and got[-1][1] == T
    assert [g[0] for g in got] == sorted(g[0] for g in got)
    assert got[0][2][1:] == (H, W, 2)


def test_batch_motion_corrector_and_headless_null_output(tmp_path, video) -> None:
    options = _options(
        input_file=video.movie, output_path=tmp_path / "none", output_format=OutputFormat.NULL
    )
    bmc = BatchMotionCorrector(options, SEQ)
    frames, progress = [], []
    bmc.register_registered_callback(lambda x, s, e: frames.append((s, e)))
    bmc.register_progress_callback(lambda done, total: progress.append(done))
    ref = bmc.run()
    assert ref.shape == (H, W, 2)
    assert frames[0][0] == 0 and frames[-1][1] == T and progress[-1] == T
    assert not (tmp_path / "none").exists() or not any((tmp_path / "none").iterdir())


def test_naming_convention_batch(tmp_path, video) -> None:
    np.save(tmp_path / "session1.npy", video.movie[:24])
    options = _options(
        input_file=tmp_path / "session1.npy",
        output_path=tmp_path / "out",
        output_format=OutputFormat.TIFF,
        naming_convention=NamingConvention.BATCH,
        save_meta_info=False,
    )
    compensate_recording(options, config=SEQ)
    assert (tmp_path / "out" / "session1_compensated.TIFF").is_file()


# ---- core -------------------------------------------------------------------------------------


def test_get_displacement_pyflowreg_signature(video) -> None:
    ref = video.reference[..., 0].astype(np.float64)
    ref = (ref - ref.min()) / (ref.max() - ref.min())
    mov = np.roll(ref, 1, axis=0)
    flow = get_displacement(ref, mov)  # pyflowreg's function defaults: alpha (2, 2), levels 50
    assert flow.shape == (H, W, 2)
    init = np.zeros((H, W, 2), np.float32)
    same = get_displacement(ref, mov, (2, 2), 5, 50, 0, 50, 0.8, 1.0, 0.45, "gc", init)
    assert np.allclose(flow, same)
    again = get_displacement(ref, mov, alpha=(2, 2), uv=init, const_assumption="gc")
    assert np.allclose(flow, again)
    assert np.median(flow[6:-6, 6:-6, 1]) == pytest.approx(1.0, abs=0.2)


def test_warping_helpers() -> None:
    img = np.arange(64, dtype=np.float32).reshape(8, 8)
    u = np.ones((8, 8), np.float32)
    v = np.zeros((8, 8), np.float32)
    fill = np.full((8, 8), -1, np.float32)
    out = imregister_wrapper(img, u, v, fill, interpolation_method="linear")
    assert out.shape == (8, 8) and np.allclose(out[:, :7], img[:, 1:])
    assert np.all(out[:, 7] == -1)  # sampled outside: the reference's pixel
    mask = backward_valid_mask(u, v)
    assert mask[:, :7].all() and not mask[:, 7].any()
    masks = compute_batch_valid_masks(np.stack([u, v], -1)[None])
    assert masks.dtype == np.uint8 and set(np.unique(masks)) == {0, 255}


def test_rigid_shift_and_flow_colours() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((64, 64))
    dx, dy = estimate_rigid_shift(a, np.roll(a, 3, axis=1), up=2)
    assert (abs(dx), dy) == pytest.approx((3.0, 0.0), abs=0.5)
    flow = np.zeros((2, 2, 2))
    flow[0, 0] = 1e10  # unknown
    rgb = flow_to_color(flow)
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[1, 1].tolist() == [255, 255, 255]


def test_backend_registry(video) -> None:
    assert "numba" in list_backends() and is_backend_available("flowreg")
    calls = []

    def factory(scale=1.0):
        def flow(fixed, moving, uv=None, **kw):
            calls.append(scale)
            return np.zeros(fixed.shape[:2] + (2,), np.float32)

        return flow

    register_backend("zeros_for_test", factory, supported_executors=["sequential"])
    assert get_backend("zeros_for_test") is factory and "zeros_for_test" in list_backends()
    o = _options(flow_backend="zeros_for_test", backend_params={"scale": 2.0})
    _, w = compensate_arr(video.movie[:4], video.reference, o, registration_config=SEQ)
    assert np.all(w == 0) and calls and set(calls) == {2.0}
    with pytest.raises(ValueError, match="flowreg"):
        register_backend("flowreg", factory)
    with pytest.raises(ValueError, match="not registered"):
        get_backend("nope")


# ---- pyflowreg.util.io ------------------------------------------------------------------------


def test_readers_as_input_and_options_reader_writer(tmp_path, video) -> None:
    from flowreg_dask import (
        ArrayReader,
        TIFFFileWriter,
        VideoReader,
        get_video_file_reader,
        get_video_file_writer,
    )

    tif = tmp_path / "rec.tif"
    with TIFFFileWriter(str(tif)) as writer:
        writer.write_frames(video.movie[:24])
    reader = get_video_file_reader(str(tif), buffer_size=12)
    assert reader.shape == (24, H, W, 2)
    opts = _options(input_file=reader, output_path=tmp_path / "a", output_format=OutputFormat.HDF5)
    ref = compensate_recording(opts, video.reference, SEQ)
    with h5py.File(tmp_path / "a" / "compensated.HDF5") as f:
        a = f["ch1"][:]
    # the same frames given as an array reader, and as a reader subclass of the user's own
    ref_b = compensate_recording(
        opts.copy(input_file=ArrayReader(video.movie[:24]), output_path=tmp_path / "b"),
        video.reference,
        SEQ,
    )
    with h5py.File(tmp_path / "b" / "compensated.HDF5") as f:
        assert np.array_equal(f["ch1"][:], a)

    class Mine(VideoReader):
        def _initialize(self):
            self.frame_count, self.height, self.width, self.n_channels = (24, H, W, 2)
            self.dtype = video.movie.dtype

        def _read_raw_frames(self, frame_indices):
            return video.movie[:24][frame_indices]

    compensate_recording(
        opts.copy(input_file=Mine(buffer_size=12), output_path=tmp_path / "c"),
        video.reference,
        SEQ,
    )
    with h5py.File(tmp_path / "c" / "compensated.HDF5") as f:
        assert np.array_equal(f["ch1"][:], a)
    assert np.array_equal(ref, ref_b)
    # the options' own reader and writer
    o = _options(input_file=str(tif), output_path=tmp_path / "w", output_format="TIFF")
    r = o.get_video_reader()
    assert r.shape == (24, H, W, 2) and o.input_file == tif  # options unchanged
    w = o.get_video_writer()
    w.write_frames(r[0:3])
    w.close()
    assert (tmp_path / "w" / "compensated.TIFF").is_file()
    with get_video_file_writer(str(tmp_path / "n.h5"), "NULL") as null:
        null.write_frames(video.movie[:2])


def test_default_output_is_zarr_and_mat_on_request(tmp_path, video) -> None:
    from flowreg_dask import open_result

    np.save(tmp_path / "rec.npy", video.movie[:24])
    o = _options(input_file=tmp_path / "rec.npy", output_path=tmp_path / "z")
    ref = compensate_recording(o, video.reference, SEQ)
    assert ref.output == tmp_path / "z" / "compensated.zarr"
    assert open_result(ref)["corrected"].shape == (24, H, W, 2)
    m = o.copy(output_path=tmp_path / "m", output_format=OutputFormat.MAT)
    ref = compensate_recording(m, video.reference, SEQ)
    assert ref.output == tmp_path / "m" / "compensated.MAT"
    with h5py.File(ref.output) as f:  # MATLAB v7.3: ch1 is H x W x T in MATLAB
        assert f["ch1"].shape == (24, W, H)
