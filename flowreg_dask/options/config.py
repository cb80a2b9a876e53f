"""Runtime settings of a run (:class:`RegistrationConfig`): they never change the result."""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field, field_validator, model_validator

from ._validate import StrictModel, _as_bool, _as_int, _invalid
from ._vocab import Parallelization, choice


class RegistrationConfig(StrictModel):
    """Runtime settings of a registration run (they do not change the result).

    Parameters
    ----------
    n_jobs : int
        Worker count; -1 = all cores.
    parallelization : {None, "sequential", "threading", "multiprocessing", "distributed"}
        Execution mode; None = automatic ("threading", or "distributed" when a scheduler address is
        given).
    scheduler_address : str, optional
        Address of a running dask.distributed scheduler (only with "distributed").
    verbose : bool
        True prints more information (unlike pyflowreg, where False was the chatty mode).
    progress : bool
        Show a progress bar.
    chunk_memory : int
        Working-memory budget of one time chunk in bytes (default 64 MiB); caps the chunk
        length below ``buffer_size`` for large frames.

    Examples
    --------
    >>> RegistrationConfig(scheduler_address="tcp://127.0.0.1:8786").resolved_parallelization()
    'distributed'
    """

    n_jobs: int = Field(
        default=-1, description="Number of workers/threads; -1 = all CPU cores, otherwise >= 1."
    )
    parallelization: Parallelization | None = Field(
        default=None,
        description=(
            "Execution mode: 'sequential', 'threading', 'multiprocessing' or 'distributed'; None "
            "= automatic ('threading', or 'distributed' when scheduler_address is set)."
        ),
    )
    scheduler_address: str | None = Field(
        default=None,
        description=(
            "Address of a dask.distributed scheduler, e.g. 'tcp://10.0.0.1:8786' (distributed only)"
        ),
    )
    verbose: bool = Field(default=False, description="Print more information (True = more output).")
    progress: bool = Field(default=True, description="Show a progress bar.")
    chunk_memory: int = Field(
        default=64 * 2**20,
        ge=16 * 2**20,
        description=(
            "Bytes of working memory one time chunk may use while it is registered (raw, "
            "pre-processed and corrected frames, flows, masks). Chunks are buffer_size frames long "
            "unless that would exceed this budget; then they are shortened, so peak memory stays "
            "about n_jobs x chunk_memory whatever the recording's length and frame size."
        ),
    )

    @field_validator("n_jobs", mode="before")
    @classmethod
    def _v_n_jobs(cls, value: Any) -> int:
        fix = "pass -1 (all cores) or a positive number of workers"
        out = _as_int("n_jobs", value, low=-1, fix=fix, what="-1 or an integer")
        if out == 0:
            raise _invalid("n_jobs", value, "-1 or an integer >= 1", fix)
        return out

    @field_validator("parallelization", mode="before")
    @classmethod
    def _v_parallelization(cls, value: Any) -> Parallelization | None:
        if value is None or (
            isinstance(value, str) and value.strip().lower() in ("auto", "none", "")
        ):
            return None
        return choice("parallelization", value, Parallelization)

    @field_validator("scheduler_address", mode="before")
    @classmethod
    def _v_address(cls, value: Any) -> str | None:
        if value is None:
            return None
        if (
            not isinstance(value, str)
            or not value.strip()
            or any(c.isspace() for c in value.strip())
        ):
            raise _invalid(
                "scheduler_address",
                value,
                "None or an address string such as 'tcp://127.0.0.1:8786'",
                "pass the address printed by the dask scheduler",
            )
        return value.strip()

    @field_validator("verbose", "progress", mode="before")
    @classmethod
    def _v_flags(cls, value: Any, info: Any) -> bool:
        return _as_bool(info.field_name, value)

    @model_validator(mode="after")
    def _check_address(self) -> RegistrationConfig:
        if self.scheduler_address is not None and self.parallelization not in (None, "distributed"):
            raise ValueError(
                f"scheduler_address={self.scheduler_address!r} is invalid with "
                f"parallelization={self.parallelization!r}: a scheduler address needs "
                "'distributed'. Fix: set parallelization='distributed' (or None), or "
                "scheduler_address=None."
            )
        return self

    def resolved_n_jobs(self) -> int:
        """Number of workers: ``n_jobs``, or ``os.cpu_count()`` for -1."""
        if self.n_jobs == -1:
            return os.cpu_count() or 1
        return self.n_jobs

    def resolved_parallelization(self) -> str:
        """Execution mode with None resolved ("distributed" with an address, else "threading")."""
        if self.parallelization is not None:
            return self.parallelization
        return "distributed" if self.scheduler_address is not None else "threading"
