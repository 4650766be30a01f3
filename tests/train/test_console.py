"""What `evertrain train run` prints: parameters and the resolved config once, eval losses as
they happen, where a resume starts, and plain progress lines when stdout is not a terminal."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from evertrain.cli import app

from .conftest import make_config

runner = CliRunner()


def test_start_eval_and_resume_lines(tiny_data: dict[str, str], tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "run", {"prose": tiny_data["prose"]}, budget_tokens=1024)
    cfg["model"]["n_layer"] = 1
    cfg["eval_interval_tokens"] = 512
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(cfg))
    result = runner.invoke(app, ["train", "run", str(config)])  # progress on; not a terminal
    assert result.exit_code == 0, result.output
    out = result.output
    assert "\r" not in out
    lines = out.splitlines()
    assert lines[0].startswith("model: ") and " parameters (" in lines[0]
    assert f"new run in {tmp_path / 'run'}" in lines[0]
    assert lines[1] == "config (resolved):"
    assert f"  out_dir: {tmp_path / 'run'}" in lines
    evals = [line for line in lines if line.startswith("eval step ")]
    assert [line.split(" (")[0] for line in evals] == ["eval step 2", "eval step 4"]
    assert evals[0].startswith("eval step 2 (512 tokens): prose ")
    last = next(line for line in lines if line.startswith("train: 4/4 step (100%)"))
    assert "loss=" in last and "lr=" in last  # this step's values, not the previous one's
    assert sum(line == "config (resolved):" for line in lines) == 1  # echoed once

    resumed = runner.invoke(app, ["train", "run", str(config), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    checkpoint = tmp_path / "run" / "checkpoints" / "step_00000004"
    assert f"resuming from checkpoint {checkpoint} at step 4 (1,024 tokens)" in resumed.output


def test_no_progress_is_quiet_until_done(tiny_data: dict[str, str], tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "run", {"prose": tiny_data["prose"]}, budget_tokens=512)
    cfg["model"]["n_layer"] = 1
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(cfg))
    result = runner.invoke(app, ["train", "run", str(config), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("done: 2 steps")
