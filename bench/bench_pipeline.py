"""End-to-end benchmark of the registration pipeline against pyflowreg: frames/s with its run to run
spread, CPU use, peak memory and accuracy, as Markdown tables.

Every run is a separate process on one synthetic recording written to disk first:
``python -m flowreg_dask.cli.main correct`` for flowreg_dask and, with ``--pyflowreg PYTHON``,
pyflowreg's ``compensate_recording`` (``output_format="HDF5"``, ``save_w=True``,
``buffer_size=400``, its default reference frames 50..499, ``RegistrationConfig(n_jobs,
parallelization="multiprocessing")``) run by that interpreter. The configurations of one preset
(every tool, mode, worker count and buffer) run ``--repeats`` times each, round robin (A B A B
A B), so slow drift of the machine hits every tool and worker count alike; a preset's rows are
printed when its runs are done.

Columns
-------
frames/s
    Median over the repeats of frames / wall seconds of the whole process (interpreter start,
    imports, reading, reference, registration, writing), timed with ``time.perf_counter``.
spread
    Lowest-highest frames/s of the repeats, and half that range as a percentage of the median.
steady frames/s
    The registration phase after the reference is built (median over the repeats).
    flowreg_dask: ``frames_per_second`` in the result store's attributes (frames registered since
    the reference was saved, up to finalising the store). pyflowreg: its own last stdout line
    ``Processed N frames in S s (avg F fps)``, taken as N / S; it times its batch loop after the
    reference and the executor are set up, including its 22-frame ``w_init`` pre-registration,
    one process pool per batch, and writing. "—" where a tool gave no such number.
CPU %
    Median of (user + system CPU seconds of the process tree) / wall seconds x 100, so 200 means
    two cores busy on average. Counted with ``resource.getrusage(RUSAGE_CHILDREN)`` before and
    after each run: the child and every descendant waited for by its parent. That includes
    multiprocessing and process-pool workers (joined by their pool) and dask distributed worker
    processes (joined by their nannies, which a LocalCluster runs in the main process), not this
    benchmark process. Processes nobody waits for would be missed (multiprocessing's resource
    tracker may be one: a few CPU milliseconds), so ``/proc`` is sampled with the memory as a
    check: the CPU time each process of the tree had used when last seen, a lower bound that
    covers them too. Where that bound is the larger, it is used and the value is marked ``*``.
peak PSS / peak RSS
    Sampled from ``/proc`` every 50 ms, largest over the repeats: the proportional set size
    summed over the process tree (workers included; shared and copy-on-write pages counted
    once), and the largest resident set size of a single process.
EPE px
    Mean endpoint error of the stored flow fields of the last repeat against the generator's
    ground truth relative to the tool's reference (10 px border excluded). A reference built
    from frames sits, to first order, at their mean displacement, so the truth relative to it is
    the truth minus the mean ground-truth flow of the reference frames: for flowreg_dask
    50..min(499, T - 1); pyflowreg clips the indices past the recording to T - 1, so for
    recordings shorter than 500 frames its reference repeats the last frame.

After the per-run table come a ratio table (per preset and worker count: the first mode of
flowreg_dask against pyflowreg), a scaling table when ``--n-jobs`` has several values (frames/s
at each worker count over the smallest, end to end and steady), and with ``--lengths`` peak
memory against recording length (flowreg_dask, first preset/mode/n_jobs/buffer, one run each).

Usage::

    python bench/bench_pipeline.py --pyflowreg /venv-with-pyflowreg/bin/python
    python bench/bench_pipeline.py --frames 200 --size 128 --presets fast --modes threading \\
        --n-jobs 1 2 --repeats 3 --pyflowreg /tmp/pfr/bin/python
    python bench/bench_pipeline.py --lengths 250 1000 4000 --modes threading  # memory vs length
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from flowreg_dask.datasets import SyntheticSpec

BORDER = 10
SAMPLE_S = 0.05
DEFAULT_REFERENCE = range(50, 500)
PYFLOWREG_BUFFER = 400
OURS, THEIRS = "flowreg_dask", "pyflowreg"
MIB = 2**20
CLK_TCK = os.sysconf("SC_CLK_TCK")
PYFLOWREG_DONE = re.compile(r"Processed (\d+) frames in ([\d.]+)s \(avg [\d.]+ fps\)")

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


# ---------------------------------------------------------------------------------------------
# measuring one process tree


@dataclass(frozen=True)
class Measured:
    """What one finished process tree cost.

    Attributes
    ----------
    wall : float
        Wall seconds from start to exit.
    cpu : float
        User + system CPU seconds of the process tree (see the module docstring).
    cpu_from_proc : bool
        True where the ``/proc`` lower bound exceeded the ``getrusage`` count and was used.
    pss, rss : int
        Peak PSS summed over the tree and peak RSS of its largest process, in bytes.
    stdout : str
        The process's standard output.
    """

    wall: float
    cpu: float
    cpu_from_proc: bool
    pss: int
    rss: int
    stdout: str


def _scan_proc() -> dict[int, tuple[int, int, int]]:
    """Every process as ``pid -> (ppid, own user + system clock ticks, start time)``."""
    table: dict[int, tuple[int, int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            # fields[0] is field 3 (state): ppid 4, utime 14, stime 15, starttime 22
            table[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[19]))
        except (OSError, IndexError, ValueError):
            continue
    return table


def _tree(pid: int, table: dict[int, tuple[int, int, int]]) -> list[int]:
    """``pid`` and all its descendants found in ``table``."""
    children: dict[int, list[int]] = {}
    for child, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(child)
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        stack.extend(children.get(p, []))
    return out


def _memory(pids: Sequence[int]) -> tuple[int, int]:
    """(PSS summed over ``pids``, largest single RSS), in bytes.

    PSS (proportional set size) splits shared pages between the processes that map them, so
    shared memory and forked copy-on-write pages are counted once, unlike a sum of RSS.
    """
    pss_total, rss_max = 0, 0
    for p in pids:
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


@dataclass
class TreeSampler:
    """Samples a process tree from ``/proc`` in a thread until :meth:`stop`.

    Attributes
    ----------
    pid : int
        Root of the tree.
    peak_pss, peak_rss : int
        Peaks seen so far, in bytes.
    ticks : dict
        ``(pid, start time) -> own CPU clock ticks`` when the process was last seen.
    """

    pid: int
    peak_pss: int = 0
    peak_rss: int = 0
    ticks: dict[tuple[int, int], int] = field(default_factory=dict)
    _done: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        """Start sampling."""
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling and wait for the thread."""
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def cpu_seconds(self) -> float:
        """CPU seconds of the tree's processes as last seen (a lower bound)."""
        return sum(self.ticks.values()) / CLK_TCK

    def _loop(self) -> None:
        while not self._done.is_set():
            self._sample()
            time.sleep(SAMPLE_S)

    def _sample(self) -> None:
        table = _scan_proc()
        pids = _tree(self.pid, table)
        for p in pids:
            if p in table:
                self.ticks[(p, table[p][2])] = table[p][1]
        pss, rss = _memory(pids)
        self.peak_pss = max(self.peak_pss, pss)
        self.peak_rss = max(self.peak_rss, rss)


