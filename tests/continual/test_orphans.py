"""Killing the `evertrain demo` parent leaves no worker alive (before: each worker trained on
under init, then waited for a next job forever)."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("tokenizers")

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _orphans import kill_parent  # noqa: E402

# ~30 s on the loaded 2-core machine: data, two spawned workers importing torch, the kill.
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_demo_parent_leaves_no_live_worker(tmp_path: Path, signum: int) -> None:
    outcome = kill_parent("demo", signum, tmp_path, grace_s=20)
    assert len(outcome.children) >= 2  # the two workers (and the pool's resource tracker)
    assert outcome.orphans == [], (tmp_path / "parent.stderr").read_text()[-2000:]
    # The workers stopped as a preempted run does: a checkpoint of the step they finished.
    stops = [
        json.loads(line)
        for log in (tmp_path / "demo").rglob("log.jsonl")
        for line in log.read_text().splitlines()
        if '"preempted"' in line
    ]
    assert stops and all(stop["signal"] == "SIGTERM" and stop["checkpoint"] for stop in stops)
