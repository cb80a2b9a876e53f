"""How far this machine lets work scale from 1 to N threads: compute, cache-resident memory
traffic and main-memory traffic, each with numba ``nogil`` kernels on Python threads (the way the
registration's threading mode runs).

Read it next to ``bench_pipeline.py``'s scaling table: the registration cannot scale better than
the resources its passes use. Each thread runs the same amount of work; the table prints the
aggregate rate and its ratio to one thread.

- ``compute``: a chain of float32 multiply-adds on registers (no memory traffic).
- ``cache``: the triad ``a = b + 1.5 c`` on 3 x 0.2 MB per thread (stays in L2).
- ``memory``: the same triad on 3 x 64 MB per thread (streams from main memory).

Usage::

    python bench/bench_machine.py --threads 1 2 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import numba
import numpy as np


@numba.njit(nogil=True, cache=False)
def _compute(n: int, seed: float) -> float:
    x = np.float32(seed)
    y = np.float32(seed * 0.5)
    for _ in range(n):
        x = x * np.float32(0.9999999) + np.float32(1e-7)
        y = y * np.float32(0.9999998) + x * np.float32(1e-9)
    return x + y


@numba.njit(nogil=True, cache=False)
def _triad(a: np.ndarray, b: np.ndarray, c: np.ndarray, reps: int) -> None:
    for _ in range(reps):
        for i in range(a.size):
            a[i] = b[i] + np.float32(1.5) * c[i]


def _timed(n_threads: int, target, args_of) -> float:
    threads = [threading.Thread(target=target, args=args_of(k)) for k in range(n_threads)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    ap.add_argument("--repeats", type=int, default=3, help="median of this many runs")
    args = ap.parse_args()
    top = max(args.threads)
    big = [[np.ones(16_000_000, np.float32) for _ in range(3)] for _ in range(top)]
    small = [[np.ones(50_000, np.float32) for _ in range(3)] for _ in range(top)]
    _compute(10, 1.0)
    _triad(*small[0], 1)
    n_ops = 200_000_000
    cases = {
        # name: (unit, amount per thread, target, args of thread k)
        "compute": ("G multiply-adds/s", 2 * n_ops / 1e9, _compute, lambda k: (n_ops, 1.0 + k)),
        "cache": ("GB/s", 12 * 50_000 * 2000 / 1e9, _triad, lambda k: (*small[k], 2000)),
        "memory": ("GB/s", 12 * 16_000_000 * 6 / 1e9, _triad, lambda k: (*big[k], 6)),
    }
    print(f"# machine scaling: {os.cpu_count()} logical CPUs, medians of {args.repeats}")
    print("| kind | unit | " + " | ".join(f"{n} thr" for n in args.threads) + " | × 1 thread |")
    print("|---|---|" + "---|" * len(args.threads) + "---|")
    for name, (unit, amount, target, args_of) in cases.items():
        rates = []
        for n in args.threads:
            runs = sorted(_timed(n, target, args_of) for _ in range(args.repeats))
            rates.append(n * amount / runs[len(runs) // 2])
        ratio = rates[-1] / rates[0]
        cells = " | ".join(f"{r:.1f}" for r in rates)
        span = f"{args.threads[-1]} vs {args.threads[0]}"
        print(f"| {name} | {unit} | {cells} | {ratio:.2f}× ({span}) |")


if __name__ == "__main__":
    main()
