"""Hugging Face ``transformers.Trainer`` bindings.

Two pieces:

* :func:`create_optimizer_and_scheduler` builds ``(AdamW, ScheduleLR)`` for
  ``Trainer(optimizers=(optimizer, scheduler))`` with the usual decay / no-decay param groups.
* :class:`TokenCountingCallback` feeds token-unit schedules. It uses the Trainer's own token
  counter (``include_num_input_tokens_seen``: attention-mask sum for ``"non_padding"``, the input
  tensor's size for ``"all"``, gathered over all processes), switching it on if it is off, and hands
  each optimizer step's tokens to the scheduler between ``optimizer.step()`` and the Trainer's
  ``lr_scheduler.step()`` (the ``on_optimizer_step`` event). It also warns when a step-unit
  schedule's ``total`` differs from the Trainer's ``max_steps`` (a run that stops before its decay).

The Trainer logs ``learning_rate`` read after ``optimizer.step()`` and before
``lr_scheduler.step()``, so the value logged at ``global_step = k + 1`` is ``s(k)``, the LR that
update ``k`` used.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from evertrain.adapters._common import AdapterError, SpecLike, resolve_schedule
from evertrain.adapters.torch import GroupMultipliers, ScheduleLR

__all__ = ["create_optimizer_and_scheduler", "TokenCountingCallback", "decay_param_groups"]


def decay_param_groups(
    model: torch.nn.Module,
    weight_decay: float,
    *,
    no_decay: Callable[[str, torch.nn.Parameter], bool] | None = None,
) -> list[dict[str, Any]]:
    """Split trainable parameters into a ``"decay"`` group and a ``"no_decay"`` group.

    By default (as in nanoGPT) tensors with fewer than 2 dimensions -- biases, norm gains -- get
    no weight decay; pass ``no_decay(name, param) -> bool`` to choose otherwise. Empty groups are
    dropped. Groups carry a ``"name"`` so ``group_multipliers={"no_decay": 0.5}`` can refer to them.
    """
    is_no_decay = no_decay or (lambda _name, param: param.ndim < 2)
    decay, skip = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (skip if is_no_decay(name, param) else decay).append(param)
    groups = [
        {"name": "decay", "params": decay, "weight_decay": weight_decay},
        {"name": "no_decay", "params": skip, "weight_decay": 0.0},
    ]
    groups = [group for group in groups if group["params"]]
    if not groups:
        raise AdapterError(
            "model has no trainable parameters (requires_grad=True): nothing to optimise"
        )
    return groups


def create_optimizer_and_scheduler(
    model: torch.nn.Module,
    spec: SpecLike,
    *,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    optimizer_cls: type[torch.optim.Optimizer] = torch.optim.AdamW,
    group_multipliers: GroupMultipliers = None,
    weight_decay_schedule: SpecLike | None = None,
    tokens_per_step: int | None = None,
    no_decay: Callable[[str, torch.nn.Parameter], bool] | None = None,
    override_spec: bool = False,
    **optimizer_kwargs: Any,
) -> tuple[torch.optim.Optimizer, ScheduleLR]:
    """Build ``(optimizer, scheduler)`` for ``Trainer(optimizers=(optimizer, scheduler))``.

    The Trainer's ``learning_rate``/``lr_scheduler_type``/``warmup_*`` arguments are then unused:
    the LR comes only from ``spec``. Set ``max_steps`` to the schedule's total (step units) so the
    run ends where the schedule does; :class:`TokenCountingCallback` warns if they differ.

    Args:
        model: the model whose trainable parameters are optimised.
        spec: evertrain schedule (Schedule, dict, inline string or YAML/JSON path).
        weight_decay: decoupled weight decay of the ``"decay"`` group (``"no_decay"`` gets 0).
        betas, eps, optimizer_kwargs: passed to ``optimizer_cls`` (default ``torch.optim.AdamW``).
        group_multipliers: LR multipliers, e.g. ``{"no_decay": 1.0, "decay": 0.5}``.
        weight_decay_schedule: optional schedule spec for the ``"decay"`` group's weight decay.
        tokens_per_step: for token-unit schedules without :class:`TokenCountingCallback`.
        no_decay: ``(name, param) -> bool`` choosing the no-decay parameters.
        override_spec: on ``resume_from_checkpoint``, keep this ``spec`` (e.g. a longer ``total``)
            instead of the checkpoint's; warns naming the change.
    """
    schedule = resolve_schedule(spec)
    if weight_decay < 0:
        raise AdapterError(f"weight_decay={weight_decay} is negative: pass a value >= 0")
    # A weight-decay schedule overwrites the value at once; the placeholder only marks the group
    # as decayed (ScheduleLR keeps groups created with weight_decay=0 at 0).
    initial_decay = 1.0 if weight_decay_schedule is not None else weight_decay
    groups = decay_param_groups(model, initial_decay, no_decay=no_decay)
    optimizer = optimizer_cls(groups, lr=schedule(0), betas=betas, eps=eps, **optimizer_kwargs)
    scheduler = ScheduleLR(
        optimizer,
        schedule,
        group_multipliers=group_multipliers,
        weight_decay=weight_decay_schedule,
        tokens_per_step=tokens_per_step,
        override_spec=override_spec,
    )
    return optimizer, scheduler


class TokenCountingCallback(TrainerCallback):
    """Count tokens per optimizer step and feed them to a token-unit :class:`ScheduleLR`.

    Args:
        scheduler: the ScheduleLR to feed; default: the Trainer's ``lr_scheduler``.
        count: ``"non_padding"`` (attention-mask sum; default) or ``"all"`` (sequence length x
            batch). Used when the Trainer's ``include_num_input_tokens_seen`` is off; if it is on,
            the Trainer's setting is kept.

    Attributes:
        tokens_per_step: the token counts handed to the scheduler, one per optimizer step.
    """

    def __init__(self, scheduler: ScheduleLR | None = None, *, count: str = "non_padding") -> None:
        if count not in ("non_padding", "all"):
            raise AdapterError(f"count={count!r} is not one of 'non_padding', 'all'")
        if scheduler is not None and not isinstance(scheduler, ScheduleLR):
            raise AdapterError(
                f"scheduler must be an evertrain ScheduleLR, got {type(scheduler).__name__}"
            )
        self.scheduler = scheduler
        self.count = count
        self.tokens_per_step: list[int] = []
        self._last_seen = 0

    def _switch_on_counting(self, args: TrainingArguments) -> None:
        if args.include_num_input_tokens_seen in ("no", False, None):
            # The Trainer reads this flag at every micro-batch, so switching it on here takes effect.
            args.include_num_input_tokens_seen = self.count

    def _scheduler(self, lr_scheduler: Any) -> ScheduleLR | None:
        return (
            self.scheduler
            if self.scheduler is not None
            else (lr_scheduler if isinstance(lr_scheduler, ScheduleLR) else None)
        )

    def on_init_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._switch_on_counting(args)

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._switch_on_counting(args)
        # On resume the Trainer restores num_input_tokens_seen; count only what comes after.
        self._last_seen = int(state.num_input_tokens_seen)
        scheduler = self._scheduler(kwargs.get("lr_scheduler"))
        if scheduler is None:
            warnings.warn(
                "TokenCountingCallback: the Trainer's lr_scheduler is not an evertrain ScheduleLR, "
                "so no tokens are fed: pass optimizers=create_optimizer_and_scheduler(...)",
                UserWarning,
                stacklevel=2,
            )
            return
        schedule = scheduler.schedule
        if schedule.unit == "steps" and schedule.total is not None and state.max_steps > 0:
            if int(state.max_steps) != schedule.total:
                warnings.warn(
                    f"schedule total={schedule.total:g} steps but the Trainer runs max_steps="
                    f"{state.max_steps}: set TrainingArguments(max_steps={schedule.total:g}) so the "
                    "run ends where the schedule does",
                    UserWarning,
                    stacklevel=2,
                )

    def on_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        # Runs after optimizer.step() and before the Trainer's lr_scheduler.step().
        scheduler = self._scheduler(kwargs.get("lr_scheduler"))
        seen = int(state.num_input_tokens_seen)
        tokens, self._last_seen = seen - self._last_seen, seen
        if scheduler is not None:
            scheduler.add_tokens(tokens)
            self.tokens_per_step.append(tokens)
