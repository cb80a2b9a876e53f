"""Benchmark of live (frame-by-frame) correction: frames/s, where the time goes, and accuracy.

For every frame size x channel count x dtype the same synthetic recording (non-rigid motion with
ground truth, :func:`flowreg_dask.datasets.synthetic_recording`) is registered frame by frame with
:class:`flowreg_dask.FlowRegLive` (fast preset, default settings: reference update every 20
frames). The table shows

* ``fps``: frames per second, the median of ``--repeats`` runs over all frames (each run restarts
  from the same reference, after an untimed run that compiles and gives the flows for the EPE);
* ``ms/frame`` split into pre-filter (normalise + Gaussian), flow (the engine's
  ``FlowEstimator.flow``), warp (the registered frame), reference update (amortised over all
  frames) and the rest (checks, buffers, Python), from one extra instrumented run;
* ``engine``: ms/frame of the bare engine (``FlowEstimator.flow`` warm-started with the previous
  flow) on the same frames pre-processed beforehand, median of runs interleaved with the live
  runs; ``added`` = live minus engine, what the live corrector costs on top of the engine;
* ``EPE live`` / ``EPE offline``: mean endpoint error (px) against the ground truth, 10 px border
  excluded, of the live flows and of ``compensate_arr(movie, reference, fast preset)`` on the same
  frames (only with ``--epe``; offline is run once per size and channel count).

Only ``time.perf_counter`` is used for timing. Run it on one pinned core for numbers comparable to
the project's target (>= 150 frames/s at 256x256, 1 channel)::

    NUMBA_NUM_THREADS=1 taskset -c 0 python bench/bench_live.py
    NUMBA_NUM_THREADS=1 taskset -c 0 python bench/bench_live.py --sizes 128 256 512 \\
        --channels 1 2 --dtypes uint16 float32 --frames 200 --repeats 5 --epe

Timings are noisy on a shared machine: look at the medians, and rerun when others are busy.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

BORDER = 10


def make_recording(size: int, n_frames: int, n_channels: int, seed: int):
    from flowreg_dask.datasets import synthetic_recording

    return synthetic_recording(
        n_frames=n_frames, height=size, width=size, n_channels=n_channels, seed=seed
    )


def epe(flow: np.ndarray, truth: np.ndarray) -> float:
    b = BORDER
    d = flow[:, b:-b, b:-b] - truth[:, b:-b, b:-b]
    return float(np.mean(np.linalg.norm(d, axis=-1)))


def run_once(live, reference: np.ndarray, movie: np.ndarray) -> float:
    """Seconds to register ``movie`` frame by frame from a fresh reference (outputs dropped:
    storing them into one big array would add its first-touch page faults to the time)."""
    live.set_reference(reference)
    t0 = time.perf_counter()
    for t in range(movie.shape[0]):
        live(movie[t])
    return time.perf_counter() - t0


def live_flows(live, reference: np.ndarray, movie: np.ndarray) -> np.ndarray:
    """(T, H, W, 2) flows of an untimed run (for the EPE)."""
    live.set_reference(reference)
    return live.register_frames(movie)[1]


def run_engine(live, reference: np.ndarray, movie: np.ndarray) -> float:
    """Seconds of the bare engine on the same frames: ``FlowEstimator.flow`` with the previous
    flow as initial flow, on frames pre-processed beforehand (what the live corrector adds is the
    difference to :func:`run_once`)."""
    from flowreg_dask.preprocess import smooth_frames

    live.set_reference(reference)
    lo, hi = live.normalization_range
    proc = smooth_frames(movie, live.options.sigma, temporal=False, vmin=lo, vmax=hi)
    estimator = live._estimator
    flow = None
    t0 = time.perf_counter()
    for t in range(proc.shape[0]):
        flow = estimator.flow(proc[t], flow)
    return time.perf_counter() - t0


def breakdown(live, reference: np.ndarray, movie: np.ndarray) -> dict[str, float]:
    """ms per frame of each stage, from one run with ``perf_counter`` around each stage.

    The warps inside a reference update are counted in ``update`` only.
    """
    from flowreg_dask.core import solver
    from flowreg_dask.live import _corrector

    acc = {"prefilter": 0.0, "flow": 0.0, "warp": 0.0, "update": 0.0}
    in_update = [False]
    patched = []

    def wrap(owner, name: str, key: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            nested = in_update[0]
            in_update[0] = nested or key == "update"
            t0 = time.perf_counter()
            out = original(*args, **kwargs)
            if not nested:
                acc[key] += time.perf_counter() - t0
            in_update[0] = nested
            return out

        patched.append((owner, name, original))
        setattr(owner, name, timed)

    live.set_reference(reference)
    wrap(live, "_prefilter", "prefilter")
    wrap(solver.FlowEstimator, "flow", "flow")
    wrap(_corrector, "warp_into", "warp")
    wrap(live, "_update_reference", "update")
    try:
        t0 = time.perf_counter()
        for t in range(movie.shape[0]):
            live(movie[t])
        total = time.perf_counter() - t0
    finally:
        for owner, name, original in reversed(patched):
            if owner is live:
                delattr(live, name)
            else:
                setattr(owner, name, original)
    n = movie.shape[0]
    out = {k: 1e3 * v / n for k, v in acc.items()}
    out["other"] = 1e3 * total / n - sum(out.values())
    out["total"] = 1e3 * total / n
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--channels", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--dtypes", nargs="+", default=["uint16", "float32"])
    parser.add_argument("--frames", type=int, default=100, help="frames per run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median)")
    parser.add_argument("--epe", action="store_true", help="also run compensate_arr (offline)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    from flowreg_dask import FlowRegLive, OFOptions, compensate_arr

    header = (
        f"{'size':>9} {'C':>2} {'dtype':>8} {'fps':>7} {'ms':>6} {'engine':>6} {'added':>5} | "
        f"{'pre':>5} {'flow':>5} {'warp':>5} {'upd':>5} {'other':>5} | {'EPE live':>8} "
        f"{'offline':>8}"
    )
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        for n_channels in args.channels:
            rec = make_recording(size, args.frames, n_channels, args.seed)
            offline = float("nan")
            if args.epe:
                _, flows_off = compensate_arr(
                    rec.movie, rec.reference, OFOptions(quality_setting="fast")
                )
                offline = epe(flows_off, rec.flow)
            for dtype in args.dtypes:
                movie = rec.movie.astype(dtype)
                live = FlowRegLive()
                flows = live_flows(live, rec.reference, movie)  # also compiles, untimed
                runs, engine = [], []
                for _ in range(args.repeats):  # interleaved, so both see the same load
                    runs.append(run_once(live, rec.reference, movie))
                    engine.append(run_engine(live, rec.reference, movie))
                seconds = float(np.median(runs))
                ms_engine = 1e3 * float(np.median(engine)) / args.frames
                ms_live = 1e3 * seconds / args.frames
                parts = breakdown(live, rec.reference, movie)
                err = epe(flows, rec.flow)
                print(
                    f"{size:>4}x{size:<4} {n_channels:>2} {dtype:>8} {args.frames / seconds:7.1f} "
                    f"{ms_live:6.2f} {ms_engine:6.2f} {ms_live - ms_engine:5.2f} | "
                    f"{parts['prefilter']:5.2f} "
                    f"{parts['flow']:5.2f} {parts['warp']:5.2f} {parts['update']:5.2f} "
                    f"{parts['other']:5.2f} | {err:8.3f} {offline:8.3f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
