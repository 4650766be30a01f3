"""2-process gloo DDP under torchrun follows the single-process run with the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from evertrain.train import history, run

from .conftest import fork_child, make_config, rank_env

OVERRIDES = {
    "budget_tokens": 6 * 256,
    "eval_interval_tokens": 3 * 256,
    "checkpoint_interval_tokens": 3 * 256,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_forked_ranks_match_single_process(tiny_data: dict[str, str], tmp_path: Path) -> None:
    """Default-suite version: fork two ranks of this process (no interpreter start) and set the
    variables torchrun would set; gloo rendezvous over localhost TCP."""
    single = run(make_config(tmp_path / "single", tiny_data, **OVERRIDES), progress=False)
    cfg = make_config(tmp_path / "ddp", tiny_data, **OVERRIDES)
    port = str(free_port())

    def body() -> int:
        run(cfg, progress=False)
        # run() made the process group, so run() destroys it (exit 3 if left open).
        return 3 if torch.distributed.is_initialized() else 0

    children = [fork_child(body, rank_env(rank, port)) for rank in range(2)]
    statuses = [os.waitpid(pid, 0)[1] for pid in children]
    assert statuses == [0, 0]
    check_matches(tmp_path, single)


@pytest.mark.slow
def test_two_process_gloo_ddp_under_torchrun(tiny_data: dict[str, str], tmp_path: Path) -> None:
    single = run(make_config(tmp_path / "single", tiny_data, **OVERRIDES), progress=False)
    config_path = tmp_path / "ddp.yaml"
    config_path.write_text(
        yaml.safe_dump(make_config(tmp_path / "ddp", tiny_data, **OVERRIDES), sort_keys=False)
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "evertrain.train", "run", str(config_path), "--no-progress",
        ],
        env=env, capture_output=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr.decode()[-3000:]
    check_matches(tmp_path, single)


def check_matches(tmp_path: Path, single) -> None:
    a, b = history(tmp_path / "single"), history(tmp_path / "ddp")
    assert [r["tokens"] for r in a] == [r["tokens"] for r in b] == [256 * k for k in range(1, 7)]
    # Same data: each rank drew half of every global batch.
    assert [r["tokens_per_source"] for r in a] == [r["tokens_per_source"] for r in b]
    for ra, rb in zip(a, b, strict=True):
        assert rb["lr"] == ra["lr"]
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5)
        assert rb["grad_norm"] == pytest.approx(ra["grad_norm"], rel=1e-4)
    ddp_eval = history(tmp_path / "ddp", "eval")[-1]["eval"]
    assert ddp_eval == pytest.approx(single.final_eval, rel=1e-5)
    # Only rank 0 wrote: one manifest, one log line per step.
    manifest = json.loads((tmp_path / "ddp" / "manifest.json").read_text())
    assert [c["step"] for c in manifest["checkpoints"]] == [3, 6]
    assert len((tmp_path / "ddp" / "log.jsonl").read_text().splitlines()) == 6 + 2
