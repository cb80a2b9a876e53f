"""Multi-session alignment: three recordings of one scene at known offsets, stages 1-3, resume,
array jobs, a distributed cluster, dask-jobqueue plumbing, config files and the CLI.

The recordings are 64 x 64 px windows of one larger synthetic recording (same motion, activity
and noise), cut at offsets so that each window's content is the centre's moved by (dy, dx):
``rec_a`` (10, -5), ``rec_b`` (0, 0), ``rec_c`` (-8, 7). Cutting windows is exact (no
interpolation), so the displacement of each recording to the centre is known: ``u = dx``,
``v = dy``.
"""

from __future__ import annotations

import json
import shutil
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

from flowreg_dask.datasets import synthetic_recording
from flowreg_dask.errors import InvalidInputError, InvalidOptionError, RecordingNotFoundError
from flowreg_dask.session import (
    SessionConfig,
    array_task_index,
    center_index,
    discover,
    make_jobqueue_cluster,
    run_session,
    run_stage1,
    run_stage2,
    run_stage3,
)
from flowreg_dask.store.reader import open_result
from flowreg_dask.store.writer import CorrectedStore

SHIFTS = {"rec_a": (10, -5), "rec_b": (0, 0), "rec_c": (-8, 7)}  # (dy, dx) of the content
H = W = 64
N_FRAMES = 40
CENTRAL = (slice(16, 48), slice(16, 48))


def _config(root: Path, **kw) -> SessionConfig:
    opts = {"reference_frames": list(range(20)), "quality_setting": "balanced", "buffer_size": 20}
    kw.setdefault("parallelization", "threading")
    kw.setdefault("n_workers", 2)
    return SessionConfig(root=root, pattern="*.npy", flow_options=opts, **kw)


@pytest.fixture(scope="module")
def movies():
    """The three windows (T, H, W, 1) uint16 of one synthetic recording."""
    oy, ox = 10, 7  # the centre window's corner in the larger field of view
    big = synthetic_recording(
        n_frames=N_FRAMES,
        height=H + 18,
        width=W + 12,
        n_channels=1,
        seed=3,
        drift_px=1.0,
        jitter_px=0.5,
        nonrigid_px=0.5,
    )
    return {
        name: np.ascontiguousarray(big.movie[:, oy - dy : oy - dy + H, ox - dx : ox - dx + W])
        for name, (dy, dx) in SHIFTS.items()
    }


def _write(root: Path, movies) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, movie in movies.items():
        np.save(root / f"{name}.npy", movie)
    return root


