"""How a token budget becomes optimizer steps, and whether the schedule covers those steps.

One rule, shared by ``evertrain train run`` and the continual plans that launch it:

- a run of ``budget_tokens`` takes ``total_steps = ceil(budget_tokens / tokens_per_step)``
  optimizer steps (the last step may overshoot the budget by less than one step);
- the update at 0-based step ``i`` uses ``lr = s(i * tokens_per_step)`` for a token-unit schedule
  and ``lr = s(i)`` for a step-unit one, so the run's last LR is taken at progress
  ``(total_steps - 1) * per_step`` and the run ends at progress ``total_steps * per_step``.

A schedule with a ``total`` fits the run when ``last progress < total <= end progress``:

- ``total > end``: the run stops before the schedule does (no final decay);
- ``total <= last``: the last steps train at or past the schedule's end, usually at its floor
  (0 by default).

Both mismatches are one warning line naming the budget, the schedule's total and the fix; a
schedule without a total (``constant``, open-ended ``infinite``) fits any budget.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["fitting_budget", "schedule_fit_warning", "total_steps"]


def total_steps(budget_tokens: int, tokens_per_step: int) -> int:
    """Optimizer steps a run of ``budget_tokens`` takes: enough to reach the budget (ceil)."""
    return -(-int(budget_tokens) // int(tokens_per_step))


def _per_step(schedule: Any, tokens_per_step: int) -> int:
    """Schedule progress one optimizer step adds (tokens, or 1 for a step-unit schedule)."""
    return tokens_per_step if getattr(schedule, "unit", "steps") == "tokens" else 1


def fitting_budget(schedule: Any, tokens_per_step: int) -> int | None:
    """The budget (in tokens, a whole number of steps) whose run exactly spans ``schedule``.

    The smallest ``k`` steps with ``k * per_step >= total`` also has ``(k-1) * per_step < total``,
    so ``k * tokens_per_step`` tokens is the one step count that neither warning fires for.
    ``None`` when the schedule has no total.
    """
    if schedule.total is None:
        return None
    steps = math.ceil(schedule.total / _per_step(schedule, tokens_per_step))
    return max(steps, 1) * tokens_per_step


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) and not value.is_integer() else f"{int(value)}"


def schedule_fit_warning(
    schedule: Any,
    *,
    budget_tokens: int,
    tokens_per_step: int,
    total_override_hint: bool = True,
) -> str | None:
    """One line saying how ``schedule`` and the budget disagree, or ``None`` when they fit.

    ``schedule`` is an :class:`evertrain.schedules.Schedule`. ``total_override_hint`` adds the
    ``--set schedule.total=N`` form to the fix (only valid when the config's schedule is a mapping).
    """
    total = schedule.total
    if total is None:
        return None
    unit = getattr(schedule, "unit", "steps")
    per_step = _per_step(schedule, tokens_per_step)
    steps = total_steps(budget_tokens, tokens_per_step)
    end = steps * per_step
    last = (steps - 1) * per_step
    fits = fitting_budget(schedule, tokens_per_step)
    set_total = f" (--set schedule.total={end})" if total_override_hint else ""
    if end < total:
        return (
            f"schedule total={_number(total)} {unit} but the run ends at {end} {unit} "
            f"(budget_tokens={budget_tokens}, {steps} steps): the schedule will not finish its "
            f"decay; set the schedule's total to {end}{set_total} or raise budget_tokens to {fits}"
        )
    if last >= total:
        first_past = math.ceil(total / per_step)  # 0-based index of the first step at/after the end
        past = steps - first_past
        last_steps = "the last step trains" if past == 1 else f"the last {past} steps train"
        first_lr, last_lr = float(schedule(first_past * per_step)), float(schedule(last))
        lr_text = (
            f"lr={first_lr:.3g}" if first_lr == last_lr else f"lr {first_lr:.3g}..{last_lr:.3g}"
        )
        return (
            f"budget_tokens={budget_tokens} runs {steps} steps but the schedule ends at "
            f"total={_number(total)} {unit}: {last_steps} at or past its end at "
            f"{lr_text}; raise the schedule's total to {end}{set_total} or lower budget_tokens "
            f"to {fits}"
        )
    return None
