"""Processes that end with their parent: demo workers and ``torchrun`` ranks stop when it dies.

A process whose parent dies is adopted by init and runs on: a demo worker keeps training a run
nobody will read (and then waits forever for its next job), a rank keeps training with no
launcher to stop it. A process that calls :func:`stop_with_parent` notices instead, two ways:

* Linux: ``prctl(PR_SET_PDEATHSIG, SIGTERM)``. The kernel sends SIGTERM when the parent dies
  (SIGKILL included), so a training run stops as on any SIGTERM
  (:mod:`evertrain.train.preempt`): it finishes the step, saves a checkpoint and raises
  ``RunPreempted``; an idle process ends at once (SIGTERM's default action).
* everywhere (the fallback where prctl is missing, and the check for a parent that died before
  prctl took effect): :func:`parent_gone` compares ``os.getppid()`` with the parent recorded
  at the call; :class:`~evertrain.train.preempt.PreemptionGuard` asks it at every step
  boundary and treats a dead parent as a SIGTERM.

Who calls it: :func:`evertrain.train.run` under a launcher (``WORLD_SIZE > 1``: the parent is
``torchrun`` or a scheduler's step daemon), and the demo's worker pool in each worker. A plain
``evertrain train run`` does not: ``nohup evertrain train run ... &`` must outlive its shell.

The signal is sent when the *thread* that started the process ends; ``torchrun`` and the demo
start their processes from their main thread, which lives as long as they do.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

_parent: int | None = None  # the parent recorded by stop_with_parent; None: not watching


def _set_parent_death_signal(signum: int) -> bool:
    """``prctl(PR_SET_PDEATHSIG, signum)``; False where the platform has no such call."""
    if not sys.platform.startswith("linux"):
        return False
    with contextlib.suppress(OSError, AttributeError, TypeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    return False


def stop_with_parent(parent_pid: int | None = None) -> bool:
    """From now on, stop this process when its parent dies (see the module docstring).

    ``parent_pid``: the parent's pid as the parent knows it (``os.getpid()`` passed to a
    worker), which also catches a parent that died before this call; default: the current
    parent. Returns True where the kernel sends the signal (Linux), False where only
    :func:`parent_gone` polling at step boundaries notices. If the parent is already gone,
    SIGTERM is sent to this process now.
    """
    global _parent
    _parent = os.getppid() if parent_pid is None else int(parent_pid)
    by_kernel = _set_parent_death_signal(signal.SIGTERM)
    if parent_gone():  # died before prctl: the kernel will not send it
        os.kill(os.getpid(), signal.SIGTERM)
    return by_kernel


def parent_gone() -> bool:
    """True when :func:`stop_with_parent` was called and that parent has died since."""
    return _parent is not None and os.getppid() != _parent


def watched_parent() -> int | None:
    """The parent pid :func:`stop_with_parent` recorded (None when it was not called)."""
    return _parent


def exit_if_orphaned(status: int) -> None:
    """End this process with ``status`` now if its watched parent has died: nothing would read
    what it returns, and a pool worker would otherwise wait for its next job forever."""
    if parent_gone():
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(status)


__all__ = ["exit_if_orphaned", "parent_gone", "stop_with_parent", "watched_parent"]
