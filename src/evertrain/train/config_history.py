"""Every config a run was trained under: ``config.yaml`` plus ``config_history.jsonl``.

- ``config.yaml`` is the config the run was **started** with. It is written once, when the run
  starts from step 0, and never rewritten by a resume, so it stays the record of how the run began.
- ``config_history.jsonl`` holds one JSON object per distinct config, in order::

      {"step": 0,   "tokens": 0,     "config": {...}, "changes": {}}
      {"step": 120, "tokens": 15360, "config": {...},
       "changes": {"schedule": ["wsd:peak=0.003,...", "cosine:peak=0.003,..."]}}

  ``step`` / ``tokens`` are the progress at which the config took effect: the update with 0-based
  index ``step`` (log record ``step + 1``) is the first trained under it. ``changes`` maps each
  changed field (dotted path) to its ``[old, new]`` values. A resume with an unchanged config
  writes nothing; a resume with a changed one appends an entry and warns one line per field.

:func:`trained_config` answers "which config trained step k" (the last entry before it).
``out_dir`` is left out of the comparison: it names the folder, not how the run trains.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evertrain import _yaml
from evertrain._atomic import atomic_write_text
from evertrain.schedules import from_spec
from evertrain.train.logging import read_log

HISTORY_NAME = "config_history.jsonl"
CONFIG_NAME = "config.yaml"

# Fields compared as one value: a schedule or a mixture changes as a whole plan.
_WHOLE = {"schedule", "data.train", "data.mixture", "data.eval"}
_IGNORED = {"out_dir"}

__all__ = [
    "CONFIG_NAME",
    "HISTORY_NAME",
    "config_changes",
    "read_config_history",
    "record_config",
    "trained_config",
]


def read_config_history(out_dir: str | Path) -> list[dict[str, Any]]:
    """The entries of ``out_dir/config_history.jsonl`` (empty when the run has none)."""
    path = Path(out_dir) / HISTORY_NAME
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # cannot happen with atomic rewrites; tolerate a hand-edited file
        if isinstance(entry, dict) and isinstance(entry.get("config"), dict):
            entries.append(entry)
    return entries


def trained_config(out_dir: str | Path, step: int | None = None) -> dict[str, Any] | None:
    """The config under which log step ``step`` (1-based, as in ``log.jsonl``) was trained.

    ``step=None`` means the run's last trained step, taken from its last history entry that
    trained anything. Falls back to ``config.yaml`` for a run written before the history existed.
    """
    entries = read_config_history(out_dir)
    if not entries:
        path = Path(out_dir) / CONFIG_NAME
        return _yaml.load(path.read_text(encoding="utf-8")) if path.is_file() else None
    if step is None:
        steps = [int(r.get("step", 0)) for r in read_log(Path(out_dir) / "log.jsonl")]
        step = max(steps, default=0)
    chosen = entries[0]
    for entry in entries:
        if int(entry["step"]) < max(step, 1):
            chosen = entry
    return chosen["config"]


def _schedule_text(spec: Any) -> str:
    """A schedule spec as one short inline string: ``cosine:peak=0.003,total=3072``."""
    if not isinstance(spec, dict):
        return str(spec)
    params = ",".join(
        f"{key}={json.dumps(value) if isinstance(value, (dict, list)) else value}"
        for key, value in spec.items()
        if key != "name"
    )
    return f"{spec.get('name')}:{params}"


def _same_schedule(old: Any, new: Any) -> bool:
    # An inline string and the equivalent mapping (or defaults spelled out) are one schedule.
    if old == new:
        return True
    try:
        return from_spec(old).to_spec() == from_spec(new).to_spec()
    except ValueError:
        return False


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[Any]]:
    """``{dotted.field: [old, new]}`` for every field that differs (``out_dir`` ignored)."""
    changes: dict[str, list[Any]] = {}

    def walk(before: Any, after: Any, path: str) -> None:
        if path in _IGNORED:
            return
        if path == "schedule":
            if not _same_schedule(before, after):
                changes[path] = [before, after]
            return
        if isinstance(before, dict) and isinstance(after, dict) and path not in _WHOLE:
            for key in list(before) + [k for k in after if k not in before]:
                walk(before.get(key), after.get(key), f"{path}.{key}" if path else key)
            return
        if before != after:
            changes[path] = [before, after]

    walk(old, new, "")
    return changes


def describe_change(field: str, before: Any, after: Any, step: int, tokens: int) -> str:
    """One warning line: ``schedule: wsd:... -> cosine:... at step 120 (tokens 15360)``."""

    def show(value: Any) -> str:
        if field == "schedule":
            return _schedule_text(value)
        return json.dumps(value) if isinstance(value, (dict, list)) else str(value)

    return f"{field}: {show(before)} -> {show(after)} at step {step} (tokens {tokens})"


def _write(out_dir: Path, entries: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(entry, sort_keys=False) + "\n" for entry in entries)
    atomic_write_text(out_dir / HISTORY_NAME, text)


def record_config(
    out_dir: str | Path, config: dict[str, Any], *, step: int, tokens: int, fresh: bool
) -> list[str]:
    """Record that ``config`` is in effect from ``step``/``tokens`` on; return the change lines.

    ``fresh``: a new run (nothing to resume), so ``config.yaml`` and the history are written from
    ``config``. On a resume the entries after ``step`` are dropped first (those steps are trained
    again, just as ``log.jsonl`` is cut back to the checkpoint), then ``config`` is compared with
    the last remaining entry: unchanged -> nothing is written; changed -> an entry is appended
    (the file is rewritten atomically) and one line per changed field is returned. A resume
    that found no checkpoint starts the run over from step 0, so its config becomes the start.
    """
    out_dir = Path(out_dir)
    entries = [] if fresh else read_config_history(out_dir)
    kept = [entry for entry in entries if int(entry["step"]) <= step]
    if not kept and not fresh:
        kept = _baseline(out_dir)
    changes = config_changes(_with_defaults(kept[-1]["config"]), config) if kept else {}
    lines = [describe_change(field, *values, step, tokens) for field, values in changes.items()]
    if step == 0 and (changes or not kept):
        atomic_write_text(out_dir / CONFIG_NAME, _yaml.dump(config))
        _write(out_dir, [{"step": 0, "tokens": 0, "config": config, "changes": {}}])
    elif changes:
        _write(
            out_dir, [*kept, {"step": step, "tokens": tokens, "config": config, "changes": changes}]
        )
    elif len(kept) != len(entries):
        _write(out_dir, kept)
    return lines


def _baseline(out_dir: Path) -> list[dict[str, Any]]:
    """The first entry of a run without a history (written before the history existed): its
    ``config.yaml``, which such a run rewrote on every resume, so the config of its last session."""

    path = out_dir / CONFIG_NAME
    if not path.is_file():
        return []
    try:
        recorded = _yaml.load(path.read_text(encoding="utf-8"))
    except _yaml.YAMLError:
        return []
    if not isinstance(recorded, dict):
        return []
    return [{"step": 0, "tokens": 0, "config": recorded, "changes": {}, "source": CONFIG_NAME}]


def _with_defaults(recorded: dict[str, Any]) -> dict[str, Any]:
    """``recorded`` with the fields added to TrainConfig since it was written filled in with their
    defaults, so a resume of an older run does not report them as changes (kept as written when
    it no longer validates)."""
    from evertrain.train.config import ConfigError, TrainConfig

    try:
        return TrainConfig.model_validate(recorded).to_dict()
    except (ConfigError, ValueError):
        return recorded
