"""FSDP2 (``parallel.strategy: fsdp``) on gloo/CPU and DCP checkpoints that reshard.

The ranks are forked copies of this process with the variables torchrun sets (no interpreter
start-up). The reference is one uninterrupted 2-rank FSDP run; every interrupted run (SIGKILL
via the EVERTRAIN_TEST_KILL_AT hook) resumed on another number of ranks must reproduce its loss
sequence within 1e-5.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn

from evertrain.train import ConfigError, TrainConfig, history, run
from evertrain.train.checkpoint import (
    latest_valid_checkpoint,
    list_checkpoints,
    load_checkpoint,
    verify_checkpoint,
)
from evertrain.train.fsdp import mixed_precision_policy, transformer_blocks
from evertrain.train.model import GPT, GPTConfig

from .conftest import fork_child, make_config, rank_env

STEPS = 12
FSDP = {"parallel": {"strategy": "fsdp"}}


def free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def config(out_dir: Path, data: dict[str, str], **overrides: Any) -> dict[str, Any]:
    # dropout 0: ranks draw dropout masks from one RNG stream each, so only a dropout-free model
    # has the same loss on every world size. Batch 4 splits over 1, 2 and 4 ranks.
    cfg = make_config(out_dir, data, deterministic=True, **overrides)
    cfg.setdefault("parallel", {"strategy": "fsdp"})
    return cfg


def train_ranks(
    cfg: dict[str, Any], world_size: int, *, resume: bool = False, kill_at: str | None = None
) -> list[int]:
    """Train ``cfg`` on ``world_size`` forked ranks (one process: no process group); return
    each rank's status as subprocess does (``-signal`` when killed). A rank left waiting on a
    killed peer is killed after a grace period."""
    port = free_port()

    def body() -> int:
        run(cfg, resume=resume, progress=False)
        return 0

    env = {"EVERTRAIN_TEST_KILL_AT": kill_at or ""}
    pids = [
        fork_child(body, {**env, **(rank_env(rank, port, world_size) if world_size > 1 else {})})
        for rank in range(world_size)
    ]
    statuses: dict[int, int] = {}
    deadline = None
    while len(statuses) < len(pids):
        for pid in pids:
            if pid in statuses:
                continue
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                statuses[pid] = status
                if deadline is None and status != 0:
                    deadline = time.monotonic() + 20.0  # peers of a dead rank may block
        if deadline is not None and time.monotonic() > deadline:
            for pid in pids:
                if pid not in statuses:
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
    return [
        -os.WTERMSIG(statuses[pid])
        if os.WIFSIGNALED(statuses[pid])
        else os.WEXITSTATUS(statuses[pid])
        for pid in pids
    ]


def losses(out_dir: Path) -> list[float]:
    records = history(out_dir)
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    return [r["loss"] for r in records]


def assert_same_losses(out_dir: Path, reference: list[float]) -> None:
    assert losses(out_dir) == pytest.approx(reference, abs=1e-5, rel=0)


@pytest.fixture(scope="module")
def fsdp_reference(tiny_data: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted 2-rank FSDP run (the loss sequence every resume must reproduce)."""
    out = tmp_path_factory.mktemp("fsdp_reference") / "run"
    assert train_ranks(config(out, tiny_data), 2) == [0, 0]
    return out


# ---------------------------------------------------------------------------- unit pieces
def test_transformer_blocks_finds_gpt_and_hugging_face_layouts() -> None:
    gpt = GPT(GPTConfig(vocab_size=32, n_layer=3, d_model=16, n_head=2, seq_len=8))
    assert transformer_blocks(gpt) == list(gpt.blocks)
    llama_like = nn.Module()
    llama_like.model = nn.Module()
    llama_like.model.layers = nn.ModuleList(nn.Linear(2, 2) for _ in range(2))
    assert transformer_blocks(llama_like) == list(llama_like.model.layers)
    gpt2_like = nn.Module()
    gpt2_like.transformer = nn.Module()
    gpt2_like.transformer.h = nn.ModuleList([nn.Linear(2, 2)])
    assert transformer_blocks(gpt2_like) == list(gpt2_like.transformer.h)
    assert transformer_blocks(nn.Linear(2, 2)) == []


