"""More named schedules: step, multistep, exponential, polynomial, inverse_sqrt, rex,
cosine_power, damped_cosine, wsdc, power, onecycle.

Each class docstring gives the formula and a citation. All take an optional warmup where the
literature uses one, hold their last value past ``total``, and clamp negative progress to 0.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from evertrain.schedules import validation as check
from evertrain.schedules.base import ScheduleError
from evertrain.schedules.basic import WSD, WarmupDecay, spec_of
from evertrain.schedules.phases import (
    Phase,
    PhasedSchedule,
    drop_empty,
    evaluate_phase,
    evaluate_phase_np,
)
from evertrain.schedules.registry import register
from evertrain.schedules.shapes import DECAY_SHAPES, LERP
from evertrain.schedules.warmup_then import WarmupThen


@register
class Step(WarmupThen):
    """Step decay: ``lr(t) = max(floor, peak * gamma ** floor(t / step_size))``.

    ``t`` is absolute progress (as ``torch.optim.lr_scheduler.StepLR``); a warmup overrides
    ``[0, warmup)``. Reference: Krizhevsky et al. 2012; He et al. 2016 (ResNet).
    """

    name = "step"

    def __init__(
        self, peak: float, step_size: float, *, gamma: float = 0.1, floor: float = 0.0,
        total: float | None = None, warmup: float = 0, warmup_shape: str = "linear",
        warmup_start: float = 0.0, unit: str = "steps",
    ) -> None:  # fmt: skip
        self._setup(locals())
        s = self.name
        self.step_size = check.positive(s, "step_size", step_size)
        self.gamma = check.in_range(s, "gamma", gamma, 0.0, 1.0, low_open=True)
        self._spec = self._spec_of(step_size=self.step_size, gamma=self.gamma)

    def _main(self, t: float) -> float:
        return max(self.floor, self.peak * self.gamma ** math.floor(t / self.step_size))

    def _main_np(self, t: np.ndarray) -> np.ndarray:
        return self._main_xp(t, np)

    def _main_xp(self, t: Any, xp: Any) -> Any:
        return xp.maximum(self.floor, self.peak * self.gamma ** xp.floor(t / self.step_size))


@register
class MultiStep(WarmupThen):
    """Multi-step decay: ``lr(t) = max(floor, peak * gamma ** #{m in milestones : m <= t})``.

    Milestones are absolute progress values (as ``torch.optim.lr_scheduler.MultiStepLR``).
    Reference: He et al. 2016 (ResNet: divide by 10 at 32k and 48k iterations).
    """

    name = "multistep"

    def __init__(
        self, peak: float, milestones: list[float], *, gamma: float = 0.1, floor: float = 0.0,
        total: float | None = None, warmup: float = 0, warmup_shape: str = "linear",
        warmup_start: float = 0.0, unit: str = "steps",
    ) -> None:  # fmt: skip
        self._setup(locals())
        s = self.name
        if isinstance(milestones, (str, int, float)):
            raise ScheduleError(f"{s}: milestones must be a list of progress values")
        values = [check.non_negative(s, f"milestones[{i}]", m) for i, m in enumerate(milestones)]
        if values != sorted(values):
            raise ScheduleError(f"{s}: milestones={values} must be sorted ascending")
        self.milestones = values
        self._milestones_np = np.asarray(values, dtype=np.float64)
        self.gamma = check.in_range(s, "gamma", gamma, 0.0, 1.0, low_open=True)
        self._spec = self._spec_of(
            milestones=[check.clean_number(m) for m in values], gamma=self.gamma
        )

    def _main(self, t: float) -> float:
        passed = 0
        for milestone in self.milestones:
            if t >= milestone:
                passed += 1
        return max(self.floor, self.peak * self.gamma**passed)

    def _main_np(self, t: np.ndarray) -> np.ndarray:
        passed = np.searchsorted(self._milestones_np, t, side="right")
        return np.maximum(self.floor, self.peak * self.gamma ** passed.astype(np.float64))

    def _main_xp(self, t: Any, xp: Any) -> Any:
        # A sum of comparisons, not searchsorted: the count stays in t's float dtype under JAX.
        passed = sum(((t >= m) * 1.0 for m in self.milestones), xp.zeros_like(t))
        return xp.maximum(self.floor, self.peak * self.gamma**passed)


@register
class Exponential(WarmupThen):
    """Exponential decay after warmup:

    ``lr(t) = max(floor, peak * gamma ** ((t - warmup) / every))``.

    ``every=1`` gives ``torch.optim.lr_scheduler.ExponentialLR``; optax ``exponential_decay``
    calls ``every`` ``transition_steps``. ``0 < gamma <= 1`` keeps the value finite forever.
    Reference: Szegedy et al. 2016 ("Rethinking the Inception Architecture": 0.94 every 2
    epochs); TF ``ExponentialDecay``.
    """

    name = "exponential"

    def __init__(
        self, peak: float, gamma: float, *, every: float = 1.0, floor: float = 0.0,
        total: float | None = None, warmup: float = 0, warmup_shape: str = "linear",
        warmup_start: float = 0.0, unit: str = "steps",
    ) -> None:  # fmt: skip
        self._setup(locals())
        s = self.name
        self.gamma = check.in_range(s, "gamma", gamma, 0.0, 1.0, low_open=True)
        self.every = check.positive(s, "every", every)
        self._spec = self._spec_of(gamma=self.gamma, every=self.every)

    def _main(self, t: float) -> float:
        return max(self.floor, self.peak * self.gamma ** ((t - self.warmup) / self.every))

    def _main_np(self, t: np.ndarray) -> np.ndarray:
        return self._main_xp(t, np)

    def _main_xp(self, t: Any, xp: Any) -> Any:
        return xp.maximum(self.floor, self.peak * self.gamma ** ((t - self.warmup) / self.every))


@register
class Polynomial(WarmupDecay):
    """Polynomial decay (HF ``get_polynomial_decay_schedule_with_warmup``):

    ``lr(t) = floor + (peak - floor) * ((total - t) / (total - warmup)) ** power`` for
    ``warmup <= t < total``; ``floor`` after. ``power=1`` is linear decay.
    Reference: TensorFlow ``PolynomialDecay``; You et al. 2019 (LAMB).
    """

    name = "polynomial"
    decay_shape = "power"

    def __init__(
        self, peak: float, total: float, *, power: float = 1.0, warmup: float = 0,
        floor: float = 0.0, warmup_shape: str = "linear", warmup_start: float = 0.0,
        unit: str = "steps",
    ) -> None:  # fmt: skip
        power = check.positive(self.name, "power", power)
        super().__init__(
            peak, total, warmup=warmup, floor=floor, warmup_shape=warmup_shape,
            warmup_start=warmup_start, unit=unit,
        )  # fmt: skip
        last = self.phases[-1]
        self.phases[-1] = last._replace(power=power)
        self._spec = {**self._spec, "power": check.clean_number(power)}


@register
class Rex(WarmupDecay):
    """REX (Chen et al. 2022, "REX: Revisiting Budgeted Training with an Improved Schedule"):

    with ``z = (t - warmup) / (total - warmup)``,
    ``lr(t) = floor + (peak - floor) * (1 - z) / (0.5 + 0.5 * (1 - z))``.
    """

    name = "rex"
    decay_shape = "rex"


@register
class CosinePower(WarmupDecay):
    """Cosine power annealing (Hundt, Jain & Hager 2019, "sharpDARTS", eq. 1):

    with ``c = (1 + cos(pi z)) / 2`` and ``z = (t - warmup) / (total - warmup)``,
    ``lr(t) = floor + (peak - floor) * (p ** (c + 1) - p) / (p ** 2 - p)``, ``p = power > 1``.
    Larger ``power`` drops faster early; ``power -> 1`` approaches cosine.
    """

    name = "cosine_power"
    decay_shape = "cosine_power"

    def __init__(
        self, peak: float, total: float, *, power: float = 10.0, warmup: float = 0,
        floor: float = 0.0, warmup_shape: str = "linear", warmup_start: float = 0.0,
        unit: str = "steps",
    ) -> None:  # fmt: skip
        power = check.as_number(self.name, "power", power)
        if power <= 1.0:
            raise ScheduleError(f"{self.name}: power={power} must be > 1")
        super().__init__(
            peak, total, warmup=warmup, floor=floor, warmup_shape=warmup_shape,
            warmup_start=warmup_start, unit=unit,
        )  # fmt: skip
        self.phases[-1] = self.phases[-1]._replace(power=power)
        self._spec = {**self._spec, "power": check.clean_number(power)}


@register
class DampedCosine(WarmupThen):
    """Damped cosine: a cosine oscillation under a linearly decaying envelope.

    With ``z = (t - warmup) / (total - warmup)``::

        lr(t) = floor + (peak - floor) * (1 - z) * (1 + cos(2 pi cycles z)) / 2

    It is the "linear cosine decay" of Bello et al. 2017 ("Neural Optimizer Search with
    Reinforcement Learning", as in TF ``linear_cosine_decay`` with ``alpha=0``, ``beta=floor``):
    ``cycles`` full oscillations whose amplitude shrinks linearly to 0 at ``total``.
    """

    name = "damped_cosine"

    def __init__(
        self, peak: float, total: float, *, cycles: float = 3.0, floor: float = 0.0,
        warmup: float = 0, warmup_shape: str = "linear", warmup_start: float = 0.0,
        unit: str = "steps",
    ) -> None:  # fmt: skip
        self._setup(locals(), total_required=True)
        self.cycles = check.positive(self.name, "cycles", cycles)
        self._length = max(self.total - self.warmup, 1e-300)
        self._spec = spec_of(dict(
            peak=self.peak, total=self.total, cycles=self.cycles, floor=self.floor,
            **self._warmup_fields, unit=self.unit,
        ))  # fmt: skip

    def _main(self, t: float) -> float:
        if t >= self.total:
            return self.floor
        z = (t - self.warmup) / self._length
        wave = 0.5 * (1.0 + math.cos(2.0 * math.pi * self.cycles * z))
        return self.floor + (self.peak - self.floor) * (1.0 - z) * wave

    def _main_np(self, t: np.ndarray) -> np.ndarray:
        return self._main_xp(t, np)

    def _main_xp(self, t: Any, xp: Any) -> Any:
        z = xp.clip((t - self.warmup) / self._length, 0.0, 1.0)
        wave = 0.5 * (1.0 + xp.cos(2.0 * xp.pi * self.cycles * z))
        return self.floor + (self.peak - self.floor) * (1.0 - z) * wave


@register
class WSDC(PhasedSchedule):
    """Warmup-stable-decay-constant: WSD whose decay ends ``constant`` before ``total``, then
    holds ``floor`` for the rest (a low-LR annealing tail, e.g. for data-mix annealing).

    Phases: warmup ``[0, warmup)``; stable at ``peak`` until ``E - decay``; decay with
    ``decay_shape`` to ``floor`` at ``E = total - constant``; ``floor`` on ``[E, total]``.
    ``constant`` (a length) or ``constant_fraction`` (of total, default 0.1).
    Reference: Hu et al. 2024 (MiniCPM: WSD, then annealing on a fixed low LR).
    """

    name = "wsdc"

    def __init__(
        self, peak: float, total: float, *, warmup: float = 0, decay: float | None = None,
        decay_fraction: float | None = None, constant: float | None = None,
        constant_fraction: float | None = None, decay_shape: str = "linear",
        floor: float = 0.0, warmup_shape: str = "linear", warmup_start: float = 0.0,
        decay_power: float = 2.0, unit: str = "steps",
    ) -> None:  # fmt: skip
        s = self.name
        total = check.positive(s, "total", total)
        tail = check.length_or_fraction(
            s, "constant", constant, constant_fraction, total, default=0.1 * total
        )
        if tail >= total:
            raise ScheduleError(f"{s}: constant={tail} must be shorter than total={total}")
        decay_length = check.length_or_fraction(
            s, "decay", decay, decay_fraction, total, default=0.2 * total
        )
        if decay_length > total - tail:
            raise ScheduleError(
                f"{s}: decay={check.clean_number(decay_length)} + constant="
                f"{check.clean_number(tail)} runs past total={check.clean_number(total)}"
            )
        inner = WSD(
            peak, total - tail, warmup=warmup, decay=decay_length, decay_shape=decay_shape,
            floor=floor, warmup_shape=warmup_shape, warmup_start=warmup_start,
            decay_power=decay_power, unit=unit,
        )  # fmt: skip
        self.total = total
        self.unit = inner.unit
        self.phases = drop_empty([*inner.phases, Phase(total - tail, total, floor, floor)])
        inner_spec = inner.to_spec()
        self._spec = spec_of(dict(
            peak=inner.peak, total=total, warmup=inner.warmup,
            decay=None if decay is None else inner.decay_length,
            decay_fraction=None if decay_fraction is None else float(decay_fraction),
            constant=constant if constant is None else tail,
            constant_fraction=constant_fraction if constant is None else None,
            decay_shape=inner_spec["decay_shape"], floor=inner.floor,
            warmup_shape=inner_spec["warmup_shape"], warmup_start=inner_spec["warmup_start"],
            decay_power=inner_spec.get("decay_power"), unit=self.unit,
        ))  # fmt: skip


@register
class Power(WarmupThen):
    """The Power scheduler (Shen et al. 2024, "Power Scheduler: A Batch Size and Token Number
    Agnostic Learning Rate Scheduler"): a power law of tokens seen, capped at ``peak``::

        lr(n) = min(peak, batch_size * a * n ** b)        (n = progress, normally tokens)

    ``batch_size`` (the paper's beta) makes the LR batch-size aware; the paper reports
    ``a = 4.6``, ``b = -0.51`` (the defaults). After a (linear) warmup to ``min(peak, ...)`` at
    ``warmup``, the power law applies; when ``decay`` > 0 (needs ``total``), the last ``decay``
    units anneal with ``decay_shape`` (default ``exp2``, an exponential-type decay as in the
    paper) from the power-law value at ``total - decay`` down to ``floor`` at ``total``.
    """

    name = "power"

    def __init__(
        self, peak: float, *, a: float = 4.6, b: float = -0.51, batch_size: float = 1.0,
        total: float | None = None, decay: float = 0, decay_shape: str = "exp2",
        floor: float = 0.0, warmup: float = 0, warmup_shape: str = "linear",
        warmup_start: float = 0.0, unit: str = "tokens",
    ) -> None:  # fmt: skip
        s = self.name
        peak_value = check.learning_rate(s, "peak", peak)
        self.a = check.positive(s, "a", a)
        self.b = check.in_range(s, "b", b, -10.0, 0.0)
        self.batch_size = check.positive(s, "batch_size", batch_size)
        self.decay = check.non_negative(s, "decay", decay)
        self.decay_shape = check.choice(s, "decay_shape", decay_shape, DECAY_SHAPES)
        # The warmup climbs to the power-law value at the end of warmup, not to an
        # unreachable peak, so the curve is continuous at t = warmup.
        self.cap = peak_value
        target = self._law(check.non_negative(s, "warmup", warmup))
        self._setup(
            dict(peak=target, floor=floor, total=total, warmup=warmup, warmup_shape=warmup_shape,
                 warmup_start=warmup_start, unit=unit)
        )  # fmt: skip
        self.peak = peak_value
        if self.decay > 0:
            if self.total is None:
                raise ScheduleError(f"{s}: decay={decay} needs a total (where the decay ends)")
            if self.warmup + self.decay > self.total:
                raise ScheduleError(
                    f"{s}: warmup + decay = {self.warmup + self.decay} runs past "
                    f"total={self.total}: shorten the decay"
                )
            start = self.total - self.decay
            start_value = self._law(start)
            if self.decay_shape == "exponential" and self.floor <= 0:
                raise ScheduleError(f"{s}: decay_shape='exponential' needs floor > 0")
            self._decay_phase = Phase(
                start, self.total, start_value, min(self.floor, start_value), self.decay_shape
            )
        else:
            self._decay_phase = None
        self._spec = spec_of(dict(
            peak=self.peak, a=self.a, b=self.b, batch_size=self.batch_size, total=self.total,
            decay=self.decay, decay_shape=self.decay_shape, floor=self.floor,
            **self._warmup_fields, unit=self.unit,
        ))  # fmt: skip

    def _law(self, n: float) -> float:
        if n <= 0.0:
            return self.cap
        return min(self.cap, self.batch_size * self.a * n**self.b)

    def _main(self, t: float) -> float:
        phase = self._decay_phase
        if phase is not None and t >= phase.start:
            return phase.v1 if t >= phase.end else evaluate_phase(phase, t)
        return max(self.floor, self._law(t))

    def _main_np(self, t: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            law = np.where(
                t > 0, self.batch_size * self.a * np.power(np.maximum(t, 1e-300), self.b), self.cap
            )
        out = np.maximum(self.floor, np.minimum(self.cap, law))
        phase = self._decay_phase
        if phase is not None:
            inside = (t >= phase.start) & (t < phase.end)
            if inside.any():
                out[inside] = evaluate_phase_np(phase, t[inside])
            out[t >= phase.end] = phase.v1
        return out


@register
class OneCycle(PhasedSchedule):
    """OneCycle (Smith & Topin 2019, "Super-Convergence"), as torch's ``OneCycleLR``.

    ``initial = peak / div_factor``, ``final = initial / final_div_factor``. Two-phase: rise
    ``initial -> peak`` on ``[0, warmup)``, anneal ``peak -> final`` on ``[warmup, total)``.
    Three-phase: rise on ``[0, warmup)``, fall back ``peak -> initial`` on ``[warmup, 2 warmup)``,
    anneal ``initial -> final`` on ``[2 warmup, total)``. ``anneal``: ``cos`` or ``linear``.
    ``warmup`` defaults to ``pct_start * total``.

    Our convention puts the peak at ``t = warmup`` and ``final`` at ``t = total``. torch reaches
    the peak at step ``pct_start * total_steps - 1`` and ``final`` at ``total_steps - 1``; the same
    curve is ``onecycle(total=total_steps - 1, warmup=pct_start * total_steps - 1)`` (tested).
    """

    name = "onecycle"

    def __init__(
        self, peak: float, total: float, *, pct_start: float = 0.3, warmup: float | None = None,
        anneal: str = "cos", div_factor: float = 25.0, final_div_factor: float = 1e4,
        three_phase: bool = False, unit: str = "steps",
    ) -> None:  # fmt: skip
        s = self.name
        peak = check.learning_rate(s, "peak", peak)
        total = check.positive(s, "total", total)
        pct_start = check.in_range(s, "pct_start", pct_start, 0.0, 1.0)
        if warmup is None:
            rise = pct_start * total
        else:
            rise = check.non_negative(s, "warmup", warmup)
        anneal = check.choice(s, "anneal", anneal, ("cos", "linear"))
        div_factor = check.as_number(s, "div_factor", div_factor)
        final_div_factor = check.as_number(s, "final_div_factor", final_div_factor)
        if div_factor < 1 or final_div_factor < 1:
            raise ScheduleError(f"{s}: div_factor and final_div_factor must be >= 1")
        if not isinstance(three_phase, bool):
            raise ScheduleError(f"{s}: three_phase={three_phase!r} must be true or false")
        if rise * (2 if three_phase else 1) > total:
            raise ScheduleError(
                f"{s}: warmup={check.clean_number(rise)} is too long for total="
                f"{check.clean_number(total)}: the rise{' and fall' if three_phase else ''} "
                "must fit in total (lower pct_start)"
            )
        initial = peak / div_factor
        final = initial / final_div_factor
        shape = "cosine" if anneal == "cos" else LERP
        if three_phase:
            phases = [
                Phase(0.0, rise, initial, peak, shape),
                Phase(rise, 2 * rise, peak, initial, shape),
                Phase(2 * rise, total, initial, final, shape),
            ]
        else:
            phases = [
                Phase(0.0, rise, initial, peak, shape),
                Phase(rise, total, peak, final, shape),
            ]
        self.phases = drop_empty(phases)
        self.total = total
        self.unit = check.unit(s, unit)
        self._spec = spec_of(dict(
            peak=peak, total=total, pct_start=pct_start if warmup is None else None,
            warmup=None if warmup is None else rise, anneal=anneal, div_factor=div_factor,
            final_div_factor=final_div_factor, three_phase=three_phase, unit=self.unit,
        ))  # fmt: skip


@register
class InverseSqrt(WarmupThen):
    """Inverse square root (Vaswani et al. 2017, "Attention Is All You Need"), in the form of
    HF ``get_inverse_sqrt_schedule``::

        lr(t) = max(floor, peak / sqrt((t - warmup + timescale) / timescale))   t >= warmup

    ``timescale`` defaults to ``warmup`` (then ``lr = peak * sqrt(warmup / t)``, megatron-core's
    ``inverse-square-root``), or 10000 when there is no warmup.
    """

    name = "inverse_sqrt"

    def __init__(
        self, peak: float, *, warmup: float = 0, timescale: float | None = None,
        floor: float = 0.0, total: float | None = None, warmup_shape: str = "linear",
        warmup_start: float = 0.0, unit: str = "steps",
    ) -> None:  # fmt: skip
        self._setup(locals())
        s = self.name
        if timescale is None:
            self.timescale = self.warmup if self.warmup > 0 else 10_000.0
        else:
            self.timescale = check.positive(s, "timescale", timescale)
        self._shift = self.timescale - self.warmup
        self._spec = self._spec_of(timescale=None if timescale is None else self.timescale)

    def _main(self, t: float) -> float:
        decay = 1.0 / math.sqrt((t + self._shift) / self.timescale)
        return max(self.floor, self.peak * decay)

    def _main_np(self, t: np.ndarray) -> np.ndarray:
        return self._main_xp(t, np)

    def _main_xp(self, t: Any, xp: Any) -> Any:
        decay = 1.0 / xp.sqrt((t + self._shift) / self.timescale)
        return xp.maximum(self.floor, self.peak * decay)
