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
from evertrain.schedules.basic import WSD
from evertrain.schedules.registry import from_spec, register
from evertrain.schedules.shapes import DECAY_SHAPES


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

    def evaluate_xp(self, t: Any, xp: Any) -> Any:
        out = self.children[0].evaluate_xp(t, xp)
        for boundary, child in zip(self.boundaries, self.children[1:], strict=True):
            out = xp.where(t >= boundary, child.evaluate_xp(t - boundary, xp), out)
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


@register
class Scale(Schedule):
    """``lr(t) = factor * schedule(t)`` (``factor >= 0``): e.g. per-param-group multipliers."""

    name = "scale"

    def __init__(self, schedule: Any, factor: float) -> None:
        self.child = _child(self.name, "schedule", schedule)
        self.factor = check.non_negative(self.name, "factor", factor)
        self.total, self.unit = self.child.total, self.child.unit
        self._spec = {"schedule": self.child.to_spec(), "factor": check.clean_number(self.factor)}

    def _scalar(self, t: float) -> float:
        return self.factor * self.child._scalar(t)

    def _vector(self, t: np.ndarray) -> np.ndarray:
        return self.factor * self.child._vector(t)

    def evaluate_xp(self, t: Any, xp: Any) -> Any:
        return self.factor * self.child.evaluate_xp(t, xp)

    def with_total(self, total: float) -> Schedule:
        return Scale(self.child.with_total(total), self.factor)


def _warmup_of(schedule: Schedule) -> float:
    return float(getattr(schedule, "warmup", 0.0) or schedule.to_spec().get("warmup", 0) or 0)


@register
class Stretch(Schedule):
    """Change the horizon by ``factor`` (Composer's ``scale_schedule_ratio``).

    ``lr(t) = schedule(t / factor)``; with ``keep_warmup=True`` the warmup ``[0, W)`` is kept
    and only the rest is stretched: ``lr(t) = schedule(W + (t - W) / factor)`` for ``t >= W``.
    The new ``total`` is ``factor * total`` (``W + factor * (total - W)`` with the warmup kept).
    """

    name = "stretch"

    def __init__(self, schedule: Any, factor: float, *, keep_warmup: bool = False) -> None:
        s = self.name
        self.child = _child(s, "schedule", schedule)
        self.factor = check.positive(s, "factor", factor)
        if not isinstance(keep_warmup, bool):
            raise ScheduleError(f"{s}: keep_warmup={keep_warmup!r} must be true or false")
        self.keep_warmup = keep_warmup
        self.warmup = _warmup_of(self.child) if keep_warmup else 0.0
        total = self.child.total
        self.total = None if total is None else self.warmup + (total - self.warmup) * self.factor
        self.unit = self.child.unit
        self._spec = {
            "schedule": self.child.to_spec(),
            "factor": check.clean_number(self.factor),
            "keep_warmup": keep_warmup,
        }

    def with_total(self, total: float) -> Schedule:
        """Re-plan the child so that the stretched schedule ends at ``total``."""
        child_total = self.warmup + (total - self.warmup) / self.factor
        return Stretch(
            self.child.with_total(child_total), self.factor, keep_warmup=self.keep_warmup
        )

    def _scalar(self, t: float) -> float:
        w = self.warmup
        return self.child._scalar(t if t < w else w + (t - w) / self.factor)

    def _vector(self, t: np.ndarray) -> np.ndarray:
        w = self.warmup
        return self.child._vector(np.where(t < w, t, w + (t - w) / self.factor))

    def evaluate_xp(self, t: Any, xp: Any) -> Any:
        w = self.warmup
        return self.child.evaluate_xp(xp.where(t < w, t, w + (t - w) / self.factor), xp)


@register
class Clip(Schedule):
    """``lr(t) = min(high, max(low, schedule(t)))`` with ``0 <= low <= high``."""

    name = "clip"

    def __init__(self, schedule: Any, *, low: float = 0.0, high: float | None = None) -> None:
        s = self.name
        self.child = _child(s, "schedule", schedule)
        self.low = check.learning_rate(s, "low", low)
        self.high = None if high is None else check.learning_rate(s, "high", high)
        if self.high is not None and self.high < self.low:
            raise ScheduleError(f"{s}: high={self.high} is below low={self.low}: set low <= high")
        self.total, self.unit = self.child.total, self.child.unit
        self._spec = {"schedule": self.child.to_spec(), "low": check.clean_number(self.low)}
        if self.high is not None:
            self._spec["high"] = check.clean_number(self.high)
        self._high = np.inf if self.high is None else self.high

    def _scalar(self, t: float) -> float:
        value = self.child._scalar(t)
        return min(self._high, value if value > self.low else self.low)

    def _vector(self, t: np.ndarray) -> np.ndarray:
        return np.clip(self.child._vector(t), self.low, self._high)

    def evaluate_xp(self, t: Any, xp: Any) -> Any:
        return xp.clip(self.child.evaluate_xp(t, xp), self.low, self._high)

    def with_total(self, total: float) -> Schedule:
        return Clip(self.child.with_total(total), low=self.low, high=self.high)


def scale(schedule: Any, factor: float) -> Schedule:
    """``factor * schedule`` (see :class:`Scale`)."""
    return Scale(schedule, factor)


def stretch(schedule: Any, factor: float, *, keep_warmup: bool = False) -> Schedule:
    """Stretch the horizon by ``factor``, optionally keeping the warmup (see :class:`Stretch`)."""
    return Stretch(schedule, factor, keep_warmup=keep_warmup)


def clip(schedule: Any, *, low: float = 0.0, high: float | None = None) -> Schedule:
    """Clamp values to ``[low, high]`` (see :class:`Clip`)."""
    return Clip(schedule, low=low, high=high)


def extend(schedule: Any, total: float, *, at: float | None = None) -> Schedule:
    """Continue ``schedule`` to a new horizon ``total`` without a jump.

    Without ``at``: the same schedule re-planned for ``total`` (``with_total``: WSD keeps its
    decay length and moves it to the new end; infinite moves its anneal) -- what a resumed run
    with a new budget wants while the decay has not started.

    With ``at`` (the progress reached so far): if re-planning leaves ``[0, at]`` unchanged it is
    returned; otherwise (the decay or anneal had already begun, or the schedule has no notion
    of a horizon) the result is ``schedule`` up to ``at``, then a decay from the value reached,
    ``schedule(at)``, to the original final value at ``total``, so ``lr`` is continuous at ``at``.
    """
    base = from_spec(schedule)
    total = check.positive("extend", "total", total)
    if at is None:
        return base.with_total(total)
    at = check.non_negative("extend", "at", at)
    if at >= total:
        raise ScheduleError(f"extend: at={at} must be before the new total={total}")
    try:
        replanned = base.with_total(total)
    except ScheduleError:
        replanned = None
    if replanned is not None:
        grid = np.linspace(0.0, at, 2049)
        if np.array_equal(replanned(grid), base(grid)) and replanned(at) == base(at):
            return replanned
    current = base(at)
    final = base(base.total) if base.total is not None else current
    final = min(final, current)
    # Keep the family's own decay shape (a cosine continues as a cosine) when it has one.
    shape = base.to_spec().get("decay_shape") or getattr(base, "decay_shape", None) or "linear"
    if shape not in DECAY_SHAPES:
        shape = "linear"
    if shape == "exponential" and final <= 0:
        shape = "linear"
    tail = WSD(
        current, total - at, decay=total - at, decay_shape=shape, floor=final, unit=base.unit
    )
    return Join([base, tail], [at])
