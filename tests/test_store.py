"""Tests of the output store: layout, OME metadata, atomic chunk writes, resume and safe overwrite.

Every test compares what is read back with the exact arrays that were written (ground truth).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from flowreg_dask.errors import (
    IncompleteStoreError,
    InvalidInputError,
    InvalidOptionError,
    OutputExistsError,
    RecordingNotFoundError,
)
from flowreg_dask.store import layout as L
from flowreg_dask.store.reader import open_result, store_status
from flowreg_dask.store.writer import CorrectedStore, StoreSpec

T, H, W, C = 30, 16, 24, 2
BOUNDS = [(0, 8), (8, 16), (16, 24), (24, 30)]
REPO_ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def make_data(seed: int = 0, dtype: Any = np.uint16) -> dict[str, Any]:
    """Return a deterministic movie, flow, mask, stats and reference for T x H x W x C."""
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        corrected = rng.normal(100, 10, (T, H, W, C)).astype(dtype)
    else:
        corrected = rng.integers(0, 4000, (T, H, W, C)).astype(dtype)
    return {
        "corrected": corrected,
        "flow": rng.normal(0, 2, (T, H, W, 2)).astype(np.float32),
        "valid": rng.random((T, H, W)) > 0.2,
        "stats": {name: rng.normal(size=T) for name in L.DEFAULT_STAT_NAMES},
        "reference": rng.normal(100, 10, (H, W, C)),
    }


def create(path: Path, fingerprint: str = "fp-1", **kw: Any) -> CorrectedStore:
    """Create a store for the standard test shape (keyword overrides allowed)."""
    args: dict[str, Any] = {
        "n_frames": T,
        "height": H,
        "width": W,
        "n_channels": C,
        "dtype": np.uint16,
        "chunk_bounds": BOUNDS,
        "save_flow": True,
        "save_valid": True,
        "channel_names": ["green", "red"],
        "frame_rate": 30.0,
        "pixel_size": 0.5,
        "fingerprint": fingerprint,
        "metadata": {"options": {"alpha": 1.5, "levels": [1, 2]}, "input": "synthetic"},
    }
    args.update(kw)
    flags = {k: args.pop(k) for k in ("overwrite", "resume") if k in args}
    return CorrectedStore.create(path, StoreSpec(**args), **flags)


def write(store: CorrectedStore, data: dict[str, Any], index: int) -> None:
    """Write chunk ``index`` of ``data`` into ``store``."""
    a, b = store.chunk_bounds[index]
    store.write_chunk(
        index,
        corrected=data["corrected"][a:b],
        flow=data["flow"][a:b],
        valid=data["valid"][a:b],
        stats={k: v[a:b] for k, v in data["stats"].items()},
    )


def _write_in_worker(store: CorrectedStore, index: int, seed: int) -> int:
    """Process-pool task: regenerate the data and write one chunk through the pickled store."""
    write(store, make_data(seed), index)
    return os.getpid()


def assert_matches(path: Path, data: dict[str, Any]) -> None:
    """Assert that the complete store at ``path`` holds exactly ``data``."""
    ds = open_result(path)
    np.testing.assert_array_equal(ds["corrected"].values, data["corrected"])
    np.testing.assert_array_equal(ds["flow"].values, data["flow"])
    np.testing.assert_array_equal(ds["valid"].values, data["valid"])
    for name, values in data["stats"].items():
        np.testing.assert_array_equal(ds[name].values, values)
    np.testing.assert_array_equal(ds["reference"].values, data["reference"].astype(np.float32))


@pytest.fixture
def data() -> dict[str, Any]:
    return make_data()


@pytest.fixture
def complete_store(tmp_path: Path, data: dict[str, Any]) -> Path:
    store = create(tmp_path / "out.zarr")
    for i in range(store.n_chunks):
        write(store, data, i)
    return store.finalize(reference=data["reference"], extra_attrs={"mean_corr": 0.9})


# --------------------------------------------------------------------------------------------------
# round trip, metadata, layout
# --------------------------------------------------------------------------------------------------
def test_round_trip_values_dims_dtypes(complete_store: Path, data: dict[str, Any]) -> None:
    assert_matches(complete_store, data)
    ds = open_result(complete_store)
    assert ds["corrected"].dims == ("t", "y", "x", "c")  # the library's axis order
    assert ds["corrected"].dtype == np.uint16
    assert ds["flow"].dims == ("t", "y", "x", "component")
    assert ds["flow"].dtype == np.float32
    assert list(ds["component"].values) == ["u", "v"]
    assert ds["valid"].dims == ("t", "y", "x") and ds["valid"].dtype == bool
    assert ds["reference"].dims == ("y", "x", "c") and ds["reference"].dtype == np.float32
    assert ds["mean_disp"].dims == ("t",) and ds["mean_disp"].dtype == np.float64
    # lazy, one dask chunk per pipeline chunk along t
    assert ds["corrected"].chunks[0] == (8, 8, 8, 6)
    # coordinates in physical units
    np.testing.assert_allclose(ds["t"].values, np.arange(T) / 30.0)
    assert ds["t"].attrs["units"] == "second"
    np.testing.assert_allclose(ds["x"].values, np.arange(W) * 0.5)
    assert ds["y"].attrs["units"] == "micrometer"
    assert list(ds["c"].values) == ["green", "red"]
    # run record
    assert ds.attrs["status"] == "complete"
    assert ds.attrs["fingerprint"] == "fp-1"
    assert ds.attrs["metadata"] == {
        "options": {"alpha": 1.5, "levels": [1, 2]},
        "input": "synthetic",
    }
    assert ds.attrs["mean_corr"] == 0.9
    # frame (t) x channel selection picks the right pixels after the transposition
    np.testing.assert_array_equal(
        ds["corrected"].isel(t=13, c=1).values, data["corrected"][13, :, :, 1]
    )


def test_ome_zarr_metadata(complete_store: Path) -> None:
    root = zarr.open_group(complete_store, mode="r")
    assert root.attrs["ome"] == {"version": "0.5", "bioformats2raw.layout": 3}
    ome = root["0"].attrs["ome"]
    assert ome["version"] == "0.5"
    (ms,) = ome["multiscales"]
    assert [a["name"] for a in ms["axes"]] == ["t", "c", "y", "x"]
    assert [a["type"] for a in ms["axes"]] == ["time", "channel", "space", "space"]
    assert ms["axes"][0]["unit"] == "second"
    assert ms["axes"][2]["unit"] == ms["axes"][3]["unit"] == "micrometer"
    (dataset,) = ms["datasets"]
    assert dataset["path"] == "0"
    (scale,) = dataset["coordinateTransformations"]
    assert scale["type"] == "scale"
    np.testing.assert_allclose(scale["scale"], [1 / 30.0, 1.0, 0.5, 0.5])
    assert [ch["label"] for ch in ome["omero"]["channels"]] == ["green", "red"]
    arr = zarr.open_array(complete_store / "0" / "0", mode="r")
    assert arr.metadata.zarr_format == 3
    assert arr.metadata.dimension_names == ("t", "c", "y", "x")
    assert arr.shape == (T, C, H, W)
    flow = zarr.open_array(complete_store / "flow", mode="r")
    assert flow.metadata.dimension_names == ("t", "component", "y", "x")
    assert flow.attrs["components"] == ["u", "v"]
    assert flow.attrs["units"] == "pixel"
    record = root.attrs["flowreg_dask"]
    assert record["status"] == "complete"
    assert record["chunk_bounds"] == [list(b) for b in BOUNDS]


def test_ome_zarr_metadata_validates(complete_store: Path) -> None:
    from ome_zarr_models.v05.bioformats2raw import BioFormats2Raw
    from ome_zarr_models.v05.image import Image

    root = zarr.open_group(complete_store, mode="r")
    container = BioFormats2Raw.from_zarr(root)
    assert container.ome_attributes.bioformats2raw_layout == 3
    image = Image.from_zarr(root["0"])
    (ms,) = image.ome_attributes.multiscales
    assert [a.name for a in ms.axes] == ["t", "c", "y", "x"]
    assert ms.datasets[0].path == "0"


def test_napari_default_reader_opens_the_corrected_movie(complete_store: Path) -> None:
    from napari.layers import Image
    from napari_builtins.io._read import napari_get_reader

    reader = napari_get_reader(str(complete_store))
    layers = reader(str(complete_store))
    (data,) = layers[0]
    layer = Image(data)
    assert tuple(layer.data.shape) == (T, C, H, W)
    np.testing.assert_array_equal(
        np.asarray(layer.data[3]),
        np.asarray(open_result(complete_store)["corrected"][3].transpose("c", "y", "x")),
    )


def test_ome_metadata_without_units(tmp_path: Path, data: dict[str, Any]) -> None:
    store = create(tmp_path / "o.zarr", frame_rate=None, pixel_size=None, channel_names=None)
    image = zarr.open_group(store.path, mode="r")["0"]
    ms = image.attrs["ome"]["multiscales"][0]
    assert all("unit" not in a for a in ms["axes"])
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 1.0, 1.0, 1.0]
    assert "omero" not in image.attrs["ome"]


def test_store_is_readable_by_plain_zarr_and_xarray(complete_store: Path) -> None:
    import xarray as xr

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no foreign file, no missing consolidated metadata
        members = dict(zarr.open_group(complete_store, mode="r").members())
        ds = xr.open_zarr(complete_store)
        image = xr.open_zarr(complete_store, group="0")
    assert {"0", "flow", "valid", "reference", "stats", "chunk_done"} <= set(members)
    assert sorted(p.name for p in complete_store.iterdir()) == sorted(
        ["zarr.json", "0", "flow", "valid", "reference", "stats", "chunk_done"]
    )  # nothing but zarr nodes
    assert ds["flow"].dims == ("t", "component", "y", "x")  # as stored
    assert ds["chunk_done"].values.all()
    assert image["0"].dims == ("t", "c", "y", "x")


def test_chunk_and_shard_layout(tmp_path: Path) -> None:
    # buffer of 8 frames: one plain chunk (= one object) per pipeline chunk, no sharding needed
    store = create(tmp_path / "a.zarr")
    arr = zarr.open_array(store.path / "0" / "0", mode="r")
    assert arr.shards is None and arr.chunks == (8, C, H, W)
    assert zarr.open_array(store.path / "stats" / "mean_disp", mode="r").chunks == (8,)
    # buffer of 12 frames: shard = pipeline chunk, inner chunks of 6 frames
    bounds = [(0, 12), (12, 24), (24, 30)]
    store = create(tmp_path / "b.zarr", chunk_bounds=bounds)
    for name, tail in (("0/0", (C, H, W)), ("flow", (2, H, W)), ("valid", (H, W))):
        arr = zarr.open_array(store.path / name, mode="r")
        assert arr.shards == (12, *tail)
        assert arr.chunks == (6, *tail)
    assert zarr.open_array(store.path / "stats" / "max_disp", mode="r").chunks == (12,)
    # irregular bounds: storage objects follow the gcd of the internal boundaries
    store = create(tmp_path / "c.zarr", chunk_bounds=[(0, 10), (10, 15), (15, 30)])
    arr = zarr.open_array(store.path / "0" / "0", mode="r")
    assert arr.shards is None and arr.chunks == (5, C, H, W)


def test_each_chunk_writes_only_its_own_objects(tmp_path: Path, data: dict[str, Any]) -> None:
    store = create(tmp_path / "o.zarr", chunk_bounds=[(0, 12), (12, 24), (24, 30)])
    write(store, data, 1)
    for name in ("0/0", "flow", "valid", "stats/mean_disp", "chunk_done"):
        objects = sorted(p.name for p in (store.path / name / "c").iterdir())
        assert objects == ["1"], name  # shard 1 only: chunk i is exactly shard i


def test_plan_time_layout_bounds_shard_size() -> None:
    regular = [(0, 16), (16, 32), (32, 40)]
    assert L.plan_time_layout(regular, 1000) == L.TimeLayout(16, 8)
    # a shard over the byte budget shrinks to a divisor of the pipeline chunk
    layout = L.plan_time_layout(regular, 1000, max_shard_bytes=4500)
    assert layout == L.TimeLayout(4, 4) and not layout.sharded
    # huge frames: inner chunks of one frame
    assert L.plan_time_layout(regular, 10 << 20) == L.TimeLayout(16, 1)
    # prime buffer length: inner chunk must divide the shard
    assert L.plan_time_layout([(0, 7), (7, 14)], 10) == L.TimeLayout(7, 7)
    assert L.plan_time_layout([(0, 30)], 10) == L.TimeLayout(30, 6)


# --------------------------------------------------------------------------------------------------
# markers, incomplete stores, resume
# --------------------------------------------------------------------------------------------------
def test_done_flags(tmp_path: Path, data: dict[str, Any]) -> None:
    store = create(tmp_path / "o.zarr")
    assert store.done_chunks() == set() and store.status == "incomplete"
    write(store, data, 0)
    write(store, data, 2)
    assert store.done_chunks() == {0, 2}
    assert store.missing_chunks() == [1, 3]
    flags = zarr.open_array(store.path / "chunk_done", mode="r")
    assert flags[:].tolist() == [True, False, True, False]
    assert sorted(p.name for p in (store.path / "chunk_done" / "c").iterdir()) == ["0", "2"]
    status = store_status(store.path)
    assert status["status"] == "incomplete"
    assert (status["chunks_done"], status["n_chunks"]) == (2, 4)
    assert status["missing_chunks"] == [1, 3]


def test_a_rewrite_clears_the_done_flag_first(tmp_path: Path, data: dict[str, Any], monkeypatch):
    """Flags are written as whole objects (the bytes zarr writes); a chunk written again loses
    its flag before its data is touched, so a rewrite that fails leaves it "not done", while a
    chunk written for the first time writes its flag once, after its data."""
    import flowreg_dask.store.writer as writer
    from flowreg_dask.store._objects import ObjectWriter

    store = create(tmp_path / "o.zarr")
    by_zarr = zarr.create_array(
        tmp_path / "zarr_flags",
        shape=(4,),
        dtype="bool",
        chunks=(1,),
        fill_value=False,
        compressors=zarr.codecs.BloscCodec(**L.blosc_for("bool")),
    )
    by_zarr[0] = True
    write(store, data, 0)
    flag = store.work_path / "chunk_done" / "c" / "0"
    assert flag.read_bytes() == (tmp_path / "zarr_flags" / "c" / "0").read_bytes()
    assert store.done_chunks() == {0}

    def fail(writes):
        assert store.done_chunks() == set()  # cleared before any data is written
        raise OSError("disk gone")

    with monkeypatch.context() as m:
        m.setattr(writer, "_write_together", fail)
        with pytest.raises(OSError, match="disk gone"):
            write(store, data, 0)
    assert store.done_chunks() == set()

    puts = []
    original = ObjectWriter._put

    def put(self, key, parts):
        puts.append(f"{self.root.name}/{key}")
        original(self, key, parts)

    monkeypatch.setattr(ObjectWriter, "_put", put)
    write(store, data, 1)  # a first write: its flag object is written once, last
    assert puts[-1] == "chunk_done/c/1" and puts.count("chunk_done/c/1") == 1
    assert store.done_chunks() == {1}


def test_open_incomplete_raises_and_names_missing_chunks(tmp_path: Path) -> None:
    store = create(tmp_path / "o.zarr", dtype=np.float32)
    fdata = make_data(dtype=np.float32)
    write(store, fdata, 0)
    write(store, fdata, 2)
    with pytest.raises(IncompleteStoreError, match=r"chunks 1, 3 of 4") as info:
        open_result(store.path)
    message = str(info.value)
    assert "frames 8-15, 24-29" in message
    assert "Rerun the same command" in message and "allow_incomplete=True" in message
    with pytest.warns(UserWarning, match="incomplete"):
        ds = open_result(store.path, allow_incomplete=True)
    values = ds["corrected"].values
    np.testing.assert_array_equal(values[:8], fdata["corrected"][:8])
    assert np.isnan(values[8:16]).all() and np.isnan(ds["mean_disp"].values[24:]).all()
    assert ds.attrs["missing_chunks"] == [1, 3]


def test_finalize_with_missing_chunks_raises(tmp_path: Path, data: dict[str, Any]) -> None:
    store = create(tmp_path / "o.zarr")
    write(store, data, 1)
    with pytest.raises(IncompleteStoreError, match=r"chunks 0, 2-3 of 4"):
        store.finalize(reference=data["reference"])
    assert store.status == "incomplete"


def test_resume_keeps_done_chunks(tmp_path: Path, data: dict[str, Any]) -> None:
    path = tmp_path / "o.zarr"
    first = create(path)
    write(first, data, 0)
    write(first, data, 3)
    # chunk 1 was being written when the run died: data there, no done flag, stray temp file
    write(first, data, 1)
    (path / "chunk_done" / "c" / "1").unlink()
    stray = path / "0" / "0" / "c" / "zarr.0123456789abcdef.partial"
    stray.write_bytes(b"half")
    del first

    second = create(path)  # same fingerprint: resume
    assert second.done_chunks() == {0, 3}
    assert not stray.exists()
    for i in sorted(set(range(second.n_chunks)) - second.done_chunks()):
        write(second, data, i)
    second.finalize(reference=data["reference"])
    assert_matches(path, data)
    assert len(store_status(path)["resumed_at"]) == 1


def test_resume_after_sigkill(tmp_path: Path, data: dict[str, Any]) -> None:
    path = tmp_path / "killed.zarr"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO_ROOT)!r})
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_store import create, make_data, write
        store = create({str(path)!r})
        data = make_data()
        write(store, data, 0)
        write(store, data, 2)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    with pytest.raises(IncompleteStoreError, match=r"chunks 1, 3 of 4"):
        open_result(path)
    store = create(path)
    assert store.done_chunks() == {0, 2}
    for i in (1, 3):
        write(store, data, i)
    store.finalize(reference=data["reference"])
    assert_matches(path, data)


def test_interrupted_create_is_rebuilt(tmp_path: Path, data: dict[str, Any]) -> None:
    path = tmp_path / "o.zarr"
    create(path)
    meta = json.loads((path / "zarr.json").read_text())
    meta["attributes"]["flowreg_dask"]["status"] = "creating"  # killed while laying out
    (path / "zarr.json").write_text(json.dumps(meta))
    store = create(path)
    assert store.status == "incomplete" and store.done_chunks() == set()
    for i in range(store.n_chunks):
        write(store, data, i)
    store.finalize(reference=data["reference"])
    assert_matches(path, data)


def test_fingerprint_mismatch(tmp_path: Path, data: dict[str, Any]) -> None:
    path = tmp_path / "o.zarr"
    write(create(path), data, 0)
    with pytest.raises(InvalidInputError, match="other options or another input") as info:
        create(path, fingerprint="fp-2")
    assert "overwrite" in str(info.value)
    assert isinstance(info.value, ValueError)
    # resume=False for the same run is refused without overwrite
    with pytest.raises(OutputExistsError, match="resume=True"):
        create(path, resume=False)
    # the partial store is untouched by these refusals
    assert create(path).done_chunks() == {0}


def test_layout_mismatch_with_same_fingerprint(tmp_path: Path, data: dict[str, Any]) -> None:
    path = tmp_path / "o.zarr"
    write(create(path), data, 0)
    with pytest.raises(InvalidInputError, match="different layout"):
        create(path, dtype=np.float32)
    store = create(path, dtype=np.float32, overwrite=True)  # built aside, swapped in at finalize
    assert store.work_path != path and store.done_chunks() == set()


# --------------------------------------------------------------------------------------------------
# overwrite
# --------------------------------------------------------------------------------------------------
def test_complete_store_is_not_overwritten(complete_store: Path, data: dict[str, Any]) -> None:
    with pytest.raises(OutputExistsError, match=r"overwrite=True \(--overwrite\)"):
        create(complete_store)
    with pytest.raises(OutputExistsError):
        create(complete_store, fingerprint="other")
    assert_matches(complete_store, data)


def test_failed_overwrite_keeps_old_result(complete_store: Path, data: dict[str, Any]) -> None:
    new = make_data(seed=7)
    store = create(complete_store, fingerprint="fp-new", overwrite=True)
    assert store.path == complete_store and store.work_path != complete_store
    assert store.work_path.name.startswith("out.zarr.tmp-")
    write(store, new, 0)
    write(store, new, 1)
    del store  # the overwriting run dies here
    assert_matches(complete_store, data)  # old result intact and readable
    pending = store_status(complete_store)["pending_overwrites"]
    assert [(p["chunks_done"], p["fingerprint"]) for p in pending] == [(2, "fp-new")]

    # rerunning the same overwriting command resumes the temporary store
    store = create(complete_store, fingerprint="fp-new", overwrite=True)
    assert store.done_chunks() == {0, 1}
    write(store, new, 2)
    write(store, new, 3)
    assert_matches(complete_store, data)  # still the old result until finalize
    assert store.finalize(reference=new["reference"]) == complete_store
    assert_matches(complete_store, new)
    assert open_result(complete_store).attrs["fingerprint"] == "fp-new"
    assert sorted(p.name for p in complete_store.parent.iterdir()) == ["out.zarr"]


def test_overwrite_replaces_complete_store(complete_store: Path) -> None:
    new = make_data(seed=3)
    store = create(complete_store, overwrite=True)  # same options again, e.g. after a code fix
    for i in range(store.n_chunks):
        write(store, new, i)
    store.finalize(reference=new["reference"])
    assert_matches(complete_store, new)
    assert store.work_path == complete_store and store.status == "complete"
    assert sorted(p.name for p in complete_store.parent.iterdir()) == ["out.zarr"]


def test_overwrite_killed_during_swap_recovers(complete_store: Path) -> None:
    new = make_data(seed=5)
    store = create(complete_store, fingerprint="fp-new", overwrite=True)
    for i in range(store.n_chunks):
        write(store, new, i)
    work = store.work_path
    store._swap_into_place = lambda: None  # type: ignore[method-assign]  # die before the swap
    store.finalize(reference=new["reference"])
    # the kill hit between "old -> trash" and "new -> target"
    os.rename(complete_store, complete_store.with_name("out.zarr.trash-deadbeef"))
    assert not complete_store.exists() and work.exists()
    again = create(complete_store, fingerprint="fp-new", overwrite=True)
    assert again.work_path == work and again.done_chunks() == set(range(4))
    again.finalize(reference=new["reference"])
    assert_matches(complete_store, new)
    assert sorted(p.name for p in complete_store.parent.iterdir()) == ["out.zarr"]


def test_incomplete_store_of_other_run_overwritten(tmp_path: Path, data: dict[str, Any]) -> None:
    path = tmp_path / "o.zarr"
    write(create(path, fingerprint="old"), make_data(seed=9), 0)
    store = create(path, overwrite=True)
    assert store.done_chunks() == set()
    for i in range(store.n_chunks):
        write(store, data, i)
    store.finalize(reference=data["reference"])
    assert_matches(path, data)


# --------------------------------------------------------------------------------------------------
# concurrency and pickling
# --------------------------------------------------------------------------------------------------
def test_concurrent_writes_from_threads(tmp_path: Path, data: dict[str, Any]) -> None:
    bounds = [(i, min(i + 4, T)) for i in range(0, T, 4)]  # 8 chunks for 4 threads
    store = create(tmp_path / "o.zarr", chunk_bounds=bounds)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda i: write(store, data, i), range(store.n_chunks)))
    assert store.done_chunks() == set(range(store.n_chunks))
    store.finalize(reference=data["reference"])
    assert_matches(store.path, data)


def test_concurrent_writes_from_processes(tmp_path: Path, data: dict[str, Any]) -> None:
    store = create(tmp_path / "o.zarr")
    write(store, data, 0)  # populate this process's array cache: it must not be pickled
    blob = pickle.dumps(store)
    assert len(blob) < 4000
    assert pickle.loads(blob).done_chunks() == {0}
    ctx = multiprocessing.get_context("spawn")  # what dask.distributed workers use
    with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
        pids = list(pool.map(_write_in_worker, [store] * 3, [1, 2, 3], [0] * 3))
    assert os.getpid() not in pids
    store.finalize(reference=data["reference"])
    assert_matches(store.path, data)


# --------------------------------------------------------------------------------------------------
# validation and error messages
# --------------------------------------------------------------------------------------------------
def test_unwritable_location(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="a_file") as info:
        create(blocker / "sub" / "out.zarr")
    assert "writable location" in str(info.value)
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores permissions"
)
def test_read_only_folder(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="ro"):
            create(ro / "out.zarr")
    finally:
        ro.chmod(0o700)


def test_permission_error_names_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def deny(self: Path, *args: Any, **kwargs: Any) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", deny)
    with pytest.raises(PermissionError, match="Permission denied") as info:
        create(tmp_path / "locked" / "out.zarr")
    assert str(tmp_path / "locked" / "out.zarr") in str(info.value)
    assert "writable location" in str(info.value)


def test_missing_parent_is_created(tmp_path: Path) -> None:
    store = create(tmp_path / "new" / "deeper" / "out.zarr")
    assert store.path.is_dir() and store.status == "incomplete"


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_foreign_path_is_never_replaced(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "data.zarr"
    if kind == "file":
        path.write_text("precious")
    else:
        path.mkdir()
        (path / "notes.txt").write_text("precious")
    for overwrite in (False, True):
        with pytest.raises(OutputExistsError, match="not a flowreg_dask store"):
            create(path, overwrite=overwrite)
    content = path if kind == "file" else path / "notes.txt"
    assert content.read_text() == "precious"
    with pytest.raises(InvalidInputError, match="not a flowreg_dask output store"):
        open_result(path)


def test_open_missing_path(tmp_path: Path) -> None:
    with pytest.raises(RecordingNotFoundError):
        open_result(tmp_path / "nothing.zarr")


def test_empty_folder_is_used(tmp_path: Path) -> None:
    path = tmp_path / "empty.zarr"
    path.mkdir()
    assert create(path).status == "incomplete"


def test_write_chunk_validation(tmp_path: Path, data: dict[str, Any]) -> None:
    store = create(tmp_path / "o.zarr")
    good: dict[str, Any] = {
        "corrected": data["corrected"][:8],
        "flow": data["flow"][:8],
        "valid": data["valid"][:8],
        "stats": {k: v[:8] for k, v in data["stats"].items()},
    }
    bad_cases: list[tuple[dict[str, Any], str]] = [
        ({"corrected": data["corrected"][:7]}, r"\(T, H, W, C\) = \(8, 16, 24, 2\)"),
        ({"flow": data["flow"][:8, :, :, :1]}, "flow for chunk 0"),
        ({"flow": None}, "save_flow"),
        ({"valid": None}, "save_valid"),
        ({"stats": {"mean_disp": np.zeros(8)}}, "missing"),
        ({"stats": {**good["stats"], "extra": np.zeros(8)}}, "unexpected"),
        ({"stats": {**good["stats"], "mean_disp": np.zeros(3)}}, "mean_disp"),
    ]
    for override, pattern in bad_cases:
        with pytest.raises(InvalidInputError, match=pattern):
            store.write_chunk(0, **{**good, **override})
    with pytest.raises(InvalidOptionError, match="0..3"):
        store.write_chunk(4, **good)
    assert store.done_chunks() == set()  # nothing half-written got marked


def test_float_data_into_integer_store_is_rounded_and_clipped(tmp_path: Path) -> None:
    store = create(tmp_path / "o.zarr", save_flow=False, save_valid=False, channel_names=None)
    frames = np.full((8, H, W, C), 10.6, dtype=np.float32)
    frames[0, 0, 0] = [-5.0, 70000.0]
    frames[1, 0, 0] = [np.nan, 2.5]
    store.write_chunk(
        0,
        corrected=frames,
        flow=None,
        valid=None,
        stats={k: np.zeros(8) for k in L.DEFAULT_STAT_NAMES},
    )
    stored = zarr.open_array(store.path / "0" / "0", mode="r")[:8]
    assert stored.dtype == np.uint16
    assert stored[2, 0, 5, 5] == 11
    assert list(stored[0, :, 0, 0]) == [0, 65535]
    assert list(stored[1, :, 0, 0]) == [0, 2]
    # integers out of range are clipped, not wrapped
    ints = np.full((6, H, W, C), 7, dtype=np.int32)
    ints[0, 0, 0] = [-3, 100000]
    store.write_chunk(
        3,
        corrected=ints,
        flow=None,
        valid=None,
        stats={k: np.zeros(6) for k in L.DEFAULT_STAT_NAMES},
    )
    stored = zarr.open_array(store.path / "0" / "0", mode="r")[24:]
    assert list(stored[0, :, 0, 0]) == [0, 65535] and stored[1, 0, 0, 0] == 7
    assert not (store.path / "flow").exists() and not (store.path / "valid").exists()


def test_create_validation(tmp_path: Path) -> None:
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"chunk_bounds": [(0, 8), (9, 30)]}, InvalidOptionError, "contiguous"),
        ({"chunk_bounds": [(0, 8), (8, 20)]}, InvalidOptionError, "cover all"),
        ({"n_frames": 0}, InvalidOptionError, "n_frames"),
        ({"dtype": np.complex64}, InvalidOptionError, "integer or float"),
        ({"channel_names": ["only one"]}, InvalidOptionError, "one label per channel"),
        ({"frame_rate": -1.0}, InvalidOptionError, "frame_rate"),
        ({"metadata": {"obj": object()}}, InvalidOptionError, "JSON-serialisable"),
        ({"stat_names": ["flow"]}, InvalidOptionError, "stat name"),
        ({"fingerprint": ""}, InvalidOptionError, "run_fingerprint"),
    ]
    for kw, exc, pattern in cases:
        fingerprint = kw.pop("fingerprint", "fp")
        with pytest.raises(exc, match=pattern):
            create(tmp_path / "o.zarr", fingerprint=fingerprint, **kw)
    assert not (tmp_path / "o.zarr").exists()  # validation happens before anything is written


def test_finalized_store_refuses_writes(complete_store: Path, data: dict[str, Any]) -> None:
    store = CorrectedStore.open(complete_store)
    with pytest.raises(OutputExistsError, match="finalized"):
        write(store, data, 0)
    assert_matches(complete_store, data)


def test_custom_stats_and_float_movie(tmp_path: Path) -> None:
    fdata = make_data(seed=2, dtype=np.float32)
    fdata["stats"] = {"corr": np.linspace(0, 1, T)}
    store = create(tmp_path / "o.zarr", dtype=np.float32, stat_names=["corr"])
    for i in range(store.n_chunks):
        write(store, fdata, i)
    store.finalize(reference=fdata["reference"])
    ds = open_result(store.path)
    assert ds["corrected"].dtype == np.float32
    np.testing.assert_array_equal(ds["corr"].values, fdata["stats"]["corr"])
    assert "mean_disp" not in ds


def test_a_memory_capped_run_stores_eight_frame_inner_chunks(tmp_path):
    """A chunk length set by the memory budget is a multiple of 8 frames, so the store's shards
    hold 8-frame inner chunks (a prime length gave one-frame chunks and slow writes)."""
    import zarr

    import flowreg_dask as fd
    from flowreg_dask.datasets import synthetic_recording

    rec = synthetic_recording(n_frames=72, height=128, width=128, n_channels=1, seed=3)
    opts = fd.OFOptions(
        quality_setting="fast", buffer_size=100, reference_frames=list(range(8)), save_w=True
    )
    # 128x128 uint16: 38 bytes per pixel and frame, so 16 MiB allow 26 frames -> 24
    cfg = fd.RegistrationConfig(
        parallelization="sequential", progress=False, chunk_memory=16 * 2**20
    )
    out = fd.compensate_recording(
        opts, cfg, recording=rec.movie.astype(np.uint16), output=tmp_path / "o.zarr"
    ).output
    flow = zarr.open_group(str(out), mode="r")["flow"]
    assert flow.shards[0] == 24 and flow.chunks[0] == 8


def test_float_arrays_are_byte_shuffled_and_integers_bit_shuffled(tmp_path):
    """Compression per dtype (README, store layout): flows and the reference byte-shuffled
    (cheaper to encode at the same size), the uint16 movie bit-shuffled (smaller)."""
    import zarr

    import flowreg_dask as fd
    from flowreg_dask.datasets import synthetic_recording

    rec = synthetic_recording(n_frames=16, height=64, width=64, n_channels=1, seed=4)
    opts = fd.OFOptions(quality_setting="fast", reference_frames=list(range(8)), save_w=True)
    cfg = fd.RegistrationConfig(parallelization="sequential", progress=False)
    out = fd.compensate_recording(
        opts, cfg, recording=rec.movie.astype(np.uint16), output=tmp_path / "o.zarr"
    ).output
    root = zarr.open_group(str(out), mode="r")

    def shuffle(arr):
        (blosc,) = [c for c in arr.compressors if type(c).__name__ == "BloscCodec"]
        return blosc.shuffle.value

    assert shuffle(root["flow"]) == "shuffle"
    assert shuffle(root["reference"]) == "shuffle"
    assert shuffle(root["0/0"]) == "bitshuffle"
