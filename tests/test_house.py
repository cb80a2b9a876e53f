"""One house: one axis order with physical coordinates, the recording opened once per run."""

from __future__ import annotations

import numpy as np
import tifffile

import flowreg_dask as fr
from flowreg_dask._constants import DIMS

OPTS = fr.OFOptions(quality_setting="fast", reference_frames=[0, 1], save_w=True)
CFG = fr.RegistrationConfig(parallelization="sequential", progress=False)


def _imagej_tiff(path):
    movie = (np.random.default_rng(0).random((12, 2, 32, 36)) * 1000).astype(np.uint16)
    tifffile.imwrite(
        path,
        movie,
        imagej=True,
        resolution=(2.0, 2.0),  # pixels per micrometre: 0.5 um pixels
        metadata={"axes": "TCYX", "finterval": 0.5, "unit": "um"},
    )
    return path


def test_one_axis_order_with_seconds_and_micrometres(tmp_path):
    path = _imagej_tiff(tmp_path / "rec.tif")
    rec = fr.open_recording(path)
    lazy = fr.register(path, OPTS)
    ref = fr.compensate_recording(OPTS, CFG, recording=path, output=tmp_path / "out.zarr")
    stored = fr.open_result(ref)
    for movie in (rec, lazy["corrected"], stored["corrected"]):
        assert movie.dims == DIMS
        np.testing.assert_allclose(movie["t"].values[:3], [0.0, 0.5, 1.0])  # seconds
        np.testing.assert_allclose(movie["y"].values[:2], [0.0, 0.5])  # micrometres
    assert stored["t"].attrs["units"] == "second" and stored["y"].attrs["units"] == "micrometer"
    for ds in (lazy, stored):
        assert ds["flow"].dims == ("t", "y", "x", "component")
        assert ds["reference"].dims == ("y", "x", "c")
    # without physical sizes: frame and pixel indices
    np.save(tmp_path / "plain.npy", np.zeros((4, 8, 8), np.uint16))
    plain = fr.open_recording(tmp_path / "plain.npy")
    assert plain.dims == DIMS and plain["t"].values.tolist() == [0, 1, 2, 3]


def test_a_run_opens_its_recording_once(tmp_path, monkeypatch):
    import flowreg_dask.io as io

    calls = []
    original = io.open_recording

    def counting(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(io, "open_recording", counting)
    path = _imagej_tiff(tmp_path / "rec.tif")
    fr.compensate_recording(OPTS, CFG, recording=path, output=tmp_path / "out.zarr")
    assert len(calls) == 1
