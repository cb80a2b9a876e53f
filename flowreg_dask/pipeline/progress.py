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
        self._bar = None
        if show:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total,
                initial=initial,
                unit="frame",
                desc=desc,
                file=sys.stderr,
                dynamic_ncols=True,
            )

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
