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
        ({}, False),
        ({"MALLOC_TRIM_THRESHOLD_": "1000000"}, False),  # the user's own value
        ({"MALLOC_TRIM_THRESHOLD_": "65536", "MALLOC_MMAP_THRESHOLD_": "131072"}, False),
    ],
)
def test_tune_heap_leaves_other_settings_alone(monkeypatch, env, expected):
    for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert _heap.tune_heap.__wrapped__() is expected


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
