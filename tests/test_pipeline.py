"""Pipeline: run modes, chunk independence, resume after SIGKILL, laziness, accuracy, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from flowreg_dask.datasets import synthetic_recording
from flowreg_dask.errors import InvalidInputError, OutputExistsError
from flowreg_dask.options import OFOptions, RegistrationConfig
from flowreg_dask.pipeline import graph
from flowreg_dask.pipeline.api import compensate_recording, register
from flowreg_dask.pipeline.arrays import compensate_arr
from flowreg_dask.store.reader import open_result
from flowreg_dask.store.writer import CorrectedStore

N, H, W = 48, 48, 56
B = 8  # border excluded from endpoint errors


@pytest.fixture(scope="module")
def rec():
    return synthetic_recording(n_frames=N, height=H, width=W, n_channels=2, seed=3)


def _opts(**kw) -> OFOptions:
    base = dict(
        quality_setting="fast",
        buffer_size=16,
        reference_frames=list(range(12)),
        iterations=20,
        save_w=True,
        save_valid_idx=True,
    )
    base.update(kw)
    return OFOptions(**base)


def _as_da(movie: np.ndarray, chunk: int) -> xr.DataArray:
    return xr.DataArray(da.from_array(movie, chunks=(chunk, -1, -1, -1)), dims=("t", "y", "x", "c"))


def _epe(flow: np.ndarray, truth: np.ndarray) -> float:
    return float(np.linalg.norm(flow - truth, axis=-1)[:, B:-B, B:-B].mean())


def _rel_truth(rec, ref_frames=range(12)) -> np.ndarray:
    """Ground truth relative to a reference built from ``ref_frames`` (to first order, that
    reference is the template displaced by the mean motion of those frames)."""
    return rec.flow - rec.flow[list(ref_frames)].mean(axis=0)


def _load(path: Path) -> dict[str, np.ndarray]:
    ds = open_result(path)
    return {k: ds[k].values for k in ("corrected", "flow", "valid", "reference", "mean_disp")}


def test_modes_give_identical_stores(tmp_path, rec):
    results = {}
    for mode in ("sequential", "threading", "multiprocessing", "distributed"):
        out = compensate_recording(
            _opts(),
            RegistrationConfig(parallelization=mode, n_jobs=2, progress=False),
            recording=rec.movie,
            output=tmp_path / f"{mode}.zarr",
        ).output
        results[mode] = _load(out)
    ref = results["sequential"]
    for mode, res in results.items():
        for key in ref:
            np.testing.assert_array_equal(res[key], ref[key], err_msg=f"{mode}: {key}")
    flow = ref["flow"]
    truth = _rel_truth(rec)
    assert _epe(flow, truth) < 0.5 * _epe(np.zeros_like(flow), truth)


def test_preprocessing_exact_across_chunk_sizes(rec):
    from flowreg_dask.core.params import resolve_params

    sigma = [[1.0, 1.0, 1.5], [1.0, 1.0, 0.8]]  # temporal halo of 6 frames
    prep = graph.prepare(
        rec.reference,
        params=resolve_params(),
        sigma=sigma,
        channel_normalization="joint",
        interpolation="cubic",
        out_dtype=np.uint16,
        update_init=True,
    )
    small = graph.preprocessed(da.from_array(rec.movie, chunks=(7, -1, -1, -1)), prep).compute()
    large = graph.preprocessed(da.from_array(rec.movie, chunks=(N, -1, -1, -1)), prep).compute()
    np.testing.assert_allclose(small, large, rtol=0, atol=1e-6)


def test_flows_independent_of_buffer_size(rec):
    opts_a = _opts(buffer_size=10, quality_setting="quality")
    opts_b = _opts(buffer_size=N, quality_setting="quality")
    ref = rec.reference
    _, wa = compensate_arr(rec.movie, ref, opts_a, config=RegistrationConfig(progress=False))
    _, wb = compensate_arr(rec.movie, ref, opts_b, config=RegistrationConfig(progress=False))
    # every frame's initial flow follows a rule in absolute frame positions
    np.testing.assert_array_equal(wa, wb)
    assert _epe(wa, rec.flow) < 0.5 * _epe(np.zeros_like(wa), rec.flow)


def test_pipeline_epe_matches_engine_frame_by_frame(rec):
    from flowreg_dask.core.params import resolve_params
    from flowreg_dask.core.solver import FlowEstimator

    opts = _opts(update_initialization_w=False)
    ds = register(rec.movie, opts, reference=rec.reference)
    flow = ds["flow"].values
    prep = graph.prepare(
        rec.reference.astype(np.float32),
        params=resolve_params(opts, n_channels=2),
        sigma=opts.sigma,
        channel_normalization="joint",
        interpolation="cubic",
        out_dtype=np.uint16,
        update_init=False,
    )
    from flowreg_dask.pipeline.blocks import preprocess_block

    proc = preprocess_block(rec.movie, vmin=prep.vmin, vmax=prep.vmax, sigma=opts.sigma)
    est = FlowEstimator(prep.ref_proc, prep.params)
    direct = np.stack([est.flow(f) for f in proc])
    assert abs(_epe(flow, rec.flow) - _epe(direct, rec.flow)) < 0.05
    np.testing.assert_allclose(flow, direct, atol=1e-4)


def test_lazy_slicing_registers_only_touched_chunks(rec, monkeypatch):
    calls = []
    real = graph.register_span

    def counting(raw, **kw):
        calls.append((kw["start"], kw["stop"]))
        return real(raw, **kw)

    monkeypatch.setattr(graph, "register_span", counting)
    ds = register(rec.movie, _opts(buffer_size=24), reference=rec.reference)
    assert calls == []  # building the dataset registers nothing
    sub = ds["corrected"][30:32].compute(scheduler="synchronous")
    assert sub.shape == (2, H, W, 2)
    assert calls == [(24, 48)]  # only the chunk holding frames 30..31 (chunk 0 gives its halo)
    calls.clear()
    dask_out = ds[["corrected", "flow", "valid"]].isel(t=slice(0, 12))
    dask_out.compute(scheduler="synchronous")
    assert calls == [(0, 24)]  # all outputs of a chunk come from one registration


def test_corrected_dtype_and_clipping(rec):
    corrected, flow = compensate_arr(
        rec.movie, rec.reference, _opts(), config=RegistrationConfig(progress=False)
    )
    assert corrected.dtype == np.uint16 and flow.dtype == np.float32
    assert corrected.shape == rec.movie.shape and flow.shape == (N, H, W, 2)
    f32, _ = compensate_arr(
        rec.movie,
        rec.reference,
        _opts(output_typename="float32"),
        config=RegistrationConfig(progress=False),
    )
    assert f32.dtype == np.float32
    np.testing.assert_array_equal(np.clip(np.rint(f32), 0, 65535).astype(np.uint16), corrected)


def test_single_channel_and_2d_shapes(rec):
    movie = rec.movie[..., 1]
    reg, w = compensate_arr(
        movie, rec.reference[..., 1], _opts(), config=RegistrationConfig(progress=False)
    )
    assert reg.shape == movie.shape and w.shape == (N, H, W, 2)


def test_update_reference_chain(tmp_path, rec):
    out = compensate_recording(
        _opts(update_reference=True),
        RegistrationConfig(progress=False),
        recording=rec.movie,
        output=tmp_path / "upd.zarr",
    ).output
    res = _load(out)
    flow = res["flow"]
    truth = _rel_truth(rec)
    assert _epe(flow, truth) < 0.6 * _epe(np.zeros_like(flow), truth)


def test_callbacks_and_progress(tmp_path, rec):
    seen, ws, regs = [], [], []
    compensate_recording(
        _opts(buffer_size=24),
        RegistrationConfig(parallelization="threading", progress=False),
        recording=rec.movie,
        output=tmp_path / "cb.zarr",
        progress_callback=lambda cur, tot: seen.append((cur, tot)),
        w_callback=lambda w, s, e: ws.append((w.shape, s, e)),
        registered_callback=lambda r, s, e: regs.append((r.shape, s, e)),
    )
    assert seen[-1] == (N, N) and len(seen) == 2
    assert sorted(x[1:] for x in ws) == [(0, 24), (24, 48)]
    assert all(shape == (24, H, W, 2) for shape, _, _ in ws)
    assert all(shape == (24, H, W, 2) for shape, _, _ in regs)


def test_existing_output_not_overwritten(tmp_path, rec):
    out = tmp_path / "o.zarr"
    cfg = RegistrationConfig(progress=False)
    compensate_recording(_opts(), cfg, recording=rec.movie, output=out)
    with pytest.raises(OutputExistsError, match="overwrite"):
        compensate_recording(_opts(), cfg, recording=rec.movie, output=out)
    compensate_recording(_opts(), cfg, recording=rec.movie, output=out, overwrite=True)
    assert open_result(out)["corrected"].shape == (N, H, W, 2)


def test_bad_input_errors_before_work(tmp_path, rec):
    cfg = RegistrationConfig(progress=False)
    with pytest.raises(InvalidInputError, match="reference"):
        compensate_arr(rec.movie, np.zeros((10, 10)), _opts(), config=cfg)
    with pytest.raises(InvalidInputError, match="zero frames|empty"):
        compensate_arr(np.zeros((0, H, W), np.uint16), None, _opts(), config=cfg)
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    with pytest.raises(OSError):
        compensate_recording(_opts(), cfg, recording=rec.movie, output=blocker / "out.zarr")
    with pytest.raises(FileNotFoundError):
        compensate_recording(
            _opts(), cfg, recording=tmp_path / "missing.tif", output=tmp_path / "x.zarr"
        )


SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from flowreg_dask.datasets import synthetic_recording
    from flowreg_dask.options import OFOptions, RegistrationConfig
    from flowreg_dask.pipeline import blocks
    from flowreg_dask.pipeline.api import compensate_recording

    out, slow = sys.argv[1], sys.argv[2] == "slow"
    if slow:  # make chunks slow so the parent can kill us mid-run
        real = blocks.register_span
        def slow_block(*a, **k):
            time.sleep(0.6)
            return real(*a, **k)
        import flowreg_dask.pipeline.graph as g
        g.register_span = slow_block
    rec = synthetic_recording(n_frames=96, height=48, width=56, n_channels=2, seed=3)
    opts = OFOptions(quality_setting="fast", buffer_size=20, reference_frames=list(range(12)),
                     iterations=20, save_w=True, save_valid_idx=True)
    if __name__ == "__main__":
        compensate_recording(opts, RegistrationConfig(parallelization="sequential", progress=False),
                             recording=rec.movie, output=out)
        print("done")
    """
)