@pytest.fixture(scope="module")
def session(tmp_path_factory, movies):
    """A complete session run (all stages, threads) and its result."""
    root = _write(tmp_path_factory.mktemp("session"), movies)
    config = _config(root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = run_session(config)
    return config, out


# ------------------------------------------------------------------------------------ accuracy
def test_displacements_to_centre(session):
    config, out = session
    al = out["stage2"]
    assert [r.name for r in al.recordings] == ["rec_a", "rec_b", "rec_c"]
    assert al.center == 1 and al.center_name == "rec_b"  # (N + 1) // 2 - 1
    for rec, flow in zip(al.recordings, al.flows, strict=True):
        dy, dx = SHIFTS[rec.name]
        assert flow.shape == (H, W, 2) and flow.dtype == np.float32
        err = flow[CENTRAL].mean(axis=(0, 1)) - [dx, dy]
        assert np.abs(err).max() < 0.1, (rec.name, err)  # measured <= 0.025 px
        with np.load(rec.flow) as f:  # pyflowreg's file: u (x) and v (y), (H, W)
            np.testing.assert_array_equal(f["u"], flow[..., 0])
            np.testing.assert_array_equal(f["v"], flow[..., 1])
    assert not al.flows[1].any()  # the centre gets zeros


def test_stage_outputs(session):
    config, out = session
    final = config.final_dir
    for name in SHIFTS:
        folder = config.output_dir / name
        status = json.loads((folder / "status.json").read_text())
        assert status["stage1"]["state"] == status["stage2"]["state"] == "done"
        avg = np.load(folder / "temporal_average.npy")
        stored = open_result(folder / "compensated.zarr")
        assert "valid" in stored  # stage 1 forces save_valid_idx
        expect = stored["corrected"].values.astype(np.float64).mean(axis=0)
        np.testing.assert_allclose(avg, expect, rtol=1e-12)
        aligned = open_result(final / f"aligned_{name}.zarr")
        assert aligned["corrected"].shape == (N_FRAMES, H, W, 1)
        assert aligned["corrected"].dtype == np.uint16
        assert aligned.attrs["chunk_bounds"] == [[0, 40]]  # align_chunk_size 64
        for png in (f"{name}_valid_idx.png", f"{name}_valid_idx_aligned.png"):
            assert (final / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    status = json.loads((final / "status.json").read_text())
    assert status["stage3"]["state"] == "done"
    assert (final / "final_valid_idx.mat").exists() and (final / "final_valid_idx.png").exists()


def test_aligned_movies_and_masks(session):
    config, _ = session
    final = config.final_dir
    with np.load(final / "final_valid_idx.npz") as f:
        mask = f["final_valid"]
        aligned_masks = f["aligned_valid_masks"]
        assert int(f["middle_idx"]) == 1 and str(f["center"]) == "rec_b"
        assert list(f["recordings"]) == list(SHIFTS)
    assert mask.dtype == bool and mask.shape == (H, W)
    np.testing.assert_array_equal(mask, np.logical_and.reduce(aligned_masks))
    # content from outside a window is invalid: rows >= 64 - 10 (rec_a), < 8 (rec_c); columns
    # < 5 (rec_a), >= 64 - 7 (rec_c) (+-1 px: the displacement is not exactly an integer, and a
    # sample within the last pixel counts as inside); well inside, everything is valid
    box = np.zeros((H, W), bool)
    box[7:55, 4:58] = True
    assert not mask[~box].any()
    assert mask[12:50, 9:53].all()
    # in the centre's frame every aligned movie looks like the centre's movie
    ref = open_result(final / "aligned_rec_b.zarr")["corrected"].values.mean(axis=0)[..., 0]
    for name in ("rec_a", "rec_c"):
        ds = open_result(final / f"aligned_{name}.zarr")
        avg = ds["corrected"].values.mean(axis=0)[..., 0]
        rel = np.abs(avg - ref)[mask].mean() / ref[mask].mean()
        assert rel < 0.02, (name, rel)
        # per-frame masks of the aligned movie: AND over time = the recording's aligned mask
        valid = ds["valid"].values
        np.testing.assert_array_equal(valid.all(axis=0), aligned_masks[list(SHIFTS).index(name)])


# -------------------------------------------------------------------------------------- resume
class _Writes:
    """Counts CorrectedStore.write_chunk calls per store; optionally fails one chunk once."""

    def __init__(self, monkeypatch, fail: tuple[str, int] | None = None) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail = fail
        original = CorrectedStore.write_chunk

        def write_chunk(store, index, **kw):
            key = (store.path.parent.name if store.path.name == "compensated.zarr" else "", index)
            if self.fail == key:
                self.fail = None
                raise RuntimeError("simulated kill")
            self.calls.append((store.path.name, store.path.parent.name, index))
            return original(store, index, **kw)

        monkeypatch.setattr(CorrectedStore, "write_chunk", write_chunk)

    def recordings(self) -> set[str]:
        return {parent for name, parent, _ in self.calls if name == "compensated.zarr"}


def test_resume_every_stage(tmp_path, movies, monkeypatch):
    warnings.simplefilter("ignore")
    config = _config(_write(tmp_path / "s", movies), parallelization="sequential")
    # stage 1 killed in the second chunk of rec_a: chunk 0 stays done, the rest never started
    writes = _Writes(monkeypatch, fail=("rec_a", 1))
    with pytest.raises(RuntimeError, match="simulated kill"):
        run_stage1(config)
    assert (
        json.loads((tmp_path / "s/compensated_outputs/rec_a/status.json").read_text())["stage1"][
            "state"
        ]
        == "running"
    )
    assert writes.calls == [("compensated.zarr", "rec_a", 0)]
    writes.calls.clear()
    records = run_stage1(config)  # resumes rec_a at chunk 1, registers rec_b and rec_c
    assert [r["registered"] for r in records] == [True, True, True]
    assert [c for c in writes.calls if c[1] == "rec_a"] == [("compensated.zarr", "rec_a", 1)]
    writes.calls.clear()
    assert not any(r["registered"] or r["averaged"] for r in run_stage1(config))
    assert writes.calls == []
    # a lost average is recomputed from the complete store, which is not registered again
    (config.output_dir / "rec_c" / "temporal_average.npy").unlink()
    records = run_stage1(config)
    assert [(r["registered"], r["averaged"]) for r in records] == [
        (False, False),
        (False, False),
        (False, True),
    ]
    assert writes.calls == []
    # a deleted store: only that recording is registered again
    shutil.rmtree(config.output_dir / "rec_b" / "compensated.zarr")
    run_stage1(config)
    assert writes.recordings() == {"rec_b"}

    # stage 2: only recordings whose flow is missing (or whose averages changed) are redone
    run_stage2(config)
    calls = []
    import flowreg_dask.session.stage2 as s2

    original = s2.align_average
    monkeypatch.setattr(s2, "align_average", lambda *a, **k: calls.append(1) or original(*a, **k))
    run_stage2(config)
    assert calls == []
    (config.output_dir / "rec_a" / "w_to_reference.npz").unlink()
    run_stage2(config)
    assert calls == [1]

    # stage 3: only the aligned movie that is missing is warped again
    run_stage3(config)
    writes.calls.clear()
    shutil.rmtree(config.final_dir / "aligned_rec_c.zarr")
    out = run_stage3(config)
    assert {parent for name, parent, _ in writes.calls} == {"final_results"}
    assert {name for name, _, _ in writes.calls} == {"aligned_rec_c.zarr"}
    assert out["state"] == "done"


def test_stage1_resume_with_binning(tmp_path, movies):
    """pyflowreg compared the store's frame count with the unbinned recording, so a binned
    recording was never complete and was registered again on every run."""
    warnings.simplefilter("ignore")
    root = _write(tmp_path / "s", {"rec_a": movies["rec_a"]})
    config = _config(root, parallelization="sequential")
    config.flow_options = {**config.flow_options, "bin_size": 2, "reference_frames": [0, 1, 2]}
    first = run_stage1(config)
    assert first[0]["registered"] and first[0]["n_frames"] == N_FRAMES // 2
    assert not run_stage1(config)[0]["registered"]
    # with other options the store is made again
    config.flow_options = {**config.flow_options, "alpha": 3.0}
    assert run_stage1(config)[0]["registered"]


# ---------------------------------------------------------------------------------- array jobs
def test_array_task_ids(tmp_path, movies, monkeypatch):
    assert array_task_index({}) is None
    assert array_task_index({"SLURM_ARRAY_TASK_ID": "1"}) == 0
    assert array_task_index({"SGE_TASK_ID": "undefined", "PBS_ARRAY_INDEX": "3"}) == 2
    assert array_task_index({"LSB_JOBINDEX": "2"}) == 1
    with pytest.raises(InvalidOptionError, match="1-based"):
        array_task_index({"SLURM_ARRAY_TASK_ID": "0"})
    with pytest.raises(InvalidOptionError, match="not an integer"):
        array_task_index({"SGE_TASK_ID": "x"})
    config = _config(_write(tmp_path / "s", movies), scheduler="array")
    with pytest.raises(InvalidOptionError, match="array"):
        run_session(config, stages=(1, 2))
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    warnings.simplefilter("ignore")
    out = run_session(config, stages=(1,))
    assert [r["name"] for r in out["stage1"]] == ["rec_c"]
    assert sorted(p.name for p in config.output_dir.iterdir()) == ["rec_c"]
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    with pytest.raises(InvalidOptionError, match="outside the 3 recordings"):
        run_session(config, stages=(1,))
    with pytest.raises(InvalidInputError, match="stage 1 first"):
        run_stage2(config)


# --------------------------------------------------------------------------- distributed / HPC
def test_local_cluster_session(tmp_path, movies, session):
    from distributed import Client, LocalCluster

    warnings.simplefilter("ignore")
    config = _config(_write(tmp_path / "s", movies), scheduler="dask")
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster),
    ):
        out = run_session(config)
    # the registration does not depend on the run mode: same flows as the threaded session
    for a, b in zip(out["stage2"].flows, session[1]["stage2"].flows, strict=True):
        np.testing.assert_array_equal(a, b)
    assert out["stage3"]["state"] == "done"


