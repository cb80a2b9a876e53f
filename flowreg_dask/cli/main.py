"""``flowreg-dask`` command line: demo, correct, apply, session, export, info, report, compile
(thin, over the API)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

from .._constants import DEFAULT_BUFFER_SIZE
from .._version import __version__
from ..options._vocab import FlowBackend, Parallelization, QualitySetting


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _frames_arg(text: str) -> list[int]:
    try:
        if ":" in text:
            start, stop = (int(p) if p else None for p in text.split(":", 1))
            return list(range(start or 0, stop))
        return [int(p) for p in text.split(",") if p]
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"expected START:STOP (e.g. 50:500) or a comma-separated list of frame indices, got "
            f"{text!r}"
        ) from None


def _selection_arg(text: str) -> slice | list[int]:
    """``--frames``: ``START:STOP[:STEP]`` (either end may be left out) or ``i,j,k``."""
    try:
        if ":" in text:
            parts = [int(p) if p.strip() else None for p in text.split(":")]
            if len(parts) > 3:
                raise ValueError(text)
            return slice(*parts)
        values = [int(p) for p in text.split(",") if p.strip()]
        if not values:
            raise ValueError(text)
        return values
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"expected START:STOP (e.g. 0:500, 100: or :500, optionally :STEP) or a "
            f"comma-separated list of frame indices, got {text!r}"
        ) from None


def _option_arg(text: str) -> tuple[str, object]:
    """``--reader-option KEY=VALUE``; VALUE is read as JSON when it parses (true, 3, [1, 2])."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(
            f"expected KEY=VALUE (e.g. plain=true, series=1, level=0), got {text!r}"
        )
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    return key.strip(), parsed


#: ``args`` attributes of the reader flags (None when not given)
_READER_FLAGS = (
    "dataset",
    "series",
    "deinterleave",
    "axes",
    "frames",
    "bin_size",
    "input_format",
    "reader_option",
)


def _add_reader_args(p: argparse.ArgumentParser) -> None:
    from ..io._registry import ALIASES, BUILTIN_READERS

    g = p.add_argument_group(
        "reading the input",
        "how the recording is read (the same options as flowreg_dask.open_recording)",
    )
    g.add_argument(
        "--dataset",
        action="append",
        metavar="NAME",
        help="HDF5 dataset / MAT variable / zarr array holding the movie; repeat it or separate "
        "names by commas to read one per channel (default: the only movie-shaped one; when "
        "there are several the error lists them)",
    )
    g.add_argument(
        "--series",
        type=int,
        metavar="N",
        help="TIFF: read only image series N (default: every full-resolution series, joined "
        "in time when they fit together, e.g. batches appended by several write calls)",
    )
    g.add_argument(
        "--deinterleave",
        type=int,
        metavar="N",
        help="N consecutive single-channel frames (pages) form one N-channel frame",
    )
    g.add_argument(
        "--axes",
        metavar="LETTERS",
        help="stored order of the dimensions, letters t, z, y, x, c (e.g. yxt, tcyx)",
    )
    g.add_argument(
        "--frames",
        type=_selection_arg,
        metavar="START:STOP",
        help="frames to read: START:STOP[:STEP] (STOP excluded; either end may be left out) "
        "or a comma-separated list; counted after de-interleaving, before binning",
    )
    g.add_argument(
        "--bin-size",
        type=int,
        metavar="N",
        help="temporal binning: each frame read is the mean of N consecutive frames (done "
        "while reading; the stored options then say bin_size 1)",
    )
    names = ", ".join([*BUILTIN_READERS, *sorted(ALIASES)])
    g.add_argument(
        "--input-format",
        metavar="NAME",
        help=f"force a reader instead of guessing from the file: {names}, or a plugin's name",
    )
    g.add_argument(
        "--reader-option",
        action="append",
        type=_option_arg,
        metavar="KEY=VALUE",
        help="any other option of the chosen reader (repeatable; VALUE as JSON when it parses), "
        "e.g. plain=true or scanimage=false (TIFF), level=1 (OME-Zarr), shape=[500,512,512] "
        "and dtype=uint16 (raw)",
    )


def _reader_flags_given(args: argparse.Namespace) -> bool:
    return any(getattr(args, name, None) is not None for name in _READER_FLAGS)


