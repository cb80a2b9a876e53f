"""Benchmark of the batched (GPU) flow backend against the numba CPU backend on the same machine.

For each frame size and preset: frames/s and endpoint error of the batched estimator
(:class:`flowreg_dask.core.batched.BatchedFlowEstimator`, red-black SOR) for a sweep of batch
sizes (``0`` = automatic, from the free GPU memory), and of the numba ``FlowEstimator``
(lexicographic SOR) with 1 thread and with all cores (frames spread over a thread pool; the
kernels release the GIL). Frames come from the synthetic generator (non-rigid motion with ground
truth), pre-processed as the pipeline does. Timings include the host->device upload of the frames
and the download of the flows (once per batch); compilation and warm-up are excluded.

Usage::

    python bench/bench_gpu.py --xp cupy --sizes 256 512 --frames 64 --batch-sizes 1 8 32 0
    python bench/bench_gpu.py --xp numpy --sizes 64 --frames 4 --batch-sizes 1 0   # CPU check
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

PRESETS = {"fast": 6, "balanced": 4, "quality": 0}
BORDER = 10


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
    b = min(BORDER, truth.shape[1] // 8)
    return float(np.linalg.norm(flows - truth, axis=-1)[:, b:-b, b:-b].mean())


def time_numba(ref, frames, params, threads: int) -> tuple[float, np.ndarray]:
    from flowreg_dask.core.solver import FlowEstimator

    est = FlowEstimator(ref, params)
    est.flow(frames[0])  # compile / warm up
    t0 = time.perf_counter()
    if threads == 1:
        flows = [est.flow(f) for f in frames]
    else:
        with ThreadPoolExecutor(threads) as pool:
            flows = list(pool.map(est.flow, frames))
    return time.perf_counter() - t0, np.stack(flows)


def time_batched(ref, frames, params, xp, batch_size: int | None, fused: bool | None):
    from flowreg_dask.core.batched import BatchedFlowEstimator

    est = BatchedFlowEstimator(ref, params, xp=xp, batch_size=batch_size, fused=fused)
    est.flows(frames[: min(2, len(frames))])  # compile kernels, cuBLAS handles, matrices
    t0 = time.perf_counter()
    flows = est.flows(frames)  # returns numpy: the device work has finished
    return time.perf_counter() - t0, flows, est.last_batch_size, est.bytes_per_frame()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--xp", choices=["cupy", "numpy"], default="cupy")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--presets", nargs="+", default=list(PRESETS))
    ap.add_argument("--term", default="gc")
    ap.add_argument(
        "--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 0], help="0 = automatic"
    )
    ap.add_argument("--no-fused", action="store_true", help="cupy: unfused array-op kernels")
    ap.add_argument("--cpu-threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-cpu", action="store_true", help="skip the numba reference runs")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from flowreg_dask.core.params import resolve_params

    if args.xp == "cupy":
        from flowreg_dask.kernels.gpu.device import require_cupy

        xp = require_cupy()
        props = xp.cuda.runtime.getDeviceProperties(xp.cuda.Device().id)
        device = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        fused = not args.no_fused
    else:
        xp = np
        device = "numpy (CPU)"
        fused = False
    print(
        f"# batched flow backend on {device}; {args.frames} frames, {args.channels} channel(s), "
        f"term {args.term}; CPU {os.cpu_count()} cores; python {sys.version.split()[0]}"
    )
    cols = ["size", "preset", "backend", "batch", "frames/s", "ms/frame", "EPE px", "vs numba"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))

    def row(*cells):
        print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)

    for size in args.sizes:
        ref, frames, truth = make_data(size, args.frames, args.channels, args.seed)
        n = frames.shape[0]
        for preset in args.presets:
            params = resolve_params(quality_setting=preset, constancy_assumption=args.term)
            base = None
            if not args.no_cpu:
                for threads in sorted({1, args.cpu_threads}):
                    el, flows = time_numba(ref, frames, params, threads)
                    if threads == args.cpu_threads:
                        base = n / el
                    row(size, preset, f"numba {threads} thr", "-", f"{n / el:.1f}",
                        f"{el / n * 1000:.2f}", f"{epe(flows, truth):.3f}", "")  # fmt: skip
            for bs in args.batch_sizes:
                el, flows, used, per = time_batched(
                    ref, frames, params, xp, None if bs == 0 else bs, fused
                )
                label = f"{used} (auto, {per / 2**20:.0f} MiB/frame)" if bs == 0 else str(used)
                speed = f"{n / el / base:.2f}x" if base else ""
                row(size, preset, f"{args.xp} red-black", label, f"{n / el:.1f}",
                    f"{el / n * 1000:.2f}", f"{epe(flows, truth):.3f}", speed)  # fmt: skip


if __name__ == "__main__":
    main()
