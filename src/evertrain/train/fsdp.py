"""FSDP2 wiring: ``parallel.strategy: fsdp`` shards a model with ``fully_shard``.

Under ``torchrun`` with ``WORLD_SIZE > 1``, :func:`prepare_model` applies
``torch.distributed.fsdp.fully_shard`` to every transformer block and then to the root module
(the embeddings, final norm and output head live in the root's group, so tied embeddings stay
one parameter). Each rank then holds ``1/world_size`` of every parameter, gradient and AdamW
moment; a block's full weights exist only while its forward or backward runs. The optimizer must
be built *after* :func:`prepare_model`, over the sharded (DTensor) parameters.

In one process ``fsdp`` has nothing to shard: the model trains unsharded (the same numbers as
``ddp``), and its checkpoints are still ``torch.distributed.checkpoint`` folders so that a later
run on N ranks resumes them (see :mod:`evertrain.train.dcp_checkpoint`).

Activation checkpointing (either strategy) recomputes each block's forward in the backward pass
instead of keeping its activations.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn as nn

# Where the repeated transformer blocks live: evertrain's GPT, then common Hugging Face layouts
# (Llama / Qwen2 / Mistral, GPT-2, GPT-NeoX, OPT).
BLOCK_PATHS = ("blocks", "model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers")


def _attribute(module: nn.Module, dotted: str) -> Any:
    node: Any = module
    for part in dotted.split("."):
        node = getattr(node, part, None)
        if node is None:
            return None
    return node


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The model's repeated transformer blocks (the unit FSDP shards and activation
    checkpointing recomputes); ``[]`` when none of :data:`BLOCK_PATHS` holds a ModuleList."""
    for dotted in BLOCK_PATHS:
        found = _attribute(model, dotted)
        if isinstance(found, nn.ModuleList) and len(found) > 0:
            return list(found)
    return []


def mixed_precision_policy(setting: str, device: torch.device) -> Any:
    """The ``MixedPrecisionPolicy`` of ``parallel.mixed_precision`` on ``device`` (None = float32).

    bfloat16 parameters with float32 gradient reduction on GPU (``auto`` or ``bfloat16``); CPU
    kernels gain nothing from bfloat16, so there ``auto`` is float32 and ``bfloat16`` warns once.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if setting == "float32":
        return None
    if device.type != "cuda":
        if setting == "bfloat16":
            warnings.warn(
                f"parallel.mixed_precision: bfloat16 applies on GPU only; training in float32 on "
                f"{device.type}; set parallel.mixed_precision: float32 (or auto) to silence this",
                UserWarning,
                stacklevel=3,
            )
        return None
    return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)


def apply_activation_checkpointing(blocks: Iterable[nn.Module]) -> None:
    """Recompute each block's forward during backward (``torch.utils.checkpoint``, non-reentrant).

    The block's ``forward`` is replaced on the instance, so parameter names (and therefore
    checkpoints) do not change, and FSDP's hooks (on the module call) still gather the weights
    before both the forward and its recomputation. The RNG state is replayed, so dropout masks
    of the recomputation match the forward's.
    """
    from torch.utils.checkpoint import checkpoint

    for block in blocks:
        forward = block.forward

        def recomputed(*args: Any, _forward: Any = forward, **kwargs: Any) -> Any:
            return checkpoint(_forward, *args, use_reentrant=False, **kwargs)

        block.forward = recomputed  # type: ignore[method-assign]


def prepare_model(
    model: nn.Module, parallel: Any, world_size: int, device: torch.device
) -> nn.Module:
    """Apply ``parallel`` (a :class:`~evertrain.train.config.ParallelConfig`) to ``model`` in place.

    Activation checkpointing first (per block), then, for ``strategy: fsdp`` with more than one
    rank, ``fully_shard`` per block and on the root over a 1-D mesh of all ranks. Call it before
    building the optimizer. Returns ``model`` (the same object, now an ``FSDPModule`` if sharded).
    """
    blocks = transformer_blocks(model)
    if parallel.activation_checkpointing:
        if not blocks:
            warnings.warn(
                f"parallel.activation_checkpointing: no transformer blocks found in "
                f"{type(model).__name__} (looked for {', '.join(BLOCK_PATHS)}); training without it",
                UserWarning,
                stacklevel=3,
            )
        apply_activation_checkpointing(blocks)
    if parallel.strategy != "fsdp" or world_size <= 1:
        return model
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    if not blocks:
        warnings.warn(
            f"parallel.strategy: fsdp found no transformer blocks in {type(model).__name__} "
            f"(looked for {', '.join(BLOCK_PATHS)}); sharding the whole model as one unit, "
            "which gathers all weights at once",
            UserWarning,
            stacklevel=3,
        )
    mesh = init_device_mesh(device.type, (world_size,))
    policy = mixed_precision_policy(parallel.mixed_precision, device)
    options: dict[str, Any] = {"mesh": mesh}
    if policy is not None:
        options["mp_policy"] = policy
    for block in blocks:
        fully_shard(block, **options)
    fully_shard(model, **options)
    return model


def is_sharded(model: nn.Module) -> bool:
    """True when ``model`` (or a module inside it) was sharded by ``fully_shard``."""
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(module, FSDPModule) for module in model.modules())


def clip_grad_norm(parameters: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``clip_grad_norm_`` that also takes sharded (DTensor) gradients; returns a plain tensor.

    With DTensor parameters torch computes the norm over all shards (a collective) and returns a
    replicated DTensor: every rank gets the same global norm, as under DDP.
    """
    norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm)
    full_tensor = getattr(norm, "full_tensor", None)
    return full_tensor() if full_tensor is not None else norm


def gradient_sync(model: nn.Module, skip: bool) -> contextlib.AbstractContextManager[Any]:
    """DDP's ``no_sync()`` on a micro-step whose gradients need no all-reduce yet.

    FSDP reduce-scatters every micro-step (the sharded gradients accumulate); skipping it would
    keep unsharded gradients in memory, the opposite of what FSDP is for.
    """
    from torch.nn.parallel import DistributedDataParallel

    if skip and isinstance(model, DistributedDataParallel):
        return model.no_sync()
    return contextlib.nullcontext()


__all__ = [
    "BLOCK_PATHS",
    "apply_activation_checkpointing",
    "clip_grad_norm",
    "gradient_sync",
    "is_sharded",
    "mixed_precision_policy",
    "prepare_model",
    "transformer_blocks",
]
