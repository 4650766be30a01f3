"""`evertrain train run|fork|checkpoints`: results, and errors as exit code 2 with the message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from evertrain.cli import app
from evertrain.train import history

from .conftest import make_config

runner = CliRunner()


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def cli_run(
    tiny_data: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cli")
    config = write_config(root / "c.yaml", make_config(root / "placeholder", tiny_data))
    result = runner.invoke(
        app,
        [
            "train",
            "run",
            str(config),
            "--set",
            f"out_dir={root / 'run'}",
            "--set",
            "budget_tokens=2048",
            "--set",
            "schedule.total=2048",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "done: 8 steps, 2,048 tokens" in result.output
    return root, root / "run"


def test_set_overrides_and_checkpoint_listing(cli_run: tuple[Path, Path]) -> None:
    _, run_dir = cli_run
    assert history(run_dir)[-1]["tokens"] == 2048
    listing = runner.invoke(app, ["train", "checkpoints", str(run_dir), "--verify"])
    assert listing.exit_code == 0, listing.output
    lines = listing.output.splitlines()
    assert lines[0].split()[:3] == ["name", "step", "tokens"]
    assert [line.split()[0] for line in lines[1:]] == ["step_00000004", "step_00000008"]
    assert all(line.endswith("[ok]") for line in lines[1:])
    as_json = runner.invoke(app, ["train", "checkpoints", str(run_dir), "--json"])
    assert json.loads(as_json.output) == json.loads((run_dir / "manifest.json").read_text())


def test_verify_flags_corruption_with_exit_2(cli_run: tuple[Path, Path], tmp_path: Path) -> None:
    import shutil

    _, run_dir = cli_run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    for entry in manifest["checkpoints"]:  # point the copied manifest at the copied checkpoints
        entry["path"] = str(copy / "checkpoints" / entry["name"])
    (copy / "manifest.json").write_text(json.dumps(manifest))
    (copy / "checkpoints" / "step_00000008" / "model.safetensors").write_bytes(b"x")
    listing = runner.invoke(app, ["train", "checkpoints", str(copy), "--verify"])
    assert listing.exit_code == 2
    assert (
        "BAD:" in listing.output and "model.safetensors is corrupted or truncated" in listing.output
    )


def test_fork_command_records_parent(cli_run: tuple[Path, Path], tiny_data: dict[str, str]) -> None:
    root, run_dir = cli_run
    child = root / "child"
    config = write_config(
        root / "fork.yaml",
        make_config(
            child, tiny_data, budget_tokens=512, schedule="constant:value=1e-4,unit=tokens"
        ),
    )
    result = runner.invoke(
        app,
        [
            "train",
            "fork",
            str(run_dir / "checkpoints" / "step_00000004"),
            str(config),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    parent = json.loads((child / "manifest.json").read_text())["parent"]
    assert parent["step"] == 4 and parent["run"] == str(run_dir.resolve())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "model.n_head=3"], "model.n_head: 3 does not divide d_model=64"),
        (
            ["--set", "data.train.prose=/nonexistent/dir"],
            "data.train.prose: cannot open prepared dataset",
        ),
        (["--set", "batch_size"], "expected key=value"),
        (["--set", "device=cuda"], None),  # only an error where CUDA is missing
    ],
)
def test_bad_input_exits_2_with_message(
    args: list[str], message: str | None, tiny_data: dict[str, str], tmp_path: Path
) -> None:
    import torch

    if message is None:
        if torch.cuda.is_available():
            pytest.skip("CUDA is available here")
        message = "device: 'cuda' requested but no CUDA device is available"
    config = write_config(tmp_path / "c.yaml", make_config(tmp_path / "run", tiny_data))
    result = runner.invoke(app, ["train", "run", str(config), "--no-progress", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_missing_config_and_run_dir_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "run", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = runner.invoke(app, ["train", "checkpoints", str(tmp_path)])
    assert result.exit_code == 2 and "manifest.json not found" in result.output


def test_nonfinite_stop_exits_3(
    tiny_data: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVERTRAIN_TEST_NAN_AT_STEPS", "2")
    config = write_config(tmp_path / "c.yaml", make_config(tmp_path / "run", tiny_data))
    result = runner.invoke(app, ["train", "run", str(config), "--no-progress"])
    assert result.exit_code == 3
    assert (
        "non-finite loss (nan) at step 2" in result.output
        and "no checkpoint was written yet" in result.output
    )


def test_module_entry_point_defaults_to_run(
    tiny_data: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m evertrain.train CONFIG` (what torchrun launches) means `... run CONFIG`."""
    from evertrain.train.__main__ import main

    config = write_config(
        tmp_path / "c.yaml",
        make_config(tmp_path / "run", tiny_data, budget_tokens=5 * 256, log_interval=2),
    )
    monkeypatch.setattr("sys.argv", ["python -m evertrain.train", str(config), "--no-progress"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 0
    # log_interval=2: a train record every second step (and always the last).
    assert [r["step"] for r in history(tmp_path / "run")] == [2, 4, 5]


def test_stop_at_step_pauses_and_resume_ends_where_one_run_does(
    cli_run: tuple[Path, Path], tiny_data: dict[str, str]
) -> None:
    """A CPT law's probe: the first steps of a run, its schedule unchanged; --resume finishes it
    with the same LR at every step as the run trained in one go."""
    root, whole = cli_run
    config = write_config(root / "probe.yaml", make_config(root / "probe", tiny_data))
    args = ["train", "run", str(config), "--set", "budget_tokens=2048", "--set",
            "schedule.total=2048", "--no-progress"]  # fmt: skip
    paused = runner.invoke(app, [*args, "--stop-at-step", "3"])
    assert paused.exit_code == 0, paused.output
    assert "paused at step 3 of 8 (--resume trains on): 768 tokens" in paused.output
    records = [json.loads(line) for line in (root / "probe" / "log.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in records if r["kind"] == "train") == 3
    assert any(r["kind"] == "eval" and r["step"] == 3 for r in records)  # an eval where it stops
    done = runner.invoke(app, [*args, "--resume"])
    assert done.exit_code == 0, done.output
    assert "done: 8 steps, 2,048 tokens" in done.output

    def lrs(folder: Path) -> dict[int, float]:
        lines = (folder / "log.jsonl").read_text().splitlines()
        return {r["step"]: r["lr"] for r in map(json.loads, lines) if r["kind"] == "train"}

    assert lrs(root / "probe") == lrs(whole)


@pytest.mark.parametrize("step", ["0", "8", "20"])
def test_stop_at_step_outside_the_run_is_one_line_exit_2(
    cli_run: tuple[Path, Path], tiny_data: dict[str, str], step: str
) -> None:
    root, _ = cli_run
    config = write_config(root / f"bad{step}.yaml", make_config(root / f"bad{step}", tiny_data))
    result = runner.invoke(app, ["train", "run", str(config), "--set", "budget_tokens=2048",
                                 "--set", "schedule.total=2048", "--stop-at-step", step])  # fmt: skip
    assert result.exit_code == 2
    assert f"--stop-at-step {step} must be in [1, 8)" in result.output
    assert not (root / f"bad{step}" / "log.jsonl").exists()  # checked before any work


def test_a_paused_fork_resumes_with_its_own_command(cli_run: tuple[Path, Path]) -> None:
    root, run_dir = cli_run
    checkpoint = str(run_dir / "checkpoints" / "step_00000004")

    def fork(out: str, *extra: str):
        return runner.invoke(app, ["train", "fork", checkpoint, f"--out_dir={root / out}",
                                   "--no-progress", *extra])  # fmt: skip

    whole = fork("fork-whole")
    assert whole.exit_code == 0, whole.output
    paused = fork("fork-probe", "--stop-at-step", "2")
    assert paused.exit_code == 0 and "paused at step 2 of 8" in paused.output, paused.output
    done = fork("fork-probe", "--resume")
    assert done.exit_code == 0, done.output
    assert "done: 8 steps" in done.output and "changed config" not in done.output

    def lrs(folder: Path) -> dict[int, float]:
        lines = (folder / "log.jsonl").read_text().splitlines()
        return {r["step"]: r["lr"] for r in map(json.loads, lines) if r["kind"] == "train"}

    assert lrs(root / "fork-probe") == lrs(root / "fork-whole")
