"""Whole storage objects written without zarr's write path (store/_objects.py): the same bytes
as zarr writes, the same values read back, and zarr for everything else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

from flowreg_dask.store import layout as L
from flowreg_dask.store._objects import ObjectWriter


def _array(root: Path, dtype, shape, *, inner, shard, compressors=None):
    group = zarr.open_group(zarr.storage.LocalStore(root), mode="w")
    return group.create_array(
        "x",
        shape=shape,
        dtype=dtype,
        chunks=(inner, *shape[1:]),
        shards=(shard, *shape[1:]) if shard else None,
        compressors=compressors or BloscCodec(**L.blosc_for(dtype)),
        fill_value=np.nan if np.dtype(dtype).kind == "f" else 0,
        config={"write_empty_chunks": True},
    )


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("shard", [12, None], ids=["sharded", "plain"])
@pytest.mark.parametrize(
    ("dtype", "shape"),
    [
        ("float32", (50, 2, 16, 12)),  # flows (t, component, y, x)
        ("uint16", (50, 1, 16, 12)),  # corrected frames
        ("bool", (50, 16, 12)),  # valid masks
        ("float64", (50,)),  # statistics
    ],
)
def test_objects_are_the_bytes_zarr_writes(tmp_path, dtype, shape, shard):
    rng = np.random.default_rng(3)
    value = (rng.normal(size=shape) * 300).astype(dtype)
    inner = 4 if shard else 12
    by_zarr = _array(tmp_path / "zarr", dtype, shape, inner=inner, shard=shard)
    by_us = _array(tmp_path / "ours", dtype, shape, inner=inner, shard=shard)
    by_zarr[:] = value
    writer = ObjectWriter.for_array(by_us)
    assert writer is not None
    rest = []
    for start, stop in [(0, 24), (24, 31), (31, 50)]:  # whole objects, a part, the partial end
        rest += writer.write(value[start:stop], start)
    assert rest == [(24, 31), (31, 36), (48, 50)]
    for lo, hi in rest:
        by_us[lo:hi] = value[lo:hi]
    ours, theirs = _files(tmp_path / "ours"), _files(tmp_path / "zarr")
    assert sorted(ours) == sorted(theirs)
    for key, data in theirs.items():
        assert ours[key] == data, key
    back = zarr.open_array(tmp_path / "ours" / "x", mode="r")[:]
    np.testing.assert_array_equal(back, value)


def test_a_rewritten_object_replaces_the_old_one(tmp_path):
    arr = _array(tmp_path, "uint16", (24, 1, 8, 8), inner=4, shard=12)
    writer = ObjectWriter.for_array(arr)
    for fill in (7, 9):
        assert writer.write(np.full((24, 1, 8, 8), fill, np.uint16), 0) == []
        np.testing.assert_array_equal(zarr.open_array(tmp_path / "x", mode="r")[:], fill)
    assert not list(tmp_path.rglob("*.partial"))


def test_other_codecs_and_stores_are_left_to_zarr(tmp_path):
    zstd = _array(
        tmp_path / "z", "uint16", (24, 8, 8), inner=12, shard=None, compressors=ZstdCodec()
    )
    assert ObjectWriter.for_array(zstd) is None
    split = _array(tmp_path / "s", "uint16", (24, 8, 8), inner=12, shard=None)
    assert ObjectWriter.for_array(split) is not None
    memory = zarr.create_array(
        zarr.storage.MemoryStore(), shape=(24, 8, 8), chunks=(12, 8, 8), dtype="uint16"
    )
    assert ObjectWriter.for_array(memory) is None
    rows = zarr.open_group(zarr.storage.LocalStore(tmp_path / "r"), mode="w").create_array(
        "x", shape=(24, 8, 8), chunks=(12, 4, 8), dtype="uint16", compressors=BloscCodec()
    )
    assert ObjectWriter.for_array(rows) is None  # objects that split frames


@pytest.mark.parametrize("bounds", [[(0, 8), (8, 16), (16, 21)], [(0, 12), (12, 21)]])
def test_store_chunks_take_the_direct_path(tmp_path, monkeypatch, bounds):
    """A run's chunks are written as whole objects by the task; only an end object that the
    layout leaves partly outside the array goes through zarr; the store reads back exactly."""
    from flowreg_dask.store import writer
    from flowreg_dask.store.reader import open_result

    spec = writer.StoreSpec(
        n_frames=21,
        height=8,
        width=6,
        n_channels=2,
        dtype=np.uint16,
        chunk_bounds=bounds,
        save_flow=True,
        save_valid=True,
        fingerprint="fp",
        metadata={},
    )
    store = writer.CorrectedStore.create(tmp_path / "out.zarr", spec)
    through_zarr = []
    real = writer._write_together
    monkeypatch.setattr(writer, "_write_together", lambda w: (through_zarr.extend(w), real(w))[1])
    rng = np.random.default_rng(5)
    cor = rng.integers(0, 4000, (21, 8, 6, 2), dtype=np.uint16)
    flow = rng.normal(size=(21, 8, 6, 2)).astype(np.float32)
    valid = rng.random((21, 8, 6)) > 0.1
    stats = {name: rng.normal(size=21) for name in L.DEFAULT_STAT_NAMES}
    for i, (a, b) in enumerate(bounds):
        store.write_chunk(
            i,
            corrected=cor[a:b],
            flow=flow[a:b],
            valid=valid[a:b],
            stats={k: v[a:b] for k, v in stats.items()},
        )
    assert all(store._objects[name] is not None for name in store._objects)
    assert {sel.stop for _, _, sel in through_zarr} <= {21}  # at most the last object
    store.save_reference(rng.normal(size=(8, 6, 2)))
    store.finalize()
    ds = open_result(tmp_path / "out.zarr")
    np.testing.assert_array_equal(ds["corrected"].values, cor)
    np.testing.assert_array_equal(ds["flow"].values, flow)
    np.testing.assert_array_equal(ds["valid"].values, valid)
