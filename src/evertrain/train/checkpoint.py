"""Atomic, verifiable checkpoints and the run manifest.

A checkpoint is a directory ``checkpoints/<name>/`` holding

- ``model.safetensors``  the weights (tied output projection stored once, as the embedding),
- ``state.pt``           optimizer, progress (step, tokens), sampler and RNG states, config,
- ``meta.json``          step, tokens, eval losses and the sha256 of the two files above,
- ``average.safetensors`` (only with ``averaging:``) the averaged weights (train/averaging.py).

It is written into ``checkpoints/.tmp-<name>-<pid>/``, every file fsync'ed, ``meta.json`` last,
then the directory is renamed into place and the parent fsync'ed. A reader therefore sees a
checkpoint completely or not at all; a disk that later corrupts or truncates a file is caught by
the checksums in :func:`verify_checkpoint`, and :func:`latest_valid_checkpoint` falls back to the
previous complete one with a warning.

``manifest.json`` (atomic) lists every kept checkpoint; it is derived data and is rebuilt from the
``meta.json`` files on resume, so a crash between a rename and the manifest update loses nothing.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import json
import os
import shutil
import signal
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from evertrain._atomic import atomic_write_json, fsync_dir
from evertrain._hashing import file_sha256  # the project's one file hash

META = "meta.json"
WEIGHTS = "model.safetensors"
STATE = "state.pt"
AVERAGE = "average.safetensors"
FORMAT_VERSION = 1


WEIGHTS_MODEL, WEIGHTS_AVERAGE = "model", "average"  # load_checkpoint(weights=...)


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete or corrupted."""


def _test_kill_hook(point: str, step: int) -> None:
    """Test-only: ``EVERTRAIN_TEST_KILL_AT=checkpoint:<step>:<point>`` SIGKILLs this process here.

    Lets the resume tests crash deterministically in the middle of a checkpoint write.
    """
    spec = os.environ.get("EVERTRAIN_TEST_KILL_AT")
    if spec and spec == f"checkpoint:{step}:{point}":
        os.kill(os.getpid(), signal.SIGKILL)


#: From this size on a file's sha256 is computed by a second thread while the main one writes it.
HASH_BESIDE_BYTES = 4 << 20


