"""The classic families: constant, linear, cosine, warmup-stable-decay, piecewise linear.

Every family takes an optional warmup (``warmup`` length, ``warmup_shape``, ``warmup_start``)
and holds its final value past ``total``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from evertrain.schedules import validation as check
from evertrain.schedules.base import Schedule, ScheduleError
from evertrain.schedules.phases import Phase, PhasedSchedule, drop_empty
from evertrain.schedules.registry import register
from evertrain.schedules.shapes import DECAY_SHAPES, GEOMETRIC_SHAPES
from evertrain.schedules.warmup import Warmup, warmup_params


def spec_of(params: dict[str, Any]) -> dict[str, Any]:
    """JSON-able spec: drop ``None``; whole floats become ints (``total: 24000``)."""
    spec: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, float):
            value = check.clean_number(value)
        spec[key] = value
    return spec


def warmed_horizon(schedule: str, params: dict[str, Any]) -> tuple[float, float, float, Warmup]:
    """``peak``, ``floor``, ``total`` and the warmup of a schedule that warms up to ``peak`` and
    ends at ``floor`` at ``total``, all checked (``floor <= peak``, the warmup fits in total)."""
    peak, floor = check.peak_and_floor(schedule, params["peak"], params["floor"])
    total = check.positive(schedule, "total", params["total"])
    warm = warmup_params(schedule, {**params, "floor": floor})  # warmup_start="floor" reads it
    check.warmup_fits(schedule, warm.length, total)
    return peak, floor, total, warm


def check_geometric(schedule: str, shape: str, floor: float) -> None:
    if shape in GEOMETRIC_SHAPES and floor <= 0:
        raise ScheduleError(
            f"{schedule}: decay_shape={shape!r} interpolates geometrically "
            f"(peak^((T-t)/(T-D)) * floor^((t-D)/(T-D))) and needs floor > 0: "
            "set floor > 0 or use decay_shape='linear'"
        )


@register
class Constant(PhasedSchedule):
    """A constant value, optionally after a warmup (HF ``constant_with_warmup``).

    ``lr(t) = value`` for ``t >= warmup``; the warmup rises from ``warmup_start`` to ``value``.
    ``total`` is optional metadata (``None`` = open-ended).
    Reference: gradual warmup from Goyal et al. 2017 ("Accurate, Large Minibatch SGD");
    HF ``get_constant_schedule_with_warmup``.
    """

    name = "constant"

    def __init__(
        self,
        value: float,
        *,
        total: float | None = None,
        warmup: float = 0,
        warmup_shape: str = "linear",
        warmup_start: float = 0.0,
        unit: str = "steps",
    ) -> None:
        s = self.name
        value = check.learning_rate(s, "value", value)
        warm = warmup_params(s, locals())
        if total is not None:
            total = check.non_negative(s, "total", total)
            check.warmup_fits(s, warm.length, total)
        self.total = total
        self.unit = check.unit(s, unit)
        self.phases = drop_empty(
            [warm.phase(s, value), Phase(warm.length, math.inf, value, value, "linear")]
        )
        self._spec = spec_of(dict(value=value, total=total, **warm.spec(), unit=self.unit))


class WarmupDecay(PhasedSchedule):
    """Warmup to ``peak`` then one decay phase (``decay_shape``) to ``floor`` at ``total``: the base
    of linear, cosine, polynomial, rex and cosine_power."""

    decay_shape = "linear"

    def __init__(
        self,
        peak: float,
        total: float,
        *,
        warmup: float = 0,
        floor: float = 0.0,
        warmup_shape: str = "linear",
        warmup_start: float = 0.0,
        unit: str = "steps",
    ) -> None:
        s = self.name
        peak, floor, total, warm = warmed_horizon(s, locals())
        self.total = total
        self.unit = check.unit(s, unit)
        self.phases = drop_empty(
            [warm.phase(s, peak), Phase(warm.length, total, peak, floor, self.decay_shape)]
        )
        self._spec = spec_of(
            dict(
                peak=peak,
                total=total,
                warmup=warm.length,
                floor=floor,
                warmup_shape=warm.shape,
                warmup_start=warm.start,
                unit=self.unit,
            )
        )


@register
class Linear(WarmupDecay):
    """Warmup, then linear decay to ``floor`` at ``total`` (HF ``get_linear_schedule_with_warmup``).

    ``lr(t) = floor + (peak - floor) * (total - t) / (total - warmup)`` for ``warmup <= t < total``;
    ``floor`` after. Reference: Goyal et al. 2017; Devlin et al. 2019 (BERT).
    """

    name = "linear"
    decay_shape = "linear"


@register
class Cosine(WarmupDecay):
    """Warmup, then half-cosine decay to ``floor`` at ``total`` (HF ``cosine_with_min_lr``).

    ``lr(t) = floor + (peak - floor) * (1 + cos(pi * (t - warmup) / (total - warmup))) / 2``
    for ``warmup <= t < total``; ``floor`` after. Reference: Loshchilov & Hutter 2017, "SGDR:
    Stochastic Gradient Descent with Warm Restarts" (a single cycle, no restart).
    """

    name = "cosine"
    decay_shape = "cosine"


@register
class WSD(PhasedSchedule):
    """Warmup-stable-decay (trapezoidal): warmup to ``peak``, hold, decay to ``floor`` at ``total``.

    With decay start ``D = total - decay`` (``decay = decay_fraction * total`` when given as a
    fraction; default ``decay_fraction=0.2``)::

        lr(t) = warmup phase                     0 <= t < warmup
              = peak                             warmup <= t < D
              = floor + (peak - floor) * w(x)    D <= t < total,  x = (t - D) / decay
              = floor                            t >= total

    ``w`` per ``decay_shape``: linear ``1 - x``; cosine ``(1 + cos(pi x)) / 2``; 1-sqrt
    ``1 - sqrt(x)``; power ``(1 - x)**decay_power``; exp2 ``2 * 0.5**x - 1`` (megatron-core's
    ``exponential``); exponential is geometric, ``peak**(1-x) * floor**x`` (needs ``floor > 0``).

    References: Zhai et al. 2022 (ViT scaling, "rsqrt + cooldown"); Hu et al. 2024 (MiniCPM, WSD);
    Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed Training
    Durations" (1-sqrt cooldown).
    """

    name = "wsd"

    def __init__(
        self,
        peak: float,
        total: float,
        *,
        warmup: float = 0,
        decay: float | None = None,
        decay_fraction: float | None = None,
        decay_shape: str = "linear",
        floor: float = 0.0,
        warmup_shape: str = "linear",
        warmup_start: float = 0.0,
        decay_power: float = 2.0,
        unit: str = "steps",
    ) -> None:
        s = self.name
        peak, floor, total, warm = warmed_horizon(s, locals())
        warmup = warm.length
        decay_shape = check.choice(s, "decay_shape", decay_shape, DECAY_SHAPES)
        check_geometric(s, decay_shape, floor)
        decay_power = check.positive(s, "decay_power", decay_power)
        decay_length = check.length_or_fraction(
            s, "decay", decay, decay_fraction, total, default=0.2 * total
        )
        if warmup + decay_length > total * (1 + 1e-12):
            raise ScheduleError(
                f"{s}: warmup={check.clean_number(warmup)} + decay="
                f"{check.clean_number(decay_length)} runs past total={check.clean_number(total)}:"
                " shorten the decay or the warmup so that warmup + decay <= total"
            )
        self.total = total
        self.unit = check.unit(s, unit)
        self.peak, self.floor = peak, floor
        self.warmup = warmup
        self.decay_length = decay_length
        self.decay_start = max(total - decay_length, warmup)
        self.phases = drop_empty(
            [
                warm.phase(s, peak),
                Phase(warmup, self.decay_start, peak, peak, "linear"),
                Phase(self.decay_start, total, peak, floor, decay_shape, decay_power),
            ]
        )
        self._spec = spec_of(
            dict(
                peak=peak,
                total=total,
                warmup=warmup,
                decay=None if decay is None else decay_length,
                decay_fraction=None if decay_fraction is None else float(decay_fraction),
                decay_shape=decay_shape,
                floor=floor,
                warmup_shape=warm.shape,
                warmup_start=warm.start,
                decay_power=decay_power if decay_shape in ("power", "cosine_power") else None,
                unit=self.unit,
            )
        )


@register
class PiecewiseLinear(Schedule):
    """Linear interpolation through ``points=[[t0, v0], [t1, v1], ...]``, constant outside.

    ``lr(t) = v_i + (v_{i+1} - v_i) * (t - t_i) / (t_{i+1} - t_i)`` for ``t_i <= t <= t_{i+1}``;
    ``v0`` before ``t0`` and the last value after the last point (``numpy.interp`` semantics).
    ``total`` is the last point's progress. Times must be non-decreasing (a repeated time makes a
    jump: the later point wins from that time on).
    Reference: optax ``piecewise_interpolate_schedule`` / Keras ``PiecewiseConstantDecay`` (the
    linear version), the usual way to write a hand-drawn schedule.
    """

    name = "piecewise_linear"

    def __init__(self, points: list[list[float]], *, unit: str = "steps") -> None:
        s = self.name
        if isinstance(points, str):
            raise ScheduleError(f"{s}: points must be a list of [progress, value] pairs")
        try:
            pairs = [tuple(point) for point in points]
        except TypeError:
            raise ScheduleError(
                f"{s}: points must be a list of [progress, value] pairs, got {points!r}"
            ) from None
        if not pairs:
            raise ScheduleError(f"{s}: points is empty: give at least one [progress, value] pair")
        times, values = [], []
        for index, pair in enumerate(pairs):
            if len(pair) != 2:
                raise ScheduleError(
                    f"{s}: points[{index}]={list(pair)!r} must be a [progress, value] pair"
                )
            times.append(check.as_number(s, f"points[{index}][0]", pair[0]))
            values.append(check.learning_rate(s, f"points[{index}][1]", pair[1]))
        for index in range(1, len(times)):
            if times[index] < times[index - 1]:
                raise ScheduleError(
                    f"{s}: points[{index}] progress {times[index]} is before points[{index - 1}] "
                    f"progress {times[index - 1]}: sort the points by progress"
                )
        self.times = np.asarray(times, dtype=np.float64)
        self.values = np.asarray(values, dtype=np.float64)
        self._times, self._values = times, values
        self.total = times[-1]
        self.unit = check.unit(s, unit)
        self._spec = {
            "points": [[check.clean_number(t), v] for t, v in zip(times, values, strict=True)],
            "unit": self.unit,
        }

    def _scalar(self, t: float) -> float:
        times, values = self._times, self._values
        if t < times[0]:
            return values[0]
        if t >= times[-1]:
            return values[-1]
        # Few points: a linear scan beats bisect's overhead; fall back to numpy when many.
        if len(times) > 16:
            return self._vector_scalar(t)
        for index in range(1, len(times)):
            if t < times[index]:
                t0, t1 = times[index - 1], times[index]
                v0, v1 = values[index - 1], values[index]
                return v0 + (v1 - v0) * (t - t0) / (t1 - t0)
        return values[-1]

    def _vector_scalar(self, t: float) -> float:
        return float(np.interp(t, self.times, self.values))

    def _vector(self, t: np.ndarray) -> np.ndarray:
        return np.interp(t, self.times, self.values)

    def evaluate_xp(self, t: Any, xp: Any) -> Any:
        return xp.interp(t, xp.asarray(self.times), xp.asarray(self.values))

    def with_total(self, total: float) -> Schedule:
        raise ScheduleError(
            "piecewise_linear: its horizon is its last point; use stretch() to rescale it"
        )
