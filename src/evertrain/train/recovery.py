"""Choosing the checkpoint a resume starts from, and saying so whenever it is not the newest.

The rule (DEVELOPERS.md: nothing silently wrong): every checkpoint folder under
``checkpoints/`` is a candidate, whatever state its ``meta.json`` is in. A candidate whose
``meta.json`` is missing, truncated, not UTF-8 or not an evertrain meta, or whose files fail
their sha256, is *rejected* with the reason; the newest candidate that verifies is used. Then

- nothing rejected: no message;
- some rejected, one used: ONE warning line naming each skipped folder, why, and the one used;
- every candidate rejected: :class:`AllCheckpointsCorrupt` (a one-line, exit-2 error naming each
  folder and why), unless the caller asked to start over (``--start-over-if-corrupt``), which is
  said in one warning line.

Rejected folders are renamed ``.corrupt-<name>`` once a resume has decided (see
:func:`quarantine`), so they are kept for inspection but never chosen, pruned or counted again.

The manifest's checkpoint paths are relative to the run folder (so a moved or copied run folder
still finds them); :func:`manifest_checkpoint_path` also reads the absolute paths older
manifests hold.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evertrain.train import checkpoint as ckpt

__all__ = [
    "AllCheckpointsCorrupt",
    "Selection",
    "checkpoint_folders",
    "manifest_checkpoint_path",
    "quarantine",
    "read_manifest",
    "resume_source",
    "select_checkpoint",
]

START_OVER_FLAG = "--start-over-if-corrupt"


class AllCheckpointsCorrupt(ckpt.CheckpointError):
    """Every checkpoint of the run was rejected; resuming would silently restart from step 0."""


@dataclass
class Selection:
    """What :func:`select_checkpoint` found: the checkpoint to use (or None) and every skipped one."""

    checkpoints_dir: Path
    chosen: tuple[Path, dict[str, Any]] | None = None
    rejected: list[tuple[Path, str]] = field(default_factory=list)  # (folder, why)

    def skipped_text(self) -> str:
        """Each rejected folder's reason (each names its file), ``; ``-separated."""
        return "; ".join(why for _, why in self.rejected)

    def fallback_message(self) -> str | None:
        """The one line a fallback prints (None when the newest checkpoint was used)."""
        if not self.rejected or self.chosen is None:
            return None
        path, meta = self.chosen
        return (
            f"checkpoints in {self.checkpoints_dir}: skipped {self.skipped_text()}; "
            f"using {path.name} (step {meta.get('step')}) instead"
        )

    def all_corrupt_message(self) -> str:
        """The refusal when every candidate was rejected (nothing is changed on disk)."""
        return (
            f"resume: every checkpoint in {self.checkpoints_dir} is unusable: "
            f"{self.skipped_text()}. Nothing was changed; restore a good copy of one of them, or "
            f"pass {START_OVER_FLAG} (run(cfg, resume=True, start_over_if_corrupt=True)) to train "
            "from step 0 (the bad folders are kept as .corrupt-<name>)"
        )

    def start_over_message(self) -> str:
        return (
            f"resume: every checkpoint in {self.checkpoints_dir} is unusable "
            f"({self.skipped_text()}); starting over from step 0 as {START_OVER_FLAG} asks "
            "(the bad folders are kept as .corrupt-<name>)"
        )


def checkpoint_folders(checkpoints_dir: Path) -> list[Path]:
    """Every checkpoint candidate: the folders not starting with ``.`` (temp, trash, corrupt)."""
    if not checkpoints_dir.is_dir():
        return []
    return sorted(
        child
        for child in checkpoints_dir.iterdir()
        if not child.name.startswith(".") and child.is_dir()
    )


