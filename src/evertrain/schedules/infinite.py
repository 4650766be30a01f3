"""The infinite learning-rate schedule: no horizon needed until you decide to stop."""

from __future__ import annotations

import math

from evertrain.schedules import validation as check
from evertrain.schedules.base import Schedule, ScheduleError
from evertrain.schedules.basic import spec_of
from evertrain.schedules.phases import Phase, PhasedSchedule, drop_empty
from evertrain.schedules.registry import from_spec, register
from evertrain.schedules.shapes import DECAY_SHAPES
from evertrain.schedules.warmup import warmup_params

COOLDOWN_SHAPES = ("linear", "cosine", "inverse_sqrt")


@register
class Infinite(PhasedSchedule):
    """Infinite schedule (Ibrahim et al. 2024, "Simple and Scalable Strategies to Continually
    Pre-train Large Language Models", sec. 7.2; Singh et al. 2025):

    ===================  ==========================  ==========================================
    phase                progress                    value
    ===================  ==========================  ==========================================
    warmup               ``[0, W)``                  ``warmup_start -> peak``
    cooldown             ``[W, W + C)``              ``peak -> constant`` (linear, cosine or
                                                     inverse_sqrt shape)
    constant             ``[W + C, total - A)``      ``constant`` -- as long as needed
    anneal (optional)    ``[total - A, total)``      ``constant -> floor`` (default geometric,
                                                     ``constant**(1-x) * floor**x``)
    ===================  ==========================  ==========================================

    With ``anneal=0`` (or no ``total``) the schedule is open-ended: it stays at ``constant``
    forever, so any checkpoint of the constant phase can be continued or annealed later.
    ``with_total`` / :func:`evertrain.schedules.extend` move the anneal without any jump as
    long as it has not started.
    """

    name = "infinite"

    def __init__(
        self, peak: float, constant: float, *, warmup: float = 0, cooldown: float = 0,
        cooldown_shape: str = "cosine", total: float | None = None, anneal: float = 0,
        anneal_shape: str = "exponential", floor: float = 0.0, warmup_shape: str = "linear",
        warmup_start: float = 0.0, cooldown_power: float = 99.0, unit: str = "steps",
    ) -> None:  # fmt: skip
        s = self.name
        peak = check.learning_rate(s, "peak", peak)
        constant, floor = check.peak_and_floor(s, constant, floor, peak_field="constant")
        check.not_above(s, "constant", constant, "peak", peak)
        warm = warmup_params(s, locals())
        warmup = warm.length
        cooldown = check.non_negative(s, "cooldown", cooldown)
        cooldown_shape = check.choice(s, "cooldown_shape", cooldown_shape, COOLDOWN_SHAPES)
        cooldown_power = check.positive(s, "cooldown_power", cooldown_power)
        anneal = check.non_negative(s, "anneal", anneal)
        anneal_shape = check.choice(s, "anneal_shape", anneal_shape, DECAY_SHAPES)
        phases = [
            warm.phase(s, peak),
            Phase(warmup, warmup + cooldown, peak, constant, cooldown_shape, cooldown_power),
        ]  # fmt: skip
        if total is not None:
            total = check.positive(s, "total", total)
            if warmup + cooldown + anneal > total:
                raise ScheduleError(
                    f"{s}: warmup + cooldown + anneal = "
                    f"{check.clean_number(warmup + cooldown + anneal)} runs past total="
                    f"{check.clean_number(total)}: shorten a phase or raise total"
                )
        elif anneal > 0:
            raise ScheduleError(f"{s}: anneal={anneal} needs total (where the anneal ends)")
        if anneal > 0:
            if anneal_shape == "exponential" and floor <= 0:
                raise ScheduleError(
                    f"{s}: anneal_shape='exponential' is geometric and needs floor > 0: "
                    "set floor > 0 or anneal_shape='linear'"
                )
            phases.append(Phase(warmup + cooldown, total - anneal, constant, constant))
            phases.append(Phase(total - anneal, total, constant, floor, anneal_shape))
        else:
            phases.append(Phase(warmup + cooldown, math.inf, constant, constant))
        self.phases = drop_empty(phases)
        self.total = total
        self.unit = check.unit(s, unit)
        self._spec = spec_of(dict(
            peak=peak, constant=constant, warmup=warmup, cooldown=cooldown,
            cooldown_shape=cooldown_shape, total=total, anneal=anneal,
            anneal_shape=anneal_shape if anneal > 0 else None,
            floor=floor if anneal > 0 else None, warmup_shape=warm.shape,
            warmup_start=warm.start,
            cooldown_power=cooldown_power if cooldown_shape == "inverse_sqrt" else None,
            unit=self.unit,
        ))  # fmt: skip

    def with_total(self, total: float) -> Schedule:
        return from_spec({**self.to_spec(), "total": total})
