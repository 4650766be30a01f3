"""Clean stops on SIGTERM / SIGINT: finish the step, save a checkpoint, exit "requeue me" (75).

SLURM (at a time limit, ``scancel`` or preemption) and Kubernetes (pod eviction, node drain) send
SIGTERM and kill the process some seconds later (SLURM ``KillWait``, Kubernetes
``terminationGracePeriodSeconds``, both 30 s by default); Ctrl-C sends SIGINT. While
:func:`evertrain.train.run` trains, :class:`PreemptionGuard` turns the first of these signals into
a request the loop honours at the end of the current optimizer step: it writes a checkpoint and
raises :class:`RunPreempted`; the CLI exits with :data:`EXIT_PREEMPTED`.

A second signal means "now": the guard puts the previous handler back and re-delivers the signal,
so the process ends at once as it would have without evertrain (SIGTERM: killed, status 143 in a
shell; SIGINT: ``KeyboardInterrupt``, CLI status 130). Checkpoints are written atomically, so an
interrupted save leaves only a temporary directory that the next resume deletes.

Launchers deliver one request twice: ``torchrun`` forwards the signal it receives to its workers,
and a terminal's Ctrl-C or SLURM signal the whole process group, so each worker sees the
signal from both. Signals within :data:`DUPLICATE_WINDOW_S` of the first therefore count as the
same request.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

from evertrain.train import lifeline

EXIT_PREEMPTED = os.EX_TEMPFAIL if hasattr(os, "EX_TEMPFAIL") else 75
"""Exit status of a run stopped by a signal after saving: sysexits' EX_TEMPFAIL (75), "temporary
failure, retry later". Configure the scheduler to requeue on it (SLURM ``RequeueExit=75``,
LSF ``bsub -Q 75``, a Kubernetes Job ``podFailurePolicy`` rule on exit code 75)."""

SIGNALS = (signal.SIGTERM, signal.SIGINT)

DUPLICATE_WINDOW_S = 1.0
"""Seconds after the first signal during which another is the same request delivered again."""


class RunPreempted(BaseException):  # noqa: N818 -- a request to stop, like KeyboardInterrupt
    """:func:`~evertrain.train.run` stopped on SIGTERM/SIGINT after saving a checkpoint.

    A ``BaseException``, as ``KeyboardInterrupt`` and ``SystemExit`` are: a request to stop the
    process must not be swallowed by an ``except Exception`` around ``run()``, nor mistaken for a
    finished run by a caller that ignores a flag. ``result`` is the run's
    :class:`~evertrain.train.loop.RunResult` (``preempted=True``, ``last_checkpoint`` the
    checkpoint just written); ``signal_name`` is e.g. ``"SIGTERM"``.
    """

    def __init__(self, message: str, result: Any, signal_name: str) -> None:
        super().__init__(message)
        self.result = result
        self.signal_name = signal_name

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable with all its fields, so it crosses a process pool (continual's demo workers).
        return type(self), (str(self), self.result, self.signal_name)


class PreemptionGuard:
    """Context manager: while active, a SIGTERM/SIGINT only sets :attr:`requested`.

    Installs its handler only in the main thread (Python allows no other) and only for signals
    whose handler is not ``SIG_IGN`` (a launcher that ignores SIGINT, as a shell does for ``cmd &``,
    keeps it ignored); elsewhere it does nothing and :attr:`requested` stays 0. ``__exit__`` puts
    the previous handlers back, so a library call leaves no global handler behind.

    A process that watches its parent (:func:`evertrain.train.lifeline.stop_with_parent`: demo
    workers, torchrun ranks) also counts its parent's death as a SIGTERM when :attr:`requested`
    is read, once per step: the portable fallback of the parent-death signal.
    """

    def __init__(
        self, signals: tuple[int, ...] = SIGNALS, duplicate_window_s: float | None = None
    ) -> None:
        self.signals = signals
        # Read the module constant at construction so tests (and users) can change it.
        self.duplicate_window_s = (
            DUPLICATE_WINDOW_S if duplicate_window_s is None else duplicate_window_s
        )
        self._requested = 0  # the first signal's number; 0 while none came
        self._first_at = 0.0
        self._previous: dict[int, Any] = {}

    @property
    def installed(self) -> bool:
        """True while this guard's handler is installed for at least one signal."""
        return bool(self._previous)

    @property
    def requested(self) -> int:
        """The first signal's number (SIGTERM for a parent found dead); 0 while none came."""
        if not self._requested and lifeline.parent_gone():
            self._requested, self._first_at = signal.SIGTERM, time.monotonic()
            print(
                f"evertrain: parent process {lifeline.watched_parent()} ended: stopping as on SIGTERM",
                file=sys.stderr,
                flush=True,
            )
        return self._requested

    @requested.setter
    def requested(self, signum: int) -> None:
        self._requested = signum

    @property
    def signal_name(self) -> str | None:
        return signal.Signals(self.requested).name if self.requested else None

    def __enter__(self) -> PreemptionGuard:
        if threading.current_thread() is not threading.main_thread():
            return self  # signal.signal works only in the main thread: run unguarded
        for signum in self.signals:
            previous = signal.getsignal(signum)
            if previous is signal.SIG_IGN or previous is None:  # ignored, or set outside Python
                continue
            try:
                signal.signal(signum, self._handle)
            except ValueError:  # e.g. a sub-interpreter
                continue
            self._previous[signum] = previous
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._restore()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # Runs in the main thread between two bytecodes: only record the request here; the loop
        # decides when to act on it.
        now = time.monotonic()
        if not self._requested:
            self._requested, self._first_at = signum, now
            return
        if now - self._first_at < self.duplicate_window_s:
            return  # the same request, forwarded by a launcher
        self._restore()
        signal.raise_signal(signum)  # the previous handler's behaviour: SIG_DFL ends the process

    def _restore(self) -> None:
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._handle:  # leave a handler set since untouched
                signal.signal(signum, previous)
        self._previous.clear()


__all__ = ["DUPLICATE_WINDOW_S", "EXIT_PREEMPTED", "PreemptionGuard", "RunPreempted", "SIGNALS"]
