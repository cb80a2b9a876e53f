"""Algorithm options (:class:`OFOptions`) and runtime settings (:class:`RegistrationConfig`).

:class:`OFOptions` holds every parameter of the Flow-Registration method and is stored with every
output; :class:`RegistrationConfig` holds the runtime settings (run mode, workers, scheduler,
progress) that never change the result. Every choice an option can take is a str enum of
:mod:`._vocab`, shared with the engine, the exporters and the command line.
"""

from __future__ import annotations

from ._serialize import loads_toml
from ._validate import OptionsValidationError, StrictModel
from ._vocab import (
    QUALITY_PRESETS,
    ChannelNormalization,
    Choice,
    ConstancyAssumption,
    FlowBackend,
    InterpolationMethod,
    NamingConvention,
    NonfinitePolicy,
    OutputFormat,
    OutputTypename,
    Parallelization,
    QualitySetting,
    choice,
)
from .backends import (
    get_backend,
    get_backend_executors,
    is_backend_available,
    list_backends,
    register_backend,
)
from .config import RegistrationConfig
from .model import (
    DEFAULT_BUFFER_SIZE,
    OFOptions,
    channel_weights,
    get_mcp_schema,
    load_preset,
    options_table,
)

#: Alias of :data:`QUALITY_PRESETS`.
presets = QUALITY_PRESETS

__all__ = [
    "OFOptions",
    "RegistrationConfig",
    "QUALITY_PRESETS",
    "DEFAULT_BUFFER_SIZE",
    "presets",
    "load_preset",
    "channel_weights",
    "options_table",
    "Choice",
    "choice",
    "QualitySetting",
    "ConstancyAssumption",
    "ChannelNormalization",
    "InterpolationMethod",
    "NonfinitePolicy",
    "FlowBackend",
    "OutputFormat",
    "OutputTypename",
    "NamingConvention",
    "Parallelization",
    "OptionsValidationError",
    "get_mcp_schema",
    "StrictModel",
    "loads_toml",
    "register_backend",
    "get_backend",
    "list_backends",
    "is_backend_available",
    "get_backend_executors",
]
