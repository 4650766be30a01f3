"""Read what a training run left on disk: ``log.jsonl``, ``manifest.json``, ``config.yaml`` and
the continual area's own ``continual.json`` (recipe, stage, datasets' roles).

Everything in ``evertrain.continual`` that looks at results (forgetting, branches, reports)
works from these files only, so it can be run on finished runs, on another machine, or in tests
on synthetic files.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evertrain._atomic import atomic_write_json
from evertrain.train.config_history import trained_config

META_FILE = "continual.json"


class RunError(ValueError):
    """A run directory is missing or unreadable; the message names the file and the fix."""


@dataclass
class Run:
    """A finished (or running) training run, read from its directory."""

    path: Path
    name: str
    records: list[dict[str, Any]]
    manifest: dict[str, Any]
    config: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def train_records(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("kind") == "train"]

    @property
    def eval_records(self) -> list[dict[str, Any]]:
        return [
            r for r in self.records if r.get("kind") == "eval" and isinstance(r.get("eval"), dict)
        ]

    @property
    def tokens(self) -> int:
        """Tokens this run trained (its own, not its ancestors')."""
        candidates = [int(r.get("tokens", 0)) for r in self.records]
        candidates += [int(c.get("tokens", 0)) for c in self.manifest.get("checkpoints", [])]
        return max(candidates, default=0)

    @property
    def budget_tokens(self) -> int | None:
        """The token budget its config trains to (None when the config names none)."""
        value = self.config.get("budget_tokens")
        return int(value) if value else None

    @property
    def stopped_short(self) -> bool:
        """Trained fewer tokens than its budget: paused (``--stop-at-step``, a CPT law's probe),
        preempted, or still running. Its last eval is where it stopped, not its recipe's end."""
        return self.budget_tokens is not None and self.tokens < self.budget_tokens

    @property
    def wall_seconds(self) -> float | None:
        value = self.meta.get("wall_seconds")
        return float(value) if value is not None else None

    @property
    def final_eval(self) -> dict[str, float]:
        """The last evaluation of the run ({} if it never evaluated)."""
        evals = self.eval_records
        return {k: float(v) for k, v in evals[-1]["eval"].items()} if evals else {}

    @property
    def parent(self) -> dict[str, Any] | None:
        return self.manifest.get("parent") or None

    @property
    def recipe(self) -> str:
        return str(self.meta.get("recipe", self.name))

    @property
    def offset_tokens(self) -> int:
        """Tokens trained into the model before this run started (its fork point's lineage)."""
        return int(self.meta.get("offset_tokens", 0))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Parse a JSON-lines file, skipping a torn last line (a run killed mid-write)."""
    records = []
    if not path.exists():
        return records
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break  # the writer was interrupted; everything before it is intact
            raise RunError(f"{path}:{number} is not valid JSON: fix or remove that line") from None
    return records


def load_run(path: str | Path) -> Run:
    """Read a run directory (needs at least ``log.jsonl`` or ``manifest.json``)."""
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise RunError(
            f"run directory {run_dir} does not exist: pass the out_dir of a training run"
        )
    log_path, manifest_path = run_dir / "log.jsonl", run_dir / "manifest.json"
    if not log_path.exists() and not manifest_path.exists():
        raise RunError(
            f"{run_dir} has neither log.jsonl nor manifest.json: is it a training run's out_dir?"
        )
    manifest = _read_json(manifest_path) if manifest_path.exists() else {}
    # The config that trained the run's last step: a resume may have changed the schedule or
    # mixture, and config.yaml keeps the one the run started with (config_history.jsonl the rest).
    config: dict[str, Any] = trained_config(run_dir) or {}
    meta = _read_json(run_dir / META_FILE) if (run_dir / META_FILE).exists() else {}
    return Run(
        path=run_dir,
        name=str(meta.get("name", run_dir.name)),
        records=read_jsonl(log_path),
        manifest=manifest,
        config=config,
        meta=meta,
    )


def write_meta(run_dir: str | Path, **meta: Any) -> None:
    """Merge ``meta`` into ``run_dir/continual.json`` (atomically)."""
    path = Path(run_dir) / META_FILE
    current = _read_json(path) if path.exists() else {}
    current.update(meta)
    atomic_write_json(path, current)


def checkpoint_eval(run: Run, checkpoint: str | Path) -> dict[str, float]:
    """The evaluation stored in ``run``'s manifest for ``checkpoint`` (a path or a name).

    Falls back to the eval record logged at the checkpoint's token count.
    """
    wanted = Path(checkpoint)
    for entry in run.manifest.get("checkpoints", []):
        path = Path(str(entry.get("path", "")))
        if not path.is_absolute():
            path = run.path / path
        same = entry.get("name") == str(checkpoint) or _same_path(path, wanted)
        if same:
            if entry.get("eval"):
                return {k: float(v) for k, v in entry["eval"].items()}
            return eval_at_tokens(run, int(entry.get("tokens", -1)))
    return {}


def eval_at_tokens(run: Run, tokens: int) -> dict[str, float]:
    """The eval record logged at exactly ``tokens`` ({} if none)."""
    for record in reversed(run.eval_records):
        if int(record.get("tokens", -1)) == tokens:
            return {k: float(v) for k, v in record["eval"].items()}
    return {}


def mean(values: list[float]) -> float:
    """Arithmetic mean; NaN for an empty list (a missing evaluation stays visible)."""
    return float(sum(values) / len(values)) if values else math.nan


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise RunError(
            f"{path} is not valid JSON ({error}): the run may still be writing it"
        ) from None
