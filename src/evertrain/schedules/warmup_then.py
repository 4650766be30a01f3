"""Base for schedules defined as "a warmup, then a closed-form function of progress"."""

from __future__ import annotations

import numpy as np

from evertrain.schedules.base import Schedule
from evertrain.schedules.phases import Phase, evaluate_phase, evaluate_phase_np

# Progress beyond this (including +inf) is evaluated here: far past any real run, and finite, so
# periodic and closed-form families never see inf - inf.
_HUGE = 1e300


class WarmupThen(Schedule):
    """``lr(t)`` = warmup phase on ``[0, warmup)``, then ``self._main(t)`` for ``t >= warmup``.

    Subclasses set ``self.warm`` (a :class:`Phase` or ``None``) and implement ``_main`` (scalar)
    and ``_main_np`` (vector, called with ``t >= warmup`` only). Negative progress is clamped.
    """

    warm: Phase | None = None
    warmup: float = 0.0

    def _main(self, t: float) -> float:
        raise NotImplementedError

    def _main_np(self, t: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _scalar(self, t: float) -> float:
        if t > _HUGE:  # inf or beyond: periodic / closed forms need a finite argument
            t = _HUGE
        warm = self.warm
        if warm is not None and t < warm.end:
            return warm.v0 if t <= 0.0 else evaluate_phase(warm, t)
        return self._main(t if t > self.warmup else self.warmup)

    def _vector(self, t: np.ndarray) -> np.ndarray:
        out = self._main_np(np.clip(t, self.warmup, _HUGE))
        warm = self.warm
        if warm is not None:
            inside = t < warm.end
            if inside.any():
                clamped = np.maximum(t[inside], 0.0)
                out[inside] = evaluate_phase_np(warm, clamped)
        return out
