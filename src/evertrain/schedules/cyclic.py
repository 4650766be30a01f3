"""Cyclic schedules: SGDR (cosine with warm restarts), triangular cyclic LR, and WSD-S."""

from __future__ import annotations

import math

import numpy as np

from evertrain.schedules import validation as check
from evertrain.schedules.base import ScheduleError
from evertrain.schedules.basic import check_geometric, spec_of
from evertrain.schedules.phases import Phase, PhasedSchedule, drop_empty
from evertrain.schedules.registry import from_spec, register
from evertrain.schedules.shapes import DECAY_SHAPES
from evertrain.schedules.warmup import warmup_params
from evertrain.schedules.warmup_then import WarmupThen

SHAPES_WITH_POWER = ("power", "cosine_power", "inverse_sqrt")
SEGMENT_DECAY_FRACTION = 0.1  # wsd_s without decay or decay_fraction


@register
class SGDR(WarmupThen):
    """Cosine annealing with warm restarts (Loshchilov & Hutter 2017, "SGDR"), as
    ``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts``.

    Cycle ``i`` has length ``T_i = period * period_mult**i`` and starts at
    ``S_i = period * (period_mult**i - 1) / (period_mult - 1)`` (``i * period`` when
    ``period_mult == 1``). Inside it, with ``x = (t - warmup - S_i) / T_i``::

        lr(t) = floor + (peak * peak_decay**i - floor) * (1 + cos(pi x)) / 2

    ``peak_decay < 1`` shrinks each restart's peak (timm's ``cycle_decay``); the cycles start
    after the optional warmup.
    """

    name = "sgdr"

    def __init__(
        self, peak: float, period: float, *, period_mult: float = 1.0, peak_decay: float = 1.0,
        floor: float = 0.0, total: float | None = None, warmup: float = 0,
        warmup_shape: str = "linear", warmup_start: float = 0.0, unit: str = "steps",
    ) -> None:  # fmt: skip
        self._setup(locals())
        s = self.name
        self.period = check.positive(s, "period", period)
        self.period_mult = check.in_range(s, "period_mult", period_mult, 1.0, 1e6)
        self.peak_decay = check.in_range(s, "peak_decay", peak_decay, 0.0, 1.0, low_open=True)
        self._spec = self._spec_of(
            period=self.period, period_mult=self.period_mult, peak_decay=self.peak_decay
        )

    def _cycle_start(self, index: float) -> float:
        if self.period_mult == 1.0:
            return index * self.period
        return self.period * (self.period_mult**index - 1.0) / (self.period_mult - 1.0)

    def _main(self, t: float) -> float:
        local = t - self.warmup
        mult = self.period_mult
        if mult == 1.0:
            index = math.floor(local / self.period)
        else:
            index = math.floor(math.log(1.0 + local * (mult - 1.0) / self.period) / math.log(mult))
        # The closed form can land one cycle off at exact boundaries: correct it.
        if index > 0 and self._cycle_start(index) > local:
            index -= 1
        if (mult == 1.0 or index * math.log(mult) < 700) and self._cycle_start(index + 1) <= local:
            index += 1
        if mult != 1.0 and index * math.log(mult) > 700:
            return self.floor  # cycles longer than 1e300: mult**index would overflow
        start = self._cycle_start(index)
        length = self.period * mult**index
        top = self.peak * self.peak_decay**index
        if top <= self.floor:
            return self.floor
        return (
            self.floor + (top - self.floor) * (1 + math.cos(math.pi * (local - start) / length)) / 2
        )

    def _main_np(self, t: np.ndarray) -> np.ndarray:
        local = t - self.warmup
        mult = self.period_mult
        with np.errstate(over="ignore", invalid="ignore"):
            if mult == 1.0:
                index = np.floor(local / self.period)
            else:
                index = np.floor(np.log1p(local * (mult - 1.0) / self.period) / math.log(mult))
            index = np.where(np.isfinite(index), index, 0.0)
            index = index - ((index > 0) & (self._cycle_start_np(index) > local))
            index = index + (self._cycle_start_np(index + 1) <= local)
            start = self._cycle_start_np(index)
            length = self.period * mult**index
            top = self.peak * self.peak_decay**index
            wave = (1 + np.cos(np.pi * (local - start) / length)) / 2
            out = self.floor + (top - self.floor) * wave
        out = np.where(np.isfinite(out) & (top > self.floor), out, self.floor)
        return out

    def _cycle_start_np(self, index: np.ndarray) -> np.ndarray:
        if self.period_mult == 1.0:
            return index * self.period
        return self.period * (self.period_mult**index - 1.0) / (self.period_mult - 1.0)


