"""Paths written in a config file are read against that file's folder, not the shell's.

``evertrain train run configs/small.yaml`` with ``data: {train: {web: data/web}}`` reads
``configs/data/web``: a config and the data beside it can be moved (or run from anywhere)
together. Paths typed on the command line (``--set out_dir=runs/x``) stay relative to the
current folder, as every shell path is. A config in the current folder is unchanged.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any


def against_folder(value: Any, folder: Path) -> Any:
    """``value`` (a path as written in a file in ``folder``) as a path from the current folder.

    Absolute paths, ``~`` paths and non-strings are returned as they are."""
    if (
        not isinstance(value, str)
        or not value
        or value.startswith("~")
        or Path(value).is_absolute()
    ):
        return value
    if folder.resolve() == Path.cwd().resolve():
        return value  # the common case: the recorded config keeps the path exactly as written
    return str(folder / value)


def resolve_train_paths(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A copy of a train config mapping with ``out_dir``, ``init_from`` and the ``data.train`` /
    ``data.eval`` directories read against ``folder`` (the config file's folder)."""
    result = copy.deepcopy(raw)
    for key in ("out_dir", "init_from"):
        if key in result:
            result[key] = against_folder(result[key], folder)
    data = result.get("data")
    if isinstance(data, dict):
        for split in ("train", "eval"):
            if isinstance(data.get(split), dict):
                data[split] = {name: against_folder(p, folder) for name, p in data[split].items()}
    return result


#: Values of a plan stage's ``init`` that are not paths.
_STAGE_INIT_WORDS = ("previous", "scratch")


def resolve_plan_paths(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A copy of a continual plan mapping with ``out_dir``, each stage's ``datasets`` and a
    checkpoint ``init`` read against ``folder`` (the plan file's folder)."""
    result = copy.deepcopy(raw)
    if "out_dir" in result:
        result["out_dir"] = against_folder(result["out_dir"], folder)
    for stage in result.get("stages") or []:
        if not isinstance(stage, dict):
            continue  # the plan's validation names it
        if isinstance(stage.get("datasets"), dict):
            stage["datasets"] = {n: against_folder(p, folder) for n, p in stage["datasets"].items()}
        if stage.get("init") not in (None, *_STAGE_INIT_WORDS):
            stage["init"] = against_folder(stage["init"], folder)
    return result
