"""End-to-end benchmark of the registration pipeline: frames/s, peak memory and accuracy.

Each configuration runs as a separate process (``flowreg-dask correct`` or, with ``--pyflowreg``,
pyflowreg's ``compensate_recording``) on a synthetic recording written to disk first. Peak memory
is sampled from ``/proc`` every 50 ms: the proportional set size (PSS) summed over the process and
all its children (worker processes included; shared pages counted once), and the largest single
resident set size (what ``/usr/bin/time -v`` reports). Accuracy: mean endpoint error of the
stored flow fields against the generator's ground truth expressed relative to the reference (the
truth minus the mean displacement of the reference frames 50..499), 10 px border excluded.

Usage::

    python bench/bench_pipeline.py                              # modes x presets, 256x256x1000
    python bench/bench_pipeline.py --lengths 250 1000 4000 --modes threading  # memory vs length
    python bench/bench_pipeline.py --pyflowreg /venv-with-pyflowreg/bin/python --frames 200
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

BORDER = 10


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        stack.extend(children.get(p, []))
    return out


def _memory(pid: int) -> tuple[int, int]:
    """(PSS summed over the process tree, largest single RSS), in bytes.

    PSS (proportional set size) splits shared pages between the processes that map them, so
    shared memory and forked copy-on-write pages are counted once, unlike a sum of RSS.
    """
    pss_total, rss_max = 0, 0
    for p in _tree(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Rss:"):
                        rss_max = max(rss_max, int(line.split()[1]) * 1024)
                    elif line.startswith("Pss:"):
                        pss_total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return pss_total, rss_max


def run_measured(cmd: list[str], env: dict | None = None) -> tuple[float, tuple[int, int], str]:
    """Run ``cmd``; returns (wall seconds, (peak tree PSS, peak single RSS) bytes, stdout)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = [0, 0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            pss, rss = _memory(proc.pid)
            peak[0] = max(peak[0], pss)
            peak[1] = max(peak[1], rss)
            time.sleep(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = proc.communicate()
    done.set()
    th.join()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    return wall, (peak[0], peak[1]), out


def make_recording(folder: Path, *, frames: int, size: int, channels: int, seed: int) -> Path:
    from flowreg_dask.datasets import SyntheticSpec, save_synthetic_recording

    path = folder / f"rec_{size}x{size}x{frames}x{channels}_s{seed}.tif"
    if not path.exists():
        spec = SyntheticSpec(
            n_frames=frames, height=size, width=size, n_channels=channels, seed=seed
        )
        save_synthetic_recording(path, spec=spec, save_flow=False)
    return path


def reference_offset(spec, ref_frames: range) -> np.ndarray:
    """Mean ground-truth flow of the reference frames: a reference built from those frames sits,
    to first order, where they are on average, so flows relative to it are truth minus this."""
    total = np.zeros((spec.height, spec.width, 2))
    for s in range(ref_frames.start, ref_frames.stop, 100):
        total += spec.frames(s, min(s + 100, ref_frames.stop))[1].sum(axis=0)
    return total / len(ref_frames)


def truth_epe(flow_tyx2: np.ndarray, spec, offset: np.ndarray) -> float:
    """Mean endpoint error against the ground truth relative to the reference (border cropped)."""
    b = BORDER
    total, count = 0.0, 0
    for s in range(0, flow_tyx2.shape[0], 100):
        e = min(s + 100, flow_tyx2.shape[0])
        gt = spec.frames(s, e)[1] - offset
        err = np.linalg.norm(flow_tyx2[s:e] - gt, axis=-1)[:, b:-b, b:-b]
        total += float(err.sum())
        count += err.size
    return total / count


def ours(
    rec: Path, out: Path, *, preset: str, mode: str, n_jobs: int, buffer: int, save_w: bool
) -> tuple[float, int]:
    cmd = [
        sys.executable,
        "-m",
        "flowreg_dask.cli.main",
        "correct",
        str(rec),
        "-o",
        str(out),
        "--quality",
        preset,
        "--parallelization",
        mode,
        "--n-jobs",
        str(n_jobs),
        "--buffer-size",
        str(buffer),
        "--overwrite",
        "--no-progress",
    ]
    if save_w:
        cmd.append("--save-w")
    wall, peak, _ = run_measured(cmd)
    return wall, peak


PYFLOWREG_SNIPPET = r"""
import sys
from pyflowreg.motion_correction import OFOptions, compensate_recording
from pyflowreg.motion_correction.compensate_recording import RegistrationConfig
if __name__ == "__main__":
    rec, out, preset, n_jobs, buffer = sys.argv[1:6]
    opts = OFOptions(input_file=rec, output_path=out, output_format="HDF5", quality_setting=preset,
                     save_w=True, buffer_size=int(buffer))
    compensate_recording(opts, config=RegistrationConfig(n_jobs=int(n_jobs),
                                                         parallelization="multiprocessing"))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--channels", type=int, default=2)
    ap.add_argument("--presets", nargs="+", default=["fast", "balanced", "quality"])
    ap.add_argument(
        "--modes", nargs="+", default=["sequential", "threading", "multiprocessing", "distributed"]
    )
    ap.add_argument("--n-jobs", type=int, nargs="+", default=[2])
    ap.add_argument("--buffer", type=int, nargs="+", default=[100])
    ap.add_argument(
        "--lengths",
        type=int,
        nargs="*",
        default=[],
        help="extra: peak memory for recordings of these lengths (first mode/preset)",
    )
    ap.add_argument("--pyflowreg", default=None, help="python interpreter that has pyflowreg")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from flowreg_dask.datasets import SyntheticSpec
    from flowreg_dask.store.reader import open_result

    work = Path(args.workdir or tempfile.mkdtemp(prefix="flowreg_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    spec = SyntheticSpec(
        n_frames=args.frames,
        height=args.size,
        width=args.size,
        n_channels=args.channels,
        seed=args.seed,
    )
    rec = make_recording(
        work, frames=args.frames, size=args.size, channels=args.channels, seed=args.seed
    )
    mb = rec.stat().st_size / 2**20
    # default reference frames 50..499, limited to the recording
    ref_frames = range(50, min(500, args.frames)) if args.frames > 50 else range(args.frames)
    offset = reference_offset(spec, ref_frames)
    print(
        f"# recording {args.size}x{args.size}x{args.frames}, {args.channels} channel(s), uint16, "
        f"{mb:.0f} MiB TIFF; {os.cpu_count()} cores; end to end incl. reference and writing"
    )
    print(
        "| tool | preset | mode | n_jobs | buffer | frames/s | peak PSS MiB (all processes) "
        "| peak RSS MiB (largest process) | EPE px |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for preset in args.presets:
        for mode in args.modes:
            for n_jobs in args.n_jobs:
                for buffer in args.buffer:
                    out = work / f"out_{preset}_{mode}_{n_jobs}_{buffer}.zarr"
                    wall, peak = ours(
                        rec,
                        out,
                        preset=preset,
                        mode=mode,
                        n_jobs=n_jobs,
                        buffer=buffer,
                        save_w=True,
                    )
                    ds = open_result(out)
                    flow = ds["flow"].values
                    e = truth_epe(flow, spec, offset)
                    print(
                        f"| flowreg_dask | {preset} | {mode} | {n_jobs} | {buffer} | "
                        f"{args.frames / wall:.1f} | {peak[0] / 2**20:.0f} | "
                        f"{peak[1] / 2**20:.0f} | {e:.3f} |",
                        flush=True,
                    )
        if args.pyflowreg:
            out = work / f"pyflowreg_{preset}"
            for n_jobs in args.n_jobs:
                wall, peak, _ = run_measured(
                    [
                        args.pyflowreg,
                        "-c",
                        PYFLOWREG_SNIPPET,
                        str(rec),
                        str(out),
                        preset,
                        str(n_jobs),
                        "400",
                    ]
                )
                import h5py

                with h5py.File(out / "w.h5", "r") as fh:
                    flow = np.stack([fh["u"][:], fh["v"][:]], axis=-1)
                e = truth_epe(flow, spec, offset)
                print(
                    f"| pyflowreg | {preset} | multiprocessing | {n_jobs} | 400 | "
                    f"{args.frames / wall:.1f} | {peak[0] / 2**20:.0f} | {peak[1] / 2**20:.0f} | "
                    f"{e:.3f} |",
                    flush=True,
                )
    if args.lengths:
        print()
        print(
            "# peak memory against recording length "
            f"({args.presets[0]}, {args.modes[0]}, n_jobs {args.n_jobs[0]}, "
            f"buffer {args.buffer[0]}, flows not stored)"
        )
        print("| frames | file MiB | frames/s | peak PSS MiB (all processes) | peak RSS MiB |")
        print("|---|---|---|---|---|")
        for n in args.lengths:
            r = make_recording(
                work, frames=n, size=args.size, channels=args.channels, seed=args.seed
            )
            wall, peak = ours(
                r,
                work / f"len_{n}.zarr",
                preset=args.presets[0],
                mode=args.modes[0],
                n_jobs=args.n_jobs[0],
                buffer=args.buffer[0],
                save_w=False,
            )
            print(
                f"| {n} | {r.stat().st_size / 2**20:.0f} | {n / wall:.1f} | "
                f"{peak[0] / 2**20:.0f} | {peak[1] / 2**20:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
