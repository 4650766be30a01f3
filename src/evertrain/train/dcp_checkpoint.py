"""Sharded checkpoints (``parallel.strategy: fsdp``) with ``torch.distributed.checkpoint``.

A DCP checkpoint is a directory ``checkpoints/<name>/`` like the single-file kind, holding

- ``dcp/``       model weights and optimizer moments: ``.metadata`` plus one ``__<rank>_0.distcp``
  file per rank that wrote it, each rank writing only its own shards,
- ``state.pt``   sampler and RNG states, step, tokens, scaler, config (rank 0),
- ``meta.json``  ``"layout": "dcp"``, the world size that wrote it, step, tokens, eval and the
  sha256 of every file above (paths relative to the checkpoint).

Written into ``checkpoints/.tmp-<name>-<pid of rank 0>/``; after a barrier rank 0 writes
``state.pt`` and ``meta.json`` (last) and renames the folder into place, so a crash at any point
leaves the previous checkpoint the newest valid one. Listing, verification, pruning, the manifest
and named checkpoints are those of :mod:`evertrain.train.checkpoint` (the same meta.json).

DCP stores each tensor with its global shape, so a checkpoint written by N ranks loads on any M
(including one process without a process group) and into an unsharded model: resharding is the
loader's job. :func:`load_training_state` is the one loader the trainer calls; it also loads a
single-file (DDP) checkpoint into a sharded model.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn

from evertrain._atomic import fsync_dir
from evertrain._hashing import file_sha256
from evertrain.train import checkpoint as ckpt
from evertrain.train import distributed
from evertrain.train.fsdp import is_sharded

LAYOUT = "dcp"
SHARDS = "dcp"  # the DCP folder inside a checkpoint


def is_dcp(meta: dict[str, Any]) -> bool:
    """True for the meta.json of a sharded (DCP) checkpoint."""
    return meta.get("layout") == LAYOUT


def _test_kill_hook(point: str, step: int) -> None:
    # Test-only: EVERTRAIN_TEST_KILL_AT=checkpoint:<step>:<point> SIGKILLs this rank here
    # (the same variable as checkpoint.py's writer; points after_shards / before_rename / after_rename).
    if os.environ.get("EVERTRAIN_TEST_KILL_AT") == f"checkpoint:{step}:{point}":
        os.kill(os.getpid(), signal.SIGKILL)


def _dcp_quietly(function: Any, *args: Any, **kwargs: Any) -> Any:
    # In one process DCP warns that it assumes a single process; that is exactly what we mean.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*assuming the intent is to.*single process")
        return function(*args, **kwargs)


def _own_files_sha256(shards: Path, rank: int, world_size: int) -> dict[str, str]:
    """sha256 of the shard files this rank wrote (``__<rank>_*.distcp``); rank 0 also hashes
    every other file (``.metadata``). Hashing is spread over the ranks, as the writing was."""
    sums = {}
    for file in sorted(shards.iterdir()):
        parts = file.name.split("_")
        owner = int(parts[2]) if file.name.startswith("__") and parts[2].isdigit() else 0
        if (owner if owner < world_size else 0) == rank and file.is_file():
            sums[f"{SHARDS}/{file.name}"] = file_sha256(file)
    return sums


def save_dcp_checkpoint(
    checkpoints_dir: Path,
    name: str,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    meta: dict[str, Any],
    info: distributed.DistInfo,
) -> Path:
    """Write ``checkpoints_dir/name`` as a DCP checkpoint; called by every rank; returns its path.

    ``state`` (without the optimizer, which goes into the shards) is saved by rank 0 into
    ``state.pt``; ``meta`` into ``meta.json`` with the checksums.
    """
    from torch.distributed.checkpoint import save
    from torch.distributed.checkpoint.state_dict import get_state_dict

    step = int(meta.get("step", -1))
    final = checkpoints_dir / name
    tmp = checkpoints_dir / distributed.broadcast_object(f".tmp-{name}-{os.getpid()}", info)
    if info.is_main:
        checkpoints_dir.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    distributed.barrier(info)
    model_state, optimizer_state = get_state_dict(model, optimizer)
    _dcp_quietly(
        save,
        {"model": model_state, "optimizer": optimizer_state},
        checkpoint_id=str(tmp / SHARDS),
        no_dist=not info.enabled,
    )
    _test_kill_hook("after_shards", step)
    distributed.barrier(info)  # every rank's shards are on disk
    checksums = _own_files_sha256(tmp / SHARDS, info.rank, info.world_size)
    if info.enabled:
        gathered: list[dict[str, str]] = [{} for _ in range(info.world_size)]
        dist.all_gather_object(gathered, checksums)
        checksums = {key: value for sums in gathered for key, value in sums.items()}
    if info.is_main:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        (tmp / ckpt.STATE).write_bytes(buffer.getvalue())
        checksums[ckpt.STATE] = file_sha256(tmp / ckpt.STATE)
        full_meta = {
            "format": ckpt.FORMAT_VERSION,
            "layout": LAYOUT,
            "world_size": info.world_size,
            "name": name,
            **meta,
            "sha256": dict(sorted(checksums.items())),
        }
        with open(tmp / ckpt.META, "wb") as handle:
            handle.write((json.dumps(full_meta, indent=2) + "\n").encode())
            handle.flush()
            os.fsync(handle.fileno())
        for folder in (tmp / SHARDS, tmp):
            _fsync_files(folder)
            fsync_dir(folder)
        _test_kill_hook("before_rename", step)
        ckpt.rename_into_place(tmp, final, checkpoints_dir)
        _test_kill_hook("after_rename", step)
    distributed.barrier(info)
    return final


def _fsync_files(folder: Path) -> None:
    for file in folder.iterdir():
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())


def _read_state(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    state = torch.load(
        io.BytesIO((path / ckpt.STATE).read_bytes()), map_location="cpu", weights_only=False
    )
    state["meta"] = meta
    return state


def load_dcp_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Verify a DCP checkpoint and load it into ``model`` (and ``optimizer``), whatever their
    sharding and however many ranks wrote it; return the ``state.pt`` dict with ``"meta"``.

    Every rank of a job calls it (DCP reads are collective); in one process no group is needed.
    """
    from torch.distributed.checkpoint import load
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_state_dict,
        set_model_state_dict,
        set_state_dict,
    )

    path = Path(path)
    meta = ckpt.verify_checkpoint(path) if meta is None else meta
    if model is not None:
        no_dist = not (dist.is_available() and dist.is_initialized())
        if optimizer is not None:
            model_state, optimizer_state = get_state_dict(model, optimizer)
            wanted = {"model": model_state, "optimizer": optimizer_state}
        else:
            wanted = {"model": get_model_state_dict(model)}
        try:
            _dcp_quietly(load, wanted, checkpoint_id=str(path / SHARDS), no_dist=no_dist)
        except Exception as error:  # DCP raises a CheckpointException naming each rank's error
            first = str(error).strip().splitlines()
            raise ckpt.CheckpointError(
                f"{path}: weights do not fit this model ({first[-1] if first else error}); "
                "the model config must match the checkpoint's"
            ) from None
        if optimizer is not None:
            set_state_dict(
                model,
                optimizer,
                model_state_dict=wanted["model"],
                optim_state_dict=wanted["optimizer"],
            )
        else:
            set_model_state_dict(model, wanted["model"])
    return _read_state(path, meta)


