"""The configuration of a multi-session alignment (:class:`SessionConfig`).

Field names and defaults follow pyflowreg's ``SessionConfig`` so its TOML/YAML files load. The
differences, all deliberate:

* **Unknown keys are an error** (pyflowreg ignores them): a misspelt ``alpha_betwen`` would
  otherwise silently run with the default. The message names the key and the closest field.
* Relative paths in a config file are relative to the file's folder (``root``), and
  ``output_root`` / ``final_results`` / a ``flow_options`` file are relative to ``root``.
* ``align_output_format`` defaults to ``"zarr"``: the aligned movies are always written as
  resumable OME-Zarr stores; any other format (``"TIFF"``, ``"HDF5"``, ...) is exported from
  them in addition.
* New fields for the dask side: ``parallelization``, ``scheduler_address``, ``cluster`` and
  ``parallel_recordings``; ``scheduler`` also takes ``"slurm"``, ``"pbs"``, ``"sge"`` and
  ``"lsf"`` (a dask-jobqueue cluster).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from ..errors import InvalidOptionError, RecordingNotFoundError
from ..options import OFOptions, OutputFormat, Parallelization, StrictModel, choice

__all__ = ["SessionConfig", "ROUTING_KEYS", "JOBQUEUE_SCHEDULERS"]

#: OFOptions fields a session sets itself; given in ``flow_options`` they are ignored (warning).
ROUTING_KEYS = (
    "input_file",
    "output_path",
    "output_file_name",
    "output_format",
    "naming_convention",
)
#: ``scheduler`` values that start a dask-jobqueue cluster.
JOBQUEUE_SCHEDULERS = ("slurm", "pbs", "sge", "lsf")
Scheduler = Literal["local", "array", "dask", "slurm", "pbs", "sge", "lsf"]


class SessionConfig(StrictModel):
    """Multi-session alignment: register several recordings of one field of view and align them.

    Stage 1 corrects every recording matching ``pattern`` under ``root`` (one store each), stage 2
    estimates the displacement of each recording's temporal average to the centre recording's,
    stage 3 warps every corrected recording into the centre's frame and combines the valid masks
    (see :mod:`flowreg_dask.session`). Every field is validated on construction and on
    assignment; unknown keys raise :class:`~flowreg_dask.errors.InvalidOptionError`.

    Examples
    --------
    >>> cfg = SessionConfig(root=".", pattern="*.tif", alpha_between=20)  # doctest: +SKIP
    >>> cfg = SessionConfig.from_file("session.toml")  # doctest: +SKIP
    """

    root: Path = Field(description="Folder holding the recordings (must exist).")
    pattern: str = Field(
        default="*.tif",
        description="Glob pattern of the recordings under root (sorted by name; '**' recurses).",
    )
    center: str | None = Field(
        default=None,
        description=(
            "Reference recording (file name relative to root, or its stem); None = the "
            "lexicographic middle, index (N + 1) // 2 - 1 (MATLAB's ceil(N / 2))."
        ),
    )
    output_root: Path = Field(
        default=Path("compensated_outputs"),
        description="Per-recording outputs (stage 1 and 2), relative to root unless absolute.",
    )
    final_results: Path = Field(
        default=Path("final_results"),
        description="Session outputs (stage 3), relative to root unless absolute.",
    )
    resume: bool = Field(
        default=True, description="Skip finished work and continue unfinished stores."
    )
    scheduler: Scheduler = Field(
        default="local",
        description=(
            "'local' (this machine, run mode from parallelization), 'array' (stage 1 of one "
            "recording per array-job task), 'dask' (a dask.distributed client: the active one, "
            "scheduler_address, or a LocalCluster of n_workers), or 'slurm' / 'pbs' / 'sge' / "
            "'lsf' (a dask-jobqueue cluster configured by cluster)."
        ),
    )
    flow_backend: str = Field(
        default="flowreg",
        description="Flow backend of stages 1 and 2 ('flowreg'/'numba' or 'cupy').",
    )
    backend_params: dict[str, Any] = Field(
        default_factory=dict, description="Extra keyword arguments of the flow backend."
    )
    flow_options: dict[str, Any] | Path | None = Field(
        default=None,
        description=(
            "OFOptions overrides for stage 1: a dict, or an options file (.json/.toml, relative "
            "to root). They win over stage1_quality_setting and flow_backend; input/output "
            "fields are ignored."
        ),
    )
    stage1_quality_setting: str | None = Field(
        default=None,
        description="Quality preset of stage 1 ('quality', 'balanced', 'fast'); None = default.",
    )
    n_workers: int = Field(
        default=-1, description="Workers of stage 1 and 3 (RegistrationConfig.n_jobs); -1 = all."
    )
    cc_upsample: int = Field(
        default=4, ge=1, description="Stage 2: sub-pixel upsampling of the rigid pre-alignment."
    )
    sigma_smooth: float = Field(
        default=6.0,
        ge=0.0,
        description="Stage 2: spatial Gaussian sigma (px) on each channel of the averages.",
    )
    alpha_between: float = Field(
        default=25.0, gt=0.0, description="Stage 2: smoothness weight alpha of the flow."
    )
    iterations_between: int = Field(
        default=100, ge=1, description="Stage 2: solver iterations per pyramid level."
    )
    stage2_constancy_assumption: Literal["gc", "gray", "cs"] = Field(
        default="gc", description="Stage 2: data term ('gc', 'gray' or 'cs')."
    )
    align_chunk_size: int = Field(
        default=64, ge=1, description="Stage 3: frames per task and time chunk of the outputs."
    )
    align_output_format: OutputFormat = Field(
        default=OutputFormat.ZARR,
        description=(
            "Stage 3: format of the aligned movies. 'zarr' (the stores only) or an export "
            "format ('tiff', 'hdf5', 'mat', ...) written next to the stores."
        ),
    )
    # ---- dask side (not in pyflowreg) -----------------------------------------------------------
    parallelization: Parallelization | None = Field(
        default=None,
        description=(
            "Run mode of each registration with scheduler='local': 'sequential', 'threading', "
            "'multiprocessing' or 'distributed'; None = threading."
        ),
    )
    scheduler_address: str | None = Field(
        default=None,
        description="Address of a running dask scheduler (scheduler='dask').",
    )
    cluster: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "dask-jobqueue cluster keyword arguments (cores, memory, walltime, queue, account, "
            "processes, job_extra_directives, ...) plus 'jobs', the number of jobs to start "
            "(default 1); defaults cores=4, memory='8GB', walltime='02:00:00'."
        ),
    )
    parallel_recordings: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Stage 1: recordings registered at the same time. None = automatic: all of them on "
            "a dask.distributed client (its workers bound what runs at once, and the chunks of "
            "all recordings fill them), else 1 (one after another, each spread over n_workers; "
            "memory stays that of n_workers chunks). More than 1 locally helps recordings with "
            "fewer time chunks than workers, at k times the memory."
        ),
    )

    # ---- validators ----------------------------------------------------------------------------
    @field_validator("root", mode="after")
    @classmethod
    def _v_root(cls, value: Path) -> Path:
        path = Path(value).expanduser()
        if not path.is_dir():
            what = "is not a folder" if path.exists() else "does not exist"
            raise ValueError(
                f"root={str(value)!r} {what}: expected the folder holding the recordings. Fix: "
                "set root to an existing folder (relative paths in a config file are relative "
                "to the file's folder)."
            )
        return path.absolute()

    @field_validator("flow_backend", mode="before")
    @classmethod
    def _v_backend(cls, value: Any) -> str:
        try:
            OFOptions(flow_backend=value)
        except InvalidOptionError as exc:
            raise ValueError(f"flow_backend={value!r}: {exc}") from None
        return str(value)

    @field_validator("stage1_quality_setting", mode="before")
    @classmethod
    def _v_quality(cls, value: Any) -> str | None:
        if value is None:
            return None
        choices = ("quality", "balanced", "fast", "custom")
        if not isinstance(value, str) or value.lower() not in choices:
            raise ValueError(
                f"stage1_quality_setting={value!r} is invalid: expected one of {choices} or None."
            )
        return value.lower()

    @field_validator("n_workers", mode="before")
    @classmethod
    def _v_workers(cls, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value == 0 or value < -1:
            raise ValueError(
                f"n_workers={value!r} is invalid: expected -1 (all cores) or an integer >= 1."
            )
        return value

    @field_validator("align_output_format", mode="before")
    @classmethod
    def _v_format(cls, value: Any) -> OutputFormat:
        fmt = choice("align_output_format", value, OutputFormat)
        from ..store.export import export_formats

        if fmt is not OutputFormat.ZARR and fmt.value.lower() not in export_formats():
            raise ValueError(
                f"align_output_format={value!r}: expected 'zarr' or one of the export formats "
                f"{', '.join(export_formats())}."
            )
        return fmt

    @field_validator("cluster", mode="after")
    @classmethod
    def _v_cluster(cls, value: dict[str, Any]) -> dict[str, Any]:
        jobs = value.get("jobs", 1)
        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise ValueError(f"cluster.jobs={jobs!r} is invalid: expected an integer >= 1.")
        return dict(value)

    # ---- derived paths -------------------------------------------------------------------------
    def _under_root(self, path: Path) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.root / p

    @property
    def output_dir(self) -> Path:
        """Absolute folder of the per-recording outputs."""
        return self._under_root(self.output_root)

    @property
    def final_dir(self) -> Path:
        """Absolute folder of the session outputs."""
        return self._under_root(self.final_results)

    # ---- stage-1 options -----------------------------------------------------------------------
    def flow_option_overrides(self) -> dict[str, Any]:
        """The ``flow_options`` as a dict of OFOptions fields (a file's non-default fields).

        Raises
        ------
        RecordingNotFoundError
            The options file does not exist.
        """
        fo = self.flow_options
        if fo is None:
            return {}
        if isinstance(fo, Mapping):
            return dict(fo)
        path = self._under_root(Path(fo))
        if not path.is_file():
            raise RecordingNotFoundError(
                f"flow_options={str(fo)!r}: no options file at {str(path)!r} (relative paths are "
                "relative to root). Fix: point flow_options to a .json/.toml written by "
                "OFOptions.save() or pyflowreg, or give the overrides as a table."
            )
        loaded = OFOptions.load(path).to_json_dict()
        defaults = OFOptions().to_json_dict()
        return {k: v for k, v in loaded.items() if v != defaults.get(k)}

    # ---- files ---------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base_dir: Path | None = None) -> SessionConfig:
        """Build a config from a dict; relative ``root`` is taken relative to ``base_dir``."""
        if not isinstance(data, Mapping):
            raise InvalidOptionError(
                f"SessionConfig.from_dict got {type(data).__name__}: expected a table of fields."
            )
        d = dict(data)
        if "root" in d and base_dir is not None and d["root"] is not None:
            root = Path(os.fspath(d["root"])).expanduser()
            d["root"] = root if root.is_absolute() else Path(base_dir) / root
        return cls(**d)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> SessionConfig:
        """Read a config from ``.toml``, ``.yaml``/``.yml`` (needs PyYAML) or ``.json``.

        The fields may sit at the top level or in a ``[session]`` table. A relative ``root`` is
        relative to the file's folder.

        Raises
        ------
        RecordingNotFoundError
            The file does not exist.
        InvalidOptionError
            Unknown suffix, unreadable content, unknown keys or invalid values.
        ImportError
            A YAML file and PyYAML is not installed.
        """
        p = Path(path).expanduser()
        if not p.is_file():
            raise RecordingNotFoundError(f"session config {str(p)!r} does not exist.")
        text = p.read_text(encoding="utf-8")
        suffix = p.suffix.lower()
        if suffix == ".toml":
            from ..options import loads_toml

            data: Any = loads_toml(text, source=str(p))
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ModuleNotFoundError as exc:
                raise ImportError(
                    f"{str(p)!r}: reading YAML needs the PyYAML package. Fix: pip install pyyaml, "
                    "or write the config as .toml or .json."
                ) from exc
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise InvalidOptionError(f"{str(p)!r}: invalid YAML ({exc}).") from exc
        elif suffix == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InvalidOptionError(f"{str(p)!r}: invalid JSON ({exc}).") from exc
        else:
            raise InvalidOptionError(
                f"session config {str(p)!r}: suffix {suffix!r} is not supported; expected .toml, "
                ".yaml, .yml or .json."
            )
        if isinstance(data, Mapping) and set(data) == {"session"}:
            data = data["session"]
        if not isinstance(data, Mapping):
            raise InvalidOptionError(
                f"{str(p)!r}: expected a table of SessionConfig fields, got {type(data).__name__}."
            )
        return cls.from_dict(data, base_dir=p.parent.absolute())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of all fields (paths as strings)."""
        return json.loads(self.model_dump_json())
