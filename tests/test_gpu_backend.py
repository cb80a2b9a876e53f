"""The batched (GPU) flow backend: its numpy path against the numba CPU backend and naive twins,
backend selection, and the run-mode fallback. Tests marked ``gpu`` need cupy and a CUDA device and
are skipped without them."""

from __future__ import annotations

import dataclasses
import functools
import sys
import warnings

import naive
import numpy as np
import pytest

from flowreg_dask.core.batched import BatchedFlowEstimator
from flowreg_dask.core.params import resolve_params
from flowreg_dask.core.solver import FlowEstimator, make_estimator
from flowreg_dask.datasets import synthetic_recording
from flowreg_dask.errors import (
    BackendUnavailableError,
    FlowRegWarning,
    InvalidInputError,
    InvalidOptionError,
)
from flowreg_dask.kernels.cpu import median as cpu_median
from flowreg_dask.kernels.cpu import sor as cpu_sor
from flowreg_dask.kernels.cpu import tensors as cpu_tensors
from flowreg_dask.kernels.cpu import warp as cpu_warp
from flowreg_dask.kernels.cpu.resample import resize as cpu_resize
from flowreg_dask.kernels.gpu import ops
from flowreg_dask.kernels.gpu.device import cuda_device_count
from flowreg_dask.options import OFOptions, RegistrationConfig
from flowreg_dask.pipeline.arrays import compensate_arr
from flowreg_dask.pipeline.blocks import register_span
from flowreg_dask.pipeline.graph import prepare
from flowreg_dask.pipeline.run import config_for_backend

BORDER = 6
EPE_TOL = 0.05  # per-frame |EPE(batched red-black) - EPE(numba lexicographic)|, px


def _rng(seed):
    return np.random.default_rng(seed)


def _f32(a):
    return np.ascontiguousarray(a, dtype=np.float32)


@functools.lru_cache(maxsize=8)
def _recording(size=64, n_frames=3, n_channels=1, seed=1):
    """Pre-processed (reference, frames, true flow) as the pipeline prepares them."""
    rec = synthetic_recording(
        n_frames=n_frames, height=size, width=size, n_channels=n_channels, seed=seed
    )
    prep = prepare(
        rec.reference,
        params=resolve_params(),
        sigma=[1.0, 1.0, 0.0],
        channel_normalization="joint",
        interpolation="cubic",
        out_dtype=np.float32,
        update_init=False,
    )
    from flowreg_dask.pipeline.blocks import preprocess_block

    frames = preprocess_block(
        rec.movie, vmin=prep.vmin, vmax=prep.vmax, sigma=prep.sigma, temporal=False
    )
    return prep.ref_proc, frames, rec.flow, rec.movie, prep


def _epe(flows, truth):
    b = BORDER
    return np.linalg.norm(flows - truth, axis=-1)[:, b:-b, b:-b].mean(axis=(1, 2))


# ------------------------------------------------------------------ whole estimator vs numba