def test_jobqueue_plumbing(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)
    with pytest.raises(ImportError, match="pip install dask-jobqueue"):
        make_jobqueue_cluster("slurm")
    made = []

    class FakeCluster:
        def __init__(self, **kwargs):
            made.append(kwargs)

        def scale(self, jobs):
            made.append({"jobs": jobs})

    fake = types.ModuleType("dask_jobqueue")
    fake.SLURMCluster = fake.PBSCluster = FakeCluster
    monkeypatch.setitem(sys.modules, "dask_jobqueue", fake)
    make_jobqueue_cluster("pbs", cores=2, queue="short", jobs=3)
    assert made == [
        {"cores": 2, "memory": "8GB", "walltime": "02:00:00", "queue": "short"},
        {"jobs": 3},
    ]
    with pytest.raises(InvalidOptionError, match="scheduler"):
        make_jobqueue_cluster("condor")
    # the CLI flags reach the config's cluster table
    from flowreg_dask.cli.main import _session_config, build_parser

    (tmp_path / "cfg.toml").write_text('root = "."\n[cluster]\naccount = "lab"\n')
    args = build_parser().parse_args(
        ["session", "dask", "-c", str(tmp_path / "cfg.toml"), "--cores", "2", "-j", "3"]
    )
    cfg = _session_config(args)
    assert cfg.scheduler == "slurm"
    assert cfg.cluster == {"account": "lab", "cores": 2, "jobs": 3}


