"""Refined schedules: a learning-rate schedule computed from the gradient norms of a previous run.

Defazio, Cutkosky, Mehta, Mishchenko 2023, "When, Why and How Much? Adaptive Learning Rate
Scheduling by Refinement" (arXiv 2310.07831; v2 "Optimal Linear Decay Learning Rate Schedules
and Further Refinements"), Algorithm 1 (schedule refinement for SGD): smooth the logged gradient
norms ``g_1..g_T`` with a median filter, set ``w_t = g_t^-2`` and ``eta_t = w_t * sum_{p>t} w_p``,
and divide by ``max eta``. Constant norms give ``eta_t ∝ T - t``, the linear decay the paper's
worst-case analysis recommends; norms that grow towards the end give a faster final anneal,
norms that are large early give a warmup (a norm that drops raises the LR before it). (For Adam-type updates the paper uses ``w_t = g_t^-1`` of the l1 norm:
``power=1``.)

The schedule stores its knots (progress, multiplier), so a spec round-trips through YAML and
needs no log at run time; :mod:`evertrain.schedules.refine_input` reads ``log.jsonl`` / CSV.
"""

from __future__ import annotations

import bisect

import numpy as np

from evertrain.schedules import validation as check
from evertrain.schedules.base import Schedule, ScheduleError
from evertrain.schedules.basic import spec_of
from evertrain.schedules.phases import evaluate_phase, evaluate_phase_np
from evertrain.schedules.registry import register
from evertrain.schedules.warmup import warmup_params


def median_filter(values: np.ndarray, width: int) -> np.ndarray:
    """Running median over ``width`` consecutive values centred on each one; near the ends the
    window is cut short (never padded: a zero pad would fake tiny norms, i.e. huge weights)."""
    values = np.asarray(values, dtype=np.float64)
    if width <= 1:
        return values.copy()
    before, after = (width - 1) // 2, width // 2
    out = np.empty_like(values)
    n = len(values)
    if n >= width:
        windows = np.lib.stride_tricks.sliding_window_view(values, width)
        out[before : n - after] = np.median(windows, axis=1)
    for index in [*range(min(before, n)), *range(max(n - after, 0), n)]:
        out[index] = np.median(values[max(0, index - before) : index + after + 1])
    return out


def refined_multipliers(grad_norms: np.ndarray, power: float = 2.0) -> np.ndarray:
    """``eta_t = w_t * sum_{p>t} w_p`` with ``w_t = g_t^-power``, scaled so the largest is 1."""
    weights = np.asarray(grad_norms, dtype=np.float64) ** -power
    later = np.concatenate([np.cumsum(weights[::-1])[::-1][1:], [0.0]])
    eta = weights * later
    return eta / eta.max()


