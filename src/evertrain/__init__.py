"""evertrain: train language models that never have to start over.

Subpackages:

- ``evertrain.schedules``  LR (or any value) as a pure function of training progress.
- ``evertrain.adapters``   thin bindings for PyTorch, Hugging Face, Lightning and optax.
- ``evertrain.laws``       loss-curve laws: fit, predict, compare and optimise schedules.
- ``evertrain.data``       corpora -> tokenizer -> token shards; mixture / replay sampler.
- ``evertrain.train``      the compact reference GPT trainer.
- ``evertrain.continual``  stage plans, re-warm / replay recipes, branches, reports.
"""

__version__ = "0.1.0"