CASES = {
    "quality-gc": dict(quality_setting="quality"),
    "balanced-gray": dict(quality_setting="balanced", constancy_assumption="gray"),
    "fast-cs": dict(quality_setting="fast", constancy_assumption="cs"),
    "robust-smooth": dict(quality_setting="balanced", a_smooth=0.6, update_lag=3),
    "gnc": dict(quality_setting="fast", gnc_schedule=(0.0, 1.0), warping_steps=2, iterations=20),
    "cc-init": dict(quality_setting="balanced", cc_initialization=True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_batched_numpy_matches_numba_backend(case):
    ref, frames, truth, _, _ = _recording()
    params = resolve_params(**CASES[case])
    cpu = make_estimator(ref, params, "numba").flows(frames)
    est = make_estimator(ref, params, "numpy")
    assert isinstance(est, BatchedFlowEstimator)
    out = est.flows(frames)
    assert out.shape == cpu.shape and out.dtype == np.float32 and isinstance(out, np.ndarray)
    e_cpu, e_gpu = _epe(cpu, truth), _epe(out, truth)
    assert np.all(np.abs(e_cpu - e_gpu) <= EPE_TOL), (e_cpu, e_gpu)


def _lexicographic_sweep(du, dv, WE, WS, A12, inv1, inv2, Lu, Lv, omega, color):
    """The CPU's row-major SOR sweep per frame (on the first 'colour'), same padded layout."""
    if color == 0:
        for b in range(du.shape[0]):
            cpu_sor._sweep(
                du[b],
                dv[b],
                WE[b],
                WS[b],
                A12[b],
                inv1[b],
                inv2[b],
                Lu[b],
                Lv[b],
                np.float32(omega),
            )


LEX_CASES = {
    "cs-balanced": dict(quality_setting="balanced", constancy_assumption="cs"),
    "gray-quality": dict(quality_setting="quality", constancy_assumption="gray", iterations=20),
    "gnc-robust": dict(
        quality_setting="fast",
        constancy_assumption="cs",
        gnc_schedule=(0.0, 0.5, 1.0),
        warping_steps=2,
        iterations=20,
        a_smooth=0.5,
    ),
    "cc-init": dict(quality_setting="balanced", constancy_assumption="cs", cc_initialization=True),
}


@pytest.mark.parametrize("case", sorted(LEX_CASES))
def test_batched_with_the_cpu_sweep_reproduces_numba(case):
    """Everything but the sweep order: with the CPU's lexicographic sweep plugged in, the batched
    pyramid, resampling, warps, tensors, psi updates, median and GNC/cc paths give the numba
    flows up to float32 rounding (gc is left out: its normalisation amplifies rounding)."""
    ref, frames, truth, _, _ = _recording()
    params = resolve_params(**LEX_CASES[case])
    init = truth.mean(axis=0) if case == "gray-quality" else None
    cpu = FlowEstimator(ref, params).flows(frames, init)
    est = BatchedFlowEstimator(ref, params)
    est._half_sweep = _lexicographic_sweep
    np.testing.assert_allclose(est.flows(frames, init), cpu, atol=2e-3)


@pytest.mark.parametrize("init_kind", ["shared", "per_frame"])
def test_batched_init_flow_matches_numba(init_kind):
    ref, frames, truth, _, _ = _recording()
    params = resolve_params(quality_setting="balanced")
    init = truth.mean(axis=0) if init_kind == "shared" else truth * np.float32(0.8)
    cpu = FlowEstimator(ref, params).flows(frames, init)
    out = make_estimator(ref, params, "numpy").flows(frames, init)
    assert np.all(np.abs(_epe(cpu, truth) - _epe(out, truth)) <= EPE_TOL)


def test_batched_two_channels_with_weights_matches_numba():
    ref, frames, truth, _, _ = _recording(size=48, n_frames=2, n_channels=2, seed=3)
    params = resolve_params(quality_setting="balanced", weight=[0.7, 0.3], a_data=(0.45, 0.3))
    cpu = FlowEstimator(ref, params).flows(frames)
    out = make_estimator(ref, params, "numpy").flows(frames)
    assert np.all(np.abs(_epe(cpu, truth) - _epe(out, truth)) <= EPE_TOL)


def test_batches_are_independent_of_the_batch_size():
    """Frames do not interact; only the BLAS blocking of the resampling GEMMs (rounding) changes
    with the batch size (cs: little amplification of rounding)."""
    ref, frames, _, _, _ = _recording()
    params = resolve_params(quality_setting="fast", constancy_assumption="cs")
    one = BatchedFlowEstimator(ref, params, batch_size=1)
    all_ = BatchedFlowEstimator(ref, params, batch_size=8)
    a = one.flows(frames)
    b = all_.flows(frames)
    assert one.last_batch_size == 1 and all_.last_batch_size == frames.shape[0]
    np.testing.assert_allclose(a, b, atol=2e-3)
    np.testing.assert_allclose(one.flow(frames[1]), a[1], atol=1e-5)


def test_batched_input_checks():
    ref, frames, _, _, _ = _recording()
    est = BatchedFlowEstimator(ref, resolve_params(quality_setting="fast"))
    with pytest.raises(InvalidInputError, match="frames"):
        est.flows(frames[:, :10])
    bad = frames.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        est.flows(bad)
    with pytest.raises(InvalidInputError, match="init"):
        est.flows(frames, np.zeros((5, 5, 2), np.float32))
    assert est.flows(frames[:0]).shape == (0,) + frames.shape[1:3] + (2,)
    assert est.flows(frames[..., 0]).shape == frames.shape[:3] + (2,)  # (T, H, W) for one channel
    with pytest.raises(InvalidOptionError, match="batch_size"):
        BatchedFlowEstimator(ref, resolve_params(), batch_size=0)
    with pytest.raises(InvalidOptionError, match="fused"):
        BatchedFlowEstimator(ref, resolve_params(), fused=True)


def test_batch_size_from_free_gpu_memory(monkeypatch):
    """The automatic batch size follows the free memory; a frame that cannot fit is an error."""
    from flowreg_dask.kernels.gpu import device

    ref, _, _, _, _ = _recording()
    est = BatchedFlowEstimator(ref, resolve_params())
    per = est.bytes_per_frame()
    assert per > 64 * 64 * 4 * 30
    est.on_gpu = True  # pretend: memory from the (mocked) device
    monkeypatch.setattr(device, "free_device_bytes", lambda xp: int(10.5 * per / 0.8))
    assert est.batch_size_for(100) == 10
    assert est.batch_size_for(3) == 3
    monkeypatch.setattr(device, "free_device_bytes", lambda xp: per // 2)
    with pytest.raises(BackendUnavailableError, match="MiB of GPU memory"):
        est.batch_size_for(4)


# ------------------------------------------------------------------------ kernels vs CPU kernels


@pytest.mark.parametrize(
    "src, dst, antialias",
    [
        ((40, 52), (32, 42), True),
        ((9, 12), (40, 52), True),
        ((20, 30), (20, 17), True),
        ((17, 23), (40, 52), False),
        ((12, 12), (12, 12), True),
    ],
)
def test_resize_matches_cpu(src, dst, antialias):
    img = _f32(_rng(0).random(src + (2,)))
    expected = cpu_resize(img, *dst, antialias=antialias)
    got = ops.Resampler(np).resize(img.transpose(2, 0, 1)[None], *dst, antialias=antialias)
    np.testing.assert_allclose(got[0].transpose(1, 2, 0), expected, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("nc", [1, 2])
def test_warp_matches_cpu(nc):
    rng = _rng(1)
    b, h, w = 3, 11, 14
    img = _f32(rng.random((b, h, w, nc)))
    fill = _f32(rng.random((h, w, nc)))
    u = _f32(rng.normal(0, 3, (b, h, w)))
    v = _f32(rng.normal(0, 3, (b, h, w)))
    u[0, 0, :4] = [-0.0, 13.0, 13.999, -0.001]  # bounds of the in-frame test
    got, inside = ops.warp_cubic(
        np, _f32(img.transpose(0, 3, 1, 2)), u, v, fill.transpose(2, 0, 1)[None]
    )
    for t in range(b):
        out = np.empty((h, w, nc), np.float32)
        valid = np.empty((h, w), np.uint8)
        cpu_warp.warp_image(img[t], u[t], v[t], fill, out, 3, valid)
        np.testing.assert_array_equal(inside[t], valid.astype(bool))
        np.testing.assert_allclose(got[t].transpose(1, 2, 0), out, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("term", ["gc", "gray", "cs"])
@pytest.mark.parametrize("shape", [(9, 13), (1, 7), (6, 2)])
def test_tensors_match_cpu(term, shape):
    rng = _rng(2)
    h, w = shape
    nc, b = 2, 2
    f1 = _f32(rng.random((h, w, nc)))
    f2 = _f32(rng.random((b, h, w, nc)))
    hy, hx = 1.3, 1.7
    got = ops.TENSORS[term](
        np, _f32(f1.transpose(2, 0, 1)[None]), _f32(f2.transpose(0, 3, 1, 2)), hy, hx
    )
    kernel = {"gc": cpu_tensors.tensor_gc, "gray": cpu_tensors.tensor_gray}.get(
        term, cpu_tensors.tensor_cs
    )
    for t in range(b):
        J = np.empty((nc, 6, h, w), np.float32)
        kernel(f1, f2[t], np.float32(hy), np.float32(hx), J)
        scale = max(1.0, float(np.abs(J).max()))
        np.testing.assert_allclose(got[t], J, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("shape", [(7, 9), (6, 6), (3, 3), (12, 5)])
def test_median_matches_cpu_exactly(shape):
    a = _f32(_rng(3).standard_normal((3,) + shape))
    got = ops.median5x5(np, a)
    for t in range(a.shape[0]):
        out = np.empty(shape, np.float32)
        cpu_median.median5x5(a[t], out)
        np.testing.assert_array_equal(got[t], out)
        np.testing.assert_array_equal(got[t], naive.median5x5(a[t]))


# -------------------------------------------------------------------- red-black SOR vs naive twin


def naive_red_black(
    J, W, u, v, alpha_x, alpha_y, hx, hy, iterations, update_lag, a_data, a_smooth, beta, omega
):
    """Red-black twin of ``naive.solve_level``: per iteration all pixels with (y + x) even, then
    all odd ones, each with the plain formulas (float64, explicit loops). J (h, w, C, 6)."""
    J = np.asarray(J, np.float64)
    W = np.asarray(W, np.float64)
    u = np.asarray(u, np.float64)
    v = np.asarray(v, np.float64)
    h, w, nc, _ = J.shape
    du = np.zeros((h, w))
    dv = np.zeros((h, w))
    psi_d = np.ones((h, w, nc))
    psi_s = np.ones((h, w))
    robust = a_smooth != 1.0
    for it in range(iterations):
        if (it + 1) % update_lag == 0:
            for c in range(nc):
                j11, j22, j33, j12, j13, j23 = (J[:, :, c, k] for k in range(6))
                s2 = j11 * du**2 + j22 * dv**2 + 2 * j12 * du * dv + 2 * j13 * du + 2 * j23 * dv
                p = naive._psi(np.maximum(s2 + j33, 0.0), a_data[c])
                psi_d[:, :, c] = (1.0 - beta) + beta * p if 0 < a_data[c] < 1 else p
            if robust:
                uy, ux = np.gradient(u + du, hy, hx)
                vy, vx = np.gradient(v + dv, hy, hx)
                psi_s = naive._psi(ux**2 + uy**2 + vx**2 + vy**2, a_smooth)
                if 0 < a_smooth < 1:
                    psi_s = (1.0 - beta) + beta * psi_s
        for color in (0, 1):
            for y in range(h):
                for x in range(w):
                    if (y + x) % 2 != color:
                        continue
                    nbrs = []
                    for ny, nx, alpha, hh in (
                        (y, x - 1, alpha_x, hx),
                        (y, x + 1, alpha_x, hx),
                        (y - 1, x, alpha_y, hy),
                        (y + 1, x, alpha_y, hy),
                    ):
                        if 0 <= ny < h and 0 <= nx < w:
                            wn = alpha / hh**2 * 0.5 * (psi_s[y, x] + psi_s[ny, nx])
                            nbrs.append((ny, nx, wn))
                    dw = [W[y, x, c] * psi_d[y, x, c] for c in range(nc)]
                    jp = J[y, x]
                    sw = sum(wn for _, _, wn in nbrs)
                    num = sum(wn * (u[ny, nx] + du[ny, nx] - u[y, x]) for ny, nx, wn in nbrs)
                    num -= sum(dw[c] * (jp[c, 4] + jp[c, 3] * dv[y, x]) for c in range(nc))
                    den = sw + sum(dw[c] * jp[c, 0] for c in range(nc))
                    du[y, x] = (1 - omega) * du[y, x] + omega * (num / den if den else 0.0)
                    num = sum(wn * (v[ny, nx] + dv[ny, nx] - v[y, x]) for ny, nx, wn in nbrs)
                    num -= sum(dw[c] * (jp[c, 5] + jp[c, 3] * du[y, x]) for c in range(nc))
                    den = sw + sum(dw[c] * jp[c, 1] for c in range(nc))
                    dv[y, x] = (1 - omega) * dv[y, x] + omega * (num / den if den else 0.0)
    return du, dv


def _solver_problem(seed, b, h, w, nc):
    rng = _rng(seed)
    f1 = _f32(rng.random((1, nc, h, w)))
    f2 = _f32(f1 + 0.05 * rng.standard_normal((b, nc, h, w)))
    J = ops.tensor_gray(np, f1, f2, 1.0, 1.0)
    W = _f32(rng.random((1, nc, h, w)) + 0.2)
    u = _f32(rng.normal(0, 0.5, (b, h, w)))
    v = _f32(rng.normal(0, 0.5, (b, h, w)))
    return J, W, u, v


@pytest.mark.parametrize(
    "a_smooth, beta, shape", [(1.0, 1.0, (5, 6)), (0.5, 0.6, (6, 5)), (0.7, 1.0, (2, 5))]
)
def test_red_black_solver_matches_naive_twin(a_smooth, beta, shape):
    b, nc = 2, 2
    h, w = shape
    J, W, u, v = _solver_problem(4, b, h, w, nc)
    a_data = np.array([0.45, 1.0], np.float32)
    kw = dict(alpha_x=1.5, alpha_y=2.0, hx=1.25, hy=1.5, iterations=7, update_lag=3)
    du, dv = ops.solve_level(
        np,
        J,
        W,
        u,
        v,
        alpha=(kw["alpha_x"], kw["alpha_y"]),
        hx=kw["hx"],
        hy=kw["hy"],
        iterations=kw["iterations"],
        update_lag=kw["update_lag"],
        a_data=a_data.reshape(1, -1, 1, 1),
        blend=((a_data > 0) & (a_data < 1)).reshape(1, -1, 1, 1),
        a_smooth=a_smooth,
        beta=beta,
        omega=1.95,
    )
    for t in range(b):
        edu, edv = naive_red_black(
            J[t].transpose(2, 3, 0, 1),
            W[0].transpose(1, 2, 0),
            u[t],
            v[t],
            a_data=a_data,
            a_smooth=a_smooth,
            beta=beta,
            omega=1.95,
            **kw,
        )
        np.testing.assert_allclose(du[t], edu, rtol=2e-3, atol=2e-4)
        np.testing.assert_allclose(dv[t], edv, rtol=2e-3, atol=2e-4)


def test_half_sweep_updates_only_its_colour():
    b, h, w = 2, 5, 6
    rng = _rng(5)
    arrs = [_f32(rng.random((b, h + 2, w + 2)) + 0.1) for _ in range(7)]
    du = np.zeros((b, h + 2, w + 2), np.float32)
    dv = np.zeros_like(du)
    ops.rb_half_sweep(du, dv, *arrs, 1.95, 0)
    yy, xx = np.mgrid[0:h, 0:w]
    red = (yy + xx) % 2 == 0
    inner = du[:, 1:-1, 1:-1]
    assert np.all(inner[:, red] != 0) and np.all(inner[:, ~red] == 0)
    assert np.all(du[:, 0] == 0) and np.all(du[:, :, -1] == 0)  # the ring stays untouched


# ----------------------------------------------------------------------------- backend selection


def test_make_estimator_backends():
    ref, _, _, _, _ = _recording()
    params = resolve_params(quality_setting="fast")
    assert type(make_estimator(ref, params, "numba")) is FlowEstimator
    assert type(make_estimator(ref, params, "flowreg")) is FlowEstimator
    est = make_estimator(ref, params, "numpy", batch_size=2)
    assert isinstance(est, BatchedFlowEstimator) and est.batch_size == 2
    with pytest.raises(InvalidOptionError, match="flow_backend"):
        make_estimator(ref, params, "torch")
    with pytest.raises(InvalidOptionError, match="backend_params"):
        make_estimator(ref, params, "numpy", device=1)


def test_make_estimator_cupy_without_cupy_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` fail
    ref, _, _, _, _ = _recording()
    with pytest.raises(BackendUnavailableError, match=r"pip install flowreg-dask\[gpu\]") as err:
        make_estimator(ref, resolve_params(), "cupy")
    assert isinstance(err.value, RuntimeError)


@pytest.mark.skipif(cuda_device_count() > 0, reason="a CUDA device is available here")
def test_make_estimator_cupy_unavailable_here():
    ref, _, _, _, _ = _recording()
    with pytest.raises(BackendUnavailableError, match="flow_backend='cupy'"):
        make_estimator(ref, resolve_params(), "cupy")


def test_cupy_is_not_imported_by_the_package():
    import subprocess

    code = (
        "import sys, flowreg_dask, flowreg_dask.core.batched, flowreg_dask.pipeline.api;"
        "assert 'cupy' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------- run modes


@pytest.fixture
def gpu_present(monkeypatch):
    """Pretend CuPy and a CUDA device are usable (only the run-mode logic is under test)."""
    import flowreg_dask.kernels.gpu.device as device

    monkeypatch.setattr(device, "require_cupy", lambda: None)


@pytest.mark.usefixtures("gpu_present")
@pytest.mark.parametrize("mode", ["threading", "multiprocessing"])
def test_cupy_falls_back_to_sequential_with_a_warning(mode):
    cfg = RegistrationConfig(parallelization=mode, n_jobs=4)
    with pytest.warns(FlowRegWarning, match=f"{mode}.*sequential.*GPU"):
        out = config_for_backend(cfg, "cupy")
    assert out.parallelization == "sequential" and cfg.parallelization == mode


@pytest.mark.usefixtures("gpu_present")
def test_run_mode_unchanged_where_allowed():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        threads = RegistrationConfig(parallelization="threading")
        assert config_for_backend(threads, "numba") is threads
        assert config_for_backend(None, "numba") is None
        assert config_for_backend(None, "cupy").parallelization == "sequential"  # automatic mode
        seq = RegistrationConfig(parallelization="sequential")
        assert config_for_backend(seq, "cupy").parallelization == "sequential"
        remote = RegistrationConfig(parallelization="distributed", scheduler_address="tcp://x:1")
        assert config_for_backend(remote, "cupy").parallelization == "distributed"
    local = RegistrationConfig(parallelization="distributed", n_jobs=4)
    with pytest.warns(FlowRegWarning, match="LocalCUDACluster"):
        out = config_for_backend(local, "cupy")
    assert out.parallelization == "distributed" and out.n_jobs == 1


def test_missing_gpu_is_reported_before_any_work(tmp_path, monkeypatch):
    import flowreg_dask.pipeline.reference as reference
    from flowreg_dask.pipeline.api import compensate_recording

    def no_reference(*args, **kwargs):
        raise AssertionError("the reference was built before the backend was checked")

    monkeypatch.setattr(reference, "preregistered_reference", no_reference)
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` fail
    _, _, _, raw, _ = _recording()
    np.save(tmp_path / "rec.npy", raw)
    opts = OFOptions(flow_backend="cupy", quality_setting="fast")  # default reference frames
    for mode in ("sequential", "threading"):
        cfg = RegistrationConfig(parallelization=mode, progress=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FlowRegWarning)
            with pytest.raises(BackendUnavailableError, match=r"pip install flowreg-dask\[gpu\]"):
                compensate_recording(
                    opts, cfg, recording=tmp_path / "rec.npy", output=tmp_path / "out.zarr"
                )
        assert not (tmp_path / "out.zarr").exists()


# ------------------------------------------------------------------------------------ pipeline


def test_register_span_with_the_numpy_backend_matches_numba():
    ref, frames, truth, raw, prep = _recording(n_frames=6)
    kw = dict(
        first=0,
        start=0,
        stop=raw.shape[0],
        n_frames=raw.shape[0],
        depth_t=0,
        vmin=prep.vmin,
        vmax=prep.vmax,
        sigma=prep.sigma,
        ref_proc=ref,
        ref_raw=prep.ref_raw,
        params=resolve_params(quality_setting="balanced"),
        interpolation="cubic",
        out_dtype=np.float32,
        update_init=True,
    )
    a = register_span(raw, **kw)
    b = register_span(raw, backend="numpy", backend_params={"batch_size": 2}, **kw)
    assert set(a) == set(b)
    assert np.all(np.abs(_epe(a["flow"], truth) - _epe(b["flow"], truth)) <= EPE_TOL)


def test_prepared_carries_the_backend():
    _, _, _, _, prep = _recording()
    assert prep.backend == "numba"
    p2 = dataclasses.replace(prep, backend="cupy", backend_params={"batch_size": 4})
    assert p2.backend == "cupy" and p2.backend_params == {"batch_size": 4}


def test_compensate_arr_with_cupy_backend_without_gpu():
    if cuda_device_count() > 0:
        pytest.skip("a CUDA device is available here")
    _, _, _, raw, _ = _recording()
    opts = OFOptions(flow_backend="cupy", quality_setting="fast", reference_frames=[0])
    cfg = RegistrationConfig(parallelization="threading", progress=False)
    with pytest.warns(FlowRegWarning, match="sequential"):
        with pytest.raises(BackendUnavailableError, match=r"flowreg-dask\[gpu\]"):
            compensate_arr(raw, options=opts, config=cfg)


# ----------------------------------------------------------------------------------- real GPU

gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(cuda_device_count() == 0, reason="needs cupy and a CUDA device")


@gpu
@needs_cuda
@pytest.mark.parametrize("fused", [False, True])
def test_cupy_matches_numpy_path(fused):
    ref, frames, truth, _, _ = _recording()
    params = resolve_params(quality_setting="quality")
    host = make_estimator(ref, params, "numpy").flows(frames)
    dev = make_estimator(ref, params, "cupy", fused=fused).flows(frames)
    assert isinstance(dev, np.ndarray) and dev.dtype == np.float32
    assert np.all(np.abs(_epe(host, truth) - _epe(dev, truth)) <= 0.01)


@gpu
@needs_cuda
def test_fused_kernels_match_their_array_twins():
    import cupy

    from flowreg_dask.kernels.gpu import cuda

    a = _f32(_rng(6).standard_normal((3, 9, 11)))
    np.testing.assert_array_equal(cuda.median5x5(cupy, cupy.asarray(a)).get(), ops.median5x5(np, a))
    b, h, w = 2, 7, 9
    rng = _rng(7)
    arrs = [_f32(rng.random((b, h + 2, w + 2))) for _ in range(9)]
    host = [x.copy() for x in arrs]
    dev = [cupy.asarray(x) for x in arrs]
    for color in (0, 1, 0):
        ops.rb_half_sweep(*host, 1.95, color)
        cuda.rb_half_sweep(*dev, 1.95, color)
    np.testing.assert_allclose(dev[0].get(), host[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dev[1].get(), host[1], rtol=1e-5, atol=1e-6)