def _optimizer_state_by_name(
    model: nn.Module, optimizer: torch.optim.Optimizer, saved: dict[str, Any]
) -> dict[str, Any]:
    """``optimizer.state_dict()`` (parameters numbered in param-group order) re-keyed by
    parameter name, the form ``set_optimizer_state_dict`` distributes into shards."""
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    order = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
    groups = []
    for group in saved["param_groups"]:
        groups.append({**group, "params": [order[index] for index in group["params"]]})
    return {
        "state": {order[index]: value for index, value in saved["state"].items()},
        "param_groups": groups,
    }


def _load_single_file_into_sharded(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None
) -> dict[str, Any]:
    """A single-file (DDP / one-process) checkpoint into an FSDP model: each rank reads the full
    tensors and keeps its shards (``full_state_dict=True``)."""
    from safetensors.torch import load as safetensors_load
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    state = ckpt.load_checkpoint(path)  # verifies; no model: the weights are loaded below
    weights = safetensors_load((path / ckpt.WEIGHTS).read_bytes())
    # Tied weights are stored once: give every alias of a stored tensor its value.
    for name, parameter in model.named_parameters(remove_duplicate=False):
        if name not in weights:
            alias = next(
                (n for n, p in model.named_parameters() if p is parameter and n in weights), None
            )
            if alias is not None:
                weights[name] = weights[alias]
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
    if missing or unexpected:
        raise ckpt.CheckpointError(
            f"{path}: weights do not fit this model (missing {missing}, unexpected {unexpected}); "
            "the model config must match the checkpoint's"
        )
    full = StateDictOptions(full_state_dict=True)
    try:
        set_model_state_dict(model, weights, options=full)
    except RuntimeError as error:  # shape mismatch
        raise ckpt.CheckpointError(
            f"{path}: weights do not fit this model ({str(error).splitlines()[-1].strip()}); "
            "the model config must match the checkpoint's"
        ) from None
    if optimizer is not None:
        by_name = _optimizer_state_by_name(model, optimizer, state["optimizer"])
        set_optimizer_state_dict(model, optimizer, by_name, options=full)
    return state


def load_training_state(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
) -> dict[str, Any]:
    """Load any evertrain checkpoint into ``model`` (and ``optimizer`` unless None), sharded or
    not: DCP -> any world size; single file -> unsharded or FSDP. Returns the ``state.pt`` dict
    (with ``"meta"``). Raises :class:`~evertrain.train.checkpoint.CheckpointError`."""
    path = Path(path)
    meta = ckpt.verify_checkpoint(path)
    if is_dcp(meta):
        return load_dcp_checkpoint(path, model, optimizer, meta=meta)
    if is_sharded(model):
        return _load_single_file_into_sharded(path, model, optimizer)
    state = ckpt.load_checkpoint(path, model)
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    return state


__all__ = [
    "LAYOUT",
    "SHARDS",
    "is_dcp",
    "load_dcp_checkpoint",
    "load_training_state",
    "save_dcp_checkpoint",
]