def _children_cpu() -> float:
    """User + system CPU seconds of this process's waited-for children and their descendants."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_measured(cmd: list[str]) -> Measured:
    """Run ``cmd`` to completion and measure it.

    Parameters
    ----------
    cmd : list of str
        Command line; nothing else may be started by this process meanwhile (the CPU count is
        a ``RUSAGE_CHILDREN`` difference).

    Returns
    -------
    Measured
        Wall and CPU seconds, peak memory and standard output.

    Raises
    ------
    RuntimeError
        The command failed (its standard error's tail is in the message).
    """
    cpu_before = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(proc.pid)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    sampler.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed:\n{err[-3000:]}")
    rusage_cpu = _children_cpu() - cpu_before
    proc_cpu = sampler.cpu_seconds()
    from_proc = proc_cpu > rusage_cpu * 1.02 + 0.05
    return Measured(
        wall=wall,
        cpu=proc_cpu if from_proc else rusage_cpu,
        cpu_from_proc=from_proc,
        pss=sampler.peak_pss,
        rss=sampler.peak_rss,
        stdout=out,
    )


# ---------------------------------------------------------------------------------------------
# recording and accuracy


def make_recording(folder: Path, *, frames: int, size: int, channels: int, seed: int) -> Path:
    """Write the synthetic recording once (reused when the file exists).

    Parameters
    ----------
    folder : Path
        Where to write it.
    frames, size, channels, seed : int
        Frames, height = width, channels and seed of the :class:`SyntheticSpec`.

    Returns
    -------
    Path
        The TIFF file.
    """
    from flowreg_dask.datasets import SyntheticSpec, save_synthetic_recording

    path = folder / f"rec_{size}x{size}x{frames}x{channels}_s{seed}.tif"
    if not path.exists():
        spec = SyntheticSpec(
            n_frames=frames, height=size, width=size, n_channels=channels, seed=seed
        )
        save_synthetic_recording(path, spec=spec, save_flow=False)
    return path


def reference_indices(tool: str, n_frames: int) -> list[int]:
    """The frames the tool averages into its default reference.

    flowreg_dask keeps the default frames 50..499 that lie in the recording; pyflowreg clips
    each index to ``n_frames - 1`` (so the last frame repeats in short recordings).
    """
    if tool == THEIRS:
        return [min(i, n_frames - 1) for i in DEFAULT_REFERENCE]
    return [i for i in DEFAULT_REFERENCE if i < n_frames]


def reference_offset(spec: SyntheticSpec, ref_frames: Sequence[int]) -> np.ndarray:
    """Mean ground-truth flow of the reference frames (repeats counted), ``(H, W, 2)``.

    A reference built from those frames sits, to first order, where they are on average, so
    flows relative to it are the truth minus this.
    """
    weights = np.bincount(np.asarray(ref_frames), minlength=spec.n_frames).astype(np.float64)
    total = np.zeros((spec.height, spec.width, 2))
    first, stop = min(ref_frames), max(ref_frames) + 1
    for s in range(first, stop, 100):
        e = min(s + 100, stop)
        flow = spec.frames(s, e)[1].astype(np.float64)
        total += np.tensordot(weights[s:e], flow, axes=1)
    return total / len(ref_frames)


def truth_epe(
    read: Callable[[int, int], np.ndarray], n_frames: int, spec: SyntheticSpec, offset: np.ndarray
) -> float:
    """Mean endpoint error against the ground truth relative to the reference (border cropped).

    Parameters
    ----------
    read : callable
        ``read(start, stop)`` gives the stored flows of those frames, ``(n, H, W, 2)`` (u, v).
    n_frames : int
        Number of frames.
    spec : SyntheticSpec
        The generator of the recording.
    offset : numpy.ndarray
        :func:`reference_offset` of the tool's reference frames.
    """
    b = BORDER
    total, count = 0.0, 0
    for s in range(0, n_frames, 100):
        e = min(s + 100, n_frames)
        gt = spec.frames(s, e)[1] - offset
        err = np.linalg.norm(read(s, e) - gt, axis=-1)[:, b:-b, b:-b]
        total += float(err.sum())
        count += err.size
    return total / count


# ---------------------------------------------------------------------------------------------
# configurations and runs


@dataclass(frozen=True)
class Config:
    """One benchmarked configuration."""

    tool: str
    preset: str
    mode: str
    n_jobs: int
    buffer: int

    def label(self) -> str:
        """Short description for progress lines."""
        return f"{self.tool} {self.preset} {self.mode} n_jobs={self.n_jobs} buffer={self.buffer}"


@dataclass(frozen=True)
class Run:
    """One run of a configuration: its cost and the tool's steady-state frames/s (or None)."""

    measured: Measured
    steady: float | None


@dataclass
class Series:
    """All repeats of one configuration and the accuracy of the last."""

    config: Config
    runs: list[Run] = field(default_factory=list)
    epe: float = float("nan")


@dataclass(frozen=True)
class Bench:
    """What every run shares: the recording, its generator and where outputs go."""

    rec: Path
    spec: SyntheticSpec
    work: Path
    pyflowreg: str | None

    @property
    def n_frames(self) -> int:
        """Frames in the recording."""
        return self.spec.n_frames

    def output(self, cfg: Config) -> Path:
        """Output path of a configuration (a store for flowreg_dask, a folder for pyflowreg)."""
        name = f"{cfg.tool}_{cfg.preset}_{cfg.mode}_{cfg.n_jobs}_{cfg.buffer}"
        return self.work / (name + (".zarr" if cfg.tool == OURS else ""))


def ours_cmd(rec: Path, out: Path, cfg: Config, *, save_w: bool) -> list[str]:
    """Command line of ``flowreg-dask correct`` for a configuration."""
    cmd = [sys.executable, "-m", "flowreg_dask.cli.main", "correct", str(rec), "-o", str(out)]
    cmd += ["--quality", cfg.preset, "--parallelization", cfg.mode, "--n-jobs", str(cfg.n_jobs)]
    cmd += ["--buffer-size", str(cfg.buffer), "--overwrite", "--no-progress"]
    return cmd + (["--save-w"] if save_w else [])


def pyflowreg_cmd(python: str, rec: Path, out: Path, cfg: Config) -> list[str]:
    """Command line running pyflowreg's ``compensate_recording`` with ``python``."""
    args = [str(rec), str(out), cfg.preset, str(cfg.n_jobs), str(cfg.buffer)]
    return [python, "-c", PYFLOWREG_SNIPPET, *args]


def ours_steady(out: Path) -> float | None:
    """flowreg_dask's registration-phase frames/s from the result store's attributes."""
    from flowreg_dask import open_result

    fps = open_result(out).attrs.get("frames_per_second")
    return float(fps) if fps else None


def pyflowreg_steady(stdout: str, n_frames: int) -> float | None:
    """pyflowreg's registration-phase frames/s: N / S from its last ``Processed N frames in S s``
    line (earlier such lines are its reference pre-registration), if N is the whole recording."""
    found = PYFLOWREG_DONE.findall(stdout)
    if not found or int(found[-1][0]) != n_frames or float(found[-1][1]) <= 0:
        return None
    return n_frames / float(found[-1][1])


def run_once(cfg: Config, bench: Bench) -> Run:
    """Run a configuration once (flows stored) and read its steady-state frames/s."""
    out = bench.output(cfg)
    if cfg.tool == OURS:
        measured = run_measured(ours_cmd(bench.rec, out, cfg, save_w=True))
        return Run(measured, ours_steady(out))
    assert bench.pyflowreg is not None
    measured = run_measured(pyflowreg_cmd(bench.pyflowreg, bench.rec, out, cfg))
    return Run(measured, pyflowreg_steady(measured.stdout, bench.n_frames))


def flow_reader(cfg: Config, out: Path) -> tuple[Callable[[int, int], np.ndarray], Callable]:
    """``(read(start, stop) -> (n, H, W, 2) flows, close())`` for a configuration's output."""
    if cfg.tool == OURS:
        from flowreg_dask import open_result

        flow = open_result(out)["flow"]
        return (lambda s, e: np.asarray(flow[s:e])), (lambda: None)
    import h5py

    fh = h5py.File(out / "w.h5", "r")
    return (lambda s, e: np.stack([fh["u"][s:e], fh["v"][s:e]], axis=-1)), fh.close


def series_epe(cfg: Config, bench: Bench) -> float:
    """EPE of a configuration's stored flows against its tool's reference-relative truth."""
    offset = reference_offset(bench.spec, reference_indices(cfg.tool, bench.n_frames))
    read, close = flow_reader(cfg, bench.output(cfg))
    try:
        return truth_epe(read, bench.n_frames, bench.spec, offset)
    finally:
        close()


def run_group(configs: Sequence[Config], bench: Bench, repeats: int) -> list[Series]:
    """Run each configuration ``repeats`` times, round robin (A B A B ...), then their EPEs."""
    series = [Series(cfg) for cfg in configs]
    total = repeats * len(series)
    for r in range(repeats):
        for i, s in enumerate(series):
            run = run_once(s.config, bench)
            s.runs.append(run)
            _log_run(r * len(series) + i + 1, total, s.config, run, bench.n_frames)
    for s in series:
        s.epe = series_epe(s.config, bench)
    return series


def _log_run(k: int, total: int, cfg: Config, run: Run, n_frames: int) -> None:
    m = run.measured
    print(
        f"  [{k}/{total}] {cfg.label()}: {m.wall:.1f} s, {n_frames / m.wall:.1f} frames/s, "
        f"CPU {100 * m.cpu / m.wall:.0f}%",
        file=sys.stderr,
        flush=True,
    )


def group_configs(args: argparse.Namespace, preset: str) -> list[Config]:
    """One preset's configurations, per n_jobs flowreg_dask's modes x buffers, then pyflowreg."""
    configs = []
    for n_jobs in args.n_jobs:
        configs += [Config(OURS, preset, m, n_jobs, b) for m in args.modes for b in args.buffer]
        if args.pyflowreg:
            configs.append(Config(THEIRS, preset, "multiprocessing", n_jobs, PYFLOWREG_BUFFER))
    return configs


# ---------------------------------------------------------------------------------------------
# statistics and formatting


def fps_values(s: Series, n_frames: int) -> list[float]:
    """End-to-end frames/s of each repeat."""
    return [n_frames / r.measured.wall for r in s.runs]


def steady_values(s: Series) -> list[float]:
    """Steady-state frames/s of each repeat that reported one."""
    return [r.steady for r in s.runs if r.steady is not None]


def median(values: Sequence[float]) -> float | None:
    """Median, or None for no values."""
    return float(np.median(values)) if len(values) else None


def num(x: float | None) -> str:
    """A frames/s figure with three significant digits or so; "—" for None."""
    if x is None:
        return "—"
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def spread(values: Sequence[float]) -> str:
    """``low–high (±p%)``: the range and half of it relative to the median; "—" if empty."""
    if not len(values):
        return "—"
    lo, hi, mid = min(values), max(values), float(np.median(values))
    return f"{num(lo)}–{num(hi)} (±{50 * (hi - lo) / mid:.0f}%)"


def cpu_percent(s: Series) -> str:
    """Median CPU %, marked ``*`` when a run's count came from the ``/proc`` lower bound."""
    values = [100 * r.measured.cpu / r.measured.wall for r in s.runs]
    mark = "*" if any(r.measured.cpu_from_proc for r in s.runs) else ""
    return f"{np.median(values):.0f}{mark}"


def peak_mib(s: Series) -> tuple[float, float]:
    """Largest peak PSS and RSS over the repeats, in MiB."""
    return (
        max(r.measured.pss for r in s.runs) / MIB,
        max(r.measured.rss for r in s.runs) / MIB,
    )


def ratio(a: float | None, b: float | None) -> str:
    """``a / b`` as ``1.23×``; "—" when either is missing."""
    return f"{a / b:.2f}×" if a and b else "—"


def table(header: Sequence[str]) -> None:
    """Print a Markdown table header."""
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header), flush=True)


