"""Killing the `torchrun` launcher stops its ranks (before: both trained on, unsupervised)."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _orphans import kill_parent  # noqa: E402

# ~35 s on the loaded 2-core machine: torchrun and two ranks start, train, and are stopped.
pytestmark = pytest.mark.slow


def test_killed_torchrun_launcher_leaves_no_live_rank(tmp_path: Path) -> None:
    outcome = kill_parent("torchrun", signal.SIGKILL, tmp_path, grace_s=20)
    assert len(outcome.children) == 2
    assert outcome.orphans == [], (tmp_path / "parent.stderr").read_text()[-2000:]
    records = [
        json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    ]
    stop = records[-1]  # every rank stopped after the same step; rank 0 saved it
    assert stop["kind"] == "preempted" and stop["signal"] == "SIGTERM"
    assert Path(stop["checkpoint"]).is_dir()
