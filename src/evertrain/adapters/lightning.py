"""Lightning binding: the ``lr_scheduler`` config dict for ``configure_optimizers``.

Lightning steps an ``interval="step"`` scheduler once per optimizer step (after gradient
accumulation), after ``on_train_batch_end``. Token-unit schedules get their tokens either from
``tokens_per_step`` or from :class:`LightningTokenCounter`, a callback that counts the tokens of
each training batch (``attention_mask`` sum if the batch has one, else the input's size) and hands
them to the scheduler before Lightning steps it. Lightning checkpoints save and restore the
scheduler's ``state_dict()``, which holds the spec and the progress.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from evertrain.adapters._common import AdapterError, SpecLike
from evertrain.adapters.torch import GroupMultipliers, ScheduleLR

__all__ = ["lightning_scheduler_config", "LightningTokenCounter", "count_batch_tokens"]


def lightning_scheduler_config(
    optimizer: torch.optim.Optimizer,
    spec: SpecLike,
    *,
    group_multipliers: GroupMultipliers = None,
    weight_decay: SpecLike | None = None,
    tokens_per_step: int | None = None,
    override_spec: bool = False,
    name: str | None = "lr",
) -> dict[str, Any]:
    """Return ``{"scheduler": ScheduleLR(...), "interval": "step", "frequency": 1, "name": name}``.

    Use as ``return {"optimizer": opt, "lr_scheduler": lightning_scheduler_config(opt, spec)}``
    from ``LightningModule.configure_optimizers``. ``override_spec=True`` keeps this ``spec``
    (e.g. a longer ``total``) when resuming from a checkpoint with ``ckpt_path``, with a warning.
    """
    scheduler = ScheduleLR(
        optimizer,
        spec,
        group_multipliers=group_multipliers,
        weight_decay=weight_decay,
        tokens_per_step=tokens_per_step,
        override_spec=override_spec,
    )
    return {"scheduler": scheduler, "interval": "step", "frequency": 1, "name": name}


def count_batch_tokens(batch: Any) -> int:
    """Tokens in a batch: the ``attention_mask`` sum if present, else the size of ``input_ids``
    (mapping batches) or of the first tensor (tuple/list/tensor batches)."""
    if isinstance(batch, Mapping):
        if "attention_mask" in batch:
            return int(batch["attention_mask"].sum())
        if "input_ids" in batch:
            return int(batch["input_ids"].numel())
        batch = next(iter(batch.values()), None)
    if isinstance(batch, list | tuple) and batch:
        batch = batch[0]
    if isinstance(batch, torch.Tensor):
        return int(batch.numel())
    raise AdapterError(
        f"cannot count tokens in a batch of type {type(batch).__name__}: pass "
        "LightningTokenCounter(count=fn) with fn(batch) -> int"
    )


class LightningTokenCounter(Callback):
    """Feed each training batch's token count to every :class:`ScheduleLR` of the module.

    Counting happens in ``on_train_batch_start`` (per micro-batch, so gradient accumulation adds
    up); Lightning calls the scheduler's ``step()`` after the optimizer step, which consumes them.
    Under DDP each rank counts its own batch and the counts are summed over ranks, so progress is
    global tokens, the same on every rank.
    """

    def __init__(self, count: Callable[[Any], int] = count_batch_tokens) -> None:
        self.count = count

    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        tokens = self.count(batch)
        if trainer.world_size > 1:
            total = torch.tensor(tokens, device=pl_module.device, dtype=torch.int64)
            tokens = int(trainer.strategy.reduce(total, reduce_op="sum"))
        for config in trainer.lr_scheduler_configs:
            if isinstance(config.scheduler, ScheduleLR):
                config.scheduler.add_tokens(tokens)