def _dataset_value(values: list[str] | None) -> str | list[str] | None:
    if not values:
        return None
    names = [n.strip() for v in values for n in v.split(",") if n.strip()]
    if not names:
        return None
    return names[0] if len(names) == 1 else names


def _open_input(args: argparse.Namespace, *, buffer_size: int, bin_size: int):
    """``open_recording`` with the reader flags of ``args``; TypeError -> InvalidOptionError."""
    from ..errors import InvalidOptionError
    from ..io import open_recording

    kwargs = dict(args.reader_option or [])
    if args.series is not None:
        kwargs["series"] = args.series
    try:
        return open_recording(
            args.input,
            buffer_size=buffer_size,
            format=args.input_format,
            dataset=_dataset_value(args.dataset),
            deinterleave=1 if args.deinterleave is None else args.deinterleave,
            bin_size=bin_size,
            frames=args.frames,
            axes=args.axes,
            **kwargs,
        )
    except TypeError as exc:  # an option the reader does not take (--reader-option)
        raise InvalidOptionError(f"{args.input}: {exc}") from exc


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--quality",
        choices=[q.value for q in QualitySetting if q is not QualitySetting.CUSTOM],
        default=None,
        help="quality preset (finest pyramid level solved: 0 / 4 / 6); default: quality",
    )
    p.add_argument(
        "--buffer-size",
        type=_positive_int,
        default=None,
        help="frames per time chunk (>= 1; sets how the work is cut, not the result)",
    )
    p.add_argument(
        "--parallelization",
        choices=Parallelization.names(),
        default=None,
        help="run mode (default: threading)",
    )
    p.add_argument("--n-jobs", type=int, default=-1, help="workers (-1 = all cores)")
    p.add_argument(
        "--scheduler-address",
        default=None,
        help="address of a running dask scheduler (implies distributed)",
    )
    p.add_argument(
        "--flow-backend",
        choices=[FlowBackend.NUMBA.value, FlowBackend.CUPY.value],
        default=None,
        help="flow solver: numba (CPU, default) or cupy (NVIDIA GPU; pip install "
        "'flowreg-dask[gpu]')",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _config(args):
    from ..options import RegistrationConfig

    return RegistrationConfig(
        n_jobs=args.n_jobs,
        parallelization=args.parallelization,
        scheduler_address=args.scheduler_address,
        progress=not args.no_progress,
    )


def _cmd_correct(args) -> int:
    from ..options import OFOptions
    from ..pipeline.api import compensate_recording

    options = OFOptions.load(args.options) if args.options else OFOptions()
    updates = {}
    if args.quality:
        updates["quality_setting"] = args.quality
    if args.buffer_size is not None:
        updates["buffer_size"] = args.buffer_size
    if args.reference_frames is not None:
        updates["reference_frames"] = args.reference_frames
    if args.reference:
        updates["reference_frames"] = Path(args.reference)
    if args.save_w:
        updates["save_w"] = True
    if args.save_valid:
        updates["save_valid_idx"] = True
    if args.output_dtype:
        updates["output_typename"] = args.output_dtype
    if args.format:
        updates["output_format"] = args.format
    if args.flow_backend:
        updates["flow_backend"] = args.flow_backend
    options = options.copy(**updates) if updates else options
    recording = args.input
    if _reader_flags_given(args):
        # read with the reader flags here; the temporal binning happens in the reader (once):
        # the pipeline does not bin a recording it is given as an array
        bin_size = options.bin_size if args.bin_size is None else args.bin_size
        recording = _open_input(args, buffer_size=options.buffer_size, bin_size=bin_size)
        if options.bin_size != 1:
            options = options.copy(bin_size=1)
    start = time.perf_counter()
    out = compensate_recording(
        options,
        _config(args),
        recording=recording,
        output=args.output,
        overwrite=args.overwrite,
        resume=not args.no_resume,
    )
    elapsed = time.perf_counter() - start
    print(f"wrote {out.output} in {elapsed:.1f} s")
    return 0


def _cmd_export(args) -> int:
    from ..store.export import export_result

    out = export_result(
        args.store,
        args.output,
        format=args.format,
        overwrite=args.overwrite,
        include_flow=not args.no_flow,
        compression=args.compression,
    )
    print(f"wrote {out}")
    return 0


def _cmd_info(args) -> int:
    from ..io import describe, info
    from ..store.reader import describe_store, store_status

    path = Path(args.input)
    if not _reader_flags_given(args) and path.is_dir() and (path / "zarr.json").exists():
        try:
            status = store_status(path)
        except Exception:  # not one of our stores: describe it as a recording
            status = None
        if status is not None:
            print(json.dumps(status, indent=2, default=str) if args.json else describe_store(path))
            return 0
    rec = _open_input(args, buffer_size=DEFAULT_BUFFER_SIZE, bin_size=args.bin_size or 1)
    print(json.dumps(info(rec), indent=2, default=str) if args.json else describe(rec))
    return 0


def _cmd_demo(args) -> int:
    import numpy as np

    from ..datasets import SyntheticSpec, save_synthetic_recording
    from ..options import OFOptions
    from ..pipeline.api import compensate_recording
    from ..store.reader import open_result

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = SyntheticSpec(
        n_frames=args.frames,
        height=args.size,
        width=args.size,
        n_channels=args.channels,
        seed=args.seed,
    )
    movie_path = out_dir / "demo_recording.tif"
    print(
        f"1/3 writing a synthetic 2-photon recording {spec.shape} (T, H, W, C) uint16 with known "
        f"motion to {movie_path}"
    )
    save_synthetic_recording(movie_path, spec=spec, save_flow=False)
    ref_frames = list(range(min(50, args.frames)))
    options = OFOptions(
        quality_setting=args.quality,
        buffer_size=args.buffer_size,
        save_w=True,
        save_valid_idx=True,
        reference_frames=ref_frames,
        flow_backend=args.flow_backend or "numba",
    )
    print(f"2/3 correcting it ({args.quality} preset) to {out_dir / 'demo_corrected.zarr'}")
    start = time.perf_counter()
    out = compensate_recording(
        options,
        _config(args),
        recording=movie_path,
        output=out_dir / "demo_corrected.zarr",
        overwrite=True,
    )
    elapsed = time.perf_counter() - start
    print("3/3 accuracy against the ground-truth displacement (10 px border excluded):")
    ds = open_result(out)
    flow = ds["flow"].values  # (T, H, W, 2)
    truth = np.concatenate(
        [spec.frames(s, min(s + 100, spec.n_frames))[1] for s in range(0, spec.n_frames, 100)]
    )
    # The reference is built from frames 0..49, so it sits where those frames are on average:
    # to first order the true flow relative to it is the ground truth minus that mean.
    truth = truth - truth[ref_frames].mean(axis=0)
    b = 10
    epe = np.linalg.norm(flow - truth, axis=-1)[:, b:-b, b:-b].mean()
    before = np.linalg.norm(truth, axis=-1)[:, b:-b, b:-b].mean()
    print(f"   mean displacement before correction: {before:.3f} px (relative to the reference)")
    print(f"   endpoint error of the estimated flow: {epe:.3f} px")
    print(
        f"   {spec.n_frames / elapsed:.1f} frames/s end to end ({elapsed:.1f} s, including the "
        "reference)"
    )
    print(f"open the result with flowreg_dask.open_result({str(out.output)!r}) or napari")
    return 0


def _cmd_compile(args) -> int:
    from .warmup import warm_up

    print("compiling the numba kernels into numba's on-disk cache (once per installation)")
    start = time.perf_counter()
    compiled = warm_up(log=print)
    elapsed = time.perf_counter() - start
    if compiled:
        print(f"compiled {len(compiled)} kernel(s) in {elapsed:.1f} s; later runs load them")
    else:
        print(f"nothing to compile: every kernel was already cached ({elapsed:.1f} s)")
    return 0


def _cmd_apply(args) -> int:
    from ..options import RegistrationConfig
    from ..pipeline.apply import apply_flow

    fill: object = args.fill
    if fill not in ("reference", "zeros"):
        try:
            fill = float(args.fill)
        except ValueError:
            from ..errors import InvalidOptionError

            raise InvalidOptionError(
                f"--fill: expected 'reference', 'zeros' or a number, got {args.fill!r}"
            ) from None
    recording = args.recording
    if _reader_flags_given(args):
        args.input = args.recording
        recording = _open_input(args, buffer_size=DEFAULT_BUFFER_SIZE, bin_size=args.bin_size or 1)
    start = time.perf_counter()
    out = apply_flow(
        args.store,
        recording,
        output=args.output,
        channels=args.channels,
        fill=fill,
        interpolation=args.interpolation,
        output_dtype=args.output_dtype,
        save_flow=args.save_w,
        overwrite=args.overwrite,
        resume=not args.no_resume,
        config=RegistrationConfig(
            n_jobs=args.n_jobs,
            parallelization=args.parallelization,
            scheduler_address=args.scheduler_address,
            progress=not args.no_progress,
        ),
    )
    print(f"wrote {out} in {time.perf_counter() - start:.1f} s")
    return 0


def _session_config(args):
    from ..session import SessionConfig

    config = SessionConfig.from_file(args.config)
    updates: dict[str, object] = {}
    if args.scheduler is not None:
        updates["scheduler"] = args.scheduler
    if args.scheduler_address is not None:
        updates["scheduler_address"] = args.scheduler_address
        updates.setdefault("scheduler", "dask")
    if args.n_workers is not None:
        updates["n_workers"] = args.n_workers
    if args.parallelization is not None:
        updates["parallelization"] = args.parallelization
    if args.parallel_recordings is not None:
        updates["parallel_recordings"] = args.parallel_recordings
    if args.no_resume:
        updates["resume"] = False
    cluster = dict(config.cluster)
    for key in ("cores", "memory", "walltime", "jobs", "queue", "account", "processes"):
        value = getattr(args, key, None)
        if value is not None:
            cluster[key] = value
    if cluster != config.cluster:
        updates["cluster"] = cluster
    return SessionConfig(**{**config.model_dump(), **updates}) if updates else config


def _cmd_session_run(args) -> int:
    import logging

    from ..session import run_session

    logging.basicConfig(level=logging.INFO, format="flowreg-dask session: %(message)s")
    config = _session_config(args)
    stages = [args.stage] if args.stage else [1, 2, 3]
    task_index = args.index
    if args.array and task_index is None:
        from ..errors import InvalidOptionError
        from ..session import array_task_index

        task_index = array_task_index()
        if task_index is None:
            raise InvalidOptionError(
                "--array: no array task id found (SLURM_ARRAY_TASK_ID, SGE_TASK_ID, "
                "PBS_ARRAY_INDEX, PBS_ARRAYID, LSB_JOBINDEX); pass --index N (0-based) instead."
            )
    if (task_index is not None or config.scheduler == "array") and args.stage is None:
        stages = [1]  # an array task runs stage 1 of its recording
    start = time.perf_counter()
    out = run_session(
        config,
        stages=stages,
        task_index=task_index,
        of_params=dict(args.of_params or []) or None,
        progress=not args.no_progress,
    )
    if "stage3" in out:
        s3 = out["stage3"]
        print(
            f"final mask {s3['final_valid']}: {s3['valid_pixels']} of {s3['total_pixels']} "
            "pixels valid in every recording"
        )
    print(f"session stages {stages} done in {time.perf_counter() - start:.1f} s")
    return 0


def _add_session_args(p: argparse.ArgumentParser, *, scheduler_default: str | None) -> None:
    p.add_argument("-c", "--config", required=True, help="session config (.toml, .yaml, .json)")
    p.add_argument(
        "-s", "--stage", type=int, choices=[1, 2, 3], default=None, help="run only this stage"
    )
    p.add_argument(
        "--array",
        action="store_true",
        help="array-job task: stage 1 of the recording given by SLURM_ARRAY_TASK_ID, "
        "SGE_TASK_ID, PBS_ARRAY_INDEX, PBS_ARRAYID or LSB_JOBINDEX (1-based)",
    )
    p.add_argument(
        "-i", "--index", type=int, default=None, help="stage 1 of recording N only (0-based)"
    )
    p.add_argument(
        "--of-params",
        nargs="+",
        type=_option_arg,
        metavar="KEY=VALUE",
        help="OFOptions overrides for stage 1 (VALUE as JSON when it parses), e.g. alpha=4 "
        "quality_setting=fast save_w=true",
    )
    p.add_argument(
        "--scheduler",
        choices=["local", "array", "dask", "slurm", "pbs", "sge", "lsf"],
        default=scheduler_default,
        help="where the work runs (default: the config's scheduler); slurm/pbs/sge/lsf start a "
        "dask-jobqueue cluster (pip install dask-jobqueue)",
    )
    p.add_argument("--scheduler-address", default=None, help="a running dask scheduler")
    p.add_argument("--n-workers", type=int, default=None, help="workers (-1 = all cores)")
    p.add_argument(
        "--parallelization",
        choices=["sequential", "threading", "multiprocessing", "distributed"],
        default=None,
        help="run mode of each registration with --scheduler local",
    )
    p.add_argument(
        "--parallel-recordings", type=int, default=None, help="stage 1 recordings at once"
    )
    g = p.add_argument_group("dask-jobqueue cluster (--scheduler slurm|pbs|sge|lsf)")
    g.add_argument("--cores", type=int, default=None, help="cores per job (default 4)")
    g.add_argument("--memory", default=None, help="memory per job (default 8GB)")
    g.add_argument("--walltime", default=None, help="walltime per job (default 02:00:00)")
    g.add_argument("-j", "--jobs", type=int, default=None, help="jobs to start (default 1)")
    g.add_argument("--queue", default=None, help="queue / partition")
    g.add_argument("--account", default=None, help="account / project")
    g.add_argument("--processes", type=int, default=None, help="worker processes per job")
    p.add_argument("--no-resume", action="store_true", help="recompute everything")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_session_run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowreg-dask",
        description="Variational optical-flow motion correction of 2-photon recordings on dask.",
    )
    parser.add_argument("--version", action="version", version=f"flowreg-dask {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("correct", help="register a recording to a corrected OME-Zarr store")
    p.add_argument("input", help="recording (TIFF, HDF5, MAT, Zarr, .npy, ...)")
    p.add_argument("-o", "--output", required=True, help="output store, e.g. OUT.zarr")
    _add_run_args(p)
    p.add_argument(
        "--reference-frames",
        type=_frames_arg,
        default=None,
        help="frames to build the reference from, START:STOP (default 50:500), counted in "
        "the recording as read (after --frames and --bin-size)",
    )
    p.add_argument("--reference", default=None, help="reference image file instead")
    p.add_argument("--save-w", action="store_true", help="store the flow fields")
    p.add_argument("--save-valid", action="store_true", help="store the valid (in-bounds) masks")
    p.add_argument(
        "--output-dtype", default=None, help="dtype of the corrected movie (default: the input's)"
    )
    p.add_argument(
        "--format",
        default=None,
        help="output format: zarr (default) or an export format (hdf5, tiff, mat, "
        "caiman_hdf5, suite2p, suite2p_tiff, npy, multifile_tiff, multifile_hdf5, "
        "multifile_mat); exports are written next to the OME-Zarr store",
    )
    p.add_argument("--options", default=None, help="options file (.json or .toml)")
    _add_reader_args(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing complete output")
    p.add_argument(
        "--no-resume",
        action="store_true",
        help="do not continue an unfinished run into the same output",
    )
    p.set_defaults(func=_cmd_correct)

    p = sub.add_parser("export", help="convert a corrected store to another format")
    p.add_argument("store", help="corrected OME-Zarr store")
    p.add_argument("output", help="output file or folder")
    p.add_argument("--format", required=True, help="hdf5, tiff, mat, caiman_hdf5, suite2p, ...")
    p.add_argument("--compression", default=None, help="gzip or lzf (HDF5/MAT formats)")
    p.add_argument("--no-flow", action="store_true", help="leave out flows and valid masks")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "info",
        help="describe a recording or a corrected store",
        description="Describe a recording (shape, dtype, which dataset or series is read, frame "
        "rate, chunks) or the status of a corrected store; reads no pixel data.",
    )
    p.add_argument("input")
    p.add_argument("--json", action="store_true", help="print the full record as JSON")
    _add_reader_args(p)
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("demo", help="generate a synthetic recording, correct it, report accuracy")
    p.add_argument("--out", default="flowreg_demo", help="output folder (default ./flowreg_demo)")
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--channels", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    _add_run_args(p)
    p.set_defaults(quality="balanced", buffer_size=100)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "compile",
        help="compile and cache the numba kernels (run once after installing; else the first "
        "correction spends about a minute compiling)",
    )
    p.set_defaults(func=_cmd_compile)

    p = sub.add_parser(
        "apply",
        help="warp a recording with the flows of a corrected store",
        description="Warp RECORDING with the per-frame flows stored in STORE (registered with "
        "--save-w), chunk by chunk and resumably, into a new store with the same layout. E.g. "
        "register a structural channel, then apply its flows to the functional one.",
    )
    p.add_argument("store", help="corrected store with flows (flowreg-dask correct --save-w)")
    p.add_argument("recording", help="recording to warp (same frame count and frame size)")
    p.add_argument("-o", "--output", required=True, help="output store, e.g. OUT.zarr")
    p.add_argument(
        "--channels",
        type=lambda t: [int(v) for v in t.split(",") if v.strip()],
        default=None,
        help="channels of the recording to warp, e.g. 1 or 0,2 (default: all)",
    )
    p.add_argument(
        "--fill",
        default="reference",
        help="out-of-frame value: reference (the store's; default), zeros, or a number",
    )
    p.add_argument(
        "--interpolation",
        choices=["cubic", "linear", "nearest"],
        default=None,
        help="default: the store's interpolation_method",
    )
    p.add_argument("--output-dtype", default=None, help="default: the recording's dtype")
    p.add_argument("--save-w", action="store_true", help="copy the flows into the output")
    p.add_argument(
        "--parallelization",
        choices=["sequential", "threading", "multiprocessing", "distributed"],
        default=None,
        help="run mode (default: threading)",
    )
    p.add_argument("--n-jobs", type=int, default=-1, help="workers (-1 = all cores)")
    p.add_argument("--scheduler-address", default=None, help="a running dask scheduler")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_reader_args(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing complete output")
    p.add_argument("--no-resume", action="store_true", help="do not continue an unfinished run")
    p.set_defaults(func=_cmd_apply)

    p = sub.add_parser(
        "session",
        help="align several recordings of one field of view (multi-session)",
        description="Stage 1 corrects every recording of the session, stage 2 aligns their "
        "temporal averages to the centre recording, stage 3 warps them into its frame and "
        "combines the valid masks. Each stage resumes what an earlier run finished.",
    )
    ssub = p.add_subparsers(dest="session_command", required=True)
    _add_session_args(
        ssub.add_parser("run", help="run the stages (all, or --stage N)"), scheduler_default=None
    )
    _add_session_args(
        ssub.add_parser(
            "dask",
            help="run on a dask-jobqueue cluster (pyflowreg's 'session dask'; default slurm)",
        ),
        scheduler_default="slurm",
    )

    from .report import add_report_command

    add_report_command(sub)  # report OUT.zarr [--out DIR] [--raw INPUT] [--frame K] ...
    return parser


def _output_of(args: argparse.Namespace) -> str | None:
    return getattr(args, "output", None) if getattr(args, "command", None) == "correct" else None


def _kept(output: str | None) -> str:
    """``"N of M chunks of OUT are kept"`` for an output store of an interrupted run."""
    if not output:
        return "what was finished is kept"
    from ..store.reader import store_status

    try:
        status = store_status(output)
    except Exception:  # nothing written yet, or not a store
        return f"nothing of {output} was written yet"
    return f"{status['chunks_done']} of {status['n_chunks']} chunks of {output} are kept"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``flowreg-dask`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        command = " ".join(shlex.quote(a) for a in (["flowreg-dask"] + (argv or sys.argv[1:])))
        print(
            f"flowreg-dask: interrupted; {_kept(_output_of(args))}. Resume with: {command}",
            file=sys.stderr,
            flush=True,
        )
        os._exit(130)  # do not wait for the chunks still being registered by worker threads
    except (ValueError, OSError, RuntimeError, ImportError) as exc:
        message = " ".join(str(exc).split())  # one line
        print(f"flowreg-dask: error: {message}", file=sys.stderr)
        return 2


def run() -> None:
    """The ``flowreg-dask`` console script: :func:`main`, then end the process without the
    interpreter's teardown of every imported module.

    With dask, xarray, zarr, distributed and numba loaded, that teardown took 0.4-0.6 s after the
    work was done (5 % of correcting 1000 frames of 256x256). Every output is closed and renamed
    into place before :func:`main` returns; here stdout and stderr are flushed and the ``atexit``
    handlers (logging, multiprocessing, ``weakref.finalize``) run before ``os._exit``. Errors
    and interrupts end as usual. ``FLOWREG_FAST_EXIT=0`` keeps the normal teardown.
    """
    import atexit

    code = main()
    exit_funcs = getattr(atexit, "_run_exitfuncs", None)
    if os.environ.get("FLOWREG_FAST_EXIT", "1") == "0" or exit_funcs is None:
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe
            pass
    exit_funcs()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
