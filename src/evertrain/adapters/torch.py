"""A ``torch.optim.lr_scheduler.LRScheduler`` that drives any optimizer from an evertrain schedule.

The scheduler owns no LR math: ``lr = schedule(progress) * group_multiplier`` where ``schedule``
comes from :mod:`evertrain.schedules` and ``progress`` is optimizer steps or tokens seen, as the
schedule's ``unit`` says. Convention (as in Hugging Face ``LambdaLR`` schedules): the update at
0-based optimizer step ``k`` uses ``lr = s(k)`` (token units: ``s(tokens seen before step k)``), so a
fresh scheduler writes ``s(0)`` into the optimizer and every ``step()`` after ``optimizer.step()``
writes the LR of the next update.

What it fixes compared with ``LambdaLR`` + ``SequentialLR``:

* ``state_dict()`` stores the schedule **spec** and the **progress**, not a step counter that only
  means something together with constructor arguments. On load the checkpoint's spec wins; a new
  horizon or a new schedule is taken only when asked for (``override_spec=True``,
  :meth:`ScheduleLR.set_horizon`, :meth:`ScheduleLR.set_schedule`), with a warning that names the
  change (``"total: 24000 -> 48000"``).
* Token units: ``step(tokens=n)`` advances by the tokens of the step just taken, so a batch-size
  change mid-run keeps the schedule right.
* No chained/closed-form ambiguity: the LR is recomputed from the pure function at each step, so
  nothing drifts and ``SequentialLR``'s milestone off-by-ones cannot happen.
"""

from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from evertrain.adapters._common import (
    AdapterError,
    SpecLike,
    check_finite_positive,
    resolve_schedule,
    spec_diff,
)
from evertrain.schedules import Schedule, extend, from_spec

__all__ = ["ScheduleLR", "AdapterError"]

_STATE_FORMAT = "evertrain.ScheduleLR/1"

GroupMultipliers = Sequence[float] | Mapping[int | str, float] | None


def _resolve_multipliers(optimizer: Optimizer, multipliers: GroupMultipliers) -> list[float]:
    """One LR multiplier per param group: a list (one per group) or a mapping from group index or
    group ``"name"`` to multiplier (groups not named get 1.0)."""
    groups = optimizer.param_groups
    if multipliers is None:
        return [1.0] * len(groups)
    if isinstance(multipliers, Mapping):
        names = {group.get("name"): index for index, group in enumerate(groups) if "name" in group}
        resolved = [1.0] * len(groups)
        for key, value in multipliers.items():
            if isinstance(key, int) and not isinstance(key, bool):
                if not 0 <= key < len(groups):
                    raise AdapterError(
                        f"group_multipliers key {key} is out of range: the optimizer has "
                        f"{len(groups)} param groups (0..{len(groups) - 1})"
                    )
                index = key
            elif key in names:
                index = names[key]
            else:
                raise AdapterError(
                    f"group_multipliers key {key!r} names no param group: use a group index "
                    f"0..{len(groups) - 1} or one of the groups' 'name' values {sorted(map(str, names))}"
                )
            resolved[index] = check_finite_positive(value, what=f"group_multipliers[{key!r}]")
        return resolved
    values = list(multipliers)
    if len(values) != len(groups):
        raise AdapterError(
            f"group_multipliers has {len(values)} entries but the optimizer has {len(groups)} "
            "param groups: pass one multiplier per group, or a dict {group index or name: multiplier}"
        )
    return [check_finite_positive(v, what=f"group_multipliers[{i}]") for i, v in enumerate(values)]


def _count_tokens(tokens: Any, *, what: str = "tokens") -> int:
    """Validate a token count (int, numpy int or 0-d integer tensor) and return it as ``int``."""
    if isinstance(tokens, torch.Tensor):
        if tokens.numel() != 1 or tokens.is_floating_point():
            raise AdapterError(
                f"{what} must be one integer count, got a tensor of shape {tuple(tokens.shape)}"
            )
        tokens = tokens.item()
    if isinstance(tokens, bool) or not hasattr(tokens, "__index__"):
        if isinstance(tokens, float) and tokens.is_integer():
            tokens = int(tokens)
        else:
            raise AdapterError(f"{what}={tokens!r} must be a whole number of tokens >= 0")
    count = int(tokens)
    if count < 0:
        raise AdapterError(
            f"{what}={count} is negative: pass the tokens of the step just taken (>= 0)"
        )
    return count