@register
class Cyclic(WarmupThen):
    """Cyclical learning rates (Smith 2017, "Cyclical Learning Rates for Training Neural
    Networks"), as ``torch.optim.lr_scheduler.CyclicLR``.

    With cycle length ``C = step_up + step_down``, ``cycle = floor(1 + t / C)`` and
    ``x = 1 + t / C - cycle``: the height is ``x / r`` while ``x <= r`` (``r = step_up / C``)
    and ``(x - 1) / (r - 1)`` after, and::

        lr(t) = floor + (peak - floor) * height * scale

    ``mode``: ``triangular`` (scale 1), ``triangular2`` (scale ``1 / 2**(cycle - 1)``),
    ``exp_range`` (scale ``gamma**t``). Here ``floor`` is torch's ``base_lr`` and ``peak`` its
    ``max_lr``.
    """

    name = "cyclic"

    def __init__(
        self, peak: float, step_up: float, *, step_down: float | None = None,
        floor: float = 0.0, mode: str = "triangular", gamma: float = 1.0,
        total: float | None = None, unit: str = "steps",
    ) -> None:  # fmt: skip
        params = dict(locals(), warmup=0, warmup_shape="linear", warmup_start=0.0)
        self._setup(params)
        s = self.name
        self.step_up = check.positive(s, "step_up", step_up)
        self.step_down = (
            self.step_up if step_down is None else check.positive(s, "step_down", step_down)
        )
        self.mode = check.choice(s, "mode", mode, ("triangular", "triangular2", "exp_range"))
        self.gamma = check.in_range(s, "gamma", gamma, 0.0, 1.0, low_open=True)
        self._cycle = self.step_up + self.step_down
        self._ratio = self.step_up / self._cycle
        self._spec = spec_of(dict(
            peak=self.peak, step_up=self.step_up,
            step_down=None if step_down is None else self.step_down, floor=self.floor,
            mode=self.mode, gamma=self.gamma if self.mode == "exp_range" else None,
            total=self.total, unit=self.unit,
        ))  # fmt: skip

    def _main(self, t: float) -> float:
        cycle = math.floor(1 + t / self._cycle)
        x = 1.0 + t / self._cycle - cycle
        height = x / self._ratio if x <= self._ratio else (x - 1) / (self._ratio - 1)
        amplitude = (self.peak - self.floor) * height
        if self.mode == "triangular":
            scale = 1.0
        elif self.mode == "triangular2":
            scale = 1 / (2.0 ** (cycle - 1)) if cycle < 2000 else 0.0
        else:
            scale = self.gamma**t
        return self.floor + amplitude * scale

    def _main_np(self, t: np.ndarray) -> np.ndarray:
        cycle = np.floor(1 + t / self._cycle)
        x = 1.0 + t / self._cycle - cycle
        height = np.where(x <= self._ratio, x / self._ratio, (x - 1) / (self._ratio - 1))
        amplitude = (self.peak - self.floor) * height
        if self.mode == "triangular":
            scale = 1.0
        elif self.mode == "triangular2":
            with np.errstate(over="ignore"):
                scale = 1 / (2.0 ** (cycle - 1))
        else:
            scale = self.gamma**t
        return self.floor + amplitude * scale


