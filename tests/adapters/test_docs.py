"""docs/adapters.md shows every framework's entry point (its code blocks run in tests/test_docs.py,
in a child interpreter per page, so JAX never starts threads in the pytest process)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "adapters.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_doc_has_examples_for_every_framework():
    text = "\n".join(BLOCKS)
    for entry_point in (
        "ScheduleLR(",
        "create_optimizer_and_scheduler(",
        "EvertrainTrainer(",
        "prepare_scheduler(",
        "lightning_scheduler_config(",
        "to_optax(",
    ):
        assert entry_point in text
