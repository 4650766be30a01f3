"""Output paths checked before any work: a one-line DataError instead of a late traceback."""

from __future__ import annotations

import os
from pathlib import Path

from evertrain.data.errors import DataError


def check_output_path(path: Path, what: str, *, folder: bool) -> list[Path]:
    """Refuse ``path`` if it cannot be written; return the folders a write would create.

    ``folder``: the output is a directory (it may exist); else a file, written atomically
    through a temp file beside it. ``what`` names the argument in the message (``out_dir``; the
    CLI swaps it for its flag). The folders are listed deepest first, so a caller that fails
    later can remove exactly what it created.
    """
    if folder and path.exists() and not path.is_dir():
        raise DataError(
            f"{what} {str(path)!r} is a file: choose a directory path (new, empty, or a prepared dataset)"
        )
    if not folder and path.is_dir():
        raise DataError(f"{what} {str(path)!r} is a folder: choose a file path")
    missing: list[Path] = []
    existing = path if folder else path.parent
    while not existing.exists() and existing != existing.parent:
        missing.append(existing)
        existing = existing.parent
    if not existing.is_dir():
        raise DataError(
            f"{what} {str(path)!r} cannot be created: {str(existing)!r} is a file, not a folder: "
            f"choose another {what}"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DataError(
            f"{what} {str(path)!r} cannot be written: {str(existing)!r} is read-only for this user: "
            f"choose a writable {what}"
        )
    return missing
