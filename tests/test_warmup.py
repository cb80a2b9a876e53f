"""``flowreg-dask compile`` (:func:`flowreg_dask.cli.warmup.warm_up`) caches every kernel a
correction needs: after it, in a fresh process, other calls (other sizes, channel counts,
presets, options, run modes and APIs) compile nothing.

Runs in a fresh numba cache (``NUMBA_CACHE_DIR`` in a temporary folder), so it pays the full
compilation once (~60 s on a 2-core machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

WARM = textwrap.dedent(
    """
    import json, sys
    from flowreg_dask.cli.warmup import warm_up
    compiled = warm_up(workdir=sys.argv[1], log=lambda line: None)
    print(json.dumps(compiled))
    """
)

# calls that differ from the warm-up's in everything that does not change the kernels' types
OTHER_CALLS = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np
    import tifffile
    from flowreg_dask.cli.warmup import CompileCounter

    work = Path(sys.argv[1])
    with CompileCounter() as counter:
        import flowreg_dask as fd
        from flowreg_dask.datasets import synthetic_recording

        rec = synthetic_recording(n_frames=20, height=56, width=44, n_channels=3, seed=11)
        movie = rec.movie.astype(np.uint16)
        tifffile.imwrite(work / "rec.tif", movie)
        opts = fd.OFOptions(
            quality_setting="balanced", buffer_size=7, reference_frames=list(range(6)),
            save_w=True, interpolation_method="linear",
        )
        cfg = fd.RegistrationConfig(parallelization="threading", n_jobs=2, progress=False)
        fd.compensate_recording(opts, cfg, recording=work / "rec.tif", output=work / "a.zarr")
        fd.compensate_arr(rec.movie[..., :1].astype(np.float64), None, opts)
        int16 = movie[..., 0].astype(np.int16)
        fd.compensate_arr(int16, None, {"quality_setting": "fast", "reference_frames": [0, 1]})
        fd.get_displacement(rec.reference[..., 0], rec.movie[3, ..., 0])
        flow = fd.get_displacement(rec.reference, rec.movie[4])
        fd.warp(rec.movie[4], flow)
        fd.estimate_rigid_shift(rec.reference[..., 0], rec.movie[5, ..., 0])
        for frames in (movie, rec.movie[..., 0].astype(np.float32)):
            live = fd.FlowRegLive(quality_setting="fast", reference_update_interval=5)
            live.set_reference(frames[:5])
            live.register_frames(frames[5:])
    print(json.dumps(counter.compiled))
    """
)


@pytest.mark.slow
def test_compile_caches_every_kernel_a_correction_needs(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba_cache"))
    (tmp_path / "warm").mkdir()
    (tmp_path / "other").mkdir()

    def run(script: str, folder: str) -> list[str]:
        out = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / folder)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    compiled = run(WARM, "warm")
    assert any("level_step" in name for name in compiled)  # a fresh cache: it compiled
    assert run(OTHER_CALLS, "other") == []
    # a second warm-up finds everything cached
    assert run(WARM, "warm") == []
