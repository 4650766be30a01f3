"""Every ```python block in docs/schedules.md runs (blocks share one namespace, in order)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "schedules.md"


def test_every_python_example_in_the_docs_runs():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) >= 20
    namespace: dict = {}
    for index, block in enumerate(blocks):
        try:
            exec(compile(block, f"{DOC.name}[block {index}]", "exec"), namespace)
        except Exception as error:  # noqa: BLE001 -- report which block failed
            raise AssertionError(
                f"docs/schedules.md python block {index} failed:\n{block}"
            ) from error


def test_docs_cover_every_registered_schedule():
    from evertrain.schedules import names

    text = DOC.read_text(encoding="utf-8")
    missing = [name for name in names() if name not in text]
    assert not missing, f"docs/schedules.md does not mention {missing}"
