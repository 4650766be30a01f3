"""A process that watches its parent stops cleanly when the parent dies (lifeline.py): by the
parent-death signal on Linux, and by polling at step boundaries everywhere."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from evertrain.train import lifeline
from evertrain.train.preempt import PreemptionGuard

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _orphans import alive  # noqa: E402


def _steps_until_stopped(done: Path) -> int:
    """A training loop's shape: steps, and a look at the guard at each step boundary."""
    with PreemptionGuard() as guard:
        for _ in range(100_000):
            time.sleep(0.01)  # one "step"
            if guard.requested:
                done.write_text(guard.signal_name or "")
                return 75
    return 1


def _orphan_after_parent_dies(tmp_path: Path, kernel_signal: bool) -> tuple[int, Path]:
    """Fork a parent that forks a watching child; SIGKILL the parent; return (child pid, file
    the child writes when it stops)."""
    done = tmp_path / "stopped"
    read_end, write_end = os.pipe()
    parent = os.fork()
    if parent == 0:  # the parent: start the child, report its pid, wait to be killed
        code = 1
        try:
            os.close(read_end)
            child = os.fork()
            if child == 0:
                status = 1
                try:
                    if not kernel_signal:  # as on a platform without prctl
                        lifeline._set_parent_death_signal = lambda signum: False
                    lifeline.stop_with_parent()
                    os.write(write_end, b"%d\n" % os.getpid())
                    status = _steps_until_stopped(done)
                finally:
                    os._exit(status)
            time.sleep(60)
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        child = int(pipe.readline())
    os.kill(parent, signal.SIGKILL)
    os.waitpid(parent, 0)
    return child, done


@pytest.mark.parametrize("kernel_signal", [True, False], ids=["pdeathsig", "polling"])
def test_child_stops_at_a_step_boundary_when_its_parent_is_killed(
    tmp_path: Path, kernel_signal: bool
) -> None:
    if kernel_signal and not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    child, done = _orphan_after_parent_dies(tmp_path, kernel_signal)
    deadline = time.monotonic() + 20
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child), "the child outlived its parent"
    assert done.read_text() == "SIGTERM"  # stopped through the guard, as a preempted run does


def test_a_process_that_does_not_watch_outlives_its_parent_as_before() -> None:
    """Only demo workers and ranks opt in: `nohup evertrain train run &` must outlive its shell."""
    assert lifeline.watched_parent() is None and not lifeline.parent_gone()
    with PreemptionGuard() as guard:
        assert guard.requested == 0
