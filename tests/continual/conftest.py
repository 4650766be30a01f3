"""Fixtures of the continual tests: synthetic run directories (log.jsonl, manifest.json,
continual.json) in the train area's file format, so results code is tested without training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


def _make_run(
    root: Path,
    name: str,
    *,
    evals: list[tuple[int, dict[str, float]]],
    train: list[tuple[int, float, dict[str, int]]] | None = None,
    meta: dict[str, Any] | None = None,
    parent: dict[str, Any] | None = None,
    checkpoints: list[dict[str, Any]] | None = None,
    config: dict[str, Any] | None = None,
) -> Path:
    """Write a run: ``evals`` = [(tokens, {dataset: loss})], ``train`` = [(tokens, lr, cumulative
    tokens_per_source)]."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    lines = []
    for step, (tokens, lr, per_source) in enumerate(train or [], start=1):
        lines.append(
            {
                "kind": "train",
                "step": step,
                "tokens": tokens,
                "lr": lr,
                "loss": 3.0,
                "grad_norm": 1.0,
                "tokens_per_s": 1000.0,
                "tokens_per_source": per_source,
            }
        )
    for tokens, losses in evals:
        lines.append({"kind": "eval", "step": tokens // 100, "tokens": tokens, "eval": losses})
    lines.sort(key=lambda r: (r["tokens"], r["kind"] == "eval"))
    (run_dir / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    if checkpoints is None:
        last_tokens, last_eval = evals[-1] if evals else (0, {})
        checkpoints = [
            {
                "name": "final",
                "path": str(run_dir / "checkpoints" / "final"),
                "step": last_tokens // 100,
                "tokens": last_tokens,
                "eval": last_eval,
            }
        ]
    manifest = {"checkpoints": checkpoints, "parent": parent}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    if meta is not None:
        (run_dir / "continual.json").write_text(json.dumps(meta))
    if config is not None:
        import yaml

        (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    return run_dir


@pytest.fixture
def make_run():
    """The :func:`_make_run` writer."""
    return _make_run