def select_checkpoint(checkpoints_dir: Path) -> Selection:
    """The newest checkpoint whose meta reads and whose files verify, and every one rejected.

    Order is by the step in ``meta.json`` (then name); a folder whose ``meta.json`` cannot be
    read has no step to order by, so it is rejected whatever its age, and reported.
    """
    selection = Selection(checkpoints_dir)
    readable = []
    for folder in checkpoint_folders(checkpoints_dir):
        try:
            readable.append((folder, ckpt.read_meta(folder)))
        except ckpt.CheckpointError as error:
            selection.rejected.append((folder, str(error)))
    readable.sort(key=lambda item: (int(item[1].get("step", 0)), item[0].name))
    for folder, _ in reversed(readable):
        try:
            selection.chosen = folder, ckpt.verify_checkpoint(folder)
            break
        except ckpt.CheckpointError as error:
            selection.rejected.append((folder, str(error)))
    return selection


def resume_source(
    checkpoints_dir: Path, start_over_if_corrupt: bool = False
) -> tuple[str | None, str | None]:
    """(the checkpoint a resume starts from, or None for step 0; a refusal message, or None).

    One warning line on any fallback; the rejected folders are set aside as ``.corrupt-<name>``
    once resuming is decided, and nothing is touched when it is refused.
    """
    selection = select_checkpoint(checkpoints_dir)
    if selection.chosen is None and selection.rejected:
        if not start_over_if_corrupt:
            return None, selection.all_corrupt_message()
        warnings.warn(selection.start_over_message(), UserWarning, stacklevel=3)
    elif message := selection.fallback_message():
        warnings.warn(message, UserWarning, stacklevel=3)
    quarantine(selection)
    return (str(selection.chosen[0]) if selection.chosen else None), None


def quarantine(selection: Selection) -> list[Path]:
    """Rename each rejected folder to ``.corrupt-<name>`` (replacing an older one of that name)."""
    moved = []
    for folder, _ in selection.rejected:
        target = folder.parent / f".corrupt-{folder.name}"
        if target.exists():
            shutil.rmtree(target)
        os.replace(folder, target)
        moved.append(target)
    return moved


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """``run_dir/manifest.json`` checked for the shape ``train checkpoints`` reads.

    Raises :class:`~evertrain.train.checkpoint.CheckpointError` naming the file and what is wrong
    (not found, not UTF-8, not JSON, or entries without name/step/tokens).
    """
    path = run_dir / "manifest.json"
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ckpt.CheckpointError(f"{path} not found") from None
    except OSError as error:
        raise ckpt.CheckpointError(f"{path}: unreadable ({error.strerror})") from None
    except UnicodeDecodeError as error:
        raise ckpt.CheckpointError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except json.JSONDecodeError as error:
        raise ckpt.CheckpointError(
            f"{path}: not valid JSON ({error.msg}, line {error.lineno})"
        ) from None
    entries = manifest.get("checkpoints") if isinstance(manifest, dict) else None
    if not isinstance(entries, list) or not all(
        isinstance(entry, dict)
        and isinstance(entry.get("name"), str)
        and isinstance(entry.get("step"), int)
        and isinstance(entry.get("tokens"), int)
        for entry in entries
    ):
        raise ckpt.CheckpointError(
            f"{path}: not a run manifest (needs a 'checkpoints' list of entries with name, step "
            "and tokens)"
        )
    return manifest


def manifest_from_disk(run_dir: Path) -> dict[str, Any]:
    """The manifest :func:`~evertrain.train.checkpoint.write_manifest` would write now (parent
    unknown: it is recorded in the checkpoints' ``state.pt`` and the manifest only)."""
    return {"checkpoints": ckpt.manifest_entries(run_dir), "parent": None}


def manifest_checkpoint_path(run_dir: Path, entry: dict[str, Any]) -> Path:
    """Where a manifest entry's checkpoint is: its path relative to the run folder; an older
    manifest's absolute path is read as ``checkpoints/<its name>`` of *this* run folder, so a
    moved or copied run folder checks its own checkpoints, not the original's."""
    recorded = Path(str(entry.get("path") or Path("checkpoints") / str(entry["name"])))
    if recorded.is_absolute():
        return run_dir / "checkpoints" / recorded.name
    return run_dir / recorded