def _write_synced(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path`` and fsync it; return its sha256.

    sha256 and write() both release the GIL, so a large file is hashed beside its write instead
    of after it: ~65 ms of the ~0.5 s a 10M-parameter model's checkpoint takes on 2 cores.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:  # joined on any exit
        hashing = pool.submit(hashlib.sha256, data) if len(data) >= HASH_BESIDE_BYTES else None
        with open(path, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        digest = hashing.result() if hashing is not None else hashlib.sha256(data)
    return digest.hexdigest()


def model_state_for_saving(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict with each shared tensor stored once (safetensors refuses aliases)."""
    seen: dict[int, str] = {}
    state = {}
    for key, tensor in model.state_dict(keep_vars=False).items():
        pointer = tensor.untyped_storage().data_ptr()
        if pointer in seen and tensor.numel() > 0:
            continue  # tied weight (lm_head.weight is wte.weight): restored by the tie itself
        seen[pointer] = key
        state[key] = tensor.detach().to("cpu").contiguous()
    return state


def save_checkpoint(
    checkpoints_dir: Path,
    name: str,
    *,
    model: nn.Module,
    state: dict[str, Any],
    meta: dict[str, Any],
    average: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``checkpoints_dir/name`` atomically; return its path.

    ``average`` (parameter name -> tensor): the averaged weights, written as ``average.safetensors``
    and checksummed like the other files.

    ``state`` goes into ``state.pt`` (torch.save); ``meta`` (JSON-able: step, tokens, eval, ...)
    into ``meta.json`` together with the checksums.
    """
    checkpoints_dir.mkdir(parents=True, exist_ok=True)
    step = int(meta.get("step", -1))
    final = checkpoints_dir / name
    tmp = checkpoints_dir / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    checksums = {
        WEIGHTS: _write_synced(tmp / WEIGHTS, safetensors_save(model_state_for_saving(model)))
    }
    if average is not None:
        checksums[AVERAGE] = _write_synced(tmp / AVERAGE, safetensors_save(average))
    _test_kill_hook("after_weights", step)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    checksums[STATE] = _write_synced(tmp / STATE, buffer.getvalue())
    _test_kill_hook("after_state", step)
    full_meta = {"format": FORMAT_VERSION, "name": name, **meta, "sha256": checksums}
    _write_synced(tmp / META, (json.dumps(full_meta, indent=2) + "\n").encode())
    fsync_dir(tmp)
    _test_kill_hook("before_rename", step)
    rename_into_place(tmp, final, checkpoints_dir)
    _test_kill_hook("after_rename", step)
    return final


def rename_into_place(tmp: Path, final: Path, checkpoints_dir: Path) -> None:
    """Move a fully written checkpoint folder ``tmp`` to ``final`` (both in ``checkpoints_dir``)."""
    if final.exists():
        # Re-reaching a step after a resume: the old directory holds the same step; replace it.
        trash = checkpoints_dir / f".trash-{final.name}-{os.getpid()}"
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)
    fsync_dir(checkpoints_dir)


def read_meta(path: Path) -> dict[str, Any]:
    """The checkpoint's ``meta.json``; a missing, truncated, non-UTF-8 or foreign one raises
    :class:`CheckpointError` naming the file (it is a corrupt checkpoint, never a traceback)."""
    file = path / META
    try:
        meta = json.loads(file.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{file}: missing (deleted, or the write never finished)") from None
    except OSError as error:
        raise CheckpointError(f"{file}: unreadable ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise CheckpointError(f"{file}: unreadable, not UTF-8 (byte {error.start})") from None
    except json.JSONDecodeError as error:
        raise CheckpointError(
            f"{file}: unreadable, not valid JSON ({error.msg} at line {error.lineno}; truncated?)"
        ) from None
    checksums = meta.get("sha256") if isinstance(meta, dict) else None
    if not isinstance(checksums, dict) or not all(
        isinstance(value, str) for value in checksums.values()
    ):
        raise CheckpointError(f"{file}: has no checksums; not an evertrain checkpoint")
    if not isinstance(meta.get("step", 0), int):
        raise CheckpointError(f"{file}: its step is not an integer ({meta.get('step')!r})")
    return meta


def verify_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check that every file of the checkpoint matches its sha256; return the meta dict.

    Raises :class:`CheckpointError` naming the bad file.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} does not exist")
    meta = read_meta(path)
    for filename, expected in meta["sha256"].items():
        file = path / filename
        if not file.is_file():
            raise CheckpointError(f"{path}: {filename} is missing")
        if file_sha256(file) != expected:
            raise CheckpointError(f"{path}: {filename} is corrupted or truncated (sha256 mismatch)")
    return meta


def list_checkpoints(checkpoints_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Complete-looking checkpoints (a readable meta.json) sorted by (step, name); no hashing."""
    found = []
    if not checkpoints_dir.is_dir():
        return found
    for child in checkpoints_dir.iterdir():
        if child.name.startswith(".") or not child.is_dir():
            continue
        try:
            found.append((child, read_meta(child)))
        except CheckpointError:
            continue
    found.sort(key=lambda item: (int(item[1].get("step", 0)), item[0].name))
    return found


def latest_valid_checkpoint(checkpoints_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """Newest checkpoint whose files verify; ONE warning names every one skipped and why.

    The one "newest checkpoint" rule: resume, ``init_from`` of a run directory
    (:func:`resolve_checkpoint`) and continual stages picking a base's final checkpoint use it
    (the rules and messages are in :mod:`evertrain.train.recovery`).
    """
    from evertrain.train.recovery import select_checkpoint  # it builds on this module

    selection = select_checkpoint(checkpoints_dir)
    message = selection.fallback_message()
    if message:
        warnings.warn(message, stacklevel=2)
    return selection.chosen


def quarantine_newer(checkpoints_dir: Path, step: int) -> list[Path]:
    """Rename checkpoints newer than ``step`` (the corrupted ones a resume skipped) to
    ``.corrupt-<name>``: kept for inspection, but never again a resume candidate, and never a
    reason for pruning to delete the good checkpoint the run resumed from."""
    moved = []
    for path, meta in list_checkpoints(checkpoints_dir):
        if int(meta.get("step", 0)) > step:
            target = checkpoints_dir / f".corrupt-{path.name}"
            if target.exists():
                shutil.rmtree(target)
            os.replace(path, target)
            moved.append(target)
    return moved


def load_checkpoint(
    path: str | os.PathLike[str], model: nn.Module | None = None, weights: str = "model"
) -> dict[str, Any]:
    """Verify and load a checkpoint: weights into ``model`` (if given), return the ``state.pt`` dict.

    ``weights="average"`` loads the averaged weights (``average.safetensors``, written by a run
    with ``averaging:``) instead of the live ones. The returned dict also carries ``"meta"``
    (the meta.json contents).
    """
    path = Path(path)
    meta = verify_checkpoint(path)
    if weights not in (WEIGHTS_MODEL, WEIGHTS_AVERAGE):
        raise CheckpointError(f"weights={weights!r}: use 'model' or 'average'")
    if weights == WEIGHTS_AVERAGE and AVERAGE not in meta["sha256"]:
        raise CheckpointError(
            f"{path}: holds no averaged weights (its run had no averaging:); load weights='model'"
        )
    if meta.get("layout") == "dcp":  # sharded (FSDP) checkpoint: loads at any world size
        from evertrain.train.dcp_checkpoint import load_dcp_checkpoint

        return load_dcp_checkpoint(path, model, meta=meta)
    if model is not None:
        filename = AVERAGE if weights == WEIGHTS_AVERAGE else WEIGHTS
        tensors = safetensors_load((path / filename).read_bytes())
        try:
            missing, unexpected = model.load_state_dict(tensors, strict=False)
        except RuntimeError as error:  # shape mismatch
            raise CheckpointError(
                f"{path}: weights do not fit this model ({str(error).splitlines()[-1].strip()}); "
                "the model config must match the checkpoint's"
            ) from None
        tied = {key for key in missing if _is_tied(model, key)}
        if set(missing) - tied or unexpected:
            raise CheckpointError(
                f"{path}: weights do not fit this model (missing {sorted(set(missing) - tied)}, "
                f"unexpected {sorted(unexpected)}); the model config must match the checkpoint's"
            )
    state = torch.load(
        io.BytesIO((path / STATE).read_bytes()), map_location="cpu", weights_only=False
    )
    state["meta"] = meta
    return state


def _is_tied(model: nn.Module, key: str) -> bool:
    # A key missing from the file is fine when its tensor aliases one that was loaded.
    state = model.state_dict()
    pointer = state[key].untyped_storage().data_ptr()
    return any(k != key and v.untyped_storage().data_ptr() == pointer for k, v in state.items())


def manifest_entries(run_dir: Path) -> list[dict[str, Any]]:
    """One entry per checkpoint on disk; ``path`` is relative to the run folder, so a moved or
    copied run folder still finds its checkpoints."""
    return [
        {
            "name": path.name,
            "path": str(path.relative_to(run_dir)),
            "step": meta.get("step"),
            "tokens": meta.get("tokens"),
            "eval": meta.get("eval", {}),
            "pinned": bool(meta.get("pinned", False)),
        }
        for path, meta in list_checkpoints(run_dir / "checkpoints")
    ]


def write_manifest(run_dir: Path, parent: dict[str, Any] | None) -> dict[str, Any]:
    """Rebuild ``run_dir/manifest.json`` from the checkpoints on disk (atomic write)."""
    manifest = {"checkpoints": manifest_entries(run_dir), "parent": parent}
    atomic_write_json(run_dir / "manifest.json", manifest)
    return manifest


def prune_checkpoints(checkpoints_dir: Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` unpinned checkpoints; pinned ones always stay."""
    unpinned = [path for path, meta in list_checkpoints(checkpoints_dir) if not meta.get("pinned")]
    removed = []
    for path in unpinned[: max(0, len(unpinned) - keep_last)]:
        # Rename first so a crash mid-delete never leaves a half-deleted directory that looks valid.
        doomed = checkpoints_dir / f".del-{path.name}-{os.getpid()}"
        os.replace(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        removed.append(path)
    # Leftovers of writes or deletes interrupted by a crash.
    for child in checkpoints_dir.iterdir():
        if child.name.startswith((".tmp-", ".del-", ".trash-")) and child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
    return removed


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """Accept a checkpoint directory or a run directory (-> its newest valid checkpoint)."""
    path = Path(path)
    if (path / META).is_file():
        return path
    if (path / "checkpoints").is_dir():
        found = latest_valid_checkpoint(path / "checkpoints")
        if found is None:
            raise CheckpointError(f"run {path} has no valid checkpoint to start from")
        return found[0]
    raise CheckpointError(
        f"{path} is neither a checkpoint directory (with {META}) nor a run directory"
    )