def test_parallel_config_defaults_and_errors(tmp_path: Path, tiny_data: dict[str, str]) -> None:
    base = make_config(tmp_path / "run", tiny_data)
    parallel = TrainConfig.model_validate(base).parallel
    assert (parallel.strategy, parallel.activation_checkpointing) == ("ddp", False)
    with pytest.raises(ConfigError, match=r"parallel.strategy"):
        TrainConfig.model_validate({**base, "parallel": {"strategy": "zero3"}})
    with pytest.raises(
        ConfigError, match=r"parallel: strategy fsdp does not support dtype: float16"
    ):
        TrainConfig.model_validate({**base, **FSDP, "dtype": "float16"})


def test_activation_checkpointing_keeps_the_numbers(
    tiny_data: dict[str, str], tmp_path: Path
) -> None:
    """Recomputing each block's forward changes memory, not the loss (one process)."""
    plain = run(config(tmp_path / "plain", tiny_data, budget_tokens=4 * 256), progress=False)
    recomputed = run(
        config(
            tmp_path / "ac",
            tiny_data,
            budget_tokens=4 * 256,
            parallel={"strategy": "fsdp", "activation_checkpointing": True},
        ),
        progress=False,
    )
    assert plain.steps == recomputed.steps == 4
    a, b = history(tmp_path / "plain"), history(tmp_path / "ac")
    assert [r["loss"] for r in b] == pytest.approx([r["loss"] for r in a], abs=1e-6, rel=0)


# ---------------------------------------------------------------------------- FSDP == one process
def test_two_rank_fsdp_matches_single_process(
    fsdp_reference: Path, tiny_data: dict[str, str], tmp_path: Path
) -> None:
    single = tmp_path / "single"
    run(config(single, tiny_data, parallel={"strategy": "ddp"}), progress=False)
    assert_same_losses(fsdp_reference, losses(single))
    for a, b in zip(history(single), history(fsdp_reference), strict=True):
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
        assert b["tokens_per_source"] == a["tokens_per_source"]
    # Sharded checkpoints: one shard file per rank, checksummed in meta.json, same listing.
    found = latest_valid_checkpoint(fsdp_reference / "checkpoints")
    assert found is not None
    path, meta = found
    assert (meta["layout"], meta["world_size"], meta["step"]) == ("dcp", 2, STEPS)
    assert {"dcp/.metadata", "dcp/__0_0.distcp", "dcp/__1_0.distcp", "state.pt"} <= set(
        meta["sha256"]
    )
    assert [p.name for p, _ in list_checkpoints(fsdp_reference / "checkpoints")] == [
        "step_00000008",
        "step_00000012",
    ]  # keep_last 2: pruning works on DCP folders
    manifest = json.loads((fsdp_reference / "manifest.json").read_text())
    assert [c["step"] for c in manifest["checkpoints"]] == [8, 12]
    # Export: the sharded checkpoint loads into a plain one-process model, same weights as the
    # single-process run's checkpoint.
    plain, reference_model = (GPT(GPTConfig(vocab_size=300, seq_len=64, d_model=64)) for _ in "ab")
    load_checkpoint(path, plain)
    load_checkpoint(single / "checkpoints" / "step_00000012", reference_model)
    for (name, a), (_, b) in zip(
        plain.state_dict().items(), reference_model.state_dict().items(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-5), name
    # A corrupted shard is caught by the same verification as a single-file checkpoint.
    shard = path / "dcp" / "__1_0.distcp"
    original = shard.read_bytes()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF
    shard.write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match=r"dcp/__1_0.distcp is corrupted"):
        verify_checkpoint(path)
    shard.write_bytes(original)


