"""Another process holding an output folder's lock, as a second `train run` / `data prepare` /
`continual run` / `demo` would see it (the lock is re-entrant within one process, so the holder
must be a real other process)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

_HOLD = """
import sys, time
from evertrain._lock import FolderLock
with FolderLock(sys.argv[1], what=sys.argv[2]):
    print("held", flush=True)
    time.sleep(120)
"""


def hold_lock_in_child(folder: str | os.PathLike[str], what: str) -> subprocess.Popen:
    """Start a child that takes ``FolderLock(folder, what)`` and keeps it until killed; return
    once it holds the lock."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), *filter(None, sys.path)])}
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(folder), what], stdout=subprocess.PIPE, text=True, env=env
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child


@contextlib.contextmanager
def lock_held_elsewhere(folder: str | os.PathLike[str], what: str) -> Iterator[subprocess.Popen]:
    """``with lock_held_elsewhere(out, "run folder") as holder:`` -- killed (lock freed) on exit."""
    holder = hold_lock_in_child(folder, what)
    try:
        yield holder
    finally:
        holder.kill()
        holder.wait()
