"""Every python block in docs/adapters.md runs as written (Trainer/Lightning blocks are slow)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "adapters.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def _cases():
    for index, code in enumerate(BLOCKS):
        marks = [pytest.mark.slow] if code.startswith("# doc-test: slow") else []
        yield pytest.param(code, id=f"block{index}", marks=marks)


def test_doc_has_examples_for_every_framework():
    text = "\n".join(BLOCKS)
    for entry_point in (
        "ScheduleLR(",
        "create_optimizer_and_scheduler(",
        "lightning_scheduler_config(",
        "to_optax(",
    ):
        assert entry_point in text


@pytest.mark.parametrize("code", list(_cases()))
def test_doc_block_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(DOC), "exec"), {"__name__": "__doc_example__"})
