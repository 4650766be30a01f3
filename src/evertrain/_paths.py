"""Check output paths before the work: a wrong ``-o`` must cost a one-line error, not a fit.

Every command that writes a file or a folder calls :func:`check_output_file` or
:func:`check_output_dir` on it *before* it starts fitting, training or plotting. The checks
do not create anything (a missing parent folder is made later, by the writer), so a command
that stops at bad input leaves no empty folder behind.

Writability is probed by creating and removing a temporary file in the nearest existing folder,
not by ``os.access``: root passes every permission-bit check, ``os.access`` says yes for
``/proc``, and only a real create sees read-only mounts, ACLs and pseudo file systems alike.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["OutputPathError", "check_output_dir", "check_output_file", "folders_to_create"]


class OutputPathError(ValueError):
    """An output path that cannot be written; the message is one line naming the path and fix."""


#: What the checks raise: OutputPathError, or an area's own ValueError subclass (``error=``).
ErrorType = type[ValueError]


def _nearest_existing(path: Path) -> Path:
    """``path`` itself or its closest ancestor that exists (``.`` for a relative path)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(".")


def _probe_writable(folder: Path, flag: str, path: Path, error: ErrorType) -> None:
    """Create and remove a temporary file in ``folder``; raise ``error`` if that fails."""
    try:
        handle, probe = tempfile.mkstemp(prefix=".evertrain-write-check-", dir=folder)
    except OSError as os_error:
        reason = os_error.strerror or type(os_error).__name__
        raise error(
            f"{flag} {path}: cannot write in {folder} ({reason}): choose a folder you can write "
            "to, or fix its permissions"
        ) from None
    os.close(handle)
    os.unlink(probe)


def _check_ancestors(path: Path, flag: str, error: ErrorType) -> Path:
    """The nearest existing ancestor of ``path``; it must be a folder we can write in."""
    existing = _nearest_existing(path.parent)
    if not existing.is_dir():
        raise error(
            f"{flag} {path}: {existing} is a file, not a folder: choose another path or move "
            "that file away"
        )
    _probe_writable(existing, flag, path, error)
    return existing


def check_output_file(
    path: str | os.PathLike[str], flag: str, *, error: ErrorType = OutputPathError
) -> Path:
    """Check that the file ``path`` (given with option ``flag``, e.g. ``"-o"``) can be written.

    Refused, with an :class:`OutputPathError` (or ``error``) naming ``flag``, the path and the
    fix: an existing folder, a path ending in a separator, a path below a file, or a folder we
    cannot write in. An existing file is fine (writes replace it atomically). Returns
    ``Path(path)``. ``flag`` may be a keyword argument's name for a library call (``out_path``).
    """
    text = os.fspath(path)
    target = Path(text)
    if target.is_dir():
        raise error(
            f"{flag} {target}: is a folder, but a file is written here: give a file path, "
            f"e.g. {flag} {target / 'NAME'}"
        )
    if text.endswith((os.sep, "/")):
        raise error(
            f"{flag} {text}: ends with a path separator, but a file is written here: give a "
            "file name"
        )
    _check_ancestors(target, flag, error)
    return target


def check_output_dir(
    path: str | os.PathLike[str], flag: str, *, error: ErrorType = OutputPathError
) -> Path:
    """Check that the folder ``path`` (given with option ``flag``) exists or can be made, and
    that files can be written in it.

    Refused, with an :class:`OutputPathError` (or ``error``): an existing file, a path below a
    file, a folder we cannot write in. Nothing is created. Returns ``Path(path)``.
    """
    target = Path(os.fspath(path))
    if target.exists() and not target.is_dir():
        raise error(
            f"{flag} {target}: is a file, but a folder is written here: give a folder path, "
            "or move that file away"
        )
    if target.is_dir():
        _probe_writable(target, flag, target, error)
    else:
        _check_ancestors(target, flag, error)
    return target


def folders_to_create(path: str | os.PathLike[str]) -> list[Path]:
    """The folders that writing into the folder ``path`` would make: ``path`` and its missing
    ancestors, deepest first, so that a writer that fails later removes exactly what it made."""
    missing: list[Path] = []
    folder = Path(os.fspath(path))
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing
