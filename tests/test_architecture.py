"""The rooms' import arrows (docs/architecture.md): every `import evertrain.<room>` in the sources,
read from the code itself (also the imports inside functions), points down the picture."""

from __future__ import annotations

import ast
from pathlib import Path

SOURCES = Path(__file__).resolve().parents[1] / "src" / "evertrain"
#: room -> the rooms it may import (the package-root shared modules are open to all)
ALLOWED = {
    "schedules": set(),
    "adapters": {"schedules"},
    "laws": {"schedules"},
    "data": {"schedules"},
    "train": {"schedules", "data"},
    "continual": {"schedules", "laws", "data", "train"},
    "tune": {"schedules", "laws", "data", "train", "continual"},
}


def _imported_rooms(path: Path) -> set[str]:
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        rooms |= {n.split(".")[1] for n in names if n.startswith("evertrain.") and n.count(".")}
    return rooms & set(ALLOWED)


def test_every_import_points_down() -> None:
    wrong = []
    for room, allowed in ALLOWED.items():
        for path in sorted((SOURCES / room).rglob("*.py")):
            for other in sorted(_imported_rooms(path) - allowed - {room}):
                wrong.append(f"{path.relative_to(SOURCES)} imports evertrain.{other}")
    assert not wrong, "\n".join(wrong)


def test_the_scan_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    source = tmp_path / "x.py"
    source.write_text(
        "def f():\n    from evertrain.tune import suggest\n    import evertrain.laws.mpl\n"
    )
    assert _imported_rooms(source) == {"tune", "laws"}
