"""Choose schedules before training: rank candidates, search WSD, optimise a free-form decay.

Everything here ranks schedules by the fitted law's predicted loss at the last step of an
``steps``-step run (``L(steps - 1)``, the loss after the final update).

:func:`optimize_schedule` solves (Luo et al. 2025, section 5, with L-BFGS-B instead of Adam)::

    min_eta  L(N-1; eta)   s.t.  eta = linear warmup 0 -> peak over ``warmup`` steps,
                                 then non-increasing, floor <= eta <= peak

over a piecewise-linear decay with knots ``u_j`` (denser towards the end, where the optimum
bends) and values ``v_j = floor + (peak - floor) exp(-sum_{i<=j} z_i)``, ``z_i >= 0``: every
``z`` in the box gives a feasible schedule, so plain bounds express the constraints. The law's
exact gradient dL/d eta (O(N), :meth:`final_loss_and_grad`) is chained through the
interpolation to the knots.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize

from evertrain.laws.base import Law
from evertrain.laws.curves import LawError, lr_array, schedule_label

WSD_SHAPES = ("linear", "cosine", "1-sqrt", "exponential")


def _check_budget(steps: int, peak: float, floor: float, warmup: int) -> None:
    if steps < 2:
        raise LawError(f"steps={steps} must be >= 2")
    if not peak > 0:
        raise LawError(f"peak={peak} must be > 0")
    if not 0 < floor <= peak:
        raise LawError(
            f"floor={floor} must be in (0, peak={peak}]: the multi-power law needs eta > 0 (eta^-gamma); "
            "use a small positive floor such as peak/100"
        )
    if not 0 <= warmup < steps - 1:
        raise LawError(
            f"warmup={warmup} is not shorter than steps={steps}: set 0 <= warmup < steps - 1"
        )


def final_loss(law: Law, schedule: Any, steps: int) -> float:
    """Predicted loss after the last update of a ``steps``-step run under ``schedule``."""
    if steps < 1:
        raise LawError(f"steps={steps} must be >= 1")
    lr = lr_array(schedule, steps)
    return float(law.predict_lr(lr, np.array([steps - 1]))[0])


def compare_schedules(
    law: Law, candidates: Mapping[str, Any] | Sequence[Any], steps: int
) -> list[dict[str, Any]]:
    """Rank candidate schedules by predicted final loss at ``steps`` (best first).

    Returns ``[{"rank", "label", "schedule", "final_loss", "gap"}]``; ``gap`` is the loss above
    the best candidate.
    """
    items = (
        list(candidates.items())
        if isinstance(candidates, Mapping)
        else [(schedule_label(c), c) for c in candidates]
    )
    if not items:
        raise LawError("no candidate schedules to compare: give at least one")
    rows = [
        {"label": label, "schedule": spec, "final_loss": final_loss(law, spec, steps)}
        for label, spec in items
    ]
    rows.sort(key=lambda row: row["final_loss"])
    best = rows[0]["final_loss"]
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
        row["gap"] = row["final_loss"] - best
    return rows


def wsd_spec(
    steps: int, peak: float, floor: float, warmup: int, decay_fraction: float, shape: str
) -> dict[str, Any]:
    """An evertrain ``wsd`` spec (linear warmup, constant peak, decay of ``decay_fraction`` of the steps)."""
    return {
        "name": "wsd",
        "peak": peak,
        "total": steps,
        "warmup": warmup,
        "decay_fraction": float(decay_fraction),
        "decay_shape": shape,
        "floor": floor,
    }


def cosine_spec(steps: int, peak: float, floor: float, warmup: int) -> dict[str, Any]:
    """An evertrain ``cosine`` spec with the same warmup, peak and floor."""
    return {"name": "cosine", "peak": peak, "total": steps, "warmup": warmup, "floor": floor}


def wsd_candidates(
    steps: int,
    peak: float,
    floor: float,
    warmup: int,
    fractions: Sequence[float] = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4),
    shapes: Sequence[str] = WSD_SHAPES,
) -> dict[str, dict[str, Any]]:
    """WSD specs over decay fractions x decay shapes, labelled ``wsd-<shape>-<fraction>``."""
    out = {}
    for shape in shapes:
        for fraction in fractions:
            if fraction * steps > steps - warmup:
                continue  # the decay would eat into the warmup
            out[f"wsd-{shape}-{fraction:.2f}"] = wsd_spec(
                steps, peak, floor, warmup, fraction, shape
            )
    return out


def best_wsd(
    law: Law,
    steps: int,
    peak: float,
    floor: float,
    warmup: int,
    fractions: Sequence[float] | None = None,
    shapes: Sequence[str] = WSD_SHAPES,
) -> dict[str, Any]:
    """The WSD (decay fraction x shape, fractions 2%..60% by default) with the lowest predicted
    final loss: ``{"label", "schedule", "final_loss"}``."""
    _check_budget(steps, peak, floor, warmup)
    if fractions is None:
        fractions = tuple(np.round(np.arange(0.02, 0.601, 0.02), 4))
    ranking = compare_schedules(
        law, wsd_candidates(steps, peak, floor, warmup, fractions, shapes), steps
    )
    return {key: ranking[0][key] for key in ("label", "schedule", "final_loss")}


@dataclass
class ScheduleOptimum:
    """Result of :func:`optimize_schedule`."""

    spec: dict[str, Any]  # evertrain piecewise_linear spec
    lr: np.ndarray  # per-step LR of the optimum
    final_loss: float
    cosine: dict[str, Any]
    wsd: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def gain_vs_cosine(self) -> float:
        """Predicted final-loss reduction against the cosine schedule (positive = better)."""
        return float(self.cosine["final_loss"] - self.final_loss)

    @property
    def gain_vs_wsd(self) -> float:
        """Predicted final-loss reduction against the best WSD found."""
        return float(self.wsd["final_loss"] - self.final_loss)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schedule": self.spec,
            "final_loss": self.final_loss,
            "cosine": self.cosine,
            "best_wsd": self.wsd,
            "gain_vs_cosine": self.gain_vs_cosine,
            "gain_vs_wsd": self.gain_vs_wsd,
            **self.details,
        }


def _knot_positions(steps: int, warmup: int, n_knots: int) -> np.ndarray:
    # s -> 1 - (1 - s)^2 puts half the knots in the last ~30% of the run, where the optimum bends
    s = np.linspace(0.0, 1.0, n_knots)
    positions = warmup + (steps - 1 - warmup) * (1.0 - (1.0 - s) ** 2)
    return np.unique(np.round(positions).astype(np.int64))


def optimize_schedule(
    law: Law,
    steps: int,
    peak: float,
    floor: float,
    warmup: int = 0,
    *,
    n_knots: int = 64,
    maxiter: int = 1000,
) -> ScheduleOptimum:
    """The non-increasing (after a linear warmup) schedule in [floor, peak] that minimises the
    law's predicted loss at step ``steps - 1``, as an evertrain ``piecewise_linear`` spec, with
    the cosine and best-WSD baselines for the same budget."""
    _check_budget(steps, peak, floor, warmup)
    if not hasattr(law, "final_loss_and_grad"):
        raise LawError(f"the {law.name} law cannot be optimised (no final_loss_and_grad)")
    law._require_params()
    knots = _knot_positions(steps, warmup, n_knots)
    if len(knots) < 2:
        raise LawError(f"steps={steps} after warmup={warmup} leaves too few steps to optimise")
    grid = np.arange(steps)
    post = grid >= knots[0]
    right = np.clip(np.searchsorted(knots, grid[post], side="right"), 1, len(knots) - 1)
    left = right - 1
    frac = (grid[post] - knots[left]) / (knots[right] - knots[left])
    span = peak - floor

    def values(z: np.ndarray) -> np.ndarray:
        return floor + span * np.exp(-np.cumsum(z))

    def schedule_lr(z: np.ndarray) -> np.ndarray:
        return np.interp(grid, np.r_[0, knots], np.r_[0.0, values(z)])

    def objective(z: np.ndarray) -> tuple[float, np.ndarray]:
        v = values(z)
        lr = schedule_lr(z)
        loss, grad_lr = law.final_loss_and_grad(lr, steps - 1)  # type: ignore[attr-defined]
        g = grad_lr[post]
        grad_v = np.bincount(left, g * (1 - frac), minlength=len(knots)) + np.bincount(
            right, g * frac, minlength=len(knots)
        )
        # v_j - floor = span exp(-sum_{i<=j} z_i): dL/dz_i = -sum_{j>=i} dL/dv_j (v_j - floor)
        grad_z = -np.cumsum((grad_v * (v - floor))[::-1])[::-1]
        return loss, grad_z

    def z_from(lr: np.ndarray) -> np.ndarray:
        at_knots = np.clip(lr[knots], floor, peak)
        depth = -np.log(np.maximum((at_knots - floor) / span, 1e-12))
        z = np.diff(np.r_[0.0, np.maximum.accumulate(depth)])
        z[0] = 0.0
        return z

    cosine = cosine_spec(steps, peak, floor, warmup)
    wsd = best_wsd(law, steps, peak, floor, warmup)
    cosine_result = {
        "label": "cosine",
        "schedule": cosine,
        "final_loss": final_loss(law, cosine, steps),
    }
    bounds = [(0.0, 0.0)] + [(0.0, 30.0)] * (len(knots) - 1)  # v_0 = peak: warmup ends at the peak
    best = None
    for start in (lr_array(wsd["schedule"], steps), lr_array(cosine, steps)):
        result = minimize(
            objective,
            z_from(start),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": maxiter, "ftol": 1e-14, "gtol": 1e-10},
        )
        if best is None or result.fun < best.fun:
            best = result
    assert best is not None
    v = values(best.x)
    points = [[0, 0.0]] + [[int(u), float(val)] for u, val in zip(knots, v, strict=True)]
    spec = {"name": "piecewise_linear", "points": points}
    lr = schedule_lr(best.x)
    return ScheduleOptimum(
        spec=spec,
        lr=lr,
        final_loss=float(law.predict_lr(lr, np.array([steps - 1]))[0]),
        cosine=cosine_result,
        wsd=wsd,
        details={
            "steps": steps,
            "peak": peak,
            "floor": floor,
            "warmup": warmup,
            "n_knots": len(knots),
            "iterations": int(best.nit),
        },
    )
