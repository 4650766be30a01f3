"""evertrain.adapters: thin bindings of evertrain schedules to training frameworks.

* :mod:`evertrain.adapters.torch` -- :class:`ScheduleLR`, a ``torch.optim.lr_scheduler.LRScheduler``.
* :mod:`evertrain.adapters.huggingface` -- ``EvertrainTrainer(schedule=...)``, the
  ``Trainer(optimizers=...)`` recipe and a token-counting callback.
* :mod:`evertrain.adapters.accelerate` -- ``prepare_scheduler(accelerator, optimizer, spec)``.
* :mod:`evertrain.adapters.lightning` -- the ``configure_optimizers`` scheduler dict.
* :mod:`evertrain.adapters.optax` -- ``to_optax(spec)``, an optax schedule (JAX optional).

Names are loaded lazily so that importing one binding never imports another framework.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from evertrain.adapters._common import AdapterError

_LAZY = {
    "ScheduleLR": "evertrain.adapters.torch",
    "EvertrainTrainer": "evertrain.adapters.huggingface",
    "scheduler_from_training_args": "evertrain.adapters.huggingface",
    "create_optimizer_and_scheduler": "evertrain.adapters.huggingface",
    "prepare_scheduler": "evertrain.adapters.accelerate",
    "TokenCountingCallback": "evertrain.adapters.huggingface",
    "lightning_scheduler_config": "evertrain.adapters.lightning",
    "LightningTokenCounter": "evertrain.adapters.lightning",
    "to_optax": "evertrain.adapters.optax",
}

__all__ = ["AdapterError", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'evertrain.adapters' has no attribute {name!r}")
