"""An evertrain schedule in a Hugging Face Accelerate loop: :func:`prepare_scheduler`.

``accelerator.prepare(scheduler)`` wraps a scheduler in ``AcceleratedScheduler``, which (with the
default ``split_batches=False``) calls ``scheduler.step()`` ``num_processes`` times per optimizer
step: right for an HF ``LambdaLR`` planned for a single process, wrong for an evertrain schedule,
whose progress is the optimizer steps (or tokens) actually taken. :func:`prepare_scheduler`
registers the scheduler with the accelerator (so ``save_state`` / ``load_state`` carry it) and
makes the wrapper step it exactly once per real optimizer step: not on the micro-steps of gradient
accumulation, not when a mixed-precision step was skipped, and once however many processes run.
"""

from __future__ import annotations

from typing import Any

import torch

from evertrain.adapters._common import SpecLike
from evertrain.adapters.torch import GroupMultipliers, ScheduleLR

__all__ = ["prepare_scheduler"]


def prepare_scheduler(
    accelerator: Any,
    optimizer: torch.optim.Optimizer,
    spec: SpecLike,
    *,
    tokens_per_step: int | None = None,
    group_multipliers: GroupMultipliers = None,
    override_spec: bool = False,
) -> Any:
    """A :class:`ScheduleLR` on ``optimizer`` (the one ``accelerator.prepare`` returned), prepared.

    Call ``scheduler.step()`` after ``optimizer.step()`` on every batch, inside or outside
    ``accelerator.accumulate(model)``: the schedule advances once per optimizer update.
    ``scheduler.scheduler`` is the :class:`ScheduleLR` (``.schedule``, ``.progress``).

    Args:
        accelerator: the ``accelerate.Accelerator`` of the loop.
        optimizer: the prepared optimizer.
        spec: evertrain schedule (Schedule, dict, inline string or YAML/JSON path).
        tokens_per_step: token-unit schedules: tokens in one optimizer step (all processes).
        group_multipliers, override_spec: as for :class:`ScheduleLR`.
    """
    scheduler = ScheduleLR(
        optimizer,
        spec,
        group_multipliers=group_multipliers,
        tokens_per_step=tokens_per_step,
        override_spec=override_spec,
    )
    prepared = accelerator.prepare_scheduler(scheduler)
    # One step per optimizer update, never num_processes of them (see the module docstring).
    prepared.split_batches = True
    prepared.step_with_optimizer = True
    return prepared
