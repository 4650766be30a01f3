"""evertrain.train: the compact reference GPT trainer.

>>> from evertrain.train import TrainConfig, run
>>> result = run(TrainConfig.from_yaml("config.yaml"))          # doctest: +SKIP

Modules: ``model`` (GPT), ``config`` (pydantic TrainConfig), ``optim`` (AdamW groups),
``checkpoint`` (atomic, checksummed checkpoints + manifest), ``loop`` (:func:`run`),
``logging`` (JSONL / TensorBoard), ``distributed`` (torchrun / DDP).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Names are resolved on first use (PEP 562) so that importing `evertrain.train.cli`, which
# `evertrain` does at start-up for every command, does not pay for importing torch.
_EXPORTS = {
    "CheckpointError": "evertrain.train.checkpoint",
    "load_checkpoint": "evertrain.train.checkpoint",
    "verify_checkpoint": "evertrain.train.checkpoint",
    "ConfigError": "evertrain.train.config",
    "TrainConfig": "evertrain.train.config",
    "NonFiniteLossError": "evertrain.train.loop",
    "RunResult": "evertrain.train.loop",
    "evaluate": "evertrain.train.loop",
    "history": "evertrain.train.loop",
    "run": "evertrain.train.loop",
    "GPT": "evertrain.train.model",
    "GPTConfig": "evertrain.train.model",
    "EXIT_PREEMPTED": "evertrain.train.preempt",
    "RunPreempted": "evertrain.train.preempt",
}

if TYPE_CHECKING:
    from evertrain.train.checkpoint import CheckpointError, load_checkpoint, verify_checkpoint
    from evertrain.train.config import ConfigError, TrainConfig
    from evertrain.train.loop import NonFiniteLossError, RunResult, evaluate, history, run
    from evertrain.train.model import GPT, GPTConfig
    from evertrain.train.preempt import EXIT_PREEMPTED, RunPreempted


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'evertrain.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = [
    "EXIT_PREEMPTED",
    "CheckpointError",
    "ConfigError",
    "GPT",
    "GPTConfig",
    "NonFiniteLossError",
    "RunPreempted",
    "RunResult",
    "TrainConfig",
    "evaluate",
    "history",
    "load_checkpoint",
    "run",
    "verify_checkpoint",
]
