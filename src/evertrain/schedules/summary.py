"""Key points of a schedule (for ``evertrain schedule show``) and sampling helpers."""

from __future__ import annotations

import math

import numpy as np

from evertrain.schedules.algebra import Join
from evertrain.schedules.base import Schedule
from evertrain.schedules.basic import PiecewiseLinear
from evertrain.schedules.phases import PhasedSchedule


def horizon(schedule: Schedule, default: float = 10_000.0) -> float:
    """Where to stop sampling: ``total``, else the last finite key point times 2, else default."""
    if schedule.total is not None and schedule.total > 0:
        return float(schedule.total)
    finite = [p for _, p in key_points(schedule) if math.isfinite(p) and p > 0]
    return 2.0 * max(finite) if finite else default


def key_points(schedule: Schedule) -> list[tuple[str, float]]:
    """Named progress points: start, end of warmup, start of decay, phase boundaries, end."""
    points: list[tuple[str, float]] = [("start", 0.0)]
    if isinstance(schedule, PhasedSchedule):
        for index, phase in enumerate(schedule.phases):
            if not math.isfinite(phase.end):
                continue
            if phase.v1 > phase.v0:
                points.append(("end of warmup" if index == 0 else "end of re-warm", phase.end))
            elif phase.v1 < phase.v0:
                points.append(("start of decay", phase.start))
                points.append(("end of decay", phase.end))
    elif isinstance(schedule, Join):
        for index, boundary in enumerate(schedule.boundaries):
            points.append((f"start of schedules[{index + 1}]", boundary))
    else:
        warmup = float(getattr(schedule, "warmup", 0.0) or 0.0)
        if warmup > 0:
            points.append(("end of warmup", warmup))
        decay_phase = getattr(schedule, "_decay_phase", None)  # the Power scheduler's anneal
        if decay_phase is not None:
            points.append(("start of decay", decay_phase.start))
    if schedule.total is not None:
        points.append(("end (total)", float(schedule.total)))
    # One row per position; coinciding names are joined ("end of decay / end (total)").
    labels: dict[float, list[str]] = {}
    for label, position in points:
        names = labels.setdefault(position, [])
        if label not in names:
            names.append(label)
    return [(" / ".join(labels[position]), position) for position in sorted(labels)]


def sample(schedule: Schedule, num_points: int, until: float | None = None) -> np.ndarray:
    """Progress grid over ``[0, until or horizon]``: every integer step when that fits."""
    end = horizon(schedule) if until is None else float(until)
    if schedule.unit == "steps" and end.is_integer() and end + 1 <= num_points:
        return np.arange(int(end) + 1, dtype=np.float64)
    return np.linspace(0.0, end, num_points)


def extremes(schedule: Schedule, until: float | None = None) -> tuple[float, float]:
    """(min, max) over a dense grid on ``[0, horizon]`` plus the key points."""
    grid = sample(schedule, 100_001, until)
    keys = np.asarray([p for _, p in key_points(schedule) if math.isfinite(p)])
    values = schedule(np.concatenate([grid, keys]))
    return float(values.min()), float(values.max())


def peak(schedule: Schedule, until: float | None = None) -> float:
    """The highest value ``schedule`` takes (or approaches) on ``[0, until]`` (default: its
    horizon), read from the schedule's own pieces rather than a grid.

    Exact for phased schedules (every phase moves monotonically from ``v0`` to ``v1``, so the
    maximum is a phase end or the value at ``until``), piecewise-linear knots and joins of them.
    A warmup that ends in a jump (``infinite`` with ``cooldown=0``) counts with the value it
    rises to, the peak it was configured for. Other schedules fall back to a dense grid plus
    their key points inside ``[0, until]``.
    """
    end = horizon(schedule) if until is None else float(until)
    candidates = [float(schedule(0.0)), float(schedule(end))]
    if isinstance(schedule, PhasedSchedule):
        for phase in schedule.phases:
            if phase.start <= end:
                candidates.append(phase.v0)
            if phase.end <= end:
                candidates.append(phase.v1)
    elif isinstance(schedule, PiecewiseLinear):
        candidates.extend(
            float(v) for t, v in zip(schedule.times, schedule.values, strict=True) if t <= end
        )
    elif isinstance(schedule, Join):
        starts = [0.0, *schedule.boundaries]
        stops = [*schedule.boundaries, math.inf]
        for child, start, stop in zip(schedule.children, starts, stops, strict=True):
            if start <= end:
                candidates.append(peak(child, min(stop, end) - start))
    else:
        keys = [p for _, p in key_points(schedule) if math.isfinite(p) and p <= end]
        grid = np.concatenate([sample(schedule, 100_001, end), keys])
        candidates.append(float(np.max(schedule(grid))))
    return max(candidates)