# ---------------------------------------------------------------------------- resharding
def test_killed_two_rank_fsdp_resumes_on_one_rank(
    fsdp_reference: Path, tiny_data: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    cfg = config(out, tiny_data)
    assert train_ranks(cfg, 2, kill_at="step:6") == [-signal.SIGKILL] * 2
    assert [p.name for p, _ in list_checkpoints(out / "checkpoints")] == ["step_00000004"]
    assert train_ranks(cfg, 1, resume=True) == [0]
    assert_same_losses(out, losses(fsdp_reference))


def test_killed_two_rank_fsdp_resumes_on_four_ranks(
    fsdp_reference: Path, tiny_data: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    cfg = config(out, tiny_data)
    assert train_ranks(cfg, 2, kill_at="step:6") == [-signal.SIGKILL] * 2
    assert train_ranks(cfg, 4, resume=True) == [0] * 4
    assert_same_losses(out, losses(fsdp_reference))


def test_killed_one_process_fsdp_resumes_on_two_ranks(
    fsdp_reference: Path, tiny_data: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    cfg = config(out, tiny_data)
    assert train_ranks(cfg, 1, kill_at="step:6") == [-signal.SIGKILL]
    meta = list_checkpoints(out / "checkpoints")[-1][1]
    assert (meta["layout"], meta["world_size"]) == ("dcp", 1)
    assert train_ranks(cfg, 2, resume=True) == [0, 0]
    assert_same_losses(out, losses(fsdp_reference))


@pytest.mark.parametrize("point", ["after_shards", "before_rename"])
def test_crash_mid_dcp_write_leaves_the_previous_checkpoint(
    point: str, fsdp_reference: Path, tiny_data: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    cfg = config(out, tiny_data)
    statuses = train_ranks(cfg, 2, kill_at=f"checkpoint:8:{point}")
    assert statuses[0] == -signal.SIGKILL  # rank 0 died inside the write of step 8
    checkpoints = out / "checkpoints"
    assert [p.name for p, _ in list_checkpoints(checkpoints)] == ["step_00000004"]
    assert any(p.name.startswith(".tmp-step_00000008") for p in checkpoints.iterdir())
    assert latest_valid_checkpoint(checkpoints)[0].name == "step_00000004"
    assert train_ranks(cfg, 2, resume=True) == [0, 0]
    assert_same_losses(out, losses(fsdp_reference))
    assert not [p for p in checkpoints.iterdir() if p.name.startswith(".")]


def test_ddp_checkpoint_resumes_under_fsdp(
    fsdp_reference: Path, tiny_data: dict[str, str], tmp_path: Path
) -> None:
    """A single-file (DDP) checkpoint loads into the sharded model and optimizer; the next
    checkpoints are DCP, and the run ends where the uninterrupted one did."""
    out = tmp_path / "run"
    ddp = config(out, tiny_data, parallel={"strategy": "ddp"})
    assert train_ranks(ddp, 2, kill_at="step:6") == [-signal.SIGKILL] * 2
    assert "layout" not in list_checkpoints(out / "checkpoints")[-1][1]
    assert train_ranks(config(out, tiny_data), 2, resume=True) == [0, 0]
    assert_same_losses(out, losses(fsdp_reference))
    history_lines = (out / "config_history.jsonl").read_text().splitlines()
    assert any("fsdp" in line for line in history_lines)
    assert list_checkpoints(out / "checkpoints")[-1][1]["layout"] == "dcp"


def test_fsdp_checkpoint_resumes_under_ddp(
    fsdp_reference: Path, tiny_data: dict[str, str], tmp_path: Path
) -> None:
    """The other direction: DCP shards fill a plain (DDP-replicated) model on every rank."""
    out = tmp_path / "run"
    assert train_ranks(config(out, tiny_data), 2, kill_at="step:6") == [-signal.SIGKILL] * 2
    ddp = config(out, tiny_data, parallel={"strategy": "ddp"})
    assert train_ranks(ddp, 2, resume=True) == [0, 0]
    assert_same_losses(out, losses(fsdp_reference))
    assert "layout" not in list_checkpoints(out / "checkpoints")[-1][1]


def test_mixed_precision_policy_is_bfloat16_on_gpu_only() -> None:
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    policy = mixed_precision_policy("auto", cuda)
    assert (policy.param_dtype, policy.reduce_dtype) == (torch.bfloat16, torch.float32)
    assert mixed_precision_policy("float32", cuda) is None
    assert mixed_precision_policy("auto", cpu) is None
    with pytest.warns(UserWarning, match=r"parallel.mixed_precision: bfloat16 applies on GPU only"):
        assert mixed_precision_policy("bfloat16", cpu) is None
