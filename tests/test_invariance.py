"""Same recording + same options -> same output, whatever the chunking, run mode or worker count.

The README states: corrected frames, flows, valid masks, statistics and the reference are
identical bit for bit across ``buffer_size``, ``chunk_memory``, run modes and worker counts
(``update_reference=True`` excepted). These tests check that claim on a two-channel recording
with a temporal pre-filter (so the halos of both the filter and the initial flows are exercised).
"""

from __future__ import annotations

import dask
import numpy as np
import pytest
import tifffile

from flowreg_dask.datasets import synthetic_recording
from flowreg_dask.options import OFOptions, RegistrationConfig
from flowreg_dask.pipeline.api import compensate_recording, register
from flowreg_dask.store.reader import open_result

N, H, W = 160, 40, 48
KEYS = ("corrected", "flow", "valid", "reference", "mean_disp", "max_disp", "mean_div")


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    rec = synthetic_recording(n_frames=N, height=H, width=W, n_channels=2, seed=5)
    assert np.abs(rec.flow).max() > 2.0  # the motion is real (drift, jitter, non-rigid)
    path = tmp_path_factory.mktemp("inv") / "rec.tif"
    tifffile.imwrite(path, rec.movie)
    return path


def _opts(**kw) -> OFOptions:
    base = dict(
        quality_setting="fast",
        iterations=20,
        sigma=[[1.0, 1.0, 1.0], [1.0, 1.0, 0.5]],  # temporal radius 4 frames
        save_w=True,
        save_valid_idx=True,
        buffer_size=400,
        reference_frames=list(range(50, N)),
    )
    base.update(kw)
    return OFOptions(**base)


def _run(path, out, *, opts=None, **config) -> dict[str, np.ndarray]:
    cfg = RegistrationConfig(progress=False, **config)
    compensate_recording(opts or _opts(), cfg, recording=path, output=out)
    ds = open_result(out)
    return {k: ds[k].values for k in KEYS}


def _assert_same(a: dict, b: dict, what: str) -> None:
    for key in KEYS:
        np.testing.assert_array_equal(a[key], b[key], err_msg=f"{what}: {key}")


@pytest.fixture(scope="module")
def baseline(recording, tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "base.zarr"
    return _run(recording, out, opts=_opts(buffer_size=400), parallelization="sequential")


@pytest.mark.parametrize("buffer_size", [7, 20, 37, 50])
def test_buffer_size_does_not_change_the_result(recording, baseline, tmp_path, buffer_size):
    res = _run(
        recording,
        tmp_path / "o.zarr",
        opts=_opts(buffer_size=buffer_size),
        parallelization="threading",
        n_jobs=2,
    )
    _assert_same(res, baseline, f"buffer_size={buffer_size}")


def test_chunk_memory_does_not_change_the_result(recording, baseline, tmp_path):
    out = tmp_path / "o.zarr"
    res = _run(recording, out, parallelization="threading", n_jobs=2, chunk_memory=16 * 2**20)
    assert len(open_result(out).attrs["chunk_bounds"]) > 1  # the budget did shorten the chunks
    _assert_same(res, baseline, "chunk_memory")


@pytest.mark.parametrize(
    "config",
    [
        {"parallelization": "threading", "n_jobs": 1},
        {"parallelization": "threading", "n_jobs": 2},
        {"parallelization": "threading", "n_jobs": 4},
        {"parallelization": "multiprocessing", "n_jobs": 2},
        {"parallelization": "distributed", "n_jobs": 2},
    ],
    ids=lambda c: f"{c['parallelization']}-{c['n_jobs']}",
)
def test_run_mode_and_workers_do_not_change_the_result(recording, baseline, tmp_path, config):
    res = _run(recording, tmp_path / "o.zarr", opts=_opts(buffer_size=50), **config)
    _assert_same(res, baseline, str(config))


def test_default_sigma_and_no_initialisation_are_invariant_too(recording, tmp_path):
    for init in (True, False):
        runs = [
            _run(
                recording,
                tmp_path / f"o{init}{b}.zarr",
                opts=_opts(buffer_size=b, sigma=[1.0, 1.0, 0.1], update_initialization_w=init),
                parallelization="threading",
                n_jobs=2,
            )
            for b in (23, 400)
        ]
        _assert_same(runs[0], runs[1], f"update_initialization_w={init}")


def test_lazy_slices_equal_the_file_run(recording, baseline):
    ds = register(str(recording), _opts(buffer_size=50), config=RegistrationConfig(progress=False))
    np.testing.assert_array_equal(ds["reference"].values, baseline["reference"])
    for a, b in ((37, 41), (49, 53), (120, 160)):  # mid-chunk starts, across a chunk border
        with dask.config.set(scheduler="synchronous"):
            sub = ds[["corrected", "flow"]].isel(t=slice(a, b)).compute()
        np.testing.assert_array_equal(sub["corrected"].values, baseline["corrected"][a:b])
        np.testing.assert_array_equal(sub["flow"].values, baseline["flow"][a:b])


def test_registration_graph_is_a_map_overlap_over_time(recording):
    ds = register(str(recording), _opts(buffer_size=50), config=RegistrationConfig(progress=False))
    layers = ds["corrected"].data.__dask_graph__().layers
    overlap = [name for name in layers if name.startswith("overlap-")]
    assert overlap, sorted(layers)
    chunks = ds["corrected"].data.chunks[0]
    # buffer_size, except that no chunk is shorter than the halo (20 + 4 frames)
    assert chunks[:2] == (50, 50) and min(chunks) >= 24 and sum(chunks) == N
