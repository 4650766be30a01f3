"""Read the loss logs people have into :class:`LossCurve` objects.

Sources (:func:`read_log` picks one from the path):

* an **evertrain run folder** or its ``log.jsonl`` (read as JSON: no torch). A train record's
  ``step`` is the state *after* the update and its ``lr`` the LR that update used, so record
  ``step = S`` is read as update ``S - 1`` (the laws' convention: ``lr[k]`` and the loss of the
  forward pass of update ``k``). The per-step LR is rebuilt from the run's recorded schedule
  (``config_history.jsonl``, else ``config.yaml``) and checked against the logged values;
* **TensorBoard** event files (a file or a folder holding them), read with tensorboard's
  ``EventAccumulator`` when tensorboard is installed;
* **CSV / TSV** exports (W&B, MLflow, pandas, hand-written) with any column names: the step,
  loss and lr columns are found by their usual names (``step``, ``_step``, ``global_step``;
  ``loss``, ``train/loss``; ``lr``, ``learning_rate``, W&B's ``"<run> - train/loss"``) or named
  with ``step_col`` / ``loss_col`` / ``lr_col``.

A row without a loss is an error naming the row and ``--dropna`` (which drops such rows and says
how many). An ``lr`` logged only every N steps is interpolated linearly to every step, and the
notes say so; pass the schedule the run used for the exact per-step LR.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evertrain import _yaml
from evertrain.laws.curves import (
    SHARED_CURVES,
    LawError,
    LossCurve,
    lr_array,
    schedule_label,
    shared_curve_lr,
    shared_curve_total,
)
from evertrain.schedules import from_spec

__all__ = ["LogTable", "read_log", "curve_from_log", "load_log_curve"]

STEP_NAMES = ("step", "_step", "global_step", "trainer/global_step", "iteration", "iter", "steps")
LOSS_NAMES = ("loss", "train/loss", "train_loss", "training_loss", "loss/train", "train/train_loss")
LR_NAMES = ("lr", "learning_rate", "train/lr", "train/learning_rate", "lr/train", "learning-rate")
_MISSING = ("", "nan", "null", "none", "na", "n/a")


@dataclass
class LogTable:
    """Columns read from one log, before any LR is rebuilt: NaN marks a missing cell."""

    path: Path
    kind: str  # "evertrain log.jsonl" | "TensorBoard" | "CSV"
    steps: np.ndarray
    loss: np.ndarray
    lr: np.ndarray | None
    rows: list[str]  # where each row came from, for error messages ("line 7", "step 120")
    run_dir: Path | None = None  # an evertrain run folder: its recorded schedule rebuilds the LR
    tokens: np.ndarray | None = None  # tokens seen after each row's update (evertrain logs)
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


def read_log(
    path: str | Path,
    *,
    step_col: str | None = None,
    loss_col: str | None = None,
    lr_col: str | None = None,
) -> LogTable:
    """Read ``path`` (run folder, ``log.jsonl``, TensorBoard file/folder, CSV/TSV) as columns."""
    path = Path(path)
    if not path.exists():
        raise LawError(f"curve {path} does not exist")
    if path.is_dir():
        if (path / "log.jsonl").is_file():
            return _read_jsonl(path / "log.jsonl", step_col, loss_col, lr_col)
        if _event_files(path):
            return _read_tensorboard(path, step_col, loss_col, lr_col)
        raise LawError(
            f"{path} is a folder with neither log.jsonl (an evertrain run folder) nor TensorBoard "
            "event files (events.out.tfevents.*): give a run folder, a log file or a CSV"
        )
    if path.suffix == ".jsonl":
        return _read_jsonl(path, step_col, loss_col, lr_col)
    if path.name.startswith("events.out.tfevents"):
        return _read_tensorboard(path, step_col, loss_col, lr_col)
    return _read_csv(path, step_col, loss_col, lr_col)


def _read_jsonl(
    path: Path, step_col: str | None, loss_col: str | None, lr_col: str | None
) -> LogTable:
    step_key, loss_key, lr_key = step_col or "step", loss_col or "loss", lr_col or "lr"
    steps, loss, lr, tokens, rows = [], [], [], [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a crash mid-write
        if not isinstance(record, dict) or record.get("kind", "train") != "train":
            continue
        if step_key not in record:
            raise LawError(f"{path}: line {number} has no {step_key!r} field (--step-col)")
        steps.append(_number(record.get(step_key)))
        loss.append(_number(record.get(loss_key)))
        lr.append(_number(record.get(lr_key)))
        tokens.append(_number(record.get("tokens")))
        rows.append(f"line {number}")
    if not steps:
        raise LawError(f"{path}: no train records (kind 'train') to fit")
    if all(math.isnan(value) for value in loss):
        raise LawError(f"{path}: no record has a {loss_key!r} value: name the loss with --loss-col")
    run_dir = path.parent if (path.parent / "config.yaml").is_file() else None
    # evertrain logs the state after the update: record step S is update S - 1.
    shifted = np.asarray(steps, dtype=np.float64) - (1.0 if step_col is None else 0.0)
    return LogTable(
        path,
        "evertrain log.jsonl",
        shifted,
        np.asarray(loss, dtype=np.float64),
        np.asarray(lr, dtype=np.float64),
        rows,
        run_dir=run_dir if step_col is None else None,
        tokens=np.asarray(tokens, dtype=np.float64),
    )


def _number(value: Any) -> float:
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _event_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("events.out.tfevents*"))


def _read_tensorboard(
    path: Path, step_col: str | None, loss_col: str | None, lr_col: str | None
) -> LogTable:
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        raise LawError(
            f"{path}: reading TensorBoard event files needs tensorboard (pip install tensorboard); "
            "or export the scalars as CSV and pass that"
        ) from None
    if step_col is not None:
        raise LawError("--step-col is for CSV files: TensorBoard scalars carry their own step")
    files = [path] if path.is_file() else _event_files(path)
    scalars: dict[str, dict[int, float]] = {}
    for file in files:
        accumulator = EventAccumulator(str(file), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags().get("scalars", []):
            series = scalars.setdefault(tag, {})
            for event in accumulator.Scalars(tag):
                series[int(event.step)] = float(event.value)  # a later file wins (a resume)
    tags = sorted(scalars)
    if not tags:
        raise LawError(f"{path}: the TensorBoard events hold no scalars (no loss to fit)")
    loss_tag = _pick(tags, loss_col, LOSS_NAMES, "loss", "--loss-col", path, kind="tag")
    lr_tag = _pick(tags, lr_col, LR_NAMES, "lr", "--lr-col", path, kind="tag", required=False)
    steps = sorted(set(scalars[loss_tag]) | (set(scalars[lr_tag]) if lr_tag else set()))
    loss = [scalars[loss_tag].get(step, math.nan) for step in steps]
    lr = [scalars[lr_tag].get(step, math.nan) for step in steps] if lr_tag else None
    # evertrain writes TensorBoard into <run folder>/tensorboard with log.jsonl's steps
    folder = path if path.is_dir() else path.parent
    run_dir = folder.parent if folder.name == "tensorboard" else None
    if run_dir is not None and not (run_dir / "config.yaml").is_file():
        run_dir = None
    offset = 1.0 if run_dir is not None else 0.0
    return LogTable(
        path,
        "TensorBoard",
        np.asarray(steps, dtype=np.float64) - offset,
        np.asarray(loss, dtype=np.float64),
        None if lr is None else np.asarray(lr, dtype=np.float64),
        [f"step {step}" for step in steps],
        run_dir=run_dir,
        notes=[f"TensorBoard tags: loss {loss_tag!r}" + (f", lr {lr_tag!r}" if lr_tag else "")],
    )


def _column_key(name: str) -> str:
    # W&B exports name a column "<run name> - <metric>"; match on the metric.
    name = name.strip()
    return name.rsplit(" - ", 1)[-1].strip().lower()


def _pick(
    names: list[str],
    given: str | None,
    candidates: tuple[str, ...],
    what: str,
    flag: str,
    path: Path,
    *,
    kind: str = "column",
    required: bool = True,
) -> str | None:
    """The column (or tag) holding ``what``: the one named by ``flag``, else a usual name."""
    if given is not None:
        for match in (lambda n: n == given, lambda n: n.strip().lower() == given.strip().lower()):
            found = [name for name in names if match(name)]
            if found:
                return found[0]
        raise LawError(
            f"{flag} {given!r}: {path} has no such {kind}; its {kind}s are {', '.join(names)}"
        )
    usable = [n for n in names if not n.endswith(("__MIN", "__MAX", "__min", "__max"))]
    for candidate in candidates:
        found = [name for name in usable if _column_key(name) == candidate]
        if len(found) > 1:
            raise LawError(
                f"{path}: several {kind}s hold a {what} ({', '.join(found)}): choose one with {flag}"
            )
        if found:
            return found[0]
    if required:
        raise LawError(f"{path}: no {what} {kind} among {', '.join(names)}: name it with {flag}")
    return None


def _read_csv(
    path: Path, step_col: str | None, loss_col: str | None, lr_col: str | None
) -> LogTable:
    text = path.read_text(encoding="utf-8-sig")
    delimiter = "\t" if path.suffix.lower() == ".tsv" or text.split("\n", 1)[0].count("\t") else ","
    rows = list(csv.reader(text.splitlines(), delimiter=delimiter))
    if not rows:
        raise LawError(
            f"{path}: empty file; expected a header row naming the step and loss columns"
        )
    header = rows[0]
    step_name = _pick(header, step_col, STEP_NAMES, "step", "--step-col", path)
    loss_name = _pick(header, loss_col, LOSS_NAMES, "loss", "--loss-col", path)
    lr_name = _pick(header, lr_col, LR_NAMES, "lr", "--lr-col", path, required=False)
    index = {name: header.index(name) for name in (step_name, loss_name, lr_name) if name}
    columns: dict[str, list[float]] = {name: [] for name in index}
    labels = []
    for number, row in enumerate(rows[1:], start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        for name, position in index.items():
            cell = row[position].strip() if position < len(row) else ""
            if cell.lower() in _MISSING:
                columns[name].append(math.nan)
                continue
            try:
                columns[name].append(float(cell))
            except ValueError:
                raise LawError(
                    f"{path}: line {number}, column {name!r}: {cell!r} is not a number"
                ) from None
        labels.append(f"line {number}")
    if not labels:
        raise LawError(f"{path}: no data rows under the header")
    return LogTable(
        path,
        "CSV",
        np.asarray(columns[step_name]),
        np.asarray(columns[loss_name]),
        None if lr_name is None else np.asarray(columns[lr_name]),
        labels,
        notes=[f"columns: step {step_name!r}, loss {loss_name!r}"
               + (f", lr {lr_name!r}" if lr_name else "")],
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Columns -> LossCurve
# --------------------------------------------------------------------------------------------


def curve_from_log(
    table: LogTable,
    *,
    name: str | None = None,
    schedule: Any = None,
    tokens_per_step: float | None = None,
    dropna: bool = False,
) -> tuple[LossCurve, list[str]]:
    """The :class:`LossCurve` of ``table`` and notes saying where its per-step LR came from.

    The LR is, in this order: ``schedule`` (exact); the recorded schedule of an evertrain run
    folder, when it reproduces the logged LR; the logged ``lr`` itself when it covers every step;
    else the logged ``lr`` interpolated linearly between the steps where it was logged.
    """
    notes = list(table.notes)
    steps, loss, lr, tokens = table.steps, table.loss, table.lr, table.tokens
    missing_step = np.isnan(steps)
    if missing_step.any():
        row = table.rows[int(np.flatnonzero(missing_step)[0])]
        raise LawError(f"{table.path}: {row} has no step: every row needs a step")
    no_loss = ~np.isfinite(loss)
    if no_loss.any():
        first = int(np.flatnonzero(no_loss)[0])
        if not dropna:
            raise LawError(
                f"{table.path}: {table.rows[first]} (step {int(steps[first])}) has no loss "
                f"({int(no_loss.sum())} such rows): pass --dropna to drop them"
            )
        notes.append(f"--dropna: dropped {int(no_loss.sum())} rows without a loss")
    keep = ~no_loss
    order = np.argsort(steps[keep], kind="stable")
    curve_steps = steps[keep][order]
    curve_loss = loss[keep][order]
    n_steps = int(np.nanmax(steps)) + 1 if len(steps) else 1
    lr_steps, lr_values = _logged_lr(steps, lr)

    if schedule is not None:
        per_step = lr_array(schedule, n_steps, tokens_per_step=tokens_per_step)
        notes.append(f"lr: from --schedule {schedule_label(schedule)}")
    else:
        per_step, note = _rebuilt(table, n_steps, lr_steps, lr_values, tokens)
        if (
            per_step is None
            and table.kind == "CSV"
            and _is_shared(table, n_steps, lr_steps, lr_values)
        ):
            # a published curve (sparse log): its README gives the exact per-step schedule
            per_step = shared_curve_lr(
                table.path.stem, max(shared_curve_total(table.path.stem), n_steps)
            )
            note = "lr: the published schedule of this shared curve (its README)"
        if per_step is None:
            per_step, fallback = _from_logged_lr(table, n_steps, lr_steps, lr_values)
            note = note + fallback
        notes.append(note)
    meta = {"path": str(table.path), "source": table.kind}
    curve = LossCurve(name or _curve_name(table.path), curve_steps, curve_loss, per_step, meta=meta)
    return curve, notes


def _is_shared(table: LogTable, n_steps: int, lr_steps: np.ndarray, lr_values: np.ndarray) -> bool:
    if table.path.stem not in SHARED_CURVES or len(lr_steps) == 0:
        return False
    lr = shared_curve_lr(table.path.stem, max(shared_curve_total(table.path.stem), n_steps))
    return bool(np.allclose(lr[lr_steps], lr_values, rtol=1e-9, atol=0))


def _curve_name(path: Path) -> str:
    if path.is_dir():
        return path.name
    if path.name == "log.jsonl" or path.name.startswith("events.out.tfevents"):
        return path.parent.name
    return path.stem


def _logged_lr(steps: np.ndarray, lr: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if lr is None:
        return np.empty(0), np.empty(0)
    has = np.isfinite(lr) & (steps >= 0)
    order = np.argsort(steps[has], kind="stable")
    return steps[has][order].astype(np.int64), lr[has][order]


def _from_logged_lr(
    table: LogTable, n_steps: int, lr_steps: np.ndarray, lr_values: np.ndarray
) -> tuple[np.ndarray, str]:
    if len(lr_steps) == 0:
        raise LawError(
            f"{table.path}: no lr values: pass the schedule the run used (--schedule), or name "
            "the lr column with --lr-col"
        )
    if len(lr_steps) == n_steps and np.array_equal(lr_steps, np.arange(n_steps)):
        return lr_values.copy(), "lr: logged at every step"
    per_step = np.interp(np.arange(n_steps, dtype=np.float64), lr_steps, lr_values)
    note = f"lr: logged at {len(lr_steps)} of {n_steps} steps, interpolated linearly between them"
    if lr_steps[0] > 0:
        note += f", held at its first logged value before step {int(lr_steps[0])}"
    if lr_steps[-1] < n_steps - 1:
        note += f", at its last after step {int(lr_steps[-1])}"
    return per_step, note + " (--schedule gives the exact per-step LR)"


def _recorded_schedules(run_dir: Path) -> list[tuple[int, Any]]:
    """``[(first update, schedule spec)]`` of an evertrain run folder, oldest first."""
    history = run_dir / "config_history.jsonl"
    segments: list[tuple[int, Any]] = []
    if history.is_file():
        for line in history.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            config = entry.get("config") if isinstance(entry, dict) else None
            if isinstance(config, dict) and config.get("schedule") is not None:
                segments.append((int(entry.get("step", 0)), config["schedule"]))
    if not segments:
        config = _yaml.load((run_dir / "config.yaml").read_text(encoding="utf-8"))
        if isinstance(config, dict) and config.get("schedule") is not None:
            segments.append((0, config["schedule"]))
    return segments


def _rebuilt(
    table: LogTable,
    n_steps: int,
    lr_steps: np.ndarray,
    lr_values: np.ndarray,
    tokens: np.ndarray | None,
) -> tuple[np.ndarray | None, str]:
    """The per-step LR from an evertrain run's recorded schedule, if it matches the log."""
    if table.run_dir is None:
        return None, ""
    try:
        segments = _recorded_schedules(table.run_dir)
        schedules = [(start, from_spec(spec)) for start, spec in segments]
    except (ValueError, OSError) as error:
        return None, f"the run's recorded schedule cannot be read ({error}), so "
    if not schedules:
        return None, ""
    progress = np.arange(n_steps, dtype=np.float64)
    if any(schedule.unit == "tokens" for _, schedule in schedules):
        if tokens is None or not np.isfinite(tokens).any():
            return None, ""
        known = np.isfinite(tokens)
        # tokens seen before update k = tokens after update k - 1 (0 before the first)
        after_steps = np.r_[-1.0, table.steps[known]]
        progress = np.interp(progress - 1.0, after_steps, np.r_[0.0, tokens[known]])
    per_step = np.empty(n_steps, dtype=np.float64)
    for index, (start, schedule) in enumerate(schedules):
        end = schedules[index + 1][0] if index + 1 < len(schedules) else n_steps
        if end > start:
            per_step[start:end] = schedule(progress[start:end])
    if len(lr_steps):
        inside = lr_steps < n_steps
        expected = per_step[lr_steps[inside]]
        logged = lr_values[inside]
        bad = ~np.isclose(expected, logged, rtol=1e-6, atol=1e-12)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            return None, (
                f"the run's recorded schedule gives lr {expected[first]:g} at step "
                f"{int(lr_steps[inside][first])} but the log has {logged[first]:g}, so "
            )
    labels = ", ".join(schedule_label(spec) for _, spec in segments)
    return per_step, (
        f"lr: rebuilt from the run's recorded schedule ({labels}); it matches the "
        f"{len(lr_steps)} logged lr values"
    )


def load_log_curve(
    path: str | Path,
    *,
    schedule: Any = None,
    step_col: str | None = None,
    loss_col: str | None = None,
    lr_col: str | None = None,
    dropna: bool = False,
    tokens_per_step: float | None = None,
    name: str | None = None,
) -> tuple[LossCurve, list[str]]:
    """:func:`read_log` then :func:`curve_from_log`: a fit-ready curve and how it was read."""
    table = read_log(path, step_col=step_col, loss_col=loss_col, lr_col=lr_col)
    return curve_from_log(
        table, name=name, schedule=schedule, tokens_per_step=tokens_per_step, dropna=dropna
    )
