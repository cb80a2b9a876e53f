"""Nothing silently lost or overwritten: one writer per store, inputs never outputs, bad values
refused before any output, workers that end with their run, clear one-line stops.

Every case checks the error class and message, that the input is unchanged (sha256) and what is
left on disk.
"""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from flowreg_dask.datasets import synthetic_recording
from flowreg_dask.errors import (
    InvalidInputError,
    InvalidOptionError,
    OutputExistsError,
    StoreLockedError,
)
from flowreg_dask.options import OFOptions, RegistrationConfig
from flowreg_dask.pipeline.api import compensate_recording, register
from flowreg_dask.store.lock import lock_path, store_lock
from flowreg_dask.store.reader import open_result
from flowreg_dask.store.writer import CorrectedStore

REPO = Path(__file__).resolve().parents[1]
N, H, W = 40, 40, 48
CFG = RegistrationConfig(parallelization="sequential", progress=False)


def _opts(**kw) -> OFOptions:
    base = dict(quality_setting="fast", iterations=10, buffer_size=20, reference_frames=range(8))
    base.update(kw)
    return OFOptions(**base)


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def movie() -> np.ndarray:
    return synthetic_recording(n_frames=N, height=H, width=W, n_channels=1, seed=2).movie


@pytest.fixture
def tif(tmp_path, movie) -> Path:
    path = tmp_path / "rec.tif"
    tifffile.imwrite(path, movie)
    return path