def row(cells: Sequence[object]) -> None:
    """Print one Markdown table row, flushed."""
    print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)


RUN_HEADER = [
    "tool",
    "preset",
    "mode",
    "n_jobs",
    "buffer",
    "frames/s",
    "spread",
    "steady frames/s",
    "CPU %",
    "peak PSS MiB (all processes)",
    "peak RSS MiB (largest process)",
    "EPE px",
]


def print_series(s: Series, n_frames: int) -> None:
    """One row of the main table."""
    c, fps = s.config, fps_values(s, n_frames)
    pss, rss = peak_mib(s)
    steady = num(median(steady_values(s)))
    cells = [c.tool, c.preset, c.mode, c.n_jobs, c.buffer, num(median(fps)), spread(fps)]
    row([*cells, steady, cpu_percent(s), f"{pss:.0f}", f"{rss:.0f}", f"{s.epe:.3f}"])


def header_line(args: argparse.Namespace, rec: Path) -> str:
    """The line above the tables: recording, machine, date and what the timings are."""
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0))
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    return (
        f"# recording {args.size}x{args.size}x{args.frames}, {args.channels} channel(s), uint16, "
        f"{rec.stat().st_size / MIB:.0f} MiB TIFF; {cores} cores ({usable} usable); {now}; "
        f"timings are wall clock of whole processes (start, imports, reference, registration, "
        f"writing), median of {args.repeats} run(s) per row, alternating between configurations"
    )


