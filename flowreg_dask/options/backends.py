"""Named flow backends: the built-in solvers and the ones a user registers (pyflowreg's
``pyflowreg.core`` backend registry: ``register_backend``, ``get_backend``, ``list_backends``,
``is_backend_available``, ``get_backend_executors``).

A registered backend is a *factory*: called with ``OFOptions.backend_params`` it returns a flow
function ``f(fixed, moving, **flow_kwargs) -> (H, W, 2)`` (``flow_kwargs`` are
:meth:`OFOptions.to_dict`'s, plus ``uv=`` the initial flow when ``f`` takes it). Once registered,
its name is a valid ``OFOptions.flow_backend``. The built-in backends (``numba``, alias
``flowreg``; ``cupy``, alias ``flowreg_cuda``; ``numpy``) are solved by the library's own batched
engines; their factories here give the one-pair function, for use outside the pipeline.

Nothing is imported until a factory is called, so this module is cheap to import.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import BackendUnavailableError, InvalidOptionError
from ._vocab import FlowBackend, Parallelization, choice

__all__ = [
    "register_backend",
    "get_backend",
    "list_backends",
    "is_backend_available",
    "get_backend_executors",
    "is_custom_backend",
]

#: pyflowreg's executor names (``multiprocessing_fork`` / ``_spawn`` are multiprocessing here).
_ALL_EXECUTORS = frozenset(
    {
        "sequential",
        "threading",
        "multiprocessing",
        "multiprocessing_fork",
        "multiprocessing_spawn",
        "distributed",
    }
)

_lock = threading.Lock()
_custom: dict[str, tuple[Callable[..., Any], frozenset[str]]] = {}


def _builtin_factory(name: FlowBackend) -> Callable[..., Callable[..., Any]]:
    def factory(**backend_params: Any) -> Callable[..., Any]:
        solver = importlib.import_module("flowreg_dask.core.solver")
        if name is FlowBackend.NUMBA:
            if backend_params:
                raise InvalidOptionError(
                    f"backend_params={backend_params!r}: the numba backend takes no parameters"
                )
            return solver.get_displacement
        return solver.pair_function(name.value, **backend_params)

    factory.__name__ = f"{name.value}_factory"
    return factory


def register_backend(
    name: str,
    factory: Callable[..., Callable[..., Any]],
    supported_executors: Iterable[str] | None = None,
) -> None:
    """Register a flow backend under ``name`` (usable as ``OFOptions(flow_backend=name)``).

    Parameters
    ----------
    name : str
        New name (not a built-in backend's name or alias; re-registering a custom name replaces
        it).
    factory : callable
        ``factory(**backend_params)`` -> flow function ``f(fixed, moving, **flow_kwargs)``
        returning the (H, W, 2) flow of ``moving`` onto ``fixed``.
    supported_executors : iterable of str, optional
        Run modes it may run in (pyflowreg's names; None = all). Other modes fall back to
        ``sequential`` with a warning.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidOptionError(f"register_backend: name must be a non-empty string, got {name!r}")
    key = name.strip().lower()
    try:
        builtin = choice("flow_backend", key, FlowBackend)
    except ValueError:
        builtin = None
    if builtin is not None:
        raise InvalidOptionError(
            f"register_backend: {name!r} is the built-in backend {builtin.value!r}; choose "
            "another name"
        )
    if not callable(factory):
        raise InvalidOptionError(f"register_backend: factory must be callable, got {factory!r}")
    executors = _ALL_EXECUTORS if supported_executors is None else frozenset(supported_executors)
    unknown = sorted(executors - _ALL_EXECUTORS)
    if unknown:
        raise InvalidOptionError(
            f"register_backend: unknown executors {unknown}; known: {sorted(_ALL_EXECUTORS)}"
        )
    with _lock:
        _custom[key] = (factory, executors)


def is_custom_backend(name: Any) -> bool:
    """True when ``name`` is a registered (not built-in) backend."""
    return isinstance(name, str) and name.strip().lower() in _custom


def get_backend(name: str) -> Callable[..., Callable[..., Any]]:
    """The factory of backend ``name`` (built-in or registered).

    Raises
    ------
    InvalidOptionError
        Unknown name; the message lists the available backends.
    """
    if is_custom_backend(name):
        return _custom[name.strip().lower()][0]
    try:
        builtin = choice("flow_backend", name, FlowBackend)
    except ValueError:
        raise InvalidOptionError(
            f"flow backend {name!r} is not registered; available: {list_backends()}"
        ) from None
    return _builtin_factory(builtin)


def list_backends() -> list[str]:
    """Names of the built-in and registered backends."""
    return [b.value for b in FlowBackend] + sorted(_custom)


def is_backend_available(name: str) -> bool:
    """True when backend ``name`` exists and can run here (``cupy``: CuPy and a CUDA device)."""
    if is_custom_backend(name):
        return True
    try:
        builtin = choice("flow_backend", name, FlowBackend)
    except ValueError:
        return False
    if builtin is FlowBackend.CUPY:
        try:
            importlib.import_module("flowreg_dask.kernels.gpu.device").require_cupy()
        except (BackendUnavailableError, ImportError):
            return False
    return True


def get_backend_executors(name: str) -> set[str]:
    """Run modes backend ``name`` supports (pyflowreg's executor names)."""
    if is_custom_backend(name):
        return set(_custom[name.strip().lower()][1])
    get_backend(name)  # raises for an unknown name
    return set(_ALL_EXECUTORS)


def supports_mode(name: str, mode: str | Parallelization) -> bool:
    """Whether backend ``name`` may run in run mode ``mode``."""
    return str(mode) in get_backend_executors(name)