# -------------------------------------------------------------------------------------- config
def test_config_defaults_and_files(tmp_path):
    cfg = SessionConfig(root=tmp_path)
    pyflowreg_defaults = {
        "pattern": "*.tif",
        "center": None,
        "output_root": Path("compensated_outputs"),
        "final_results": Path("final_results"),
        "resume": True,
        "scheduler": "local",
        "flow_backend": "flowreg",
        "backend_params": {},
        "flow_options": None,
        "stage1_quality_setting": None,
        "n_workers": -1,
        "cc_upsample": 4,
        "sigma_smooth": 6.0,
        "alpha_between": 25.0,
        "iterations_between": 100,
        "stage2_constancy_assumption": "gc",
        "align_chunk_size": 64,
    }
    assert {k: getattr(cfg, k) for k in pyflowreg_defaults} == pyflowreg_defaults
    assert cfg.output_dir == tmp_path / "compensated_outputs"
    with pytest.raises(InvalidOptionError, match="alpha_betwen.*alpha_between"):
        SessionConfig(root=tmp_path, alpha_betwen=3)
    with pytest.raises(InvalidOptionError, match="does not exist"):
        SessionConfig(root=tmp_path / "missing")
    (tmp_path / "data").mkdir()
    (tmp_path / "s.toml").write_text(
        'root = "data"\npattern = "*.h5"\nalign_output_format = "TIFF"\n[flow_options]\nalpha = 4\n'
    )
    cfg = SessionConfig.from_file(tmp_path / "s.toml")
    assert cfg.root == tmp_path / "data"  # relative to the config file
    assert cfg.align_output_format == "TIFF" and cfg.flow_options == {"alpha": 4}
    (tmp_path / "s.json").write_text(json.dumps({"session": {"root": str(tmp_path)}}))
    assert SessionConfig.from_file(tmp_path / "s.json").root == tmp_path
    (tmp_path / "s.yaml").write_text(f"root: {tmp_path}\ncenter: b.tif\n")
    try:
        import yaml  # noqa: F401

        assert SessionConfig.from_file(tmp_path / "s.yaml").center == "b.tif"
    except ImportError:
        with pytest.raises(ImportError, match="PyYAML"):
            SessionConfig.from_file(tmp_path / "s.yaml")
    with pytest.raises(InvalidOptionError, match="suffix"):
        (tmp_path / "s.ini").write_text("")
        SessionConfig.from_file(tmp_path / "s.ini")
    with pytest.raises(InvalidOptionError, match="align_output_format"):
        SessionConfig(root=tmp_path, align_output_format="gif")


