"""Command line: demo, correct (with resume/overwrite rules), info, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flowreg_dask.cli.main import main
from flowreg_dask.datasets import SyntheticSpec, save_synthetic_recording
from flowreg_dask.pipeline.chunks import chunk_frames
from flowreg_dask.store.reader import open_result


@pytest.fixture(scope="module")
def tif(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "rec.tif"
    spec = SyntheticSpec(n_frames=24, height=40, width=48, n_channels=2, seed=5)
    save_synthetic_recording(path, spec=spec, save_flow=False)
    return path


def test_demo_reports_accuracy(tmp_path, capsys):
    code = main(
        [
            "demo",
            "--out",
            str(tmp_path / "demo"),
            "--frames",
            "40",
            "--size",
            "64",
            "--no-progress",
            "--parallelization",
            "sequential",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "endpoint error of the estimated flow" in out
    before = float(out.split("before correction:")[1].split("px")[0])
    epe = float(out.split("estimated flow:")[1].split("px")[0])
    assert epe < 0.5 * before
    ds = open_result(tmp_path / "demo" / "demo_corrected.zarr")
    assert ds["corrected"].shape == (40, 64, 64, 2)


def _digest(path) -> tuple[str, float]:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime


def test_correct_then_info(tmp_path, tif, capsys):
    before = _digest(tif)
    out = tmp_path / "out.zarr"
    args = [
        "correct",
        str(tif),
        "-o",
        str(out),
        "--quality",
        "fast",
        "--buffer-size",
        "8",
        "--reference-frames",
        "0:10",
        "--save-w",
        "--no-progress",
    ]
    assert main(args) == 0
    ds = open_result(out)
    assert ds["corrected"].shape == (24, 40, 48, 2)
    assert ds["flow"].shape == (24, 40, 48, 2)
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "status:       complete" in text and "24 frames x 40 x 48 px x 2 channel(s)" in text
    assert main(["info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "complete"
    assert main(["info", str(tif)]) == 0
    assert "24" in capsys.readouterr().out
    # a complete output is not replaced without --overwrite; the error names the fix
    assert main(args) == 2
    assert "overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert _digest(tif) == before  # the input is never written to
    h5 = tmp_path / "out.h5"
    assert main(["export", str(out), str(h5), "--format", "hdf5"]) == 0
    import h5py

    with h5py.File(h5, "r") as fh:
        assert fh["ch1"].shape == (24, 40, 48) and "u" in fh


def test_correct_with_export_format(tmp_path, tif):
    target = tmp_path / "corr.tif"
    assert (
        main(
            [
                "correct",
                str(tif),
                "-o",
                str(target),
                "--quality",
                "fast",
                "--buffer-size",
                "8",
                "--reference-frames",
                "0:10",
                "--format",
                "tiff",
                "--no-progress",
            ]
        )
        == 0
    )
    from flowreg_dask.io import open_recording

    back = open_recording(target)
    assert back.shape == (24, 40, 48, 2)
    store = open_result(tmp_path / "corr.zarr")
    np.testing.assert_array_equal(back.values, store["corrected"].values)


def test_correct_bad_input(tmp_path, capsys):
    assert (
        main(
            [
                "correct",
                str(tmp_path / "missing.tif"),
                "-o",
                str(tmp_path / "o.zarr"),
                "--no-progress",
            ]
        )
        == 2
    )
    assert "missing.tif" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["correct", "x.tif", "-o", "y.zarr", "--reference-frames", "a:b"])


def test_chunk_length_capped_by_memory_budget():
    # 512x512 uint16, 1 channel: a 400-frame chunk would need ~2.5 GB of working memory
    n = chunk_frames((6000, 512, 512, 1), np.uint16, np.uint16, 400, 256 * 2**20)
    assert 8 <= n < 400
    assert chunk_frames((100, 64, 64, 1), np.uint16, np.uint16, 400, 256 * 2**20) == 400


def test_capped_chunks_are_whole_inner_chunks_of_the_store():
    from flowreg_dask.pipeline.chunks import aligned_chunk

    # capped by memory: a multiple of the store's 8-frame inner chunks, at least the halo
    assert aligned_chunk(53, 100, 21) == 48
    assert aligned_chunk(26, 100, 21) == 24
    assert aligned_chunk(17, 100, 21) == 24
    assert aligned_chunk(30, 37, 40) == 37  # never longer than buffer_size
    # not capped (the user's buffer_size), or too short to align: as given
    assert aligned_chunk(100, 100, 21) == 100
    assert aligned_chunk(5, 100, 3) == 5


def test_flow_backend_flag_reaches_the_options(tif, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cupy", None)  # no CuPy, as on a CPU-only machine
    out = tmp_path / "gpu.zarr"
    code = main(["correct", str(tif), "-o", str(out), "--flow-backend", "cupy", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "flow_backend='cupy'" in err and "flowreg-dask[gpu]" in err
    assert not out.exists()


# ------------------------------------------------------------------------------ reader flags
def _two_movie_h5(path):
    """An HDF5 file with a raw (uint16) and a dF/F (float32) movie of 12 frames of 32x36."""
    import h5py

    from flowreg_dask.datasets import synthetic_recording

    raw = synthetic_recording(n_frames=12, height=32, width=36, n_channels=1, seed=0).movie
    with h5py.File(path, "w") as f:
        f["imaging/raw"] = raw[..., 0]
        f["imaging/dff"] = raw[..., 0].astype(np.float32) / 100.0
    return raw


def test_info_dataset_flag_names_the_choice(tmp_path, capsys):
    path = tmp_path / "two.h5"
    _two_movie_h5(path)
    before = _digest(path)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert "two.h5" in err and "'imaging/dff'" in err and "'imaging/raw'" in err
    assert "--dataset" in err
    assert main(["info", str(path), "--dataset", "imaging/raw"]) == 0
    out = capsys.readouterr().out
    assert "dataset:      'imaging/raw'  (given with dataset=)" in out
    assert "12 frames x 32 x 36 px x 1 channel(s)" in out and "uint16" in out
    # reader flags reach the reader: frames, binning, forced reader
    args = ["info", str(path), "--dataset", "imaging/dff", "--frames", "2:", "--bin-size", "4"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "3 frames x 32 x 36" in out and "float32" in out
    assert main(["info", str(path), "--input-format", "tiff"]) == 2
    assert "two.h5" in capsys.readouterr().err
    assert _digest(path) == before


def test_info_series_and_reader_option_flags(tmp_path, capsys):
    import tifffile

    path = tmp_path / "mixed.tif"
    tifffile.imwrite(path, np.zeros((5, 32, 36), np.uint16), append=True)
    tifffile.imwrite(path, np.zeros((6, 8, 8), np.uint16), append=True)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert "series 0: shape (5, 32, 36)" in err and "--series N" in err
    assert main(["info", str(path), "--series", "1"]) == 0
    out = capsys.readouterr().out
    assert "dataset:      series 1 of 2" in out and "6 frames x 8 x 8" in out
    assert main(["info", str(path), "--reader-option", "series=0"]) == 0
    assert "5 frames x 32 x 36" in capsys.readouterr().out
    assert main(["info", str(path), "--reader-option", "level=1"]) == 2
    assert "level" in capsys.readouterr().err
    raw = tmp_path / "movie.bin"
    np.arange(4 * 8 * 10, dtype=np.uint16).tofile(raw)
    args = ["info", str(raw), "--input-format", "raw", "--reader-option", "shape=[4,8,10]"]
    assert main([*args, "--reader-option", "dtype=uint16"]) == 0
    assert "4 frames x 8 x 10 px" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["a:b", "1:2:3:4", ","])
def test_frames_flag_rejects_garbage(bad):
    with pytest.raises(SystemExit):
        main(["info", "x.h5", "--frames", bad])


def test_correct_with_reader_flags_bins_once(tmp_path):
    from flowreg_dask.io import open_recording

    path = tmp_path / "two.h5"
    raw = _two_movie_h5(path)
    before = _digest(path)
    out = tmp_path / "out.zarr"
    args = [
        "correct",
        str(path),
        "-o",
        str(out),
        "--dataset",
        "imaging/raw",
        "--frames",
        "2:10",
        "--bin-size",
        "2",
        "--quality",
        "fast",
        "--buffer-size",
        "8",
        "--reference-frames",
        "0:4",
        "--no-progress",
    ]
    assert main(args) == 0
    ds = open_result(out)
    # frames 2..9 binned by 2 -> 4 frames (binned twice would give 2)
    assert ds["corrected"].shape == (4, 32, 36, 1)
    assert ds.attrs["metadata"]["options"]["bin_size"] == 1
    assert ds.attrs["metadata"]["input"] == str(path)
    # what the pipeline was given: frames 2..9 of imaging/raw, averaged in pairs
    read = open_recording(path, dataset="imaging/raw", frames=slice(2, 10), bin_size=2)
    pairs = raw[2:10].reshape(4, 2, 32, 36, 1).mean(axis=1, dtype=np.float64)
    np.testing.assert_array_equal(read.values, np.rint(pairs).astype(np.uint16))
    assert _digest(path) == before
    # without --dataset the two candidates are refused before anything is written
    out2 = tmp_path / "out2.zarr"
    assert main(["correct", str(path), "-o", str(out2), "--no-progress"]) == 2
    assert not out2.exists()


def test_dataset_flag_one_per_channel(tmp_path, capsys):
    import h5py

    path = tmp_path / "chans.h5"
    with h5py.File(path, "w") as f:
        f["green"] = np.zeros((5, 32, 36), np.uint16)
        f["red"] = np.ones((5, 32, 36), np.uint16)
    for flags in (["--dataset", "red,green"], ["--dataset", "red", "--dataset", "green"]):
        assert main(["info", str(path), *flags]) == 0
        out = capsys.readouterr().out
        assert "dataset:      'red', 'green'" in out and "x 2 channel(s)" in out
        assert "channels:     red, green" in out


@pytest.mark.parametrize("fast_exit", ["1", "0"])
def test_console_script_ends_after_flushing_and_exit_handlers(tmp_path, tif, fast_exit):
    """The console entry ends the process with os._exit after the work: what was printed, the
    atexit handlers and the written HDF5 file are all there (and the same with the normal exit)."""
    import os
    import subprocess
    import sys

    import h5py

    target = tmp_path / "corr.h5"
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('handler ran', flush=True))\n"
        "from flowreg_dask.cli.main import run\n"
        f"sys.argv = ['flowreg-dask', 'correct', {str(tif)!r}, '-o', {str(target)!r}, "
        "'--quality', 'fast', '--buffer-size', '8', '--reference-frames', '0:10', "
        "'--format', 'hdf5', '--no-progress']\n"
        "run()\n"
    )
    env = {**os.environ, "FLOWREG_FAST_EXIT": fast_exit}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("handler ran")
    assert str(target) in done.stdout  # the "wrote ..." line came out before the exit
    with h5py.File(target, "r") as f:
        assert f["ch1"].shape == f["ch2"].shape == (24, 40, 48)
        assert f["ch2"][-1].any() and np.isfinite(f["mean_disp"][:]).all()  # all frames written