def print_ratio_table(results: list[Series], n_frames: int, first_mode: str) -> None:
    """Per preset and n_jobs: flowreg_dask (first mode, first buffer) against pyflowreg."""
    theirs = [s for s in results if s.config.tool == THEIRS]
    if not theirs:
        return
    print(
        f"\n# flowreg_dask ({first_mode}, first buffer listed) / pyflowreg (multiprocessing, "
        f"buffer {PYFLOWREG_BUFFER}): ratios of medians"
    )
    table(
        [
            "preset",
            "n_jobs",
            "flowreg_dask frames/s",
            "spread",
            "pyflowreg frames/s",
            "spread",
            "ratio",
            "steady ratio",
            "peak PSS MiB flowreg_dask",
            "peak PSS MiB pyflowreg",
            "EPE px flowreg_dask",
            "EPE px pyflowreg",
        ]
    )
    for t in theirs:
        ours = _first_match(results, OURS, first_mode, t.config)
        if ours is not None:
            _ratio_row(ours, t, n_frames)


def _first_match(results: list[Series], tool: str, mode: str, like: Config) -> Series | None:
    for s in results:
        c = s.config
        if (c.tool, c.mode, c.preset, c.n_jobs) == (tool, mode, like.preset, like.n_jobs):
            return s
    return None


