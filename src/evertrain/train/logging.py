"""Run logs: one JSON object per line in ``log.jsonl``, mirrored to optional trackers.

Records (``step`` and ``tokens`` are always the state *after* the optimizer step):

- ``{"kind": "train", "step", "tokens", "lr", "loss", "grad_norm", "tokens_per_s",
  "tokens_per_source": {...}, "skipped": int}``
- ``{"kind": "eval", "step", "tokens", "eval": {name: loss}}``

On resume :func:`truncate_log` cuts the file back to the checkpoint's step (and drops a line torn
by a crash), so the resumed log equals the log of an uninterrupted run.
"""

from __future__ import annotations

import json
import math
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
    """Parse ``log.jsonl``; a torn last line (crash mid-write) is ignored."""
    records = []
    path = Path(path)
    if not path.exists():
        return records
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def truncate_log(path: Path, step: int) -> None:
    """Keep only the records with ``step <= step`` (atomic rewrite)."""
    kept = [record for record in read_log(path) if int(record.get("step", 0)) <= step]
    atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in kept))


class RunLogger:
    """Appends JSONL records (line-buffered) and mirrors them to the trackers asked for:
    TensorBoard (``tensorboard=True``), W&B and MLflow (``config.logging``); see
    :mod:`evertrain.train.trackers`. ``config`` (a ``TrainConfig``) is also each tracker's
    hyper-parameters."""

    def __init__(
        self,
        out_dir: Path,
        *,
        tensorboard: bool = False,
        enabled: bool = True,
        config: Any = None,
    ) -> None:
        from evertrain.train.trackers import open_trackers

        self.enabled = enabled
        self.path = out_dir / "log.jsonl"
        self._handle = open(self.path, "a", encoding="utf-8") if enabled else None  # noqa: SIM115
        self._trackers: list[Any] = []
        if enabled:
            self._trackers = open_trackers(
                out_dir,
                tensorboard=tensorboard,
                settings=getattr(config, "logging", None),
                config=config.to_dict() if config is not None else None,
            )

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        assert self._handle is not None
        self._handle.write(json.dumps(_clean(record)) + "\n")
        self._handle.flush()
        for tracker in self._trackers:
            tracker.log(record)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        for tracker in self._trackers:
            tracker.close()
        self._trackers = []
