"""The quality report, end to end on small pipeline outputs."""

from __future__ import annotations

import argparse
import base64
import json
import re
import shutil

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from flowreg_dask import __version__  # noqa: E402
from flowreg_dask.cli.report import add_report_command  # noqa: E402
from flowreg_dask.datasets import SyntheticSpec, save_synthetic_recording  # noqa: E402
from flowreg_dask.errors import FlowRegWarning, InvalidInputError  # noqa: E402
from flowreg_dask.options import OFOptions, RegistrationConfig  # noqa: E402
from flowreg_dask.pipeline.api import compensate_recording  # noqa: E402
from flowreg_dask.report import FIGURES, default_report_dir, write_report  # noqa: E402

N, SIZE = 32, 64
PNG = b"\x89PNG\r\n\x1a\n"
SUMMARY_KEYS = {
    "created",
    "software_version",
    "store",
    "store_software_version",
    "input",
    "raw",
    "shape",
    "dtype",
    "frames_per_second",
    "frame_rate",
    "frame",
    "metrics",
    "metric_parameters",
    "options",
    "figures",
}


def _options(**kw) -> OFOptions:
    base = dict(
        quality_setting="fast",
        buffer_size=16,
        reference_frames=list(range(16)),
        save_w=True,
        save_valid_idx=True,
    )
    base.update(kw)
    return OFOptions(**base)


def _run(recording, output) -> object:
    return compensate_recording(
        _options(), RegistrationConfig(progress=False), recording=recording, output=output
    ).output


@pytest.fixture(scope="module")
def tiff(tmp_path_factory):
    spec = SyntheticSpec(n_frames=N, height=SIZE, width=SIZE, n_channels=2, seed=21)
    return save_synthetic_recording(
        tmp_path_factory.mktemp("rec") / "recording.tif", spec=spec, save_flow=False
    )


@pytest.fixture(scope="module")
def store(tiff, tmp_path_factory):
    return _run(tiff, tmp_path_factory.mktemp("out") / "corrected.zarr")


@pytest.fixture(scope="module")
def report(store):
    return write_report(store, progress=False)


def _srcs_and_hrefs(page: str) -> tuple[list[str], list[str]]:
    srcs = re.findall(r"""\bsrc\s*=\s*["']([^"']*)["']""", page, flags=re.I)
    hrefs = re.findall(r"""\bhref\s*=\s*["']([^"']*)["']""", page, flags=re.I)
    return srcs, hrefs


def test_report_files(report, store):
    assert report.name == "report.html"
    assert report.parent == default_report_dir(store) == store.parent / "corrected_report"
    files = {p.name for p in report.parent.iterdir()}
    assert files == set(FIGURES) | {"summary.json", "report.html"}
    for name in FIGURES:
        data = (report.parent / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000


def test_summary_json(report, tiff):
    summary = json.loads((report.parent / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["software_version"] == __version__
    assert summary["shape"] == {"t": N, "y": SIZE, "x": SIZE, "c": 2}
    assert summary["raw"] == str(tiff)  # found from the store's metadata
    assert summary["frames_per_second"] > 0
    assert summary["options"]["quality_setting"] == "fast"
    assert summary["figures"] == list(FIGURES)
    m = summary["metrics"]
    for key in (
        "correlation_raw_mean",
        "correlation_corrected_mean",
        "crispness_raw",
        "crispness_corrected",
        "mse_factor",
        "std_factor",
        "residual_raw_mean",
        "residual_corrected_mean",
        "mean_disp_mean",
        "max_disp_max",
    ):
        assert isinstance(m[key], float), key
    assert m["correlation_corrected_mean"] > m["correlation_raw_mean"]
    assert m["mse_factor"] > 1 and m["std_factor"] > 1
    assert summary["metric_parameters"]["reference_frames"] == list(range(16))
    assert 0 <= summary["frame"] < N


def test_html_embeds_every_figure_and_is_self_contained(report):
    page = report.read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == len(FIGURES)
    srcs, hrefs = _srcs_and_hrefs(page)
    assert len(srcs) == len(FIGURES) and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert hrefs == []
    assert "<script" not in page.lower() and "@import" not in page and "url(" not in page
    assert "http://" not in page and "https://" not in page
    # the embedded images are exactly the PNG files
    embedded = [base64.b64decode(s.split(",", 1)[1]) for s in srcs]
    on_disk = [(report.parent / name).read_bytes() for name in FIGURES]
    assert embedded == on_disk
    # metrics table and options table
    assert "Correlation with reference" in page and "MSE performance factor" in page
    assert "quality_setting" in page and "buffer_size" in page


def test_report_without_raw(tmp_path):
    rec = SyntheticSpec(n_frames=16, height=48, width=48, n_channels=1, seed=2).frames(0, 16)[0]
    store = compensate_recording(
        _options(buffer_size=8, reference_frames=list(range(8))),
        RegistrationConfig(progress=False),
        recording=rec,
        output=tmp_path / "arr.zarr",
    ).output
    html = write_report(store, tmp_path / "rep", progress=False, residual=False, frame=3)
    summary = json.loads((html.parent / "summary.json").read_text())
    assert summary["raw"] is None and summary["frame"] == 3
    assert "mse_factor" not in summary["metrics"]
    assert "residual_motion.png" not in summary["figures"]
    page = html.read_text()
    assert page.count("data:image/png;base64,") == len(summary["figures"]) == len(FIGURES) - 1
    assert "not available" in page
    # an explicit raw of the wrong shape is refused
    with pytest.raises(InvalidInputError, match="shape"):
        write_report(store, tmp_path / "rep2", raw=np.zeros((3, 48, 48, 1)), progress=False)
    # the right raw, passed as an array, is compared
    html = write_report(store, tmp_path / "rep3", raw=rec, progress=False, residual=False)
    summary = json.loads((html.parent / "summary.json").read_text())
    assert summary["metrics"]["mse_factor"] > 1


def test_unreadable_recorded_input_warns_and_reports_the_corrected_movie(store, tiff, tmp_path):
    moved = tmp_path / "corrected.zarr"
    shutil.copytree(store, moved)
    text = (moved / "zarr.json").read_text()
    assert json.dumps(str(tiff))[1:-1] in text  # the store records its input
    (moved / "zarr.json").write_text(text.replace(str(tiff), str(tmp_path / "gone.tif")))
    with pytest.warns(FlowRegWarning, match="could not be opened|covers the corrected"):
        html = write_report(moved, progress=False, residual=False)
    summary = json.loads((html.parent / "summary.json").read_text())
    assert summary["raw"] is None and summary["input"] == str(tmp_path / "gone.tif")
    assert "mse_factor" not in summary["metrics"]


def test_cli_subcommand(store, tiff, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="flowreg-dask")
    sub = parser.add_subparsers(dest="command", required=True)
    add_report_command(sub)
    args = parser.parse_args(
        ["report", str(store), "--out", str(tmp_path / "cli"), "--raw", str(tiff), "--frame", "2"]
        + ["--no-progress", "--no-residual"]
    )
    assert args.func(args) == 0
    assert "report.html" in capsys.readouterr().out
    summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert summary["frame"] == 2 and summary["raw"] == str(tiff)
