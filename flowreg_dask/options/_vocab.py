"""Every choice an option can take, in one place: str enums, their aliases and the presets.

The options model, the flow engine, the exporters and the command line all derive their allowed
values from these enums, so they cannot disagree. The enums follow pyflowreg's (same class names,
member names and values, e.g. ``OutputFormat.HDF5 == "HDF5"``); each member *is* a ``str`` equal to
its value, parsing is case-insensitive, and the aliases below are accepted everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from difflib import get_close_matches
from enum import Enum
from types import MappingProxyType
from typing import Any, TypeVar

__all__ = [
    "Choice",
    "QualitySetting",
    "ConstancyAssumption",
    "ChannelNormalization",
    "InterpolationMethod",
    "NamingConvention",
    "OutputFormat",
    "OutputTypename",
    "FlowBackend",
    "NonfinitePolicy",
    "Parallelization",
    "QUALITY_PRESETS",
    "choice",
    "choices_text",
]


class Choice(str, Enum):
    """A ``str`` enum: members equal (and hash like) their values; parsing ignores case, ``-`` and
    spaces, and accepts the aliases of ``_aliases()``."""

    __hash__ = str.__hash__

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    @classmethod
    def _aliases(cls) -> Mapping[str, str]:
        return {}

    @classmethod
    def _key(cls, text: str) -> str:
        return text.strip().lower().replace("-", "_").replace(" ", "_")

    @classmethod
    def _missing_(cls, value: object) -> Choice | None:
        if not isinstance(value, str):
            return None
        key = cls._key(value)
        for name, member in cls.__members__.items():
            if cls._key(member.value) == key or name.lower() == key:
                return member
        target = cls._aliases().get(key)
        if target is not None:
            return cls(target)
        return None

    @classmethod
    def names(cls) -> list[str]:
        """The canonical values (aliases excluded), as written in option files."""
        return [m.value for m in cls]


class QualitySetting(Choice):
    """Speed/quality preset: the finest pyramid level solved (see :data:`QUALITY_PRESETS`)."""

    QUALITY = "quality"
    BALANCED = "balanced"
    FAST = "fast"
    CUSTOM = "custom"


class ConstancyAssumption(Choice):
    """Data term of the energy."""

    GC = "gc"
    GRAY = "gray"
    CS = "cs"
    GRADIENT = "gc"
    BRIGHTNESS = "gray"
    CENSUS = "cs"

    @classmethod
    def _aliases(cls) -> Mapping[str, str]:
        return {"gradient_constancy": "gc", "grey": "gray", "brightness_constancy": "gray"}


class ChannelNormalization(Choice):
    """Intensity normalisation before filtering: one range for all channels, or one each."""

    JOINT = "joint"
    SEPARATE = "separate"

    @classmethod
    def _aliases(cls) -> Mapping[str, str]:
        return {"together": "joint"}


class InterpolationMethod(Choice):
    """Interpolation of the final backward warp."""

    NEAREST = "nearest"
    LINEAR = "linear"
    CUBIC = "cubic"

    @classmethod
    def _aliases(cls) -> Mapping[str, str]:
        return {"bicubic": "cubic", "bilinear": "linear", "nearest_neighbor": "nearest"}


class NamingConvention(Choice):
    """Output file names: ``compensated.<FMT>`` or ``<input stem>_compensated.<FMT>``."""

    DEFAULT = "default"
    BATCH = "batch"


class OutputFormat(Choice):
    """Output format: the OME-Zarr store, an export made from it, in memory, or nothing."""

    ZARR = "ZARR"
    TIFF = "TIFF"
    HDF5 = "HDF5"
    MAT = "MAT"
    NPY = "NPY"
    MULTIFILE_TIFF = "MULTIFILE_TIFF"
    MULTIFILE_MAT = "MULTIFILE_MAT"
    MULTIFILE_HDF5 = "MULTIFILE_HDF5"
    CAIMAN_HDF5 = "CAIMAN_HDF5"
    SUITE2P = "SUITE2P"
    SUITE2P_TIFF = "SUITE2P_TIFF"
    BEGONIA = "BEGONIA"
    ARRAY = "ARRAY"
    NULL = "NULL"

    @classmethod
    def _aliases(cls) -> Mapping[str, str]:
        return {
            "ome_zarr": "ZARR",
            "h5": "HDF5",
            "hdf": "HDF5",
            "caiman": "CAIMAN_HDF5",
            "tif": "TIFF",
            "suite2p_binary": "SUITE2P",
            "suite2p_bin": "SUITE2P",
            "mat73": "MAT",
            "multifile_tif": "MULTIFILE_TIFF",
            "multifile_h5": "MULTIFILE_HDF5",
            "multifile_mat73": "MULTIFILE_MAT",
            "none": "NULL",
        }


class OutputTypename(Choice):
    """dtype of the corrected frames (MATLAB names ``single``/``double`` too)."""

    SINGLE = "single"
    DOUBLE = "double"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    UINT8 = "uint8"
    UINT16 = "uint16"
    INT16 = "int16"
    INT32 = "int32"


class FlowBackend(Choice):
    """Flow solver backend (``numpy`` runs the GPU code on the CPU, for tests)."""

    NUMBA = "numba"
    CUPY = "cupy"
    NUMPY = "numpy"

    @classmethod
    def _aliases(cls) -> Mapping[str, str]:
        return {"flowreg": "numba", "cpu": "numba", "flowreg_cuda": "cupy", "cuda": "cupy"}


class NonfinitePolicy(Choice):
    """NaN/Inf in a float recording: refuse it, or fill those pixels from the reference."""

    ERROR = "error"
    REFERENCE = "reference"


class Parallelization(Choice):
    """Run mode (mapped onto a dask scheduler)."""

    SEQUENTIAL = "sequential"
    THREADING = "threading"
    MULTIPROCESSING = "multiprocessing"
    DISTRIBUTED = "distributed"

    @classmethod
    def _aliases(cls) -> Mapping[str, str]:
        return {
            "synchronous": "sequential",
            "single_threaded": "sequential",
            "threads": "threading",
            "threaded": "threading",
            "processes": "multiprocessing",
            "multiprocessing_fork": "multiprocessing",  # pyflowreg's executor names
            "multiprocessing_spawn": "multiprocessing",
            "dask": "distributed",
        }


#: Finest pyramid level of each quality preset (0 = full resolution); "custom" uses ``min_level``.
QUALITY_PRESETS: Mapping[str, int] = MappingProxyType(
    {QualitySetting.QUALITY: 0, QualitySetting.BALANCED: 4, QualitySetting.FAST: 6}
)

E = TypeVar("E", bound=Choice)


def choices_text(enum: type[Choice]) -> str:
    """``'a', 'b', 'c' (aliases: 'x'->'a')``: the allowed values of ``enum`` for messages."""
    text = ", ".join(repr(v) for v in enum.names())
    aliases = dict(enum._aliases())
    aliases.update(
        {m.lower(): v.value for m, v in enum.__members__.items() if m.lower() != v.value.lower()}
    )
    if aliases:
        text += " (aliases: " + ", ".join(f"{a!r}->{b!r}" for a, b in aliases.items()) + ")"
    return text


def choice(field: str, value: Any, enum: type[E]) -> E:
    """``value`` as a member of ``enum`` (case-insensitive, aliases), or a ValueError naming
    ``field``, the value, the allowed values and the closest match."""
    if isinstance(value, enum):
        return value
    if isinstance(value, Enum):
        value = value.value
    try:
        return enum(value)
    except ValueError:
        pass
    hint = ""
    if isinstance(value, str):
        pool = [v.lower() for v in enum.names()] + list(enum._aliases())
        close = get_close_matches(value.strip().lower(), pool, n=1)
        if close:
            hint = f" Did you mean {close[0]!r}?"
    raise ValueError(
        f"{field}={value!r} is invalid: expected one of {choices_text(enum)}, case-insensitive. "
        f"Fix: pass one of the allowed values.{hint}"
    )
