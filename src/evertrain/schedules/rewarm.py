"""Re-warming for continual pre-training: continue from where a previous schedule left off."""

from __future__ import annotations

from typing import Any

from evertrain.schedules import validation as check
from evertrain.schedules.algebra import Join
from evertrain.schedules.base import Schedule, ScheduleError
from evertrain.schedules.basic import check_geometric, spec_of
from evertrain.schedules.phases import Phase, PhasedSchedule, drop_empty
from evertrain.schedules.registry import from_spec, register
from evertrain.schedules.shapes import DECAY_SHAPES, WARMUP_SHAPES


@register
class Rewarm(PhasedSchedule):
    """A new stage that starts from the previous schedule's LR (Gupta et al. 2023, "Continual
    Pre-Training of Large Language Models: How to (re)warm your model?"; Ibrahim et al. 2024).

    In the stage's local time ``t`` (0 = where the previous stage stopped)::

        lr(t) = start -> peak over [0, warmup)          (warmup_shape)
              = peak on [warmup, total - decay)
              = peak -> floor over [total - decay, total) (decay_shape)

    ``start`` is given, or is ``previous(at)`` for a previous schedule (a spec) stopped at
    ``at`` (default: its ``total``). ``decay`` defaults to the whole post-warmup span
    (``total - warmup``), i.e. re-warm then decay, as in the papers; give ``decay`` or
    ``decay_fraction`` for a WSD-shaped stage. Use :func:`evertrain.schedules.rewarm` to get
    the whole history (previous then this stage) in global time.
    """

    name = "rewarm"

    def __init__(
        self, peak: float, total: float, *, previous: Any = None, at: float | None = None,
        start: float | None = None, warmup: float = 0, warmup_shape: str = "linear",
        decay: float | None = None, decay_fraction: float | None = None,
        decay_shape: str = "cosine", floor: float = 0.0, unit: str | None = None,
    ) -> None:  # fmt: skip
        s = self.name
        peak, floor = check.peak_and_floor(s, peak, floor)
        total = check.positive(s, "total", total)
        warmup = check.non_negative(s, "warmup", warmup)
        check.warmup_fits(s, warmup, total)
        warmup_shape = check.choice(s, "warmup_shape", warmup_shape, WARMUP_SHAPES)
        decay_shape = check.choice(s, "decay_shape", decay_shape, DECAY_SHAPES)
        check_geometric(s, decay_shape, floor)
        previous_schedule = None
        if start is not None:
            if previous is not None:
                raise ScheduleError(f"{s}: give either start or previous (+ at), not both")
            start_value = check.learning_rate(s, "start", start)
        elif previous is not None:
            try:
                previous_schedule = from_spec(previous)
            except ScheduleError as error:
                raise ScheduleError(f"{s}: previous: {error}") from None
            if at is None:
                if previous_schedule.total is None:
                    raise ScheduleError(
                        f"{s}: previous schedule is open-ended: give at (where it stopped)"
                    )
                at = previous_schedule.total
            at = check.non_negative(s, "at", at)
            start_value = previous_schedule(float(at))
            if unit is None:
                unit = previous_schedule.unit
        else:
            raise ScheduleError(f"{s}: give start (an LR) or previous (a schedule spec) + at")
        if warmup_shape == "exponential" and warmup > 0 and start_value <= 0:
            raise ScheduleError(f"{s}: warmup_shape='exponential' needs a start LR > 0")
        decay_length = check.length_or_fraction(
            s, "decay", decay, decay_fraction, total, default=total - warmup
        )
        if warmup + decay_length > total * (1 + 1e-12):
            raise ScheduleError(
                f"{s}: warmup + decay = {check.clean_number(warmup + decay_length)} runs past "
                f"total={check.clean_number(total)}: shorten the decay or the warmup"
            )
        decay_start = max(total - decay_length, warmup)
        self.start_value = start_value
        self.phases = drop_empty(
            [
                Phase(0.0, warmup, start_value, peak, warmup_shape),
                Phase(warmup, decay_start, peak, peak),
                Phase(decay_start, total, peak, floor, decay_shape),
            ]
        )
        self.total = total
        self.unit = check.unit(s, "steps" if unit is None else unit)
        self._spec = spec_of(dict(
            peak=peak, total=total,
            previous=None if previous_schedule is None else previous_schedule.to_spec(),
            at=at if previous_schedule is not None else None,
            start=None if previous_schedule is not None else start_value,
            warmup=warmup, warmup_shape=warmup_shape, decay=decay,
            decay_fraction=decay_fraction, decay_shape=decay_shape, floor=floor, unit=self.unit,
        ))  # fmt: skip


def rewarm(previous: Any, *, at: float | None = None, **stage: Any) -> Schedule:
    """The whole history: ``previous`` until ``at``, then a :class:`Rewarm` stage from its LR.

    ``rewarm("cosine:peak=3e-4,total=1000", at=1000, peak=1e-4, warmup=100, total=500)`` is a
    join whose second child starts from ``previous(at)`` (0 here) and re-warms to ``1e-4``.
    """
    previous_schedule = from_spec(previous)
    if at is None:
        at = previous_schedule.total
        if at is None:
            raise ScheduleError("rewarm: previous schedule is open-ended: give at")
    stage_schedule = Rewarm(previous=previous_schedule, at=at, **stage)
    return Join([previous_schedule, stage_schedule], [at])
