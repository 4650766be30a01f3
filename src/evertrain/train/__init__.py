"""evertrain.train: the compact reference GPT trainer.

>>> from evertrain.train import TrainConfig, run
>>> result = run(TrainConfig.from_yaml("config.yaml"))          # doctest: +SKIP

Modules: ``model`` (GPT), ``config`` (pydantic TrainConfig), ``optim`` (AdamW groups),
``checkpoint`` (atomic, checksummed checkpoints + manifest), ``loop`` (:func:`run`),
``logging`` (JSONL / TensorBoard), ``distributed`` (torchrun / DDP).
"""

from evertrain.train.checkpoint import CheckpointError, load_checkpoint, verify_checkpoint
from evertrain.train.config import ConfigError, TrainConfig
from evertrain.train.loop import NonFiniteLossError, RunResult, evaluate, history, run
from evertrain.train.model import GPT, GPTConfig

__all__ = [
    "CheckpointError",
    "ConfigError",
    "GPT",
    "GPTConfig",
    "NonFiniteLossError",
    "RunResult",
    "TrainConfig",
    "evaluate",
    "history",
    "load_checkpoint",
    "run",
    "verify_checkpoint",
]
