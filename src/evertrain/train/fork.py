"""The config of a fork: the parent's config at the checkpoint, with only the changes applied.

``evertrain train fork runs/main/checkpoints/tokens_30000 changes.yaml`` where ``changes.yaml``
holds just ``out_dir`` and, say, a new ``schedule``: the model, data, batch and every other
field come from the config the parent trained the checkpoint with. A full config works too
(every field it gives wins). Sections (``model``, ``data``, ``optimizer``) merge field by field;
a field whose value is a whole plan (``schedule``, ``data.train``, ``data.eval``,
``data.mixture``) is replaced, never mixed with the parent's (a cosine's keys inside a new wsd
spec would be a schedule nobody wrote). Not inherited: ``init_from`` (the fork's is CHECKPOINT)
and ``checkpoint_at_tokens`` (the parent's named points, in the parent's tokens).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evertrain.train.config import ConfigError, TrainConfig, apply_overrides, read_yaml_mapping
from evertrain.train.config_history import trained_config
from evertrain.train.config_paths import resolve_train_paths

#: The parent's own history, not settings: where it was forked from, and the token counts of
#: its named checkpoints (a fork counts its tokens from 0; name its own in CONFIG).
_NOT_INHERITED = ("init_from", "checkpoint_at_tokens")

#: Mappings merged key by key with the parent's; any other field given replaces the parent's.
_MERGED_SECTIONS = ("model", "data", "optimizer")


def merge_changes(parent: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``parent`` with ``changes`` applied: sections merge field by field, the rest replaces."""
    merged = dict(parent)
    for key, value in changes.items():
        if (
            key in _MERGED_SECTIONS
            and isinstance(value, dict)
            and isinstance(parent.get(key), dict)
        ):
            merged[key] = {**parent[key], **value}
        else:
            merged[key] = value
    return merged


def _read_changes(path: Path) -> dict[str, Any]:
    raw = read_yaml_mapping(path, "pass the YAML of the fork's changes")
    return resolve_train_paths(raw, path.parent)


def fork_config(
    checkpoint: str, changes: Path | None = None, overrides: list[str] | None = None
) -> TrainConfig:
    """The validated config of a fork of ``checkpoint`` (a checkpoint or a run directory).

    The parent's config is the one it trained ``checkpoint``'s step with (its config history);
    ``changes`` (a YAML file, partial or full) and then ``overrides`` (``--set key=value``) are
    applied; ``init_from`` is the checkpoint. The fork must name a new ``out_dir``.
    """
    from evertrain.train.checkpoint import read_meta, resolve_checkpoint  # torch: a fork trains

    path = resolve_checkpoint(checkpoint)
    run_dir = path.parent.parent
    step = int(read_meta(path).get("step", 0))
    parent = trained_config(run_dir, step=step or None)
    if not parent:
        raise ConfigError(
            f"{run_dir} has no config.yaml to inherit: pass the fork's full config as CONFIG"
        )
    parent = {key: value for key, value in parent.items() if key not in _NOT_INHERITED}
    raw = merge_changes(parent, _read_changes(changes) if changes is not None else {})
    raw = apply_overrides(raw, list(overrides or []))
    if Path(str(raw.get("out_dir"))).resolve() == Path(str(parent.get("out_dir"))).resolve() or (
        Path(str(raw.get("out_dir"))).resolve() == run_dir.resolve()
    ):
        raise ConfigError(
            f"out_dir: the fork would write into its parent's run {run_dir}; give it its own, "
            "e.g. --set out_dir=runs/branch (or out_dir: in CONFIG)"
        )
    raw["init_from"] = checkpoint
    return TrainConfig.model_validate(raw)
