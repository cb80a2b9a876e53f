"""Benchmark of the flow engine: ms per frame and endpoint error per preset and data term.

Frames come from the synthetic generator (non-rigid motion with ground truth), pre-processed as the
pipeline does (normalised with the reference's range, Gaussian sigma 1). Throughput is measured
with 1 and 2 threads over frames (the numba kernels release the GIL). With ``--pyflowreg PYTHON``
the same frames are also registered by pyflowreg's ``get_displacement`` (run in that interpreter,
single-threaded), for a side-by-side comparison on the same machine.

Usage::

    python bench/bench_flow.py --sizes 256 512 --frames 8
    python bench/bench_flow.py --sizes 256 --pyflowreg /path/to/venv-with-pyflowreg/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

PRESETS = {"fast": 6, "balanced": 4, "quality": 0}
BORDER = 10

PYFLOWREG_SNIPPET = r"""
import json, sys, time
import numpy as np
from pyflowreg import get_displacement
d = np.load(sys.argv[1])
ref, frames, truth = d["ref"].astype(np.float64), d["frames"].astype(np.float64), d["truth"]
kw = json.loads(sys.argv[2])
b = int(sys.argv[3])
get_displacement(ref, frames[0], **kw)  # compile / warm up
t0 = time.perf_counter()
flows = [get_displacement(ref, f, **kw) for f in frames]
el = (time.perf_counter() - t0) / len(frames)
flows = np.stack(flows)
epe = np.linalg.norm(flows - truth, axis=-1)[:, b:-b, b:-b].mean()
print(json.dumps({"ms": el * 1000, "epe": float(epe)}))
"""


def make_data(size: int, n_frames: int, n_channels: int, seed: int):
    from flowreg_dask.datasets import synthetic_recording
    from flowreg_dask.preprocess import intensity_range, normalize, smooth_frames, smooth_image

    rec = synthetic_recording(
        n_frames=n_frames, height=size, width=size, n_channels=n_channels, seed=seed
    )
    lo, hi = intensity_range(rec.reference)
    ref = smooth_image(normalize(rec.reference, vmin=lo, vmax=hi), [1, 1, 0])
    frames = smooth_frames(normalize(rec.movie, vmin=lo, vmax=hi), [1, 1, 0], temporal=False)
    return ref, frames, rec.flow


def epe(flows: np.ndarray, truth: np.ndarray) -> float:
    b = BORDER
    return float(np.linalg.norm(flows - truth, axis=-1)[:, b:-b, b:-b].mean())


def run_ours(
    ref, frames, preset: str, term: str, threads: int, repeats: int = 1
) -> tuple[list[float], np.ndarray]:
    """ms/frame of each of ``repeats`` runs over ``frames`` (after one warm-up frame), and the
    flows of the last run."""
    from flowreg_dask.core.params import resolve_params
    from flowreg_dask.core.solver import FlowEstimator

    est = FlowEstimator(ref, resolve_params(quality_setting=preset, constancy_assumption=term))
    est.flow(frames[0])  # compile / warm up
    times = []
    flows = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        if threads == 1:
            flows = [est.flow(f) for f in frames]
        else:
            with ThreadPoolExecutor(threads) as pool:
                flows = list(pool.map(est.flow, frames))
        times.append((time.perf_counter() - t0) / len(frames) * 1000)
    return times, np.stack(flows)


def fmt_times(times: list[float]) -> str:
    """Best of the repeats, with the spread (max/min - 1) when there are several."""
    best = min(times)
    if len(times) == 1:
        return f"{best:.1f}"
    return f"{best:.1f} (+{100 * (max(times) / best - 1):.0f}%)"


def run_pyflowreg(python: str, ref, frames, truth, preset: str, term: str) -> dict:
    kw = dict(
        alpha=(1.5, 1.5),
        levels=100,
        min_level=PRESETS[preset],
        eta=0.8,
        iterations=50,
        update_lag=5,
        a_data=0.45,
        a_smooth=1.0,
        const_assumption=term,
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "data.npz")
        np.savez(path, ref=ref, frames=frames, truth=truth)
        env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
        out = subprocess.run(
            [python, "-c", PYFLOWREG_SNIPPET, path, json.dumps(kw), str(BORDER)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--presets", nargs="+", default=list(PRESETS))
    ap.add_argument("--terms", nargs="+", default=["gc", "gray", "cs"])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--pyflowreg", default=None, help="python interpreter that has pyflowreg")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--repeats", type=int, default=3, help="timed runs per setting; best shown, with spread"
    )
    args = ap.parse_args()

    cols = ["size", "term", "preset", "EPE px", "zero EPE"]
    cols += [f"ms/frame {t}thr" for t in args.threads]
    if args.pyflowreg:
        cols += ["pyflowreg ms", "pyflowreg EPE", "speed-up 1thr"]
    print(
        f"# flow engine, {args.frames} frames, {args.channels} channel(s), "
        f"{os.cpu_count()} cores, python {sys.version.split()[0]}, best of {args.repeats} "
        "(spread max/min - 1)"
    )
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for size in args.sizes:
        ref, frames, truth = make_data(size, args.frames, args.channels, args.seed)
        zero = epe(np.zeros_like(truth), truth)
        for term in args.terms:
            for preset in args.presets:
                row = [str(size), term, preset]
                times = {}
                flows = None
                for t in args.threads:
                    times[t], flows = run_ours(ref, frames, preset, term, t, args.repeats)
                row += [f"{epe(flows, truth):.4f}", f"{zero:.3f}"]
                row += [fmt_times(times[t]) for t in args.threads]
                if args.pyflowreg:
                    pf = run_pyflowreg(args.pyflowreg, ref, frames, truth, preset, term)
                    row += [
                        f"{pf['ms']:.1f}",
                        f"{pf['epe']:.3f}",
                        f"{pf['ms'] / min(times[args.threads[0]]):.1f}x",
                    ]
                print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
