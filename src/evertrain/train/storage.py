"""A full disk or a read-only folder while a run writes: one line, exit 2, nothing lost.

Checkpoints, ``manifest.json`` and the log rewrite are atomic (temp + rename), so a write that
fails leaves every checkpoint and log line already written intact; what a failed checkpoint
write leaves is its temp folder ``checkpoints/.tmp-<name>-<pid>``. :func:`remove_partial_writes`
deletes such folders, and a resume calls it *first*, before anything that needs space: while
the disk stays full, the partial folder may be the only free space there is.

:func:`storage_error` turns the ``OSError`` (``ENOSPC``/``EDQUOT``: full; ``EROFS``,
``EACCES``, ``EPERM``: not writable) into :class:`StorageError`, a ``ValueError`` the CLI prints
as one ``error:`` line (exit 2) naming the path, the free space a checkpoint of this run needs
and the fix, instead of an 80-line traceback.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = [
    "StorageError",
    "checkpoint_size_estimate",
    "remove_partial_writes",
    "run_storage_error",
    "storage_error",
]

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
NOT_WRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
# Left by a checkpoint write, a prune or a same-name replace that did not finish.
PARTIAL_PREFIXES = (".tmp-", ".del-", ".trash-")


class StorageError(ValueError):
    """The run folder's disk is full or not writable; the message names the path and the fix."""


def remove_partial_writes(checkpoints_dir: Path, pid: int | None = None) -> list[Path]:
    """Delete the temp folders of unfinished checkpoint writes and deletes (only this process's
    when ``pid`` is given). Call with the run folder's lock held: a temp folder of a live
    writer is never touched then, because there is none."""
    removed: list[Path] = []
    if not checkpoints_dir.is_dir():
        return removed
    for child in checkpoints_dir.iterdir():
        if not child.name.startswith(PARTIAL_PREFIXES) or not child.is_dir():
            continue
        if pid is not None and not child.name.endswith(f"-{pid}"):
            continue
        shutil.rmtree(child, ignore_errors=True)
        removed.append(child)
    return removed


def checkpoint_size_estimate(checkpoints_dir: Path, model: torch.nn.Module | None) -> int | None:
    """Bytes the next checkpoint needs: the newest one on disk, else weights + two Adam moments."""
    sizes = []
    if checkpoints_dir.is_dir():
        for child in checkpoints_dir.iterdir():
            if child.is_dir() and not child.name.startswith("."):
                files = [f for f in child.rglob("*") if f.is_file()]
                sizes.append((child.stat().st_mtime, sum(f.stat().st_size for f in files)))
    if sizes:
        return max(sizes)[1]
    if model is None:
        return None
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return 3 * weights  # weights, exp_avg, exp_avg_sq (fp32); metadata is negligible


def is_storage_error(error: BaseException, out_dir: Path) -> bool:
    """A full disk anywhere, or a permission error on a path in the run folder."""
    if not isinstance(error, OSError) or error.errno is None:
        return False
    if error.errno in DISK_FULL or error.errno == errno.EROFS:
        return True
    if error.errno in NOT_WRITABLE and error.filename is not None:
        try:
            Path(os.fsdecode(error.filename)).resolve().relative_to(out_dir.resolve())
        except ValueError:
            return False
        return True
    return False


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"  # pragma: no cover


def _free_bytes(path: Path) -> int | None:
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def storage_error(
    error: OSError, out_dir: Path, *, needed: int | None, last_checkpoint: Path | None
) -> StorageError:
    """The one-line :class:`StorageError` for ``error`` (see :func:`is_storage_error`)."""
    path = Path(os.fsdecode(error.filename)) if error.filename is not None else out_dir
    reason = error.strerror or os.strerror(error.errno or 0)
    need = f"about {_human(needed)}" if needed else "room for one more checkpoint"
    resume = (
        f"--resume continues from {last_checkpoint.name}"
        if last_checkpoint is not None
        else "--resume continues the run"
    )
    intact = "the checkpoints and log.jsonl already written are intact"
    if error.errno in DISK_FULL:
        free = _free_bytes(path)
        has = f" and {_human(free)} is free there" if free is not None else ""
        return StorageError(
            f"disk full: cannot write {path} ({reason}); a checkpoint of this run needs {need}"
            f"{has}: free space on that disk (or lower keep_last, or choose another out_dir), "
            f"then {resume}; {intact}"
        )
    return StorageError(
        f"cannot write {path} ({reason}): make {out_dir} writable (it needs {need} free for a "
        f"checkpoint) or choose another out_dir, then {resume}; {intact}"
    )


def run_storage_error(
    error: OSError, out_dir: Path, model: torch.nn.Module | None = None
) -> StorageError:
    """:func:`storage_error` for the run in ``out_dir``: the space its next checkpoint needs,
    and the newest checkpoint a resume would continue from."""
    from evertrain.train.checkpoint import list_checkpoints  # torch: only once a run failed

    checkpoints_dir = out_dir / "checkpoints"
    found = list_checkpoints(checkpoints_dir)
    return storage_error(
        error,
        out_dir,
        needed=checkpoint_size_estimate(checkpoints_dir, model),
        last_checkpoint=found[-1][0] if found else None,
    )
