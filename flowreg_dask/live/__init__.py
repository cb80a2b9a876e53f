"""Live (online) motion correction, frame by frame: :class:`FlowRegLive`."""

from ._corrector import FlowRegLive

__all__ = ["FlowRegLive"]
