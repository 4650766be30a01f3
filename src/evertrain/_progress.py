"""Progress for people at a terminal and for log files: one helper for every long loop.

At a terminal (or in a notebook) :func:`progress_bar` is a tqdm bar. When stderr is not a
terminal (a SLURM or Kubernetes log, ``nohup``, a pipe) a bar's carriage returns would fill the
file with thousands of half-lines, so progress is written as plain lines instead: one every
``interval_s`` seconds (``EVERTRAIN_PROGRESS_INTERVAL``, default 30) and one at each tenth of a
known total, plus a last line when the loop ends. Shared by the trainer (train/loop.py), the
demo (continual/demo.py) and data preparation (data/shards.py).

The returned object has the part of tqdm's interface those loops use: ``n``, ``update``,
``set_postfix``, ``set_postfix_str``, ``refresh``, ``write`` and ``close``.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, Any

#: Seconds between two plain progress lines (when not at a terminal), unless the environment
#: variable sets another value.
DEFAULT_INTERVAL_S = 30.0
INTERVAL_ENV = "EVERTRAIN_PROGRESS_INTERVAL"


def _interval_from_env() -> float:
    text = os.environ.get(INTERVAL_ENV, "")
    try:
        value = float(text)
    except ValueError:
        return DEFAULT_INTERVAL_S
    return value if value >= 0 else DEFAULT_INTERVAL_S


def _is_interactive(stream: IO[str]) -> bool:
    """A terminal, or a notebook (whose stderr is no TTY but shows tqdm's widget)."""
    if "ipykernel" in sys.modules:
        return True
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def _human(value: float, scale: bool) -> str:
    """``1234567`` -> ``1.23M`` when ``scale`` (tokens, bytes), else ``1,234,567``."""
    if not scale:
        return f"{value:,.0f}"
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.2f}{suffix}"
    return f"{value:.0f}"


class PlainProgress:
    """Progress as periodic plain lines (``desc: 120/1,000 step (12%), 4.1 s, loss=2.31``)."""

    def __init__(
        self,
        total: float | None,
        *,
        initial: float = 0,
        unit: str = "it",
        unit_scale: bool = False,
        desc: str | None = None,
        stream: IO[str] | None = None,
        interval_s: float | None = None,
    ) -> None:
        self.total = total
        self.n = initial
        self.unit = unit
        self.unit_scale = unit_scale
        self.desc = desc or "progress"
        self.stream = stream if stream is not None else sys.stderr
        self.interval_s = _interval_from_env() if interval_s is None else interval_s
        self._start = self._last_time = time.monotonic()
        self._last_n = initial
        self._next_tenth = self._tenth(initial) + 1
        self._postfix = ""
        self._closed = False

    def _tenth(self, n: float) -> int:
        return int(10 * n / self.total) if self.total else 0

    def _line(self) -> str:
        done = _human(self.n, self.unit_scale)
        if self.total:
            head = f"{done}/{_human(self.total, self.unit_scale)} {self.unit} ({100 * self.n / self.total:.0f}%)"
        else:
            head = f"{done} {self.unit}"
        tail = f", {self._postfix}" if self._postfix else ""
        return f"{self.desc}: {head}, {time.monotonic() - self._start:.1f} s{tail}"

    def _emit(self) -> None:
        print(self._line(), file=self.stream, flush=True)
        self._last_time, self._last_n = time.monotonic(), self.n

    def refresh(self) -> None:
        """Write a line if one is due: ``interval_s`` has passed, or a tenth of the total."""
        if self._closed or self.n == self._last_n:
            return
        tenth_due = bool(self.total) and self._tenth(self.n) >= self._next_tenth
        if tenth_due or time.monotonic() - self._last_time >= self.interval_s:
            self._next_tenth = self._tenth(self.n) + 1
            self._emit()

    def update(self, n: float = 1) -> None:
        self.n += n
        self.refresh()

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        self._postfix = ", ".join(f"{key}={value}" for key, value in values.items())
        if refresh:
            self.refresh()

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        self._postfix = text
        if refresh:
            self.refresh()

    def write(self, message: str, file: IO[str] | None = None) -> None:
        """A message line (stdout unless ``file``), as ``tqdm.write``."""
        print(message, file=file if file is not None else sys.stdout, flush=True)

    def close(self) -> None:
        """The last line (where the loop ended), unless the last line already said it."""
        if not self._closed and self.n != self._last_n:
            self._emit()
        self._closed = True


class _Disabled:
    """``progress=False``: the same interface, writing nothing (``write`` still prints)."""

    def __init__(self, initial: float = 0) -> None:
        self.n = initial

    def update(self, n: float = 1) -> None:
        self.n += n

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        pass

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        pass

    def refresh(self) -> None:
        pass

    def write(self, message: str, file: IO[str] | None = None) -> None:
        print(message, file=file if file is not None else sys.stdout, flush=True)

    def close(self) -> None:
        pass


def progress_bar(
    total: float | None,
    *,
    enabled: bool = True,
    initial: float = 0,
    unit: str = "it",
    unit_scale: bool = False,
    desc: str | None = None,
    stream: IO[str] | None = None,
    interval_s: float | None = None,
    **tqdm_options: Any,
) -> Any:
    """A tqdm bar at a terminal, :class:`PlainProgress` lines otherwise, nothing if not ``enabled``.

    ``tqdm_options`` (``dynamic_ncols``, ``mininterval``) go to tqdm only.
    """
    if not enabled:
        return _Disabled(initial)
    stream = stream if stream is not None else sys.stderr
    if not _is_interactive(stream):
        return PlainProgress(
            total,
            initial=initial,
            unit=unit,
            unit_scale=unit_scale,
            desc=desc,
            stream=stream,
            interval_s=interval_s,
        )
    from tqdm.auto import tqdm  # ~0.1 s to import: only when a bar is drawn

    return tqdm(
        total=total,
        initial=initial,
        unit=unit,
        unit_scale=unit_scale,
        desc=desc,
        file=stream,
        **tqdm_options,
    )
