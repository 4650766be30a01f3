"""Atomic file writes shared by every subpackage.

A write goes to a temporary file in the same directory, is flushed and fsync'ed, then renamed
over the target. ``os.replace`` is atomic on POSIX and Windows, so a reader (or a run killed
half-way) sees either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def _create_temp(directory: Path, name: str) -> tuple[int, str]:
    """Create a new, unique temporary file next to the target and return (fd, path).

    Not ``tempfile.mkstemp``: it creates files 0600, which would make reports, logs and
    checkpoints owner-only after the rename. Opening with mode 0666 lets the kernel apply the
    umask exactly as a plain ``open()`` would, without reading or changing the process umask.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = directory / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a unique temporary file for {name} in {directory}")


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Flush ``directory``'s entries to disk: a rename or a new file in it is only durable then.

    Best effort: a folder that cannot be opened or synced (some file systems, Windows) is skipped.
    """
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8"
) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on clean exit, fsync it and rename it to ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open mode must be 'w' or 'wb', got {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(target.parent, target.name)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")
