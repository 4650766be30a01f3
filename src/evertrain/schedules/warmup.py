"""Warmup phases shared by every family: linear, cosine, exponential, 1-sqrt, power.

Linear warmup (Goyal et al. 2017, "Accurate, Large Minibatch SGD"):
``lr(t) = warmup_start + (peak - warmup_start) * t / warmup`` for ``0 <= t < warmup``, so
``lr(0) = warmup_start`` (default 0) and ``lr(warmup) = peak`` exactly. Cosine warmup uses
``(1 - cos(pi t / warmup)) / 2``; exponential warmup interpolates geometrically,
``warmup_start**(1 - t/warmup) * peak**(t/warmup)`` (needs ``warmup_start > 0``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from evertrain.schedules import validation as check
from evertrain.schedules.base import ScheduleError
from evertrain.schedules.phases import Phase
from evertrain.schedules.shapes import WARMUP_SHAPES


def warmup_phase(
    schedule: str,
    *,
    warmup: float,
    peak: float,
    warmup_shape: str,
    warmup_start: float,
    warmup_power: float = 2.0,
) -> Phase:
    """The phase ``[0, warmup)`` rising from ``warmup_start`` to ``peak`` (validated)."""
    check.choice(schedule, "warmup_shape", warmup_shape, WARMUP_SHAPES)
    if warmup > 0:
        check.not_above(schedule, "warmup_start", warmup_start, "peak", peak)
    if warmup_shape == "exponential" and warmup > 0 and warmup_start <= 0:
        raise ScheduleError(
            f"{schedule}: warmup_shape='exponential' interpolates geometrically and needs "
            f"warmup_start > 0 (got {warmup_start}): set e.g. warmup_start={peak * 1e-3:g}"
        )
    return Phase(0.0, warmup, warmup_start, peak, warmup_shape, warmup_power)


class Warmup(NamedTuple):
    """A schedule's validated warmup fields (unpacks as ``warmup, warmup_shape, warmup_start``)."""

    length: float
    shape: str
    start: float

    def phase(self, schedule: str, peak: float) -> Phase:
        """The phase ``[0, length)`` rising from ``start`` to ``peak``."""
        return warmup_phase(
            schedule,
            warmup=self.length,
            peak=peak,
            warmup_shape=self.shape,
            warmup_start=self.start,
        )

    def spec(self) -> dict[str, Any]:
        """The fields as a spec writes them."""
        return {"warmup": self.length, "warmup_shape": self.shape, "warmup_start": self.start}


def warmup_params(schedule: str, params: dict[str, Any]) -> Warmup:
    """Validate and coerce the shared ``warmup``, ``warmup_shape``, ``warmup_start`` fields.

    ``warmup_start`` is a number, or ``"floor"`` to start the warmup from the schedule's floor.
    """
    warmup = check.non_negative(schedule, "warmup", params["warmup"])
    shape = check.choice(schedule, "warmup_shape", params["warmup_shape"], WARMUP_SHAPES)
    start = params["warmup_start"]
    if start == "floor":
        # "Warm up from the floor" (as HF get_wsd_schedule does): resolved to the number.
        if params.get("floor") is None:
            raise ScheduleError(
                f"{schedule}: warmup_start='floor' but this schedule has no floor: give a number"
            )
        start = params["floor"]
    start = check.learning_rate(schedule, "warmup_start", start)
    return Warmup(warmup, shape, start)
