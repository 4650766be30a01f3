"""docs/schedules.md covers every registered schedule (its code blocks run in tests/test_docs.py)."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "schedules.md"


def test_docs_cover_every_registered_schedule():
    from evertrain.schedules import names

    text = DOC.read_text(encoding="utf-8")
    missing = [name for name in names() if name not in text]
    assert not missing, f"docs/schedules.md does not mention {missing}"
