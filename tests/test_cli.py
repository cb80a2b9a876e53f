"""Command line: demo, correct (with resume/overwrite rules), info, errors."""

from __future__ import annotations

import numpy as np
import pytest

from flowreg_dask.cli.main import main
from flowreg_dask.datasets import SyntheticSpec, save_synthetic_recording
from flowreg_dask.pipeline.api import chunk_frames
from flowreg_dask.store.zarr_store import open_result


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
    assert ds["corrected"].shape == (40, 2, 64, 64)


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
    assert ds["corrected"].shape == (24, 2, 40, 48)
    assert ds["flow"].shape == (24, 2, 40, 48)
    assert main(["info", str(out)]) == 0
    assert '"status": "complete"' in capsys.readouterr().out
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
    np.testing.assert_array_equal(back.values, np.moveaxis(store["corrected"].values, 1, -1))


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


def test_flow_backend_flag_reaches_the_options(tif, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cupy", None)  # no CuPy, as on a CPU-only machine
    out = tmp_path / "gpu.zarr"
    code = main(["correct", str(tif), "-o", str(out), "--flow-backend", "cupy", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "flow_backend='cupy'" in err and "flowreg-dask[gpu]" in err
    assert not out.exists()