# ----------------------------------------------------------------------------- one writer per store
SLOW_RUN = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {repo!r})
    from flowreg_dask.options import OFOptions, RegistrationConfig
    from flowreg_dask.pipeline import blocks, graph
    from flowreg_dask.pipeline.api import compensate_recording

    real = blocks.register_span
    def slow(*a, **k):
        time.sleep(float(sys.argv[3]))
        return real(*a, **k)
    graph.register_span = slow
    if __name__ == "__main__":
        opts = OFOptions(quality_setting="fast", iterations=10, buffer_size=20,
                         reference_frames=range(8))
        cfg = RegistrationConfig(parallelization=sys.argv[4], n_jobs=2, progress=False)
        compensate_recording(opts, cfg, recording=sys.argv[1], output=sys.argv[2])
        print("done", flush=True)
    """
)


def _start(tmp_path, tif, out, *, delay=1.5, mode="sequential") -> subprocess.Popen:
    script = tmp_path / "slow_run.py"
    script.write_text(SLOW_RUN.format(repo=str(REPO)))
    return subprocess.Popen(
        [sys.executable, str(script), str(tif), str(out), str(delay), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(predicate, timeout=120.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def _n_done(out: Path) -> int:
    try:
        return len(CorrectedStore.open(out).done_chunks())
    except Exception:
        return 0


def test_a_second_run_on_the_same_store_is_refused_naming_the_first(tmp_path, tif):
    out = tmp_path / "out.zarr"
    before = _sha(tif)
    first = _start(tmp_path, tif, out)
    try:
        _wait_for(lambda: lock_path(out).exists() and (out / "zarr.json").exists())
        with pytest.raises(StoreLockedError, match=rf"process {first.pid} on host"):
            compensate_recording(_opts(), CFG, recording=tif, output=out, overwrite=True)
        with pytest.raises(BlockingIOError):  # the builtin it also is
            compensate_recording(_opts(), CFG, recording=tif, output=out)
        stdout, _ = first.communicate(timeout=180)
    finally:
        first.kill()
    assert "done" in stdout and first.returncode == 0
    assert open_result(out)["corrected"].shape == (N, H, W, 1)  # the first run's result, whole
    assert not lock_path(out).exists()  # released at the end
    assert _sha(tif) == before


def test_a_lock_left_by_a_killed_run_is_taken_over_and_the_run_resumes(tmp_path, tif):
    out = tmp_path / "out.zarr"
    clean = tmp_path / "clean.zarr"
    compensate_recording(_opts(), CFG, recording=tif, output=clean)
    proc = _start(tmp_path, tif, out, delay=1.0)
    _wait_for(lambda: _n_done(out) >= 1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert lock_path(out).exists()  # left behind by the killed run
    compensate_recording(_opts(), CFG, recording=tif, output=out)  # resumes
    assert not lock_path(out).exists()
    a, b = open_result(out), open_result(clean)
    np.testing.assert_array_equal(a["corrected"].values, b["corrected"].values)


def test_lock_is_exclusive_within_a_process_too(tmp_path):
    out = tmp_path / "x.zarr"
    with store_lock(out):
        with pytest.raises(StoreLockedError, match="being written by process"):
            with store_lock(out):
                pass
    with store_lock(out):  # released
        pass


# ------------------------------------------------------------------------- inputs are never outputs
def test_store_as_its_own_input_and_output_is_refused(tmp_path, tif):
    store = compensate_recording(_opts(), CFG, recording=tif, output=tmp_path / "a.zarr").output
    before = _sha(store)
    with pytest.raises(InvalidOptionError, match="would overwrite the input"):
        compensate_recording(_opts(), CFG, recording=store, output=store, overwrite=True)
    assert _sha(store) == before


def test_tiff_export_over_its_own_input_is_refused_before_any_work(tmp_path, tif):
    before = _sha(tif)
    with pytest.raises(InvalidOptionError, match="would overwrite the input"):
        compensate_recording(
            _opts(output_format="tiff"), CFG, recording=tif, output=tif, overwrite=True
        )
    link = tmp_path / "link.tif"
    link.symlink_to(tif)
    with pytest.raises(InvalidOptionError, match="would overwrite the input"):
        compensate_recording(
            _opts(output_format="tiff"), CFG, recording=tif, output=link, overwrite=True
        )
    assert _sha(tif) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.tif", "rec.tif"]  # nothing new


def test_export_conflicts_are_found_before_registration(tmp_path, tif):
    target = tmp_path / "out.h5"
    target.write_bytes(b"an older result")
    with pytest.raises(OutputExistsError, match="exists already"):
        compensate_recording(_opts(output_format="hdf5"), CFG, recording=tif, output=target)
    assert target.read_bytes() == b"an older result"
    assert not (tmp_path / "out.zarr").exists()  # no registration was started


# ------------------------------------------------------------------------ bad values, bad options
def test_nan_in_a_float_recording_is_refused_naming_the_frames(tmp_path, movie):
    data = movie.astype(np.float32)
    data[5, 3, 3] = np.nan
    data[17:19, 0, 0] = np.inf
    path = tmp_path / "float.tif"
    tifffile.imwrite(path, data)
    before = _sha(path)
    with pytest.raises(InvalidInputError, match=r"3 frame\(s\) hold NaN or Inf .*5, 17-18"):
        compensate_recording(_opts(), CFG, recording=path, output=tmp_path / "o.zarr")
    assert not (tmp_path / "o.zarr").exists() and _sha(path) == before
    with pytest.raises(InvalidInputError, match="5, 17-18"):  # the lazy API says so on compute
        register(path, _opts(reference_frames=range(20, 28)), config=CFG)["flow"].compute()
    with pytest.warns(UserWarning, match="frames 5, 17-18 hold NaN"):
        out = compensate_recording(
            _opts(nonfinite="reference", save_w=True),
            CFG,
            recording=path,
            output=tmp_path / "r.zarr",
        ).output
    ds = open_result(out)
    assert np.isfinite(ds["corrected"].values).all() and np.isfinite(ds["flow"].values).all()
    assert ds.attrs["metadata"]["nonfinite_frames"] == [5, 17, 18]


def test_constant_frames_get_zero_flow(tmp_path, movie):
    data = movie.copy()
    data[10] = 1000
    data[11] = 0
    res = register(data, _opts(save_w=True), config=CFG)
    flow = res["flow"].values
    assert np.all(flow[10] == 0) and np.all(flow[11] == 0)
    assert np.abs(flow[12]).max() > 0  # the others are registered as usual


def test_reference_frames_outside_the_recording_are_refused(tmp_path, tif):
    with pytest.raises(InvalidOptionError, match=r"2 of 10 indices lie outside .*40, 41"):
        compensate_recording(
            _opts(reference_frames=range(32, 42)), CFG, recording=tif, output=tmp_path / "a.zarr"
        )
    with pytest.raises(InvalidOptionError, match="lie outside"):
        compensate_recording(
            _opts(reference_frames=[100, 200]), CFG, recording=tif, output=tmp_path / "b.zarr"
        )
    with pytest.raises(InvalidOptionError, match="lie outside"):  # the default, all outside
        compensate_recording(
            _opts(reference_frames=range(50, 500)), CFG, recording=tif, output=tmp_path / "c.zarr"
        )
    assert not any(tmp_path.glob("*.zarr"))
    long = np.concatenate([tifffile.imread(tif)] * 2)  # 80 frames: default 50..499 is clipped
    with pytest.warns(UserWarning, match="using the 30 frames 50..79"):
        compensate_recording(
            _opts(reference_frames=range(50, 500)), CFG, recording=long, output=tmp_path / "d.zarr"
        )


def test_buffer_size_below_one_is_refused():
    with pytest.raises(InvalidOptionError, match="buffer_size"):
        OFOptions(buffer_size=0)
    from flowreg_dask.cli.main import main

    with pytest.raises(SystemExit) as info:
        main(["correct", "in.tif", "-o", "out.zarr", "--buffer-size", "0"])
    assert info.value.code == 2


# ------------------------------------------------------------------------------ progress
def test_one_chunk_recording_reports_progress(tmp_path, tif):
    seen = []
    out = compensate_recording(
        _opts(buffer_size=400),
        CFG,
        recording=tif,
        output=tmp_path / "o.zarr",
        progress_callback=lambda cur, tot: seen.append((cur, tot)),
    ).output
    assert seen == [(N, N)]
    assert open_result(out).attrs["frames_per_second"] > 0


def test_the_reference_build_has_a_progress_bar(tmp_path, tif, capsys):
    cfg = RegistrationConfig(parallelization="sequential", progress=True)
    compensate_recording(_opts(), cfg, recording=tif, output=tmp_path / "o.zarr")
    err = capsys.readouterr().err
    assert "reference (2 passes)" in err and "16/16" in err  # 8 frames, twice
    assert "registering" in err and f"{N}/{N}" in err


# ------------------------------------------------------------------------------ stops
def _workers_of(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("mode", ["multiprocessing", "distributed"])
def test_workers_end_when_the_main_process_is_killed(tmp_path, tif, mode):
    out = tmp_path / "out.zarr"
    proc = _start(tmp_path, tif, out, delay=2.0, mode=mode)
    try:
        _wait_for(lambda: (out / "zarr.json").exists() and len(_workers_of(proc.pid)) >= 2)
        time.sleep(1.0)  # registration under way in the workers
        workers = _workers_of(proc.pid)
        descendants = workers + [c for w in workers for c in _workers_of(w)]
        assert descendants
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _wait_for(lambda: not any(_alive(p) for p in descendants), timeout=30)
    finally:
        proc.kill()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals")
def test_ctrl_c_ends_with_one_line_and_the_command_resumes(tmp_path, tif):
    out = tmp_path / "out.zarr"
    script = tmp_path / "cli_slow.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, time
            sys.path.insert(0, {str(REPO)!r})
            from flowreg_dask.pipeline import blocks, graph
            real = blocks.register_span
            def slow(*a, **k):
                time.sleep(1.0)
                return real(*a, **k)
            graph.register_span = slow
            from flowreg_dask.cli.main import main
            sys.exit(main(sys.argv[1:]))
            """
        )
    )
    args = [str(tif), "-o", str(out), "--quality", "fast", "--buffer-size", "20"]
    args += ["--reference-frames", "0:8", "--parallelization", "sequential", "--no-progress"]
    proc = subprocess.Popen(
        [sys.executable, str(script), "correct", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(lambda: _n_done(out) >= 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err  # no traceback
    assert "interrupted" in lines[0] and f"of 2 chunks of {out} are kept" in lines[0]
    assert "Resume with: flowreg-dask correct" in lines[0]
    assert not lock_path(out).exists()
    from flowreg_dask.cli.main import main

    assert main(["correct", *args]) == 0  # resumes
    assert open_result(out)["corrected"].shape == (N, H, W, 1)


def test_a_full_disk_says_where_what_was_kept_and_how_to_resume(tmp_path, tif, monkeypatch):
    real = CorrectedStore.write_chunk

    def full(self, index, **kw):
        if index == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, index, **kw)

    monkeypatch.setattr(CorrectedStore, "write_chunk", full)
    out = tmp_path / "o.zarr"
    with pytest.raises(OSError) as info:
        compensate_recording(_opts(), CFG, recording=tif, output=out)
    assert info.value.errno == errno.ENOSPC
    message = str(info.value)
    assert str(out) in message and "no space left" in message
    assert "1 of 2 chunks are kept" in message and "rerun the same command" in message
    assert not lock_path(out).exists()
    monkeypatch.setattr(CorrectedStore, "write_chunk", real)
    compensate_recording(_opts(), CFG, recording=tif, output=out)  # resumes
    assert open_result(out).attrs["status"] == "complete"
