import json
import os
from pathlib import Path

import pytest

from evertrain._atomic import atomic_open, atomic_write_json


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "a" / "state.json"
    atomic_write_json(target, {"step": 1})
    atomic_write_json(target, {"step": 2})
    assert json.loads(target.read_text()) == {"step": 2}
    # no temporary files left behind
    assert os.listdir(target.parent) == ["state.json"]


def test_atomic_write_failure_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    atomic_write_json(target, {"step": 1})
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write("{partial")
        raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"step": 1}
    assert os.listdir(tmp_path) == ["state.json"]