def _innermost_optimizer(optimizer: Optimizer) -> Optimizer:
    """The optimizer that really holds the state: follow ``.optimizer`` through wrappers such as
    Accelerate's ``AcceleratedOptimizer`` (which shares its ``param_groups`` with the inner one)."""
    seen = {id(optimizer)}
    while not hasattr(optimizer, "_optimizer_load_state_dict_post_hooks"):
        inner = getattr(optimizer, "optimizer", None)
        if not isinstance(inner, Optimizer) or id(inner) in seen:
            break
        seen.add(id(inner))
        optimizer = inner
    return optimizer


class ScheduleLR(LRScheduler):
    """Drive an optimizer's learning rate (and optionally weight decay) from an evertrain schedule.

    ``lr_g(p) = s(p) * m_g`` for param group ``g`` with multiplier ``m_g``, where ``p`` is steps
    taken or tokens seen (the schedule's ``unit``). With a ``weight_decay`` schedule ``w``, groups
    whose initial ``weight_decay`` is non-zero get ``weight_decay = w(p)``; groups created with
    ``weight_decay=0`` (biases, norms) stay at 0.

    Args:
        optimizer: any ``torch.optim.Optimizer``. Its constructor ``lr`` is overwritten by ``s(0)``.
        spec: a :class:`~evertrain.schedules.Schedule`, a spec dict, an inline
            ``"wsd:peak=3e-4,total=24000,..."`` string or a YAML/JSON path.
        group_multipliers: one LR multiplier per param group (list), or ``{index or group name: m}``.
        weight_decay: optional schedule spec for the weight decay, in the same progress unit.
        tokens_per_step: token-unit schedules: tokens per optimizer step when ``step()`` is called
            without ``tokens=`` (a fixed batch). Ignored for step-unit schedules.
        override_spec: on :meth:`load_state_dict`, keep this constructor's spec instead of the
            checkpoint's (a resume with a new horizon or schedule on purpose; warns with the change).

    Usage::

        sched = ScheduleLR(opt, "wsd:peak=3e-4,total=24000,warmup=2160,decay_fraction=0.2")
        for batch in loader:
            loss(batch).backward(); opt.step(); opt.zero_grad()
            sched.step()                      # token units: sched.step(tokens=batch.numel())
    """

    def __init__(
        self,
        optimizer: Optimizer,
        spec: SpecLike,
        *,
        group_multipliers: GroupMultipliers = None,
        weight_decay: SpecLike | None = None,
        tokens_per_step: int | None = None,
        override_spec: bool = False,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise AdapterError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        self.schedule: Schedule = resolve_schedule(spec)
        self.weight_decay_schedule: Schedule | None = (
            None if weight_decay is None else resolve_schedule(weight_decay, what="weight_decay")
        )
        if (
            self.weight_decay_schedule is not None
            and self.weight_decay_schedule.unit != self.schedule.unit
        ):
            raise AdapterError(
                f"weight_decay schedule unit={self.weight_decay_schedule.unit!r} differs from the LR "
                f"schedule's unit={self.schedule.unit!r}: give both the same unit"
            )
        self.group_multipliers: list[float] = _resolve_multipliers(optimizer, group_multipliers)
        # Default multipliers are no statement of intent: a resume then silently takes the checkpoint's.
        self._multipliers_given = group_multipliers is not None
        self.tokens_per_step: int | None = (
            None
            if tokens_per_step is None
            else _count_tokens(tokens_per_step, what="tokens_per_step")
        )
        if self.tokens_per_step == 0:
            raise AdapterError(
                "tokens_per_step=0: pass the tokens in one optimizer step (> 0), or None"
            )
        self.override_spec = bool(override_spec)
        # Groups created without weight decay (biases, norms) must stay without it.
        self._decayed_groups: list[bool] = [
            bool(group.get("weight_decay", 0.0)) for group in optimizer.param_groups
        ]
        if self.weight_decay_schedule is not None and not any(self._decayed_groups):
            raise AdapterError(
                "weight_decay schedule given but every param group has weight_decay=0: set a "
                "non-zero weight_decay on the groups it should apply to"
            )
        self.steps: int = 0
        self.tokens_seen: int = 0
        self._pending_tokens: int | None = None
        # LRScheduler.__init__ records initial_lr, patches optimizer.step (for torch's
        # "scheduler.step() before optimizer.step()" warning) and calls _initial_step below.
        super().__init__(optimizer)
        self._register_optimizer_load_hook()

    # ----------------------------------------------------------------------------------------
    # progress and the per-step path (kept lean: one schedule call and a loop over groups)

    @property
    def unit(self) -> str:
        """``"steps"`` or ``"tokens"``: what :attr:`progress` counts (the schedule's unit)."""
        return self.schedule.unit

    @property
    def progress(self) -> float:
        """Progress in the schedule's unit: optimizer steps taken, or tokens seen."""
        return self.tokens_seen if self.schedule.unit == "tokens" else self.steps

    def _initial_step(self) -> None:
        # Torch's default advances one step at construction; we only write s(0) into the groups.
        self._step_count = 1
        self.last_epoch = 0
        self._apply()

    def _apply(self) -> None:
        """Write ``s(progress) * m_g`` (and the weight decay) into the optimizer's param groups."""
        lr = self.schedule(self.progress)
        last = []
        for group, multiplier in zip(
            self.optimizer.param_groups, self.group_multipliers, strict=True
        ):
            value = lr * multiplier
            current = group["lr"]
            # Capturable / compiled optimizers keep tensor LRs: fill in place, never rebind.
            if isinstance(current, torch.Tensor):
                current.fill_(value)
            else:
                group["lr"] = value
            last.append(value)
        self._last_lr = last
        if self.weight_decay_schedule is not None:
            decay = self.weight_decay_schedule(self.progress)
            for group, decayed in zip(
                self.optimizer.param_groups, self._decayed_groups, strict=True
            ):
                if decayed:
                    group["weight_decay"] = decay

    def add_tokens(self, tokens: int) -> None:
        """Record tokens of the current optimizer step (e.g. per micro-batch under grad
        accumulation); the next :meth:`step` without ``tokens=`` consumes them."""
        count = _count_tokens(tokens)
        self._pending_tokens = (
            count if self._pending_tokens is None else self._pending_tokens + count
        )

    def step(self, epoch: int | None = None, *, tokens: int | None = None) -> None:  # type: ignore[override]
        """Advance one optimizer step and set the LR of the next update.

        Args:
            epoch: not supported (torch deprecated it); use :meth:`step_update` to set progress.
            tokens: tokens consumed by the optimizer step just taken. Token-unit schedules need
                ``tokens``, tokens recorded with :meth:`add_tokens`, or ``tokens_per_step``.
        """
        if epoch is not None:
            raise AdapterError(
                f"ScheduleLR.step(epoch={epoch!r}) is not supported: call step() once per optimizer "
                "step, or step_update(num_updates) to set progress explicitly"
            )
        if tokens is None:
            tokens = self._pending_tokens
            if tokens is None:
                tokens = self.tokens_per_step
        else:
            tokens = _count_tokens(tokens)
            if self._pending_tokens is not None:
                raise AdapterError(
                    f"step(tokens={tokens}) called after add_tokens() recorded "
                    f"{self._pending_tokens} tokens for this step: use one or the other"
                )
        self._pending_tokens = None
        if tokens is None:
            if self.schedule.unit == "tokens":
                raise AdapterError(
                    "this schedule has unit='tokens' but step() got no token count: call "
                    "step(tokens=n), add_tokens(n) before step(), or pass tokens_per_step=n"
                )
        else:
            self.tokens_seen += tokens
        self.steps += 1
        self.last_epoch = self.steps
        self._step_count += 1
        self._apply()

    def step_update(self, num_updates: int, tokens: int | None = None) -> None:
        """Set progress explicitly (timm style): ``num_updates`` optimizer steps taken and, for
        token units, ``tokens`` seen (default ``num_updates * tokens_per_step``)."""
        steps = _count_tokens(num_updates, what="num_updates")
        if tokens is None:
            if self.schedule.unit == "tokens":
                if self.tokens_per_step is None:
                    raise AdapterError(
                        "step_update() on a token-unit schedule needs tokens=... (tokens seen) "
                        "or tokens_per_step set on the scheduler"
                    )
                tokens = steps * self.tokens_per_step
            else:
                tokens = self.tokens_seen
        self.tokens_seen = _count_tokens(tokens)
        self.steps = steps
        self.last_epoch = steps
        self._pending_tokens = None
        self._apply()

    def get_lr(self) -> list[float]:
        """The LRs for the next update, ``s(progress) * m_g`` per group (no side effects)."""
        lr = self.schedule(self.progress)
        return [lr * multiplier for multiplier in self.group_multipliers]

    # ----------------------------------------------------------------------------------------
    # deliberate changes of plan

    def set_schedule(self, spec: SpecLike, *, reason: str = "set_schedule") -> None:
        """Replace the schedule at the current progress on purpose; warns naming the change and
        the LR jump at the current progress, then writes the new LR into the optimizer."""
        new = resolve_schedule(spec)
        if new.unit != self.schedule.unit:
            raise AdapterError(
                f"new schedule unit={new.unit!r} differs from the current unit="
                f"{self.schedule.unit!r}: progress ({self.progress} {self.schedule.unit}) cannot carry over"
            )
        old = self.schedule
        change = spec_diff(old.to_spec(), new.to_spec())
        if change:
            at = self.progress
            warnings.warn(
                f"ScheduleLR {reason}: {change} (at progress {at} {self.unit}: "
                f"lr {old(at):.6g} -> {new(at):.6g})",
                UserWarning,
                stacklevel=3 if reason != "set_schedule" else 2,
            )
        self.schedule = new
        self._apply()

    def set_horizon(self, new_total: float, *, replan: bool = False) -> None:
        """Give the run a new planned end on purpose (e.g. train longer than planned), without a
        jump in the LR already reached.

        By default this is :func:`evertrain.schedules.extend` at the current progress: while the
        decay (or anneal) has not begun, the same schedule re-planned for ``new_total``
        (:meth:`Schedule.with_total`: absolute phase lengths stay, fractions are re-applied);
        once it has begun, the schedule so far, then a decay from the LR reached to the original
        final LR at ``new_total``. ``replan=True`` re-plans the whole schedule with
        ``with_total`` even mid-decay, where the LR jumps back up (the warning says by how much).
        Warns with the change, e.g. ``"total: 24000 -> 48000"``.
        """
        if not (isinstance(new_total, int | float) and math.isfinite(new_total) and new_total > 0):
            raise AdapterError(f"new_total={new_total!r} must be a finite number > 0")
        if isinstance(new_total, float) and new_total.is_integer():
            new_total = int(new_total)
        replanned = self.schedule.with_total(new_total)  # an open-ended schedule has no horizon
        at = self.progress
        if replan or at == 0:
            self.set_schedule(replanned, reason="set_horizon")
            return
        if at >= new_total:
            raise AdapterError(
                f"set_horizon({new_total}): the run is already at {at} {self.unit}; pass a "
                f"new_total after the current progress"
            )
        extended = extend(self.schedule, new_total, at=at)
        if extended.to_spec() == replanned.to_spec():  # the decay has not begun: same plan
            self.set_schedule(replanned, reason="set_horizon")
            return
        old = self.schedule
        warnings.warn(
            f"ScheduleLR set_horizon: total: {old.total:g} -> {new_total:g} (at progress {at} "
            f"{self.unit}, past the start of the decay: lr {old(at):.6g} continues and decays "
            f"to {extended(new_total):.6g} at {new_total:g}; set_horizon({new_total}, "
            f"replan=True) re-plans the whole schedule instead, lr {old(at):.6g} -> "
            f"{replanned(at):.6g})",
            UserWarning,
            stacklevel=2,
        )
        self.schedule = extended
        self._apply()

    # ----------------------------------------------------------------------------------------
    # checkpoints

    def state_dict(self) -> dict[str, Any]:
        """The schedule spec, the progress and the multipliers: everything a resume needs.

        Only plain Python types (so ``torch.load(weights_only=True)`` reads it, as HF Trainer does).
        """
        return {
            "format": _STATE_FORMAT,
            "spec": self.schedule.to_spec(),
            "weight_decay_spec": None
            if self.weight_decay_schedule is None
            else self.weight_decay_schedule.to_spec(),
            "unit": self.schedule.unit,
            "steps": self.steps,
            "tokens_seen": self.tokens_seen,
            "pending_tokens": self._pending_tokens,
            "tokens_per_step": self.tokens_per_step,
            "group_multipliers": list(self.group_multipliers),
            # torch's own fields, for tools that read them
            "last_epoch": self.last_epoch,
            "_step_count": self._step_count,
            "_last_lr": [float(v) for v in self._last_lr],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore spec and progress. The checkpoint's spec wins over the constructor's unless
        ``override_spec=True`` was passed; either way a difference is warned about by name."""
        if not isinstance(state_dict, Mapping) or state_dict.get("format") != _STATE_FORMAT:
            found = (
                state_dict.get("format")
                if isinstance(state_dict, Mapping)
                else type(state_dict).__name__
            )
            raise AdapterError(
                f"state_dict format={found!r} is not a ScheduleLR state ({_STATE_FORMAT!r}): "
                "load a dict saved by ScheduleLR.state_dict()"
            )
        multipliers = list(state_dict["group_multipliers"])
        if len(multipliers) != len(self.optimizer.param_groups):
            raise AdapterError(
                f"checkpoint has {len(multipliers)} group multipliers but the optimizer has "
                f"{len(self.optimizer.param_groups)} param groups: build the optimizer with the "
                "same param groups as the checkpointed run"
            )
        saved = from_spec(state_dict["spec"])
        saved_wd = (
            None
            if state_dict["weight_decay_spec"] is None
            else from_spec(state_dict["weight_decay_spec"])
        )
        self.steps = int(state_dict["steps"])
        self.tokens_seen = int(state_dict["tokens_seen"])
        self._pending_tokens = state_dict.get("pending_tokens")
        self.last_epoch = int(state_dict.get("last_epoch", self.steps))
        self._step_count = int(state_dict.get("_step_count", self.steps + 1))
        if self.tokens_per_step is None:
            self.tokens_per_step = state_dict.get("tokens_per_step")
        mine, my_wd = self.schedule, self.weight_decay_schedule
        lr_change = spec_diff(saved.to_spec(), mine.to_spec())
        wd_change = (
            ""
            if saved_wd is None and my_wd is None
            else spec_diff(
                {} if saved_wd is None else saved_wd.to_spec(),
                {} if my_wd is None else my_wd.to_spec(),
            )
        )
        mult_change = (
            f"group_multipliers: {multipliers} -> {self.group_multipliers}"
            if self._multipliers_given and multipliers != self.group_multipliers
            else ""
        )
        if self.override_spec:
            if not self._multipliers_given:
                self.group_multipliers = multipliers
            if saved.unit != mine.unit:
                raise AdapterError(
                    f"override_spec=True but the constructor's unit={mine.unit!r} differs from the "
                    f"checkpoint's unit={saved.unit!r}: progress cannot carry over between units"
                )
            changes = "; ".join(
                c
                for c in (lr_change, "weight_decay " + wd_change if wd_change else "", mult_change)
                if c
            )
            if changes:
                at = self.progress
                warnings.warn(
                    f"ScheduleLR resumed with override_spec=True: {changes} (at progress {at} "
                    f"{self.unit}: lr {saved(at):.6g} -> {mine(at):.6g})",
                    UserWarning,
                    stacklevel=2,
                )
        else:
            changes = "; ".join(
                c
                for c in (lr_change, "weight_decay " + wd_change if wd_change else "", mult_change)
                if c
            )
            if changes:
                warnings.warn(
                    f"ScheduleLR: the constructor's schedule differs from the checkpoint's ({changes}); "
                    "the checkpoint wins. To change the plan on purpose pass override_spec=True, or "
                    "call set_horizon(new_total) / set_schedule(spec) after loading.",
                    UserWarning,
                    stacklevel=2,
                )
            self.schedule, self.weight_decay_schedule = saved, saved_wd
            self.group_multipliers = multipliers
        self._apply()

    # Re-apply our LRs after optimizer.load_state_dict: the optimizer's checkpoint carries the
    # group LRs of the old plan, which would otherwise silently win for one step.
    def _register_optimizer_load_hook(self) -> None:
        # Wrappers (Accelerate's ``AcceleratedOptimizer``, and others built the same way) subclass
        # Optimizer without running its __init__, so they have no hook registry of their own;
        # their load_state_dict forwards to the wrapped optimizer, whose hooks do fire.
        target = _innermost_optimizer(self.optimizer)
        register = getattr(target, "register_load_state_dict_post_hook", None)
        if register is None or not hasattr(target, "_optimizer_load_state_dict_post_hooks"):
            return
        ref = weakref.ref(self)

        def reapply(optimizer: Optimizer) -> None:
            scheduler = ref()
            if scheduler is not None and _innermost_optimizer(scheduler.optimizer) is optimizer:
                scheduler._apply()

        register(reapply)

    def __repr__(self) -> str:
        return f"ScheduleLR({self.schedule!r}, progress={self.progress} {self.unit})"
