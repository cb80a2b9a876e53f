"""A user's own flow function as the solver (pyflowreg's ``get_displacement_impl`` hook)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import InvalidInputError

__all__ = ["CallableEstimator"]


class CallableEstimator:
    """Flows of frames from ``fn(reference, moving, **flow_kwargs) -> (H, W, 2)``.

    Parameters
    ----------
    reference : ndarray
        (H, W, C) pre-processed reference.
    fn : callable
        The flow function; it gets the previous initial flow as ``uv=`` when it takes ``uv``
        (or ``**kwargs``), as pyflowreg passes it.
    flow_kwargs : mapping
        The options' flow keyword arguments (:meth:`flowreg_dask.OFOptions.to_dict`).
    """

    def __init__(self, reference: np.ndarray, fn: Callable[..., Any], flow_kwargs: Mapping) -> None:
        self.reference = np.asarray(reference)
        self.fn = fn
        self.kwargs = dict(flow_kwargs)
        try:
            params = inspect.signature(fn).parameters
            self._takes_uv = "uv" in params or any(
                p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
            )
        except (TypeError, ValueError):  # builtins without a signature
            self._takes_uv = True

    def flow(self, moving: np.ndarray, init: np.ndarray | None = None) -> np.ndarray:
        kwargs = dict(self.kwargs)
        if self._takes_uv:
            kwargs["uv"] = init
        out = np.asarray(self.fn(self.reference, moving, **kwargs), dtype=np.float32)
        h, w = self.reference.shape[:2]
        if out.shape != (h, w, 2):
            raise InvalidInputError(
                f"get_displacement_impl: {self.fn!r} returned shape {out.shape}; expected the "
                f"flow (H, W, 2) = {(h, w, 2)} of one frame"
            )
        return out

    def flows(self, frames: np.ndarray, init: np.ndarray | None = None) -> np.ndarray:
        """(T, H, W, 2) flows of (T, H, W, C) frames; ``init`` (H, W, 2) or (T, H, W, 2)."""
        out = np.empty(frames.shape[:3] + (2,), np.float32)
        for t in range(frames.shape[0]):
            it = None if init is None else (init[t] if np.ndim(init) == 4 else init)
            out[t] = self.flow(frames[t], it)
        return out
