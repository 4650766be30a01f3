"""AdamW with decoupled weight decay (Loshchilov & Hutter 2019, arXiv:1711.05101).

Decay applies only to matrices that multiply activations (2-D weights of linear layers). Norm
gains, biases and embedding tables are left undecayed: shrinking them toward zero changes the
function without regularising it (the GPT-2 / nanoGPT convention). The tied output projection is
the token embedding, so it is not decayed either.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split ``model``'s parameters into a decayed and an undecayed group (tied weights once).

    This is the trainer's one weight-decay policy (``build_optimizer``, used by ``loop.run``).
    """
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
) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`; the fused CUDA kernel where available.

    ``lr`` is a placeholder: the loop sets ``param_group["lr"] = schedule(progress)`` before
    every update.
    """
    fused = device_type == "cuda"
    return torch.optim.AdamW(
        param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps, fused=fused
    )
