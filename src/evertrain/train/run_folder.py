"""The run folder: checked before any work, and held by one writer for the whole run.

:func:`check_out_dir` turns an ``out_dir`` that cannot be written (a file, under a file, a
read-only place) into one :class:`~evertrain.train.config.ConfigError` line naming the path and
the fix, before the model is built or any data opened.

:func:`hold_run_folder` takes :class:`evertrain._lock.FolderLock` on the folder for the run. Under
DDP only rank 0 takes it (every rank taking the same flock would make ranks 1..N-1 wait on rank
0 forever); rank 0 then tells the other ranks whether it got the lock, so a refused job stops on
every rank instead of leaving them waiting in the first collective. With one writer per folder,
two runs can no longer delete each other's temporary checkpoints or prune by a stale view, which
is how stray checkpoints used to outlive ``keep_last``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from evertrain._lock import FolderLock, FolderLockedError
from evertrain._paths import OutputPathError, check_output_dir
from evertrain.train import distributed
from evertrain.train.config import ConfigError

__all__ = ["check_out_dir", "hold_run_folder"]


def check_out_dir(out_dir: str | os.PathLike[str]) -> None:
    """Raise :class:`ConfigError` unless ``out_dir`` is (or can be created as) a writable folder
    (the project's one output-folder check, :func:`evertrain._paths.check_output_dir`)."""
    try:
        check_output_dir(out_dir, "out_dir")
    except OutputPathError as error:
        raise ConfigError(str(error)) from None


def _take_lock(out_dir: Path) -> tuple[FolderLock | None, tuple[str, str] | None]:
    """(the held lock, None) or (None, (kind, one-line reason)) on rank 0."""
    try:
        check_out_dir(out_dir)
        lock = FolderLock(out_dir, what="run folder")
        lock.__enter__()
    except FolderLockedError as error:
        return None, ("locked", str(error))
    except ConfigError as error:
        return None, ("config", str(error))
    except OSError as error:  # e.g. the folder became unwritable between check and lock
        reason = os.strerror(error.errno) if error.errno else str(error)
        return None, (
            "config",
            f"out_dir: cannot create {out_dir} or its lock file ({reason}); "
            "choose an out_dir you can write to",
        )
    return lock, None


@contextlib.contextmanager
def hold_run_folder(out_dir: str | os.PathLike[str], info: distributed.DistInfo) -> Iterator[None]:
    """Check ``out_dir`` and hold its lock (rank 0) for the ``with`` block; raise on every rank.

    Raises :class:`ConfigError` for a bad path and :class:`FolderLockedError` (naming the
    holder's pid and host) when another live process holds the folder.
    """
    path = Path(out_dir)
    lock, refusal = _take_lock(path) if info.is_main else (None, None)
    refusal = distributed.broadcast_object(refusal, info)
    if refusal is not None:
        kind, message = refusal
        raise (FolderLockedError if kind == "locked" else ConfigError)(message)
    try:
        yield
    finally:
        if lock is not None:
            lock.__exit__(None, None, None)
