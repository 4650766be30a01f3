"""Every python block in docs/adapters.md runs as written (Trainer/Lightning blocks are slow)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
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
    if re.search(r"^\s*(import|from) jax", code, flags=re.M):
        # JAX starts threads on import, and other areas' tests later os.fork() this process
        # (a fork of a multithreaded process can deadlock): keep JAX in a child interpreter.
        if importlib.util.find_spec("jax") is None:
            pytest.skip("jax not installed (optional: pip install evertrain[jax])")
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return
    exec(compile(code, str(DOC), "exec"), {"__name__": "__doc_example__"})
