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


def test_one_coarse_to_fine_driver_for_every_backend(monkeypatch):
    """The numba and the batched backends run the same driver on the same level plan (so the GPU
    path cannot drift from the CPU path): every pass over the pyramid goes through
    ``core.coarse_to_fine.pyramid_pass`` and sees identical levels, references and alphas."""
    from flowreg_dask.core import coarse_to_fine
    from flowreg_dask.core.batched import BatchedFlowEstimator
    from flowreg_dask.core.params import resolve_params
    from flowreg_dask.core.solver import FlowEstimator

    rng = np.random.default_rng(3)
    ref = rng.random((40, 44, 2)).astype(np.float32)
    frames = np.roll(ref, 1, axis=1)[None].repeat(2, axis=0)
    params = resolve_params(quality_setting="fast", n_channels=2, gnc_schedule=[0.0, 1.0])
    calls: list[tuple] = []
    real = coarse_to_fine.pyramid_pass

    def spy(ops, levels, moving, u0, v0, **kw):
        calls.append((type(ops).__name__, [ld.level for ld in levels], [ld.alpha for ld in levels]))
        return real(ops, levels, moving, u0, v0, **kw)

    monkeypatch.setattr(coarse_to_fine, "pyramid_pass", spy)
    cpu = FlowEstimator(ref, params).flows(frames)
    batched = BatchedFlowEstimator(ref, params, batch_size=2).flows(frames)
    kinds = [c[0] for c in calls]
    assert kinds == ["_NumbaLevelOps"] * 4 + ["_BatchedLevelOps"] * 2  # 2 GNC stages each
    assert calls[0][1:] == calls[-1][1:]  # the same levels and regularisation
    # the two level solvers (lexicographic vs red-black SOR) agree closely on the same plan
    assert np.abs(cpu - batched).mean() < 0.05