def _ratio_row(ours: Series, theirs: Series, n_frames: int) -> None:
    a, b = fps_values(ours, n_frames), fps_values(theirs, n_frames)
    steady_a, steady_b = median(steady_values(ours)), median(steady_values(theirs))
    cells = [ours.config.preset, ours.config.n_jobs, num(median(a)), spread(a)]
    cells += [num(median(b)), spread(b), ratio(median(a), median(b)), ratio(steady_a, steady_b)]
    cells += [f"{peak_mib(ours)[0]:.0f}", f"{peak_mib(theirs)[0]:.0f}"]
    row([*cells, f"{ours.epe:.3f}", f"{theirs.epe:.3f}"])


def print_scaling_table(results: list[Series], n_frames: int) -> None:
    """Frames/s at each n_jobs over the smallest n_jobs, per tool, mode, preset and buffer."""
    groups: dict[tuple, list[Series]] = {}
    for s in results:
        c = s.config
        groups.setdefault((c.tool, c.mode, c.preset, c.buffer), []).append(s)
    groups = {k: v for k, v in groups.items() if len({s.config.n_jobs for s in v}) > 1}
    if not groups:
        return
    print("\n# scaling with n_jobs: medians over the smallest n_jobs (the base)")
    table(
        [
            "tool",
            "mode",
            "preset",
            "buffer",
            "n_jobs",
            "frames/s",
            "× base",
            "steady frames/s",
            "steady × base",
        ]
    )
    for series in groups.values():
        _scaling_rows(sorted(series, key=lambda s: s.config.n_jobs), n_frames)


