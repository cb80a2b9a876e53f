"""Compile the numba kernels once, after installation, and keep them in numba's on-disk cache
(``flowreg-dask compile``).

numba compiles a kernel the first time it is called with new argument types; every kernel is
``cache=True``, so the machine code is written to disk (the package's ``__pycache__`` folders,
or ``NUMBA_CACHE_DIR``) and later processes load it in about a second. Without this step the
first correction after an install spends about a minute compiling (2 cores); after it, the
first correction runs as fast as any later one.

:func:`warm_up` runs, on tiny synthetic recordings (a few seconds of work without the
compilation), every path a correction takes: a file registered to a store for each common
sample type (uint16, int16, uint8, int32, float32, float64; one and two channels), each data
term, rigid initialisation and reference updates, the array API, live correction and
``apply``. What it compiles does not depend on the frame size, so recordings of any size
reuse it.
``tests/test_warmup.py`` checks, in a fresh cache, that a set of different calls compiles
nothing after it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["warm_up", "CompileCounter"]

#: sample types of the recordings the warm-up registers (each is an output-warp signature)
DTYPES = ("uint16", "int16", "uint8", "int32", "float32", "float64")


class CompileCounter:
    """Count numba compilations (not cache loads) while active: ``with CompileCounter() as c``;
    ``c.compiled`` lists the qualified names of the kernels compiled."""

    def __init__(self) -> None:
        self.compiled: list[str] = []

    def __enter__(self) -> CompileCounter:
        from numba.core import event

        counter = self

        class _Listener(event.Listener):
            def on_start(self, ev) -> None:
                fn = ev.data["dispatcher"].py_func
                counter.compiled.append(f"{fn.__module__}.{fn.__qualname__}")

            def on_end(self, ev) -> None:
                pass

        self._listener = _Listener()
        event.register("numba:compile", self._listener)
        return self

    def __exit__(self, *exc) -> None:
        from numba.core import event

        event.unregister("numba:compile", self._listener)


def _recording(dtype: str, n_channels: int, seed: int) -> np.ndarray:
    from ..datasets import synthetic_recording

    rec = synthetic_recording(
        n_frames=16, height=40, width=40, n_channels=n_channels, seed=seed
    ).movie
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is not None and info.max < 60000:  # uint8 / int16: keep the values in range
        rec = rec * (0.9 * info.max / max(float(rec.max()), 1.0))
    return rec.astype(dtype)


def warm_up(*, workdir: str | Path | None = None, log: Callable[[str], None] = print) -> list[str]:
    """Run every kernel path once on tiny recordings so numba compiles and caches it.

    Parameters
    ----------
    workdir : path, optional
        Where the tiny recordings and stores are written (a temporary folder by default,
        removed afterwards).
    log : callable
        Receives one progress line per step.

    Returns
    -------
    list of str
        The kernels compiled (empty when everything was already in the cache).
    """
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="flowreg_warmup_") as tmp:
            return warm_up(workdir=tmp, log=log)
    import tifffile

    from ..options import OFOptions, RegistrationConfig
    from ..pipeline.api import compensate_recording
    from ..pipeline.apply import apply_flow
    from ..pipeline.arrays import compensate_arr

    work = Path(workdir)
    config = RegistrationConfig(parallelization="sequential", progress=False)
    base = OFOptions(quality_setting="fast", buffer_size=8, reference_frames=list(range(8)))
    steps: list[tuple[str, Callable[[], object]]] = []

    def correct(name: str, movie: np.ndarray, **overrides) -> Path:
        src = work / f"{name}.tif"
        tifffile.imwrite(src, movie if movie.shape[-1] > 1 else movie[..., 0])
        options = base.copy(save_w=True, save_valid_idx=True, **overrides)
        out = work / f"{name}.zarr"
        compensate_recording(options, config, recording=src, output=out, overwrite=True)
        return out

    for k, dtype in enumerate(DTYPES):
        for nc in (1, 2):
            movie = _recording(dtype, nc, seed=k)
            steps.append(
                (f"{dtype}, {nc} channel(s)", lambda m=movie, n=f"{dtype}_{nc}": correct(n, m))
            )
    movie = _recording("uint16", 1, seed=7)
    for term in ("gray", "cs"):
        steps.append(
            (
                f"data term {term}",
                lambda t=term: correct(f"term_{t}", movie, constancy_assumption=t),
            )
        )
    steps.append(
        (
            "rigid initialisation, reference updates, quality preset",
            lambda: correct(
                "options",
                movie,
                cc_initialization=True,
                update_reference=True,
                quality_setting="quality",
            ),
        )
    )
    for dtype in ("uint16", "float32"):
        steps.append(
            (f"array API, {dtype}", lambda d=dtype: compensate_arr(_recording(d, 1, 3), None, base))
        )
        steps.append((f"live correction, {dtype}", lambda d=dtype: _live(_recording(d, 1, 4))))
    steps.append(
        (
            "apply stored flows",
            lambda: apply_flow(
                work / "uint16_1.zarr",
                work / "uint16_1.tif",
                output=work / "applied.zarr",
                overwrite=True,
                config=config,
            ),
        )
    )
    with CompileCounter() as counter:
        for name, step in steps:
            t0 = time.perf_counter()
            n0 = len(counter.compiled)
            step()
            log(
                f"  {name}: {len(counter.compiled) - n0} kernel(s) compiled, "
                f"{time.perf_counter() - t0:.1f} s"
            )
    return counter.compiled


def _live(movie: np.ndarray) -> None:
    from ..live import FlowRegLive

    live = FlowRegLive(quality_setting="fast", reference_update_interval=4)
    live.set_reference(movie[:4])
    live.register_frames(movie[4:])
