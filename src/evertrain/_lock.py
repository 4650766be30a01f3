"""One writer per output folder: a run, a prepared dataset, a continual plan's output.

Two ``evertrain train run`` on the same ``out_dir`` (a double submit, an overlapping requeue)
would otherwise both write checkpoints and race on each other's temp files. :class:`FolderLock`
takes an exclusive ``flock`` on ``DIR/.evertrain.lock``. The kernel drops an flock when its
holder dies (any way, SIGKILL included), so a lock left by a dead process is simply taken over;
the pid, host and command written into the file are only there to name the holder in the error.
On a file system without ``flock`` support the lock degrades to the pid check alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

LOCK_NAME = ".evertrain.lock"

try:
    import fcntl
except ImportError:  # pragma: no cover -- Windows: pid check only
    fcntl = None  # type: ignore[assignment]


class FolderLockedError(RuntimeError):
    """Another live process holds the folder; the message names it and says what to do."""


def _holder(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FolderLock:
    """Exclusive lock on a folder for the life of a ``with`` block (re-entrant per process).

    ``what`` names the folder's role in the error ("run folder", "dataset folder").
    """

    _held: dict[str, int] = {}  # resolved folder -> depth, so nested users in one process share

    def __init__(self, folder: str | os.PathLike[str], what: str = "folder") -> None:
        self.folder = Path(folder)
        self.what = what
        self._fd: int | None = None
        self._key = ""

    def __enter__(self) -> FolderLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._key = str(self.folder.resolve())
        if self._key in FolderLock._held:
            FolderLock._held[self._key] += 1
            return self
        path = self.folder / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            self._acquire(fd, path)
            record = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": " ".join(sys.argv)[:300],
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        FolderLock._held[self._key] = 1
        return self

    def _acquire(self, fd: int, path: Path) -> None:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                self._refuse(path)
            except OSError:
                pass  # no flock on this file system: fall back to the recorded pid
        holder = _holder(path)
        same_host = holder.get("host") == socket.gethostname()
        pid = holder.get("pid")
        if isinstance(pid, int) and pid != os.getpid() and (not same_host or _pid_alive(pid)):
            self._refuse(path)

    def _refuse(self, path: Path) -> None:
        holder = _holder(path)
        who = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}"
        since = f" since {holder['started']}" if holder.get("started") else ""
        raise FolderLockedError(
            f"{self.what} {self.folder} is in use by {who}{since} "
            f"({holder.get('command', 'unknown command')!s}); wait for it to finish or stop it, "
            f"or choose another output folder"
        )

    def __exit__(self, *exc: object) -> None:
        depth = FolderLock._held.get(self._key, 0)
        if depth > 1:
            FolderLock._held[self._key] = depth - 1
            return
        FolderLock._held.pop(self._key, None)
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None
