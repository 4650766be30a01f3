"""The piecewise engine behind most schedules: a list of phases evaluated by ``math`` or numpy.

A :class:`Phase` spans ``[start, end)`` and moves from ``v0`` to ``v1`` with a named shape
(see :mod:`evertrain.schedules.shapes`). Progress before the first phase evaluates to the first
phase's ``v0`` (negative progress is clamped to the start); progress at or past the last phase's
end evaluates to its ``v1`` (schedules hold their final value). Phase boundaries are exact:
``s(start) == v0`` for every phase, so ``s(warmup) == peak`` bit for bit.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from evertrain.schedules.base import Schedule
from evertrain.schedules.shapes import (
    LERP,
    falling_weight,
    falling_weight_np,
    rising_weight,
    rising_weight_np,
)


class Phase(NamedTuple):
    start: float
    end: float  # may be math.inf for an open-ended constant phase
    v0: float
    v1: float
    shape: str = "linear"
    power: float = 1.0


def evaluate_phase(phase: Phase, t: float) -> float:
    """Value of ``phase`` at ``start <= t < end`` (scalar path)."""
    start, end, v0, v1, shape, power = phase
    if t == start or v0 == v1:
        return v0
    length = end - start
    x = (t - start) / length
    u = (end - t) / length
    if shape == "exponential":
        return v0**u * v1**x
    if shape == LERP:
        return (v1 - v0) * x + v0
    if v1 < v0:
        return v1 + (v0 - v1) * falling_weight(shape, x, u, power)
    return v0 + (v1 - v0) * rising_weight(shape, x, u, power)


def evaluate_phase_np(phase: Phase, t: np.ndarray) -> np.ndarray:
    """Value of ``phase`` at an array of ``start <= t < end`` (vector path)."""
    start, end, v0, v1, shape, power = phase
    if v0 == v1:
        return np.full(t.shape, v0)
    length = end - start
    x = (t - start) / length
    u = (end - t) / length
    if shape == "exponential":
        out = v0**u * v1**x
    elif shape == LERP:
        out = (v1 - v0) * x + v0
    elif v1 < v0:
        out = v1 + (v0 - v1) * falling_weight_np(shape, x, u, power)
    else:
        out = v0 + (v1 - v0) * rising_weight_np(shape, x, u, power)
    out[t == start] = v0
    return out


def evaluate_phase_xp(phase: Phase, t: Any, xp: Any) -> Any:
    """Value of ``phase`` at an array ``t`` with array module ``xp`` (traceable: no masks).

    ``t`` is clamped into the phase first, so the formula never sees a point outside its domain
    (``sqrt`` of a negative, ``inf - inf``); the caller selects the phase's points with ``where``.
    """
    start, end, v0, v1, shape, power = phase
    if v0 == v1:
        return xp.zeros_like(t) + v0
    t = xp.clip(t, start, end)
    length = end - start
    x = (t - start) / length
    u = (end - t) / length
    if shape == "exponential":
        out = v0**u * v1**x
    elif shape == LERP:
        out = (v1 - v0) * x + v0
    elif v1 < v0:
        out = v1 + (v0 - v1) * falling_weight(shape, x, u, power, xp)
    else:
        out = v0 + (v1 - v0) * rising_weight(shape, x, u, power, xp)
    return xp.where(t == start, v0, out)


def drop_empty(phases: list[Phase]) -> list[Phase]:
    """Remove zero-length phases (``warmup=0``, ``decay=0``) so they never own a point."""
    kept = [phase for phase in phases if phase.end > phase.start]
    return kept or phases[-1:]


class PhasedSchedule(Schedule):
    """A schedule made of consecutive phases; subclasses fill ``self.phases`` in ``__init__``."""

    phases: list[Phase]

    def _scalar(self, t: float) -> float:
        phases = self.phases
        if t <= phases[0].start:
            return phases[0].v0
        for phase in phases:
            if t < phase.end:
                return evaluate_phase(phase, t)
        return phases[-1].v1

    def _vector(self, t: np.ndarray) -> np.ndarray:
        if t.ndim == 1 and t.size > 256 and bool((t[1:] >= t[:-1]).all()):
            return self._vector_sorted(t)
        phases = self.phases
        out = np.full(t.shape, phases[-1].v1, dtype=np.float64)
        first = phases[0]
        out[t <= first.start] = first.v0
        # One boolean mask per phase: the loop is over a handful of phases, never over points.
        for phase in phases:
            lower = t > phase.start if phase is first else t >= phase.start
            mask = lower & (t < phase.end)
            if mask.any():
                out[mask] = evaluate_phase_np(phase, t[mask])
        return out

    def evaluate_xp(self, t: Any, xp: Any) -> Any:
        phases = self.phases
        first = phases[0]
        out = xp.where(t <= first.start, first.v0, phases[-1].v1)
        for phase in phases:
            lower = t > phase.start if phase is first else t >= phase.start
            inside = lower & (t < phase.end)
            out = xp.where(inside, evaluate_phase_xp(phase, t, xp), out)
        return out

    def _vector_sorted(self, t: np.ndarray) -> np.ndarray:
        """Sorted progress (plots, simulations, ``np.arange``): each phase is a contiguous slice,
        found by binary search, so no boolean masks or fancy-index copies are needed."""
        phases = self.phases
        first = phases[0]
        out = np.empty(t.shape, dtype=np.float64)
        before = int(np.searchsorted(t, first.start, side="right"))
        out[:before] = first.v0
        for phase in phases:
            lo = before if phase is first else int(np.searchsorted(t, phase.start, side="left"))
            hi = int(np.searchsorted(t, phase.end, side="left"))
            if hi > lo:
                out[lo:hi] = evaluate_phase_np(phase, t[lo:hi])
        after = max(before, int(np.searchsorted(t, phases[-1].end, side="left")))
        out[after:] = phases[-1].v1
        return out