def _scaling_rows(series: list[Series], n_frames: int) -> None:
    base_fps = median(fps_values(series[0], n_frames))
    base_steady = median(steady_values(series[0]))
    for s in series:
        c, fps, steady = s.config, median(fps_values(s, n_frames)), median(steady_values(s))
        cells = [c.tool, c.mode, c.preset, c.buffer, c.n_jobs, num(fps), ratio(fps, base_fps)]
        row([*cells, num(steady), ratio(steady, base_steady)])


def print_lengths_table(args: argparse.Namespace, work: Path) -> None:
    """Peak memory against recording length (flowreg_dask, one run each, flows not stored)."""
    cfg = Config(OURS, args.presets[0], args.modes[0], args.n_jobs[0], args.buffer[0])
    print(
        f"\n# peak memory against recording length ({cfg.preset}, {cfg.mode}, "
        f"n_jobs {cfg.n_jobs}, buffer {cfg.buffer}, flows not stored, one run each)"
    )
    table(
        ["frames", "file MiB", "frames/s", "CPU %", "peak PSS MiB (all processes)", "peak RSS MiB"]
    )
    for n in args.lengths:
        rec = make_recording(work, frames=n, size=args.size, channels=args.channels, seed=args.seed)
        m = run_measured(ours_cmd(rec, work / f"len_{n}.zarr", cfg, save_w=False))
        cpu = f"{100 * m.cpu / m.wall:.0f}" + ("*" if m.cpu_from_proc else "")
        cells = [n, f"{rec.stat().st_size / MIB:.0f}", num(n / m.wall), cpu]
        row([*cells, f"{m.pss / MIB:.0f}", f"{m.rss / MIB:.0f}"])


