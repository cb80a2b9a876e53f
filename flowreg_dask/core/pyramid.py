"""Coarse-to-fine pyramid plan (method spec §1.3)."""

from __future__ import annotations

import dataclasses


def warping_depth(eta: float, levels: int, size: int) -> int:
    """Number of levels until the side ``size`` shrinks below 10 px (that level included)."""
    if eta >= 1.0:
        return levels
    for k in range(1, levels + 1):
        if round(size * eta**k) < 10:
            return k
    return levels


@dataclasses.dataclass(frozen=True)
class Level:
    """One pyramid level: index ``i`` (0 = full resolution) and its size and grid spacings."""

    i: int
    height: int
    width: int
    hy: float
    hx: float


def pyramid_plan(
    height: int, width: int, *, eta: float, levels: int, min_level: int
) -> list[Level]:
    """Levels from coarsest to finest solved, per-axis depth capped at 4x the shallower axis."""
    depth_y = warping_depth(eta, levels, height)
    depth_x = warping_depth(eta, levels, width)
    cap = 4 * min(depth_x, depth_y)
    depth_y = min(depth_y, cap)
    depth_x = min(depth_x, cap)
    top = max(depth_x, depth_y)
    if top <= min_level:
        min_level = top - 1
    min_level = max(min_level, 0)
    plan = []
    for i in range(top, min_level - 1, -1):
        hh = max(1, round(height * eta ** min(i, depth_y)))
        ww = max(1, round(width * eta ** min(i, depth_x)))
        plan.append(Level(i=i, height=hh, width=ww, hy=height / hh, hx=width / ww))
    return plan