@register
class Refine(Schedule):
    """A refined schedule (Defazio et al. 2023, arXiv 2310.07831) stored as its knots:
    ``lr(t) = peak * interp(t, knots)`` (linear between knots, the last value after the last),
    with an optional warmup from ``warmup_start`` to the refined value at ``warmup``.

    ``knots=[[t0, m0], [t1, m1], ...]``: progress (strictly increasing) and multipliers in
    ``[0, 1]`` (:func:`refine_from_norms` scales them so the largest is 1, so ``peak`` is the
    highest LR). ``source`` is free text naming the log the knots came from.
    """

    name = "refine"

    def __init__(
        self, knots: list[list[float]], peak: float, *, warmup: float = 0,
        warmup_shape: str = "linear", warmup_start: float = 0.0, unit: str = "steps",
        source: str | None = None,
    ) -> None:  # fmt: skip
        s = self.name
        if isinstance(knots, str) or not isinstance(knots, (list, tuple)) or len(knots) < 2:
            raise ScheduleError(f"{s}: knots must be a list of >= 2 [progress, multiplier] pairs")
        times, values = [], []
        for index, pair in enumerate(knots):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise ScheduleError(f"{s}: knots[{index}]={pair!r} must be [progress, multiplier]")
            times.append(check.as_number(s, f"knots[{index}][0]", pair[0]))
            values.append(check.in_range(s, f"knots[{index}][1]", pair[1], 0.0, 1.0))
            if index and times[-1] <= times[-2]:
                raise ScheduleError(
                    f"{s}: knots[{index}] progress {times[-1]:g} is not after knots[{index - 1}] "
                    f"progress {times[-2]:g}: give the knots in increasing progress"
                )
        self.peak = check.learning_rate(s, "peak", peak)
        self._times, self._values = times, [self.peak * v for v in values]
        self.times, self.values = np.asarray(times), np.asarray(self._values)
        self.total = times[-1]
        warm = warmup_params(s, locals())
        check.warmup_fits(s, warm.length, self.total)
        self.warmup = warm.length
        self._warmup_phase = warm.phase(s, self._at(warm.length)) if warm.length > 0 else None
        self.unit = check.unit(s, unit)
        self._spec = spec_of(dict(
            knots=[[check.clean_number(t), v] for t, v in zip(times, values, strict=True)],
            peak=self.peak, **warm.spec(), unit=self.unit,
            source=None if source is None else str(source),
        ))  # fmt: skip

    def _at(self, t: float) -> float:
        """The refined value (no warmup) at ``t``."""
        times, values = self._times, self._values
        if t <= times[0]:
            return values[0]
        if t >= times[-1]:
            return values[-1]
        index = bisect.bisect_right(times, t)
        t0, t1, v0, v1 = times[index - 1], times[index], values[index - 1], values[index]
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0)

    def _scalar(self, t: float) -> float:
        if self._warmup_phase is not None and t < self.warmup:
            return self._warmup_phase.v0 if t <= 0 else evaluate_phase(self._warmup_phase, t)
        return self._at(t)

    def _vector(self, t: np.ndarray) -> np.ndarray:
        out = np.interp(t, self.times, self.values)
        if self._warmup_phase is not None:
            rising = (t > 0) & (t < self.warmup)
            out[rising] = evaluate_phase_np(self._warmup_phase, t[rising])
            out[t <= 0] = self._warmup_phase.v0
        return out

    def with_total(self, total: float) -> Schedule:
        raise ScheduleError(
            "refine: its horizon is the logged run's last knot; use stretch() to rescale it, "
            "or refine a log of the new length"
        )


def refine_from_norms(
    progress: np.ndarray, grad_norms: np.ndarray, *, peak: float, filter_width: int | None = None,
    knots: int | None = None, power: float = 2.0, warmup: float = 0, warmup_shape: str = "linear",
    warmup_start: float = 0.0, unit: str = "steps", source: str | None = None,
) -> Refine:  # fmt: skip
    """The refined schedule of a run whose update at ``progress[i]`` had gradient norm
    ``grad_norms[i]``: median filter (``filter_width`` rows, default 5% of them), multipliers,
    then ``knots`` evenly spaced rows kept (default: every row; first, last and the highest
    always kept). With a ``warmup``, the multipliers are scaled so that the highest LR after the
    warmup is ``peak``."""
    progress = np.asarray(progress, dtype=np.float64)
    norms = np.asarray(grad_norms, dtype=np.float64)
    rows = len(norms)
    if rows < 3 or len(progress) != rows:
        raise ScheduleError(f"refine: needs >= 3 gradient norms with their progress, got {rows}")
    if not (np.isfinite(norms).all() and (norms > 0).all()):
        raise ScheduleError("refine: gradient norms must be finite and > 0 (drop the bad rows)")
    width = max(1, round(0.05 * rows)) if filter_width is None else int(filter_width)
    if not 1 <= width <= rows:
        raise ScheduleError(f"refine: filter_width={filter_width} must be in [1, {rows}] (rows)")
    power = check.positive("refine", "power", power)
    multipliers = refined_multipliers(median_filter(norms, width), power)
    keep = rows if knots is None else int(knots)
    if keep < 2:
        raise ScheduleError(f"refine: knots={knots} must be >= 2")
    index = np.round(np.linspace(0, rows - 1, min(keep, rows))).astype(int)
    # The peak row is always a knot, so the stored schedule still reaches ``peak``.
    index = np.unique(np.append(index, int(np.argmax(multipliers))))
    times, values = progress[index], multipliers[index]
    if warmup and 0 < float(warmup) < times[-1]:
        # The warmup replaces [0, warmup): rescale so the highest LR after it is ``peak`` (the
        # knots it hides are clipped to 1; they are never evaluated).
        after = np.append(values[times >= float(warmup)], np.interp(float(warmup), times, values))
        values = np.minimum(values / after.max(), 1.0)
    pairs = [[float(t), float(v)] for t, v in zip(times, values, strict=True)]
    return Refine(
        pairs, peak, warmup=warmup, warmup_shape=warmup_shape, warmup_start=warmup_start,
        unit=unit, source=source,
    )  # fmt: skip
