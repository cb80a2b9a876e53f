"""apply_flow: a store's flows applied to its own recording reproduce its corrected movie; other
recordings and channels; resume; clear errors that write nothing; the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from flowreg_dask import OFOptions, RegistrationConfig, compensate_recording
from flowreg_dask.datasets import synthetic_recording
from flowreg_dask.errors import IncompleteStoreError, InvalidInputError, InvalidOptionError
from flowreg_dask.pipeline.apply import apply_flow
from flowreg_dask.store.reader import open_result
from flowreg_dask.store.writer import CorrectedStore

SEQ = RegistrationConfig(parallelization="sequential", progress=False)
THREADS = RegistrationConfig(parallelization="threading", n_jobs=2, progress=False)


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """A 2-channel recording (50 frames, 48 x 40, uint16) and its store with flows (2 chunks)."""
    d = tmp_path_factory.mktemp("apply")
    rec = synthetic_recording(n_frames=50, height=48, width=40, n_channels=2, seed=1)
    np.save(d / "rec.npy", rec.movie)
    opts = OFOptions(
        quality_setting="balanced",
        save_w=True,
        save_valid_idx=True,
        buffer_size=20,
        reference_frames=list(range(20)),
    )
    store = compensate_recording(
        opts, THREADS, recording=d / "rec.npy", output=d / "reg.zarr"
    ).output
    return d, rec.movie, store


def test_reproduces_corrected_movie(registered, tmp_path):
    d, movie, store = registered
    src = open_result(store)
    assert src.attrs["chunk_bounds"] == [[0, 20], [20, 50]]
    out = apply_flow(store, d / "rec.npy", output=tmp_path / "out.zarr", config=THREADS)
    res = open_result(out)
    assert res.attrs["chunk_bounds"] == src.attrs["chunk_bounds"]
    assert res["corrected"].dtype == np.uint16 and "flow" not in res
    diff = np.abs(res["corrected"].values.astype(int) - src["corrected"].values.astype(int))
    assert diff.max() <= 1  # measured: 0 (the same warp of the same frames with the same flows)
    np.testing.assert_array_equal(res["valid"].values, src["valid"].values)
    np.testing.assert_array_equal(res["reference"].values, src["reference"].values)
    for name in ("mean_disp", "max_disp", "mean_div", "mean_translation"):
        np.testing.assert_array_equal(res[name].values, src[name].values)
    # with save_flow the flows are copied as well
    out2 = apply_flow(store, movie, output=tmp_path / "out2.zarr", save_flow=True, config=SEQ)
    np.testing.assert_array_equal(open_result(out2)["flow"].values, src["flow"].values)


def test_other_recording_one_channel(registered, tmp_path):
    """The functional channel as a recording of its own, warped with the flows of the 2-channel
    registration: equal to the registration's channel 1 wherever the source was inside."""
    d, movie, store = registered
    np.save(d / "functional.npy", movie[..., 1])
    with pytest.raises(InvalidOptionError, match="fill='zeros'"):  # reference has 2 channels
        apply_flow(store, d / "functional.npy", output=tmp_path / "f.zarr")
    assert not (tmp_path / "f.zarr").exists()
    out = apply_flow(
        store, d / "functional.npy", output=tmp_path / "f.zarr", fill="zeros", config=SEQ
    )
    src, res = open_result(store), open_result(out)
    valid = src["valid"].values
    got = res["corrected"].values[..., 0]
    np.testing.assert_array_equal(got[valid], src["corrected"].values[..., 1][valid])
    assert not got[~valid].any()
    assert res["corrected"].shape == (50, 48, 40, 1)
    # channel selection of the 2-channel recording gives the same movie
    out = apply_flow(
        store, d / "rec.npy", output=tmp_path / "c.zarr", channels=[1], fill=0, config=SEQ
    )
    np.testing.assert_array_equal(open_result(out)["corrected"].values[..., 0], got)


def test_resume_after_kill(registered, tmp_path, monkeypatch):
    d, _, store = registered
    written: list[int] = []
    kill = [True]
    original = CorrectedStore.write_chunk

    def write_chunk(self, index, **kw):
        if written and kill[0]:  # the second chunk of the first run
            kill[0] = False
            raise RuntimeError("simulated kill")
        written.append(index)
        return original(self, index, **kw)

    monkeypatch.setattr(CorrectedStore, "write_chunk", write_chunk)
    out = tmp_path / "out.zarr"
    with pytest.raises(RuntimeError, match="simulated kill"):
        apply_flow(store, d / "rec.npy", output=out, config=SEQ)
    with pytest.raises(IncompleteStoreError):
        open_result(out)
    assert len(written) == 1
    apply_flow(store, d / "rec.npy", output=out, config=SEQ)
    assert sorted(written) == [0, 1]  # the rerun wrote only the chunk that was missing
    np.testing.assert_array_equal(
        open_result(out)["corrected"].values, open_result(store)["corrected"].values
    )


def test_bad_inputs_write_nothing(registered, tmp_path):
    d, movie, store = registered
    out = tmp_path / "out.zarr"
    np.save(tmp_path / "short.npy", movie[:49])
    with pytest.raises(InvalidInputError, match="49 frames.*flows for 50 frames"):
        apply_flow(store, tmp_path / "short.npy", output=out)
    with pytest.raises(InvalidInputError, match=r"\(H, W\) = \(48, 39\)"):
        apply_flow(store, movie[:, :, :39], output=out)
    no_flow = compensate_recording(
        OFOptions(quality_setting="fast", buffer_size=20, reference_frames=[0, 1]),
        SEQ,
        recording=movie[:20],
        output=tmp_path / "noflow.zarr",
    ).output
    with pytest.raises(InvalidInputError, match="save_w=True.*--save-w"):
        apply_flow(no_flow, movie[:20], output=out)
    with pytest.raises(InvalidOptionError, match="channels"):
        apply_flow(store, movie, output=out, channels=[2])
    with pytest.raises(InvalidOptionError, match="fill"):
        apply_flow(store, movie, output=out, fill="nearest")
    with pytest.raises(InvalidOptionError, match="NaN"):
        apply_flow(store, movie, output=out, fill=np.nan)
    with pytest.raises(InvalidOptionError, match="another output path"):
        apply_flow(store, movie, output=store, overwrite=True)
    assert not out.exists()
    # an unfinished store cannot lend its flows
    meta = no_flow / "zarr.json"
    text = meta.read_text()
    meta.write_text(text.replace('"status": "complete"', '"status": "incomplete"'))
    with pytest.raises(IncompleteStoreError):
        apply_flow(no_flow, movie[:20], output=out)
    assert not out.exists()


def test_cli_apply(registered, tmp_path, capsys):
    from flowreg_dask.cli.main import main

    d, _, store = registered
    out = tmp_path / "out.zarr"
    args = ["apply", str(store), str(d / "rec.npy"), "-o", str(out), "--no-progress"]
    assert main([*args, "--parallelization", "sequential"]) == 0
    assert "wrote" in capsys.readouterr().out
    np.testing.assert_array_equal(
        open_result(out)["corrected"].values, open_result(store)["corrected"].values
    )
    assert main(args) == 2  # complete output, no --overwrite
    assert "overwrite" in capsys.readouterr().err
    zeros = [*args[:3], "-o", str(tmp_path / "z.zarr"), "--fill", "zeros", "--channels", "0"]
    assert main(zeros) == 0
    assert open_result(tmp_path / "z.zarr")["corrected"].shape[-1] == 1