@register
class WSDS(PhasedSchedule):
    """WSD-S (Wen et al. 2024, "Understanding Warmup-Stable-Decay Learning Rates: A River Valley
    Loss Landscape Perspective"): repeated decay branches; after each decay the run resumes
    from the decayed point at the peak LR (optionally re-warming over ``rewarm``).

    With decay ends ``c_1 < c_2 < ...`` (``checkpoints``, or every ``period`` up to ``total``)::

        warmup on [0, warmup); peak until c_i - decay; decay (decay_shape) to floor at c_i;
        from c_i: back to peak (linearly over rewarm, or at once when rewarm = 0); ...

    ``decay`` is a length, or ``decay_fraction`` of each segment ``c_i - c_{i-1}``. ``total`` is
    the last checkpoint; the value holds ``floor`` after it.
    """

    name = "wsd_s"

    def __init__(
        self, peak: float, *, checkpoints: list[float] | None = None,
        period: float | None = None, total: float | None = None, decay: float | None = None,
        decay_fraction: float | None = None, decay_shape: str = "linear", floor: float = 0.0,
        rewarm: float = 0, warmup: float = 0, warmup_shape: str = "linear",
        warmup_start: float = 0.0, decay_power: float = 2.0, unit: str = "steps",
    ) -> None:  # fmt: skip
        s = self.name
        peak, floor = check.peak_and_floor(s, peak, floor)
        warm = warmup_params(s, locals())
        warmup = warm.length
        decay_shape = check.choice(s, "decay_shape", decay_shape, DECAY_SHAPES)
        check_geometric(s, decay_shape, floor)
        decay_power = check.positive(s, "decay_power", decay_power)
        rewarm = check.non_negative(s, "rewarm", rewarm)
        if (checkpoints is None) == (period is None):
            raise ScheduleError(f"{s}: give exactly one of checkpoints (a list) or period")
        if period is not None:
            period = check.positive(s, "period", period)
            if total is None:
                raise ScheduleError(f"{s}: period={period} needs total (where the last decay ends)")
            total_value = check.positive(s, "total", total)
            count = int(math.floor(total_value / period + 1e-9))
            if count < 1:
                raise ScheduleError(f"{s}: period={period} is longer than total={total_value}")
            ends = [period * (i + 1) for i in range(count)]
        else:
            if isinstance(checkpoints, (str, int, float)) or not checkpoints:
                raise ScheduleError(f"{s}: checkpoints must be a non-empty list of progress values")
            ends = [check.positive(s, f"checkpoints[{i}]", c) for i, c in enumerate(checkpoints)]
            if any(b <= a for a, b in zip(ends, ends[1:], strict=False)):
                raise ScheduleError(f"{s}: checkpoints={ends} must be strictly increasing")
            if total is not None:
                raise ScheduleError(f"{s}: total is the last checkpoint; drop total or use period")
        phases = [warm.phase(s, peak)]
        segment_start = warmup
        previous_end = 0.0
        for i, end in enumerate(ends):
            span = end - previous_end
            length = check.length_or_fraction(
                s, "decay", decay, decay_fraction, span,
                default=SEGMENT_DECAY_FRACTION * span, of="each segment",
            )  # fmt: skip
            decay_start = end - length
            if decay_start < segment_start:
                raise ScheduleError(
                    f"{s}: the decay ending at checkpoint {check.clean_number(end)} would start "
                    f"at {check.clean_number(decay_start)}, before its segment starts at "
                    f"{check.clean_number(segment_start)} (warmup or rewarm): shorten the decay"
                )
            phases.append(Phase(segment_start, decay_start, peak, peak))
            phases.append(Phase(decay_start, end, peak, floor, decay_shape, decay_power))
            if i + 1 < len(ends):
                phases.append(Phase(end, end + rewarm, floor, peak, "linear"))
                if rewarm > 0 and end + rewarm > ends[i + 1]:
                    raise ScheduleError(f"{s}: rewarm={rewarm} is longer than a segment")
                segment_start = end + rewarm
            previous_end = end
        if decay is None and decay_fraction is None:
            decay_fraction = SEGMENT_DECAY_FRACTION  # the default, written into the spec
        self.phases = drop_empty(phases)
        self.checkpoints = ends
        self.total = ends[-1]
        self.unit = check.unit(s, unit)
        self._spec = spec_of(dict(
            peak=peak,
            checkpoints=None if checkpoints is None else [check.clean_number(e) for e in ends],
            period=period, total=None if period is None else self.total,
            decay=decay, decay_fraction=decay_fraction, decay_shape=decay_shape, floor=floor,
            rewarm=rewarm, **warm.spec(),
            decay_power=decay_power if decay_shape in SHAPES_WITH_POWER else None,
            unit=self.unit,
        ))  # fmt: skip

    def with_total(self, total: float):  # type: ignore[override]
        spec = self.to_spec()
        if "period" in spec:
            spec["total"] = total
        else:
            spec["checkpoints"] = [c for c in spec["checkpoints"] if c < total] + [total]
        return from_spec(spec)
