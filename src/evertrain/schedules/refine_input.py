"""Gradient norms for :func:`evertrain.schedules.refine.refine_from_norms`, read from an evertrain
``log.jsonl`` or a CSV file. Reads the text directly (this package imports no other part of
evertrain but the package-root primitives).

evertrain logs ``step`` and ``tokens`` *after* the optimizer step, so the gradient logged at
``step = k`` belongs to the update that ran at progress ``k - 1`` steps (or at the tokens seen
before that step). A CSV's progress column is taken as it is: the progress of the update that
produced that gradient norm.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np

from evertrain.schedules.base import ScheduleError

MIN_ROWS = 3


class GradNorms(NamedTuple):
    progress: np.ndarray  # the progress (schedule unit) of each update, increasing
    grad_norms: np.ndarray  # finite and > 0
    skipped: int  # rows dropped: missing, null (NaN logged), infinite or <= 0 norms


def _usable(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and value > 0


def _from_jsonl(path: Path, grad_key: str, progress_key: str) -> GradNorms:
    progress, norms, skipped, seen_key = [], [], 0, False
    previous_step = previous_tokens = 0.0
    lines = path.read_text(encoding="utf-8").splitlines()
    last = max((i for i, line in enumerate(lines, start=1) if line.strip()), default=0)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == last:  # a line torn by a crash of the logged run: counted, not fatal
                skipped += 1
                continue
            raise ScheduleError(
                f"{path}:{number}: not a JSON line: give an evertrain log.jsonl"
            ) from None
        if not isinstance(record, dict) or record.get("kind") != "train":
            continue
        step, tokens, here = record.get("step"), record.get("tokens"), record.get(progress_key)
        if not isinstance(here, (int, float)) or isinstance(here, bool):
            raise ScheduleError(f"{path}:{number}: train record has no number {progress_key!r}")
        seen_key = seen_key or grad_key in record
        at = float(here)
        if progress_key == "step":
            at -= 1.0  # the update that produced this gradient started one step earlier
        elif progress_key == "tokens" and _usable(step) and isinstance(tokens, (int, float)):
            # Tokens seen before this step: minus the tokens per step since the last record.
            at -= (tokens - previous_tokens) / max(step - previous_step, 1)
            previous_step, previous_tokens = step, tokens
        if not _usable(record.get(grad_key)):
            skipped += 1
            continue
        if progress and at <= progress[-1]:
            raise ScheduleError(
                f"{path}:{number}: {progress_key}={here} is not after the previous record's: "
                "give the log of one run (evertrain truncates it on resume)"
            )
        progress.append(at)
        norms.append(float(record[grad_key]))
    if not seen_key:
        raise ScheduleError(
            f"{path}: no train record has {grad_key!r}: give a log.jsonl with gradient norms "
            "(or name the field with --grad-col)"
        )
    return GradNorms(np.asarray(progress), np.asarray(norms), skipped)


def _number(text: str | None) -> float:
    try:
        return float(text) if text is not None else math.nan
    except ValueError:
        return math.nan


def _from_csv(path: Path, grad_col: str, progress_col: str) -> GradNorms:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        for column, flag in ((grad_col, "--grad-col"), (progress_col, "--step-col")):
            if column not in columns:
                raise ScheduleError(
                    f"{path}: no column {column!r} (columns: {', '.join(columns) or 'none'}): "
                    f"name it with {flag}"
                )
        progress, norms, skipped = [], [], 0
        for number, row in enumerate(reader, start=2):
            at, norm = _number(row.get(progress_col)), _number(row.get(grad_col))
            if not math.isfinite(at):
                raise ScheduleError(f"{path}:{number}: {progress_col}={row.get(progress_col)!r}")
            if not _usable(norm):
                skipped += 1
                continue
            if progress and at <= progress[-1]:
                raise ScheduleError(
                    f"{path}:{number}: {progress_col}={at:g} is not after the previous row's: "
                    "sort the rows by progress"
                )
            progress.append(at)
            norms.append(norm)
    return GradNorms(np.asarray(progress), np.asarray(norms), skipped)


def read_grad_norms(
    path: str | Path, *, grad_col: str | None = None, step_col: str | None = None,
    unit: str = "steps",
) -> GradNorms:  # fmt: skip
    """Gradient norms and the progress of their updates from ``log.jsonl`` (train records) or a
    ``.csv``; bad rows (NaN/null/<= 0 norms) are skipped and counted. Raises
    :class:`ScheduleError` (one line) on a missing file, field or column, or < 3 usable rows."""
    path = Path(path)
    if unit not in ("steps", "tokens"):
        raise ScheduleError(f"refine: unit={unit!r}: use steps or tokens")
    if not path.is_file():
        raise ScheduleError(f"{path}: no such file: give a run's log.jsonl or a CSV file")
    grad_col = grad_col or "grad_norm"
    progress_col = step_col or ("step" if unit == "steps" else "tokens")
    if path.suffix.lower() == ".csv":
        found = _from_csv(path, grad_col, progress_col)
    else:
        found = _from_jsonl(path, grad_col, progress_col)
    if len(found.grad_norms) < MIN_ROWS:
        raise ScheduleError(
            f"{path}: {len(found.grad_norms)} usable gradient norms ({found.skipped} skipped): "
            f"refine needs >= {MIN_ROWS}; log more steps (train.log_interval)"
        )
    return found
