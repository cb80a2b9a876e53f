"""glibc heap settings of worker processes (pipeline/_heap.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from flowreg_dask.pipeline import _heap

glibc = pytest.mark.skipif(_heap._libc() is None, reason="needs glibc (malloc_trim, mallopt)")

FAULTS = textwrap.dedent(
    """
    import resource
    import numpy as np
    from flowreg_dask.pipeline._heap import tune_heap

    def faults():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(40):
            a = np.ones(1 << 20, np.float32)  # 4 MiB, touched
            del a
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    faults()
    untuned = faults()
    changed = tune_heap()
    faults()
    print(untuned, faults(), changed)
    """
)


@glibc
def test_tune_heap_ends_page_faults_of_dask_trim_threshold():
    """Under the nanny's MALLOC_TRIM_THRESHOLD_ every large array is a fresh mmap (its pages
    fault in on every allocation); after tune_heap freed arrays are reused from the heap."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["MALLOC_TRIM_THRESHOLD_"] = "65536"
    out = subprocess.run(
        [sys.executable, "-c", FAULTS], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    untuned, tuned, changed = int(out[0]), int(out[1]), out[2]
    assert changed == "True"
    assert untuned >= 40 * 256  # a 4 MiB array is 1024 pages, faulted in again every time
    assert tuned < untuned / 20


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, True),
        ({"MALLOC_TRIM_THRESHOLD_": "65536"}, True),  # the nanny's default
        ({"MALLOC_TRIM_THRESHOLD_": "1000000"}, False),  # the user's own value
        ({"MALLOC_TRIM_THRESHOLD_": "65536", "MALLOC_MMAP_THRESHOLD_": "131072"}, False),
        ({"MALLOC_TOP_PAD_": "0"}, False),
        ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1000000"}, False),
    ],
)
@glibc
def test_tune_heap_leaves_other_settings_alone(monkeypatch, env, expected):
    for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert _heap.tune_heap.__wrapped__() is expected


KEEP = textwrap.dedent(
    """
    import resource
    import numpy as np
    from flowreg_dask.pipeline._heap import free_heap_bytes, release_free_memory, tune_heap

    def minflt():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    def chunk():  # a chunk's arrays: 8 x 4 MiB alive together, touched, then freed
        arrays = [np.ones(1 << 20, np.float32) for _ in range(8)]
        del arrays

    def faults_after(keep):
        chunk()
        free = free_heap_bytes()
        release_free_memory(keep=keep)
        before = minflt()
        chunk()
        return minflt() - before, free

    tune_heap()
    faults_after(0)
    trimmed, _ = faults_after(0)
    kept, free = faults_after(1 << 30)
    print(trimmed, kept, free)
    """
)


@glibc
def test_free_memory_kept_below_bound_is_reused_without_page_faults():
    """Trimming after every chunk makes the next chunk fault its arrays in again (8 x 4 MiB:
    here about half of their 8192 pages fault); below the bound the free memory stays and is
    reused without faults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "FLOWREG_"))}
    out = subprocess.run(
        [sys.executable, "-c", KEEP], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    trimmed, kept, free = int(out[0]), int(out[1]), int(out[2])
    assert free >= 32 << 20  # the arenas did hold the freed chunk
    assert trimmed >= 8 * 1024 // 4
    assert kept < trimmed / 20


def test_local_cluster_config_drops_only_dask_default():
    import dask
    import distributed  # noqa: F401  (its defaults are in dask.config)

    cfg = _heap.local_cluster_config()["distributed.nanny.pre-spawn-environ"]
    assert "MALLOC_TRIM_THRESHOLD_" not in cfg
    assert cfg["OMP_NUM_THREADS"] == 1
    key = "distributed.nanny.pre-spawn-environ"
    with dask.config.set({key: {"MALLOC_TRIM_THRESHOLD_": 1 << 20}}):
        assert _heap.local_cluster_config()[key] == {"MALLOC_TRIM_THRESHOLD_": 1 << 20}


def test_local_cluster_workers_start_without_trim_threshold():
    from distributed import Client

    from flowreg_dask.pipeline.run import start_local_cluster

    with start_local_cluster(1) as cluster, Client(cluster) as client:
        env = client.run(
            lambda: {k: os.environ.get(k) for k in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")}
        )
    (worker_env,) = env.values()
    assert worker_env == {"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": "1"}
