"""Run logs: one JSON object per line in ``log.jsonl``, optional TensorBoard scalars.

Records (``step`` and ``tokens`` are always the state *after* the optimizer step):

- ``{"kind": "train", "step", "tokens", "lr", "loss", "grad_norm", "tokens_per_s",
  "tokens_per_source": {...}, "skipped": int}``
- ``{"kind": "eval", "step", "tokens", "eval": {name: loss}}``

On resume :func:`truncate_log` cuts the file back to the checkpoint's step (and drops a line torn
by a crash), so the resumed log equals the log of an uninterrupted run. Lines that are not JSON
objects (torn by a crash, damaged, not UTF-8) are skipped with ONE warning naming the file and
their line numbers, never silently.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

from evertrain._atomic import atomic_write_text


def _clean(value: Any) -> Any:
    # JSON has no NaN/Infinity: write non-finite floats as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    return value


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """Parse ``log.jsonl``; unreadable lines (a torn last line after a crash, damage) are skipped
    with one warning naming the file and the line numbers."""
    records = []
    path = Path(path)
    if not path.exists():
        return records
    lines = path.read_bytes().splitlines()
    skipped = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            record = None
        if isinstance(record, dict) and isinstance(record.get("step", 0), int):
            records.append(record)
        else:
            skipped.append(number)
    if skipped:
        warnings.warn(_skipped_message(path, skipped, len(lines)), UserWarning, stacklevel=2)
    return records


def _skipped_message(path: Path, skipped: list[int], line_count: int) -> str:
    shown = ", ".join(str(number) for number in skipped[:10])
    more = f" and {len(skipped) - 10} more" if len(skipped) > 10 else ""
    torn = " (the last one torn by a crash mid-write)" if skipped[-1] == line_count else ""
    return (
        f"{path}: skipped {len(skipped)} unreadable line(s) {shown}{more}{torn}: not a JSON "
        "record; the records on the other lines are used"
    )


def truncate_log(path: Path, step: int) -> None:
    """Keep only the records with ``step <= step`` (atomic rewrite)."""
    kept = [record for record in read_log(path) if int(record.get("step", 0)) <= step]
    atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in kept))


class RunLogger:
    """Appends JSONL records (line-buffered) and mirrors scalars to TensorBoard when asked."""

    def __init__(self, out_dir: Path, *, tensorboard: bool = False, enabled: bool = True) -> None:
        self.enabled = enabled
        self.path = out_dir / "log.jsonl"
        self._handle = open(self.path, "a", encoding="utf-8") if enabled else None  # noqa: SIM115
        self._writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: JSONL only
                SummaryWriter = None  # noqa: N806
            if SummaryWriter is not None:
                self._writer = SummaryWriter(log_dir=str(out_dir / "tensorboard"))

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        assert self._handle is not None
        try:
            self._handle.write(json.dumps(_clean(record)) + "\n")
            self._handle.flush()
        except OSError as error:  # a full disk: name the file (a write() error names none)
            raise OSError(error.errno, error.strerror, os.fspath(self.path)) from None
        if self._writer is not None:
            step = int(record["step"])
            scalars = record.get("eval", {}) if record["kind"] == "eval" else record
            prefix = "eval" if record["kind"] == "eval" else "train"
            for key, value in scalars.items():
                if isinstance(value, (int, float)) and key not in ("step",) and value is not None:
                    self._writer.add_scalar(f"{prefix}/{key}", value, step)

    def close(self) -> None:
        if self._handle is not None:
            try:
                self._handle.close()
            except OSError:
                pass  # the record that failed was reported by log(); its bytes cannot be written
            self._handle = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
