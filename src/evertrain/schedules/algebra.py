"""Schedule algebra: ``join``, ``scale``, ``stretch``, ``clip``, ``extend``.

Composites are schedules too: they serialise to specs whose children are specs, so
``from_spec(join([...]).to_spec())`` rebuilds the whole tree.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

import numpy as np

from evertrain.schedules import validation as check
from evertrain.schedules.base import Schedule, ScheduleError
from evertrain.schedules.registry import from_spec, register


def _child(schedule: str, field: str, value: Any) -> Schedule:
    try:
        return from_spec(value)
    except ScheduleError as error:
        raise ScheduleError(f"{schedule}: {field}: {error}") from None


@register
class Join(Schedule):
    """Run ``schedules[0]`` until ``boundaries[0]``, then ``schedules[1]``, ... .

    Each child sees local time: ``lr(t) = schedules[i](t - b_{i-1})`` for
    ``b_{i-1} <= t < b_i`` (``b_{-1} = 0``). ``total`` is ``b_last + schedules[-1].total``
    (``None`` if the last child is open-ended). As optax's ``join_schedules``.
    """

    name = "join"

    def __init__(
        self, schedules: list[Any], boundaries: list[float], *, unit: str | None = None
    ) -> None:
        s = self.name
        if isinstance(schedules, (str, dict)) or not schedules:
            raise ScheduleError(f"{s}: schedules must be a non-empty list of schedules or specs")
        children = [_child(s, f"schedules[{i}]", child) for i, child in enumerate(schedules)]
        bounds = [
            check.non_negative(s, f"boundaries[{i}]", b) for i, b in enumerate(list(boundaries))
        ]
        if len(bounds) != len(children) - 1:
            raise ScheduleError(
                f"{s}: {len(children)} schedules need {len(children) - 1} boundaries, "
                f"got {len(bounds)}"
            )
        for i in range(1, len(bounds)):
            if bounds[i] <= bounds[i - 1]:
                raise ScheduleError(
                    f"{s}: boundaries must increase: boundaries[{i}]={bounds[i]} <= "
                    f"boundaries[{i - 1}]={bounds[i - 1]}"
                )
        units = {child.unit for child in children}
        if len(units) > 1:
            raise ScheduleError(
                f"{s}: children mix units {sorted(units)}: give every child the same unit"
            )
        child_unit = units.pop()
        if unit is not None and check.unit(s, unit) != child_unit:
            raise ScheduleError(f"{s}: unit={unit!r} but the children use unit={child_unit!r}")
        self.children = children
        self.boundaries = bounds
        self._offsets = [0.0, *bounds]
        self.unit = child_unit
        last = children[-1].total
        self.total = None if last is None else (bounds[-1] if bounds else 0.0) + last
        self._spec = {
            "schedules": [child.to_spec() for child in children],
            "boundaries": [check.clean_number(b) for b in bounds],
        }

    def _scalar(self, t: float) -> float:
        index = bisect_right(self.boundaries, t)
        return self.children[index]._scalar(t - self._offsets[index])

    def _vector(self, t: np.ndarray) -> np.ndarray:
        index = np.searchsorted(np.asarray(self.boundaries), t, side="right")
        out = np.empty(t.shape, dtype=np.float64)
        for i, child in enumerate(self.children):
            mask = index == i
            if mask.any():
                out[mask] = child._vector(t[mask] - self._offsets[i])
        return out

    def with_total(self, total: float) -> Schedule:
        """Re-plan the last child so that the whole join ends at ``total``."""
        start = self.boundaries[-1] if self.boundaries else 0.0
        if total <= start:
            raise ScheduleError(f"join: total={total} must be after the last boundary {start}")
        children = [*self.children[:-1], self.children[-1].with_total(total - start)]
        return Join(children, self.boundaries)


def join(schedules: list[Any], boundaries: list[float]) -> Schedule:
    """Sequence ``schedules`` at ``boundaries``; each child sees local time (see :class:`Join`)."""
    return Join(schedules, boundaries)
