"""Hugging Face ``transformers.Trainer`` bindings.

* :class:`EvertrainTrainer` -- the native path: ``EvertrainTrainer(schedule=spec, args=..., ...)``
  is a ``Trainer`` whose own ``create_scheduler`` builds a :class:`ScheduleLR` from the spec on the
  Trainer's own optimizer, so ``optim``, ``learning_rate``, ``weight_decay`` and the Adam arguments
  are honoured. ``learning_rate`` fills the spec's ``peak`` and ``warmup_steps`` its ``warmup``
  where the spec leaves them out (``max_steps`` fills ``total``); where both are set and disagree
  the spec wins with one warning naming both values. :func:`scheduler_from_training_args` is the
  same step for a Trainer subclass of your own.
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

import dataclasses
import math
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import (
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from evertrain.adapters._common import AdapterError, SpecLike, resolve_schedule
from evertrain.adapters.torch import GroupMultipliers, ScheduleLR
from evertrain.schedules import Schedule, ScheduleError
from evertrain.schedules.registry import (
    accepted_parameters,
    canonical_name,
    load_spec_file,
    parse_inline,
)

__all__ = [
    "EvertrainTrainer",
    "scheduler_from_training_args",
    "schedule_from_training_args",
    "create_optimizer_and_scheduler",
    "TokenCountingCallback",
    "decay_param_groups",
]

# TrainingArguments' own defaults: a value equal to its default is "not set" by the user.
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainingArguments)}


def _spec_mapping(spec: SpecLike) -> dict[str, Any] | None:
    """The spec as a dict whose fields may still be open, or None for a built Schedule."""
    if isinstance(spec, Schedule):
        return None
    if isinstance(spec, Mapping):
        return dict(spec)
    if isinstance(spec, (str, os.PathLike)):
        text = os.fspath(spec)
        if Path(text).suffix.lower() in (".yaml", ".yml", ".json") or Path(text).is_file():
            return load_spec_file(text)
        return parse_inline(text)
    resolve_schedule(spec)  # raises the one-line error naming what a spec may be
    return None


def _fill(
    spec: dict[str, Any], key: str | None, value: float, *, theirs: str, ours: str
) -> str | None:
    """Put ``value`` into the open field ``key``; if the spec sets it differently, say so."""
    if key is None:
        return None
    if key not in spec or spec[key] is None:
        spec[key] = value
        return None
    if not math.isclose(float(spec[key]), float(value), rel_tol=1e-9, abs_tol=0.0):
        return (
            f"evertrain schedule {key}={spec[key]:g} and TrainingArguments {theirs}={value:g} "
            f"disagree: the schedule's {key}={spec[key]:g} is used ({ours})"
        )
    return None


def _warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)


def schedule_from_training_args(
    spec: SpecLike,
    args: TrainingArguments,
    num_training_steps: int,
    *,
    tokens_per_step: int | None = None,
) -> Schedule:
    """The evertrain schedule for a Trainer run: ``spec`` with its open fields read from ``args``.

    ``peak`` (``value`` for ``constant``) comes from ``args.learning_rate``, ``warmup`` from
    ``args.warmup_steps`` (a value below 1 is a ratio of ``num_training_steps``, as in
    transformers; ``warmup_ratio`` where the installed transformers still has it) and ``total``
    from ``num_training_steps``, each only where the spec leaves it out. Token-unit specs convert
    steps with ``tokens_per_step``. A field set on both sides to different values keeps the spec's
    value, with one warning naming both. A non-default ``lr_scheduler_type`` is ignored, with one
    warning. A built :class:`Schedule` has no open fields; it is compared and used as it is.
    """
    mapping = _spec_mapping(spec)
    schedule_type = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
    if schedule_type != getattr(_DEFAULTS["lr_scheduler_type"], "value", "linear"):
        _warn(
            f"TrainingArguments lr_scheduler_type={schedule_type!r} is ignored: the evertrain "
            "schedule sets the LR (drop lr_scheduler_type, or drop schedule= to use it)"
        )
    warmup_steps = args.get_warmup_steps(num_training_steps)
    ratio = getattr(args, "warmup_ratio", 0.0) or 0.0  # transformers < 5 only
    if not warmup_steps and ratio:
        warmup_steps = math.ceil(num_training_steps * ratio)
    if mapping is None:
        mapping = spec.to_spec()  # type: ignore[union-attr]
    name = canonical_name(str(mapping.get("name", "")))
    try:
        params = set(accepted_parameters(name))
    except KeyError:
        params = set()  # an unknown name: resolve_schedule below gives the error
    per_step = 1 if mapping.get("unit", "steps") != "tokens" else tokens_per_step
    problems = []
    lr_key = "peak" if "peak" in params else ("value" if "value" in params else None)
    # The default learning_rate is no statement of intent: it fills an open peak, never disagrees.
    if lr_key is not None and (
        mapping.get(lr_key) is None or args.learning_rate != _DEFAULTS["learning_rate"]
    ):
        problems.append(
            _fill(mapping, lr_key, args.learning_rate, theirs="learning_rate", ours="spec wins")
        )
    if warmup_steps and "warmup" not in params:
        problems.append(
            f"TrainingArguments warmup_steps={warmup_steps} is ignored: schedule {name!r} has no "
            "warmup field (put the warmup into the schedule)"
        )
    elif warmup_steps and per_step is None:
        if mapping.get("warmup") is None:
            raise AdapterError(
                f"TrainingArguments warmup_steps={warmup_steps} counts optimizer steps but the "
                "schedule counts tokens: set warmup (in tokens) in the schedule, or pass "
                "tokens_per_step"
            )
    elif warmup_steps:
        problems.append(
            _fill(
                mapping, "warmup", warmup_steps * per_step, theirs="warmup_steps", ours="spec wins"
            )
        )
    if "total" in params and mapping.get("total") is None and num_training_steps > 0:
        if per_step is None:
            raise AdapterError(
                "the schedule counts tokens and sets no total: set total (tokens) in the schedule, "
                "or pass tokens_per_step so max_steps can be converted"
            )
        mapping["total"] = num_training_steps * per_step
    for problem in problems:
        if problem:
            _warn(problem)
    try:
        schedule = resolve_schedule(mapping)
    except ScheduleError as error:
        raise AdapterError(f"schedule: {error}") from None
    if schedule.unit == "steps" and schedule.total is not None and num_training_steps > 0:
        if schedule.total != num_training_steps:
            _warn(
                f"schedule total={schedule.total:g} steps but the Trainer runs "
                f"max_steps={num_training_steps}: set max_steps={schedule.total:g} (or leave "
                "total out of the schedule) so the run ends where the schedule does"
            )
    return schedule


def scheduler_from_training_args(
    optimizer: torch.optim.Optimizer,
    spec: SpecLike,
    args: TrainingArguments,
    num_training_steps: int,
    *,
    tokens_per_step: int | None = None,
    group_multipliers: GroupMultipliers = None,
    override_spec: bool = False,
) -> ScheduleLR:
    """A :class:`ScheduleLR` on the Trainer's optimizer, for ``Trainer.create_scheduler``.

    The schedule is :func:`schedule_from_training_args`; in a Trainer subclass of your own::

        def create_scheduler(self, num_training_steps, optimizer=None):
            if self.lr_scheduler is None:
                self.lr_scheduler = scheduler_from_training_args(
                    optimizer or self.optimizer, spec, self.args, num_training_steps)
            return self.lr_scheduler
    """
    schedule = schedule_from_training_args(
        spec, args, num_training_steps, tokens_per_step=tokens_per_step
    )
    return ScheduleLR(
        optimizer,
        schedule,
        group_multipliers=group_multipliers,
        tokens_per_step=tokens_per_step,
        override_spec=override_spec,
    )


class EvertrainTrainer(Trainer):
    """``transformers.Trainer`` with its LR from an evertrain schedule.

    Everything else is the Trainer's: its optimizer (``optim``, ``learning_rate``,
    ``weight_decay``, ``adam_*``), its checkpoints (``scheduler.pt`` is the
    :class:`ScheduleLR` state: spec and progress, so ``resume_from_checkpoint`` continues the
    same LR sequence) and its logging. See :func:`schedule_from_training_args` for how the spec's
    open fields are read from ``args``.

    Args:
        schedule: evertrain schedule (Schedule, dict, inline string or YAML/JSON path); its
            ``peak`` / ``warmup`` / ``total`` may be left out to take the Trainer's.
        tokens_per_step: for token-unit schedules: tokens in one optimizer step. Or add
            :class:`TokenCountingCallback` to ``callbacks`` to count the real tokens instead.
        group_multipliers, override_spec: as for :class:`ScheduleLR`.
        *args, **kwargs: the Trainer's own arguments (not ``optimizers=``: the optimizer is the
            Trainer's and the scheduler is this class's).
    """

    def __init__(
        self,
        *args: Any,
        schedule: SpecLike,
        tokens_per_step: int | None = None,
        group_multipliers: GroupMultipliers = None,
        override_spec: bool = False,
        **kwargs: Any,
    ) -> None:
        optimizers = kwargs.get("optimizers")
        if optimizers is not None and optimizers[1] is not None:
            raise AdapterError(
                "EvertrainTrainer builds the scheduler from schedule=: pass optimizers=(optimizer, "
                "None) or leave optimizers out"
            )
        self.evertrain_schedule = schedule
        self.evertrain_tokens_per_step = tokens_per_step
        self.evertrain_group_multipliers = group_multipliers
        self.evertrain_override_spec = override_spec
        mapping = _spec_mapping(schedule)
        unit = (mapping or {}).get("unit") or getattr(schedule, "unit", "steps")
        super().__init__(*args, **kwargs)
        counted = any(
            isinstance(cb, TokenCountingCallback) for cb in self.callback_handler.callbacks
        )
        if unit == "tokens" and tokens_per_step is None and not counted:
            raise AdapterError(
                "schedule has unit='tokens' but the Trainer counts optimizer steps: pass "
                "tokens_per_step=<tokens in one optimizer step>, or "
                "callbacks=[TokenCountingCallback()] to count the real tokens"
            )

    def create_scheduler(
        self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None
    ) -> ScheduleLR:
        """Build the :class:`ScheduleLR` on the Trainer's own optimizer (once per ``train()``)."""
        if self.lr_scheduler is None:
            self.lr_scheduler = scheduler_from_training_args(
                optimizer if optimizer is not None else self.optimizer,
                self.evertrain_schedule,
                self.args,
                num_training_steps,
                tokens_per_step=self.evertrain_tokens_per_step,
                group_multipliers=self.evertrain_group_multipliers,
                override_spec=self.evertrain_override_spec,
            )
            # The Trainer rebuilds a scheduler it created on the next train() (new max_steps).
            self._created_lr_scheduler = True
        return self.lr_scheduler


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
