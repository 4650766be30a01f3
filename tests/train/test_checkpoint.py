"""Checkpoints: atomic layout, checksums, corruption fallback, pruning, manifest."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from evertrain.train import checkpoint as ckpt
from evertrain.train.model import GPT, GPTConfig


def model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=50, n_layer=1, n_head=2, d_model=16, seq_len=8))


def save(directory: Path, name: str, step: int, pinned: bool = False, seed: int = 0) -> Path:
    return ckpt.save_checkpoint(
        directory,
        name,
        model=model(seed),
        state={"step": step, "payload": torch.arange(5)},
        meta={"step": step, "tokens": step * 100, "eval": {"val": 1.0 / step}, "pinned": pinned},
    )


def test_round_trip_restores_weights_and_state(tmp_path: Path) -> None:
    path = save(tmp_path, "step_00000003", 3, seed=1)
    assert sorted(p.name for p in path.iterdir()) == ["meta.json", "model.safetensors", "state.pt"]
    target = model(seed=2)
    state = ckpt.load_checkpoint(path, target)
    for (name, a), b in zip(
        model(seed=1).state_dict().items(), target.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    assert target.lm_head.weight is target.wte.weight  # the tie survives loading
    assert state["step"] == 3 and torch.equal(state["payload"], torch.arange(5))
    assert state["meta"]["tokens"] == 300
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp dirs left


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_damaged_checkpoint_is_detected(tmp_path: Path, damage: str) -> None:
    path = save(tmp_path, "a", 1)
    weights = path / "model.safetensors"
    data = weights.read_bytes()
    if damage == "flip":
        weights.write_bytes(data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:])
    elif damage == "truncate":
        weights.write_bytes(data[: len(data) // 2])
    else:
        weights.unlink()
    with pytest.raises(ckpt.CheckpointError, match="model.safetensors"):
        ckpt.verify_checkpoint(path)


def test_latest_valid_falls_back_with_warning(tmp_path: Path) -> None:
    save(tmp_path, "step_1", 1)
    newest = save(tmp_path, "step_2", 2)
    (newest / "state.pt").write_bytes(b"torn")
    (tmp_path / ".tmp-step_3-123").mkdir()  # an interrupted write is never a candidate
    with pytest.warns(UserWarning, match="state.pt is corrupted"):
        path, meta = ckpt.latest_valid_checkpoint(tmp_path)
    assert path.name == "step_1" and meta["step"] == 1


def test_prune_keeps_last_n_and_pinned(tmp_path: Path) -> None:
    for step in range(1, 6):
        save(tmp_path, f"step_{step}", step, pinned=step == 2)
    (tmp_path / ".tmp-step_9-1").mkdir()
    removed = ckpt.prune_checkpoints(tmp_path, keep_last=2)
    assert sorted(p.name for p in removed) == ["step_1", "step_3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_2", "step_4", "step_5"]


def test_manifest_is_rebuilt_from_disk(tmp_path: Path) -> None:
    save(tmp_path / "checkpoints", "step_1", 1)
    save(tmp_path / "checkpoints", "tokens_200", 2, pinned=True)
    parent = {"checkpoint": "/x/checkpoints/step_9", "run": "/x", "step": 9, "tokens": 900}
    ckpt.write_manifest(tmp_path, parent)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [(c["name"], c["step"], c["tokens"], c["pinned"]) for c in manifest["checkpoints"]] == [
        ("step_1", 1, 100, False),
        ("tokens_200", 2, 200, True),
    ]
    assert manifest["checkpoints"][0]["eval"] == {"val": 1.0}
    assert manifest["parent"] == parent


def test_resolve_checkpoint_accepts_run_dir(tmp_path: Path) -> None:
    save(tmp_path / "checkpoints", "step_1", 1)
    save(tmp_path / "checkpoints", "step_2", 2)
    assert ckpt.resolve_checkpoint(tmp_path).name == "step_2"
    assert ckpt.resolve_checkpoint(tmp_path / "checkpoints" / "step_1").name == "step_1"
    with pytest.raises(ckpt.CheckpointError, match="neither a checkpoint"):
        ckpt.resolve_checkpoint(tmp_path / "nope")


def test_overwriting_same_name_replaces_atomically(tmp_path: Path) -> None:
    save(tmp_path, "step_1", 1, seed=1)
    path = save(tmp_path, "step_1", 1, seed=2)
    target = model(seed=5)
    ckpt.load_checkpoint(path, target)
    assert torch.equal(target.wte.weight, model(seed=2).wte.weight)
    assert sorted(os.listdir(tmp_path)) == ["step_1"]


def test_mismatched_model_is_rejected(tmp_path: Path) -> None:
    path = save(tmp_path, "a", 1)
    other = GPT(GPTConfig(vocab_size=50, n_layer=2, n_head=2, d_model=16, seq_len=8))
    with pytest.raises(ckpt.CheckpointError, match="do not fit this model"):
        ckpt.load_checkpoint(path, other)


@pytest.mark.parametrize("size", [100, 5 * 1024 * 1024])  # below and above HASH_BESIDE_BYTES
def test_a_file_hashed_beside_its_write_has_its_own_sha256(tmp_path, size):
    import hashlib

    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    digest = ckpt._write_synced(tmp_path / "blob", data)
    assert (tmp_path / "blob").read_bytes() == data
    assert digest == hashlib.sha256(data).hexdigest()
    assert (size >= ckpt.HASH_BESIDE_BYTES) == (size > 1024 * 1024)  # both paths are exercised
