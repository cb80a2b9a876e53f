"""The ``flowreg-dask report`` subcommand, for the CLI to mount (imports nothing heavy)."""

from __future__ import annotations

import argparse

__all__ = ["add_report_command", "run_report"]


def add_report_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``report STORE [--out DIR] [--raw INPUT] [--frame K] [--no-progress]
    [--no-residual]`` to an argparse subparsers object; returns the new parser."""
    p = subparsers.add_parser(
        "report",
        help="quality report of a corrected store (metrics, figures, summary.json, report.html)",
    )
    p.add_argument("store", help="corrected store, e.g. OUT.zarr")
    p.add_argument(
        "--out", default=None, help="output folder (default: <store stem>_report next to it)"
    )
    p.add_argument(
        "--raw",
        default=None,
        help="raw recording to compare with (default: the store's recorded input, if readable)",
    )
    p.add_argument(
        "--frame",
        type=int,
        default=None,
        help="frame shown in the flow and frame figures (default: the largest motion)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--no-residual", action="store_true", help="skip the residual-motion optical flow"
    )
    p.set_defaults(func=run_report)
    return p


def run_report(args: argparse.Namespace) -> int:
    """Handler of the subcommand: writes the report and prints where."""
    from ..report._build import write_report

    path = write_report(
        args.store,
        args.out,
        raw=args.raw,
        frame=args.frame,
        progress=not args.no_progress,
        residual=not args.no_residual,
    )
    print(f"wrote {path}")
    return 0
