"""Progress reporting in frames (console bar and pyflowreg-style callbacks) for every run mode."""

from __future__ import annotations

import sys
import threading
import time
import warnings
from collections.abc import Callable

from ..errors import FlowRegWarning


class FrameProgress:
    """Counts registered frames; drives a tqdm bar and ``callback(current, total)``.

    Callback exceptions are turned into warnings so a faulty callback never stops a run.
    """

    def __init__(
        self,
        total: int,
        *,
        initial: int = 0,
        show: bool = True,
        callbacks: list[Callable[[int, int], None]] | None = None,
        desc: str = "registering",
    ) -> None:
        self.total = total
        self.current = initial
        self.callbacks = list(callbacks or [])
        self._lock = threading.Lock()
        self._start = time.perf_counter()
        self._initial = initial
        self._show = show
        self._desc = desc
        self._bar = None
        if total > 0:
            self._open_bar()

    def _open_bar(self) -> None:
        if self._show and self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=self.total,
                initial=self.current,
                unit="frame",
                desc=self._desc,
                file=sys.stderr,
                dynamic_ncols=True,
            )

    def set_total(self, total: int) -> None:
        """Set the number of frames to expect (shows the bar if it was not shown yet)."""
        with self._lock:
            self.total = int(total)
            if self._bar is not None:
                self._bar.total = self.total
                self._bar.refresh()
            else:
                self._open_bar()

    def advance(self, n: int) -> None:
        """Report ``n`` more frames done."""
        with self._lock:
            self.current += n
            if self._bar is not None:
                self._bar.update(n)
            current = self.current
        for cb in self.callbacks:
            try:
                cb(current, self.total)
            except Exception as exc:  # a callback must never break the run
                warnings.warn(f"progress callback raised {exc!r}", FlowRegWarning, stacklevel=2)

    @property
    def frames_per_second(self) -> float:
        elapsed = time.perf_counter() - self._start
        return (self.current - self._initial) / elapsed if elapsed > 0 else 0.0

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def note_first_compile(show: bool) -> None:
    """Say so (one line on stderr) when the numba kernels are not compiled yet: the first run
    after installing spends tens of seconds compiling them before any progress shows."""
    if not show:
        return
    from ..kernels.cpu import cache_is_warm

    if cache_is_warm() is False:
        print(
            "flowreg-dask: compiling the numba kernels (first run after installing, about 15-30 s; "
            "later runs load them from the cache) ...",
            file=sys.stderr,
            flush=True,
        )