def test_discovery_and_centre(tmp_path):
    for name in ("b.tif", "a.tif", "d.tif", "c.tif"):
        (tmp_path / name).write_bytes(b"")
    cfg = SessionConfig(root=tmp_path)
    recs = discover(cfg)
    assert [r.name for r in recs] == ["a", "b", "c", "d"]
    assert center_index(cfg, recs) == 1  # MATLAB ceil(4 / 2), 0-based
    assert center_index(cfg.model_copy(update={"center": "c.tif"}), recs) == 2
    with pytest.raises(InvalidOptionError, match="not one of the session's recordings"):
        center_index(cfg.model_copy(update={"center": "x.tif"}), recs)
    (tmp_path / "a.npy").write_bytes(b"")
    with pytest.raises(InvalidInputError, match="share the output folder"):
        discover(cfg.model_copy(update={"pattern": "a.*"}))
    with pytest.raises(RecordingNotFoundError, match="no recording matches"):
        discover(cfg.model_copy(update={"pattern": "*.h5"}))


# ----------------------------------------------------------------------------------------- CLI
def test_cli_session_run(tmp_path, movies, capsys):
    from flowreg_dask.cli.main import main

    root = _write(tmp_path / "data", movies)
    (tmp_path / "cfg.toml").write_text(
        'root = "data"\npattern = "*.npy"\nn_workers = 2\nalign_output_format = "tiff"\n'
        "[flow_options]\nreference_frames = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n"
        'quality_setting = "fast"\n'
    )
    cfg = str(tmp_path / "cfg.toml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["session", "run", "-c", cfg, "--index", "0", "--no-progress"]) == 0
        assert (root / "compensated_outputs/rec_a/temporal_average.npy").exists()
        assert not (root / "compensated_outputs/rec_b").exists()
        assert main(["session", "run", "-c", cfg, "--stage", "2"]) == 2  # stage 1 not done
        assert "stage 1 first" in capsys.readouterr().err
        assert main(["session", "run", "-c", cfg, "--no-progress"]) == 0
    assert "pixels valid in every recording" in capsys.readouterr().out
    import tifffile

    movie = tifffile.imread(root / "final_results/aligned_rec_c.tif")
    assert movie.shape == (N_FRAMES, H, W)


def test_stage2_channels_stay_apart(tmp_path):
    """Each channel is smoothed on its own (pyflowreg's scalar sigma over (H, W, C) mixed them):
    a second channel of pure noise with weight 0 leaves the displacement exactly unchanged."""
    from flowreg_dask import OFOptions
    from flowreg_dask.datasets import synthetic_pair
    from flowreg_dask.session import align_average

    ref, mov, _ = synthetic_pair(height=64, width=64, seed=2, kind="translation", shift=(3, -2))
    rng = np.random.default_rng(0)
    noise = rng.random((2, 64, 64, 1)).astype(np.float32) * 5
    cfg = SessionConfig(root=tmp_path)
    sep = {"channel_normalization": "separate"}
    one, rigid1 = align_average(ref, mov, config=cfg, options=OFOptions(weight=[1.0], **sep))
    two, rigid2 = align_average(
        np.concatenate([ref, noise[0]], -1),
        np.concatenate([mov, noise[1]], -1),
        config=cfg,
        options=OFOptions(weight=[1.0, 0.0], **sep),
    )
    assert rigid1 == rigid2 == (-2.0, 3.0)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_allclose(one[CENTRAL].mean(axis=(0, 1)), [-2.0, 3.0], atol=0.01)
