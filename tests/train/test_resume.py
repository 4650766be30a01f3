"""Exact resume: SIGKILL a training subprocess at several points (between steps, and inside the
checkpoint writer), resume, and require the log to equal an uninterrupted run's bit for bit."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from evertrain.train import TrainConfig, history, run
from evertrain.train.checkpoint import list_checkpoints

from .conftest import make_config, one_thread

KILL_POINTS = [
    "step:1",  # before the first checkpoint: the resume starts from scratch
    "step:6",  # between checkpoints: steps 5-6 are lost and re-run
    "checkpoint:8:after_weights",  # mid-write: only the temp dir holds model.safetensors
    "checkpoint:8:before_rename",  # complete temp dir, never renamed
    "checkpoint:4:after_rename",  # renamed, but manifest not yet updated and nothing pruned
    "checkpoint:12:after_state",  # inside the final checkpoint's write
    "checkpoint:12:after_rename",  # final checkpoint complete; manifest and pruning pending
]


def deterministic_config(out_dir: Path, data: dict[str, str]) -> dict:
    # Dropout on, so the restored RNG state matters too.
    return make_config(out_dir, data, deterministic=True, model__dropout=0.1)


def comparable(out_dir: Path) -> list[dict]:
    return [
        {k: v for k, v in record.items() if k != "tokens_per_s"}
        for record in history(out_dir, "train") + history(out_dir, "eval")
    ]


def start_training(config_path: Path, kill_at: str | None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("EVERTRAIN_TEST_KILL_AT", None)
    if kill_at:
        env["EVERTRAIN_TEST_KILL_AT"] = kill_at
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "evertrain.train",
            "run",
            str(config_path),
            "--resume",
            "--no-progress",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def train_in_forked_child(config_path: Path, kill_at: str) -> int:
    """Run the config in a forked copy of this process (no interpreter start-up) with the kill
    hook set; return the child's status as subprocess does (-signal for a signal)."""
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            os.environ["EVERTRAIN_TEST_KILL_AT"] = kill_at
            torch.set_num_threads(1)
            run(TrainConfig.from_yaml(config_path), resume=True, progress=False)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


@pytest.fixture(scope="module")
def reference(tiny_data: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("reference") / "run"
    with one_thread():
        run(deterministic_config(out, tiny_data), progress=False)
    return comparable(out)


@pytest.mark.parametrize("kill_at", KILL_POINTS)
def test_sigkill_then_resume_is_bit_identical(
    kill_at: str, reference: list[dict], tiny_data: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(deterministic_config(out, tiny_data), sort_keys=False))
    assert train_in_forked_child(config_path, kill_at) == -signal.SIGKILL
    if kill_at.startswith("step:"):
        assert comparable(out) != reference  # it really was cut short
    # Resume in this process (saves a interpreter start; same single-thread kernels).
    with one_thread():
        result = run(TrainConfig.from_yaml(config_path), resume=True, progress=False)
    assert result.steps == 12
    assert comparable(out) == reference
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
    assert [meta["step"] for _, meta in list_checkpoints(out / "checkpoints")] == [8, 12]


def test_cli_resume_flag_continues_a_killed_run(
    reference: list[dict], tiny_data: dict[str, str], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from evertrain.cli import app

    out = tmp_path / "run"
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(deterministic_config(out, tiny_data), sort_keys=False))
    assert train_in_forked_child(config_path, "checkpoint:8:after_state") == -signal.SIGKILL
    # Without --resume the CLI refuses to touch the run (exit 2, message names the fix).
    refused = CliRunner().invoke(app, ["train", "run", str(config_path), "--no-progress"])
    assert refused.exit_code == 2 and "pass resume=True (--resume)" in refused.output
    resumed = CliRunner().invoke(
        app, ["train", "run", str(config_path), "--resume", "--no-progress"]
    )
    assert resumed.exit_code == 0, resumed.output
    assert "done: 12 steps" in resumed.output
    assert comparable(out) == reference


@pytest.mark.slow
def test_cli_process_killed_mid_checkpoint_resumes_with_flag(
    reference: list[dict], tiny_data: dict[str, str], tmp_path: Path
) -> None:
    """The real thing: `python -m evertrain.train run CONFIG --resume`, SIGKILLed, run again."""
    out = tmp_path / "run"
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(deterministic_config(out, tiny_data), sort_keys=False))
    killed = start_training(config_path, "checkpoint:8:after_weights")
    _, stderr = killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    resumed = start_training(config_path, None)
    stdout, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr.decode()[-2000:]
    assert b"done: 12 steps" in stdout
    assert comparable(out) == reference


@pytest.mark.slow
def test_sigkill_at_random_times_then_resume(
    reference: list[dict], tiny_data: dict[str, str], tmp_path: Path
) -> None:
    """Kill at wall-clock-random moments (possibly several times) until the run completes."""
    out = tmp_path / "run"
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(deterministic_config(out, tiny_data), sort_keys=False))
    rng = random.Random(1234)
    for _ in range(30):
        process = start_training(config_path, None)
        try:
            process.wait(timeout=rng.uniform(2.0, 5.0))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
        if process.returncode == 0:
            break
        time.sleep(0.05)
    assert process.returncode == 0
    assert comparable(out) == reference


def test_resume_with_another_batch_size_trains_up_to_the_token_budget(tiny_data, tmp_path):
    """budget_tokens is a token count: after a resume at twice the batch, the run trains the
    remaining tokens in the new steps (it used to stop at ceil(budget / new step), counted from
    step 0, i.e. at once, reporting 'done' with half the budget trained)."""
    out = tmp_path / "run"
    first = make_config(out, tiny_data, budget_tokens=8 * 256)  # 8 steps of 256 tokens
    assert run(TrainConfig.model_validate(first), progress=False).tokens == 2048
    resumed = make_config(out, tiny_data, budget_tokens=16 * 256, batch_size=8)  # 512 per step
    resumed["schedule"] = first["schedule"] | {"total": 16 * 256}
    result = run(TrainConfig.model_validate(resumed), resume=True, progress=False)
    assert (result.steps, result.tokens) == (8 + 4, 4096)
    steps = [(r["step"], r["tokens"]) for r in history(out) if r.get("kind", "train") == "train"]
    assert steps[-5:] == [(8, 2048), (9, 2560), (10, 3072), (11, 3584), (12, 4096)]
