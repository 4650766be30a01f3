"""AdamW with decoupled weight decay (Loshchilov & Hutter 2019, arXiv:1711.05101).

Decay applies only to matrices that multiply activations (2-D weights of linear layers). Norm
gains, biases and embedding tables are left undecayed: shrinking them toward zero changes the
function without regularising it (the GPT-2 / nanoGPT convention). The tied output projection is
the token embedding, so it is not decayed either.

``name: schedulefree_adamw`` builds schedule-free AdamW instead (Defazio et al. 2024, "The Road
Less Scheduled", arXiv:2405.15682; the ``schedulefree`` package). It keeps two points: ``y``,
where gradients are taken (the model's weights in train mode), and ``x``, the averaged point
that is evaluated and released (the weights after ``optimizer.eval()``). The trainer switches:
``eval()`` before every evaluation and checkpoint, ``train()`` after, so checkpoints hold ``x``
and an optimizer state in eval mode. The LR comes from the evertrain schedule as for AdamW; the
package's own ``warmup_steps`` stays 0 (one warmup only) and a schedule that decays after its
warmup is refused: schedule-free needs no decay.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported in the functions: the config checks stay numpy-only
    import torch
    import torch.nn as nn

SCHEDULE_FREE = "schedulefree_adamw"


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split ``model``'s parameters into a decayed and an undecayed group (tied weights once).

    This is the trainer's one weight-decay policy (``build_optimizer``, used by ``loop.run``).
    """
    import torch.nn as nn

    # Embeddings are 2-D but left undecayed on purpose (minGPT's rule: Embedding and LayerNorm
    # weights are never decayed): with tied embeddings the table is also the output projection,
    # and decaying it pulls rare tokens' rows to zero (they get few gradient updates to push back).
    # Every trainer test and benchmark number was produced with it. nanoGPT and HF Trainer decay
    # every tensor with ndim >= 2, embeddings included; adapters/huggingface.decay_param_groups
    # does that by default for users' own HF models (its ``no_decay`` predicate changes it).
    embedding_params = {
        id(module.weight) for module in model.modules() if isinstance(module, nn.Embedding)
    }
    decay, no_decay, seen = [], [], set()
    for _, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        if param.dim() >= 2 and id(param) not in embedding_params:
            decay.append(param)
        else:
            no_decay.append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(
    model: nn.Module,
    *,
    lr: float = 0.0,
    weight_decay: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-8,
    device_type: str = "cpu",
    name: str = "adamw",
) -> torch.optim.Optimizer:
    """AdamW (or schedule-free AdamW, ``name="schedulefree_adamw"``) over :func:`param_groups`;
    the fused CUDA kernel where available.

    ``lr`` is a placeholder: the loop sets ``param_group["lr"] = schedule(progress)`` before
    every update. A schedule-free optimizer is returned in train mode (the package builds it in
    eval mode, and ``step()`` refuses to run there).
    """
    import torch

    if name == SCHEDULE_FREE:
        import schedulefree

        optimizer = schedulefree.AdamWScheduleFree(
            param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps, warmup_steps=0
        )
        optimizer.train()
        return optimizer
    fused = device_type == "cuda"
    return torch.optim.AdamW(
        param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps, fused=fused
    )


def is_schedule_free(optimizer: Any) -> bool:
    """True for a schedule-free optimizer (its param groups carry the ``train_mode`` switch)."""
    return bool(optimizer.param_groups) and "train_mode" in optimizer.param_groups[0]


@contextlib.contextmanager
def evaluation_point(optimizer: Any) -> Iterator[None]:
    """Put the model's weights at the point to evaluate and save while the block runs.

    Schedule-free: ``optimizer.eval()`` (weights = the averaged ``x``), then ``train()`` again
    (back to ``y``, where gradients are taken). Any other optimizer: nothing to do.
    """
    if not is_schedule_free(optimizer):
        yield
        return
    optimizer.eval()
    try:
        yield
    finally:
        optimizer.train()


def saved_optimizer_name(state: dict[str, Any]) -> str:
    """The optimizer a checkpoint's ``state.pt`` was trained with (checkpoints written before
    ``optimizer.name`` existed: ``adamw``)."""
    optimizer = ((state.get("config") or {}).get("optimizer")) or {}
    return str(optimizer.get("name", "adamw"))


def schedule_free_decay_error(schedule: Any, total_steps: int, tokens_per_step: int) -> str | None:
    """The one-line error for a schedule that decays after its warmup under schedule-free AdamW
    (None when the LR only rises and then stays): the optimizer's averaging replaces the decay,
    and a decay on top of it changes the method without saying so.

    The schedule is sampled at the progress of every step of the run (tokens or steps, as its
    ``unit`` says); once it has reached its maximum it must not fall below it.
    """
    steps = np.arange(total_steps + 1, dtype=np.float64)
    progress = steps * tokens_per_step if getattr(schedule, "unit", "steps") == "tokens" else steps
    values = np.asarray(schedule(progress), dtype=np.float64)
    top = float(values.max())
    reached = int(np.argmax(values >= top * (1 - 1e-9)))
    low = values[reached:] < top * (1 - 1e-6)
    if not low.any():
        return None
    where = progress[reached + int(np.argmax(low))]
    spec = schedule.to_spec() if hasattr(schedule, "to_spec") else {}
    name = spec.get("name", "?") if isinstance(spec, dict) else str(spec)
    return (
        f"schedule: '{name}' decays after its warmup (from {top:.3g} to "
        f"{float(values[reached:].min()):.3g}, first at progress {where:g}), which "
        f"optimizer.name={SCHEDULE_FREE} does not need; use the constant schedule with a warmup, "
        f"e.g. schedule: {{name: constant, value: {top:.3g}, warmup: ..., unit: tokens}}"
    )