# ---------------------------------------------------------------------------------------------
# command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see ``--help``)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--frames", type=int, default=1000, help="recording length (> 50)")
    ap.add_argument("--size", type=int, default=256, help="height = width, pixels")
    ap.add_argument("--channels", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--presets", nargs="+", default=["fast", "balanced", "quality"])
    ap.add_argument(
        "--modes",
        nargs="+",
        default=["sequential", "threading", "multiprocessing", "distributed"],
        help="flowreg_dask modes; the first is compared with pyflowreg",
    )
    ap.add_argument("--n-jobs", type=int, nargs="+", default=[2])
    ap.add_argument("--buffer", type=int, nargs="+", default=[100], help="flowreg_dask chunks")
    ap.add_argument("--repeats", type=int, default=3, help="runs per configuration (median)")
    ap.add_argument(
        "--lengths",
        type=int,
        nargs="*",
        default=[],
        help="extra: peak memory for recordings of these lengths (first mode/preset)",
    )
    ap.add_argument("--pyflowreg", default=None, help="python interpreter that has pyflowreg")
    ap.add_argument("--workdir", default=None, help="recordings and outputs (default: a temp dir)")
    args = ap.parse_args(argv)
    if args.frames <= DEFAULT_REFERENCE.start:
        ap.error(f"--frames must exceed {DEFAULT_REFERENCE.start} (default reference frames)")
    if any(n <= DEFAULT_REFERENCE.start for n in args.lengths):
        ap.error(f"--lengths must exceed {DEFAULT_REFERENCE.start} (default reference frames)")
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print its tables."""
    args = parse_args(argv)
    from flowreg_dask.datasets import SyntheticSpec

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
    bench = Bench(rec=rec, spec=spec, work=work, pyflowreg=args.pyflowreg)
    print(header_line(args, rec), flush=True)
    table(RUN_HEADER)
    results: list[Series] = []
    for preset in args.presets:
        group = run_group(group_configs(args, preset), bench, args.repeats)
        for s in group:
            print_series(s, args.frames)
        results += group
    print_ratio_table(results, args.frames, args.modes[0])
    print_scaling_table(results, args.frames)
    if args.lengths:
        print_lengths_table(args, work)


if __name__ == "__main__":
    main()
