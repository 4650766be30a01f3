"""Base for schedules defined as "a warmup, then a closed-form function of progress"."""

from __future__ import annotations

from typing import Any

import numpy as np

from evertrain.schedules import validation as check
from evertrain.schedules.base import Schedule
from evertrain.schedules.basic import spec_of
from evertrain.schedules.phases import Phase, evaluate_phase, evaluate_phase_np, evaluate_phase_xp
from evertrain.schedules.warmup import warmup_params

# Progress beyond this (including +inf) is evaluated here: far past any real run, and finite, so
# periodic and closed-form families never see inf - inf.
_HUGE = 1e300


class WarmupThen(Schedule):
    """``lr(t)`` = warmup phase on ``[0, warmup)``, then ``self._main(t)`` for ``t >= warmup``.

    Subclasses call ``_setup`` with their constructor's arguments (it sets ``peak``, ``floor``,
    the warmup, ``total`` and ``unit``) and implement ``_main`` (scalar) and ``_main_np`` (vector,
    called with ``t >= warmup`` only). Negative progress is clamped.
    """

    warm: Phase | None = None
    warmup: float = 0.0

    def _setup(self, params: dict[str, Any], *, total_required: bool = False) -> None:
        """Validate and set the fields every such family shares; ``total`` may be optional."""
        s = self.name
        self.peak, self.floor = check.peak_and_floor(s, params["peak"], params.get("floor", 0.0))
        warm = warmup_params(s, params)
        self.warmup = warm.length
        total = params.get("total")
        if total is None and not total_required:
            self.total = None
        else:
            self.total = check.positive(s, "total", total)
            check.warmup_fits(s, warm.length, self.total)
        self.unit = check.unit(s, params.get("unit", "steps"))
        self.warm = warm.phase(s, self.peak) if warm.length > 0 else None
        self._warmup_fields = warm.spec()

    def _spec_of(self, **fields: Any) -> dict[str, Any]:
        """The spec ``peak, *fields, floor, total, warmup fields, unit`` (the families' order)."""
        return spec_of(
            {
                "peak": self.peak,
                **fields,
                "floor": self.floor,
                "total": self.total,
                **self._warmup_fields,
                "unit": self.unit,
            }
        )

    def _main(self, t: float) -> float:
        raise NotImplementedError

    def _main_np(self, t: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _main_xp(self, t: Any, xp: Any) -> Any:
        """``_main_np`` written for any array module (see ``Schedule.evaluate_xp``)."""
        raise NotImplementedError(f"{self.name}: no array-module (xp) formula")

    def evaluate_xp(self, t: Any, xp: Any) -> Any:
        # No _HUGE cap here: it overflows float32, and the xp formulas all hold at +inf.
        out = self._main_xp(xp.maximum(t, self.warmup), xp)
        warm = self.warm
        if warm is not None:
            out = xp.where(t < warm.end, evaluate_phase_xp(warm, xp.maximum(t, 0.0), xp), out)
        return out

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
