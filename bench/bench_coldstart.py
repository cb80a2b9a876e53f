"""Cold start: the first correction after an install against a warm one, with and without
``flowreg-dask compile``.

numba compiles each kernel on first use and caches it on disk. This script empties that cache
(a fresh ``NUMBA_CACHE_DIR``) and times, as whole processes (``time.perf_counter`` around each
command):

* ``cold``: ``flowreg-dask correct`` in an empty cache (what a first run costs without the
  compile step);
* ``compile``: ``flowreg-dask compile`` in another empty cache (the install-time step);
* ``first``: ``flowreg-dask correct`` right after ``compile``;
* ``warm``: the same correction again (median of ``--repeats``).

The target is ``first - warm`` <= 5 s. Usage::

    python bench/bench_coldstart.py --size 256 --frames 300
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--quality", default="fast")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from flowreg_dask.datasets import SyntheticSpec, save_synthetic_recording

    exe = [sys.executable, "-m", "flowreg_dask.cli.main"]
    with tempfile.TemporaryDirectory(prefix="coldstart_") as tmp:
        work = Path(tmp)
        rec = work / "rec.tif"
        spec = SyntheticSpec(n_frames=args.frames, height=args.size, width=args.size, seed=0)
        save_synthetic_recording(rec, spec=spec, save_flow=False)
        correct = [
            *exe, "correct", str(rec), "-o", str(work / "out.zarr"), "--overwrite",
            "--quality", args.quality, "--reference-frames", "0:50", "--no-progress",
        ]  # fmt: skip

        def env_with(cache: str) -> dict[str, str]:
            return dict(os.environ, NUMBA_CACHE_DIR=str(work / cache))

        cold = timed(correct, env_with("empty"))
        compile_s = timed([*exe, "compile"], env_with("installed"))
        first = timed(correct, env_with("installed"))
        warm = statistics.median(timed(correct, env_with("installed")) for _ in range(args.repeats))
    print(
        f"recording {args.size}x{args.size}x{args.frames} uint16, 1 channel, {args.quality}, "
        "threading (default workers)"
    )
    print(f"{'step':<46} {'seconds':>8}")
    print(f"{'correct, empty kernel cache (no compile step)':<46} {cold:8.1f}")
    print(f"{'flowreg-dask compile (once, at install)':<46} {compile_s:8.1f}")
    print(f"{'correct, first run after compile':<46} {first:8.1f}")
    print(f"{'correct, warm (median)':<46} {warm:8.1f}")
    print(f"first - warm: {first - warm:+.1f} s (target <= 5 s)")
    print(f"without the compile step: {cold - warm:+.1f} s")


if __name__ == "__main__":
    main()
