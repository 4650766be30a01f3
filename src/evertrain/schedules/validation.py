"""Parameter validation shared by every schedule: errors name the field, the value and the fix."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from typing import Any

from evertrain.schedules.base import UNITS, ScheduleError


def as_number(schedule: str, field: str, value: Any) -> float:
    """Coerce ``value`` to a finite float (YAML reads ``3e-4`` as a string: strings are parsed)."""
    if isinstance(value, bool) or value is None:
        raise ScheduleError(f"{schedule}: {field}={value!r} is not a number: give a number")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ScheduleError(
                f"{schedule}: {field}={value!r} is not a number: give a number"
            ) from None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ScheduleError(
            f"{schedule}: {field}={value!r} is not a number: give a number"
        ) from None
    if not math.isfinite(number):
        raise ScheduleError(f"{schedule}: {field}={value!r} must be finite")
    return number


def clean_number(number: float) -> int | float:
    """Whole numbers as ``int`` (keeps specs readable: ``total: 24000`` not ``24000.0``)."""
    if float(number).is_integer() and abs(number) < 2**53:
        return int(number)
    return float(number)


def non_negative(schedule: str, field: str, value: Any, hint: str = "") -> float:
    number = as_number(schedule, field, value)
    if number < 0:
        extra = f" ({hint})" if hint else ""
        raise ScheduleError(f"{schedule}: {field}={value!r} must be >= 0{extra}")
    return number


def positive(schedule: str, field: str, value: Any) -> float:
    number = as_number(schedule, field, value)
    if number <= 0:
        raise ScheduleError(f"{schedule}: {field}={value!r} must be > 0")
    return number


def learning_rate(schedule: str, field: str, value: Any) -> float:
    """A value of the schedule (peak, floor, ...): finite and >= 0."""
    return non_negative(schedule, field, value, hint="a learning rate cannot be negative")


def in_range(
    schedule: str, field: str, value: Any, low: float, high: float, *, low_open: bool = False
) -> float:
    number = as_number(schedule, field, value)
    below = number <= low if low_open else number < low
    if below or number > high:
        bracket = "(" if low_open else "["
        raise ScheduleError(f"{schedule}: {field}={value!r} must be in {bracket}{low}, {high}]")
    return number


def choice(schedule: str, field: str, value: Any, options: Iterable[str]) -> str:
    options = list(options)
    if value not in options:
        close = difflib.get_close_matches(str(value), options, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ScheduleError(
            f"{schedule}: unknown {field}={value!r}{hint}; known: {', '.join(options)}"
        )
    return value


def unit(schedule: str, value: Any) -> str:
    return choice(schedule, "unit", value, UNITS)


def warmup_fits(schedule: str, warmup: float, total: float) -> None:
    if warmup > total:
        raise ScheduleError(
            f"{schedule}: warmup={clean_number(warmup)} is longer than "
            f"total={clean_number(total)}: set warmup <= total"
        )


def not_above(schedule: str, field: str, value: float, limit_field: str, limit: float) -> None:
    """``value <= limit`` or a ScheduleError such as "floor=0.5 is above peak=0.1"."""
    if value > limit:
        raise ScheduleError(
            f"{schedule}: {field}={clean_number(value)} is above {limit_field}="
            f"{clean_number(limit)}: set {field} <= {limit_field}"
        )


def peak_and_floor(
    schedule: str, peak: Any, floor: Any, *, peak_field: str = "peak"
) -> tuple[float, float]:
    """A schedule's top and bottom learning rates, checked: both >= 0 and ``floor <= peak``."""
    top = learning_rate(schedule, peak_field, peak)
    bottom = learning_rate(schedule, "floor", floor)
    not_above(schedule, "floor", bottom, peak_field, top)
    return top, bottom


def length_or_fraction(
    schedule: str,
    field: str,
    length: Any,
    fraction: Any,
    span: float,
    *,
    default: float,
    of: str = "total",
) -> float:
    """The length of a phase given as ``field`` (a length) or ``field_fraction`` (of ``span``).

    Never both; neither gives ``default`` (a length). WSD's ``decay`` / ``decay_fraction``, WSDC's
    ``constant`` / ``constant_fraction`` and the re-warm stage's decay all read this way.
    """
    if length is not None and fraction is not None:
        raise ScheduleError(
            f"{schedule}: give either {field} (a length) or {field}_fraction (of {of}), not both"
        )
    if length is not None:
        return non_negative(schedule, field, length)
    if fraction is None:
        return default
    return in_range(schedule, f"{field}_fraction", fraction, 0.0, 1.0) * span