def test_resume_after_sigkill_matches_clean_run(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    clean = tmp_path / "clean.zarr"
    subprocess.run([sys.executable, str(script), str(clean), "fast"], check=True, env=env)
    killed = tmp_path / "killed.zarr"
    proc = subprocess.Popen([sys.executable, str(script), str(killed), "slow"], env=env)

    def n_done() -> int:
        try:
            return len(CorrectedStore.open(killed).done_chunks())
        except Exception:  # not created yet
            return 0

    deadline = time.time() + 120
    while time.time() < deadline:
        if n_done() >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 2 <= n_done() < 4, n_done()  # 96 frames in chunks of 20 (the last one merged: 36)
    with pytest.raises(Exception, match="incomplete|missing|rerun"):
        open_result(killed)
    subprocess.run([sys.executable, str(script), str(killed), "fast"], check=True, env=env)
    a, b = _load(clean), _load(killed)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_reference_preregistration_of_small_frames_warns_nothing():
    """On frames too small for level 9 the pre-registration stops at their deepest level, silently:
    the user asked for no such level (a too deep min_level of their own is still reported)."""
    import warnings

    from flowreg_dask.core import reference as cref
    from flowreg_dask.core.params import resolve_params
    from flowreg_dask.core.pyramid import pyramid_plan

    params = resolve_params(quality_setting="fast")
    deepest = pyramid_plan(40, 48, eta=params.eta, levels=params.levels, min_level=99)[-1].i
    assert deepest < cref.PREREG_MIN_LEVEL
    assert cref.prereg_params(params, height=40, width=48).min_level == deepest
    small = synthetic_recording(n_frames=12, height=40, width=48, n_channels=1, seed=2)
    opts = OFOptions(quality_setting="fast", reference_frames=list(range(0, 8)))
    cfg = RegistrationConfig(parallelization="sequential", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        corrected = register(small.movie, opts, config=cfg).corrected.values
    assert corrected.shape == (12, 40, 48, 1)


@pytest.mark.parametrize("preset", ["balanced", "quality"])
def test_reference_preregistered_at_a_coarse_level_is_as_accurate(monkeypatch, preset):
    """The reference's pre-registration stops at pyramid level 9 (README): the final flows are
    at least as accurate as with a pre-registration at the run's own finest level."""
    from flowreg_dask.core import reference as cref
    from flowreg_dask.core.params import resolve_params

    assert cref.prereg_params(resolve_params(quality_setting=preset)).min_level == 9
    assert cref.prereg_params(resolve_params(min_level=10)).min_level == 10
    big = synthetic_recording(n_frames=40, height=128, width=128, n_channels=1, seed=5)
    frames = list(range(8, 40))
    opts = OFOptions(quality_setting=preset, reference_frames=frames, iterations=30)
    cfg = RegistrationConfig(parallelization="threading", n_jobs=2, progress=False)
    truth = big.flow - big.flow[frames].mean(axis=0)
    epe = {}
    for level in (0, 9):
        monkeypatch.setattr(cref, "PREREG_MIN_LEVEL", level)
        ds = register(big.movie, opts, config=cfg)
        epe[level] = _epe(ds.flow[:16].values, truth[:16])
    assert epe[9] <= epe[0] + 0.01, epe


@pytest.mark.parametrize("mode", ["sequential", "threading"])
def test_local_runs_do_not_import_distributed(tmp_path, rec, mode):
    """A local run (reference, registration, store) never imports ``distributed``: dask imports
    it for a scheduler given by name or for a dask array handed to ``dask.delayed``, about 0.2 s
    on one core in every run. Checked in a fresh interpreter."""
    import tifffile

    src = tmp_path / "rec.tif"
    tifffile.imwrite(src, rec.movie[:24, :, :, 0])
    code = textwrap.dedent(
        f"""
        import sys
        from flowreg_dask.options import OFOptions, RegistrationConfig
        from flowreg_dask.pipeline.api import compensate_recording
        opts = OFOptions(quality_setting="fast", buffer_size=8, reference_frames=list(range(10)),
                         iterations=5, save_w=True)
        compensate_recording(opts, config=RegistrationConfig(parallelization={mode!r}, n_jobs=2,
                             progress=False), recording={str(src)!r},
                             output={str(tmp_path / "out.zarr")!r})
        print(sorted(m for m in sys.modules if m.split(".")[0] == "distributed")[:3])
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[-2] == "[]"
    assert (tmp_path / "out.zarr").exists()


def test_process_modes_run_no_kernel_in_the_main_process(tmp_path, rec):
    """With worker processes, the step between the reference and the chunks (the pre-processed
    reference) runs on a worker too: the main process never starts numba (about 0.5 s on one
    core while every worker waits). The kernels it would have run have no loaded signature."""
    import tifffile

    src = tmp_path / "rec.tif"
    tifffile.imwrite(src, rec.movie[:24, :, :, 0])
    code = textwrap.dedent(
        f"""
        from flowreg_dask.kernels.cpu import gaussian
        from flowreg_dask.options import OFOptions, RegistrationConfig
        from flowreg_dask.pipeline.api import compensate_recording
        if __name__ == "__main__":
            opts = OFOptions(quality_setting="fast", buffer_size=8,
                             reference_frames=list(range(10)), iterations=5)
            compensate_recording(opts, config=RegistrationConfig(
                parallelization="multiprocessing", n_jobs=2, progress=False),
                recording={str(src)!r}, output={str(tmp_path / "out.zarr")!r})
            print(len(gaussian.filter_frames.signatures))
        """
    )
    script = tmp_path / "run.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "0"
    ds = open_result(tmp_path / "out.zarr")
    assert ds["corrected"].shape[0] == 24
