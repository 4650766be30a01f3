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


def test_atomic_write_gives_the_mode_a_plain_open_would(tmp_path: Path) -> None:
    """mkstemp makes 0600 files; shared reports and checkpoints must follow the umask instead."""
    old_umask = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "report.json", {})
        (tmp_path / "plain.json").write_text("{}")
    finally:
        os.umask(old_umask)
    mode = os.stat(tmp_path / "report.json").st_mode & 0o777
    assert mode == os.stat(tmp_path / "plain.json").st_mode & 0o777 == 0o644
