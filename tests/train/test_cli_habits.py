"""CLI habits of `evertrain train`: config paths from the config's folder, forks that inherit
their parent's config, YAML errors that name the file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from evertrain.cli import app
from evertrain.train.config import TrainConfig

from .conftest import make_config

runner = CliRunner()


def test_config_paths_resolve_against_the_config_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "configs"
    folder.mkdir()
    cfg = make_config(Path("runs/x"), {"web": "data/web"}, init_from="../ckpt")
    cfg["data"]["eval"] = {"held": "/abs/held", "home": "~/held"}
    (folder / "c.yaml").write_text(yaml.safe_dump(cfg))
    monkeypatch.chdir(tmp_path)
    loaded = TrainConfig.from_yaml(Path("configs/c.yaml"), ["data.train.typed=shell/dir"])
    assert loaded.data.train == {"web": os.path.join("configs", "data/web"), "typed": "shell/dir"}
    assert loaded.out_dir == os.path.join("configs", "runs/x")
    assert loaded.init_from == os.path.join("configs", "../ckpt")
    assert loaded.data.eval == {"held": "/abs/held", "home": "~/held"}  # absolute stays
    # A config in the current folder keeps its paths exactly as written.
    monkeypatch.chdir(folder)
    assert TrainConfig.from_yaml("c.yaml").data.train == {"web": "data/web"}


def test_plan_paths_resolve_against_the_plan_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evertrain.continual.plan import load_plan

    (tmp_path / "plans").mkdir()
    plan = {
        "out_dir": "runs/p",
        "model": {"n_layer": 1, "n_head": 2, "d_model": 32, "seq_len": 16},
        "stages": [
            {"name": "base", "datasets": {"d0": "data/d0"}, "tokens": 10_000, "init": "scratch"},
            {"name": "code", "datasets": {"d1": "/abs/d1"}, "tokens": 20_000, "init": "ck/base"},
        ],
    }
    (tmp_path / "plans" / "plan.yaml").write_text(yaml.safe_dump(plan))
    monkeypatch.chdir(tmp_path)
    loaded = load_plan("plans/plan.yaml")
    assert loaded.out_dir == os.path.join("plans", "runs/p")
    assert loaded.stages[0].datasets == {"d0": os.path.join("plans", "data/d0")}
    assert loaded.stages[0].init == "scratch"
    assert loaded.stages[1].datasets == {"d1": "/abs/d1"}
    assert loaded.stages[1].init == os.path.join("plans", "ck/base")


@pytest.mark.parametrize(
    "args",
    [
        ["train", "run", "{bad}"],
        ["train", "fork", "{run}", "{bad}"],
        ["continual", "run", "{bad}"],
        ["schedule", "show", "{bad}"],
    ],
)
def test_yaml_errors_name_the_file(args: list[str], tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("model: {n_layer: 2\nschedule: [\n")
    run = tmp_path / "run" / "checkpoints" / "step_1"
    run.mkdir(parents=True)
    (run / "meta.json").write_text(json.dumps({"step": 1, "sha256": {}}))
    (tmp_path / "run" / "config.yaml").write_text("out_dir: x\n")
    result = runner.invoke(app, [a.format(bad=bad, run=run) for a in args])
    assert result.exit_code == 2, result.output
    assert str(bad) in result.output and "Traceback" not in result.output


@pytest.fixture(scope="module")
def parent_run(tiny_data: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("parent")
    cfg = make_config(root / "run", {"prose": tiny_data["prose"]}, budget_tokens=1024)
    cfg["model"]["n_layer"] = 1
    cfg["checkpoint_at_tokens"] = [768]  # the parent's own named point: not the fork's
    (root / "c.yaml").write_text(yaml.safe_dump(cfg))
    result = runner.invoke(app, ["train", "run", str(root / "c.yaml"), "--no-progress"])
    assert result.exit_code == 0, result.output
    return root / "run"


def test_fork_inherits_the_parents_config_and_takes_only_the_changes(
    parent_run: Path, tmp_path: Path
) -> None:
    changes = tmp_path / "changes.yaml"
    changes.write_text(
        "out_dir: branch\nbudget_tokens: 512\n"
        "schedule: {name: constant, value: 1.0e-4, unit: tokens}\nmodel: {dropout: 0.0}\n"
    )
    result = runner.invoke(
        app,
        [
            "train",
            "fork",
            str(parent_run),
            str(changes),
            "--seed=7",
            "--eval-interval-tokens=256",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    child = tmp_path / "branch"  # out_dir of the changes file: read against its folder
    written = yaml.safe_load((child / "config.yaml").read_text())
    parent = yaml.safe_load((parent_run / "config.yaml").read_text())
    assert written["model"]["n_layer"] == 1 == parent["model"]["n_layer"]  # inherited
    assert written["data"]["train"] == parent["data"]["train"]
    assert written["schedule"] == {"name": "constant", "value": 1e-4, "unit": "tokens"}  # replaced
    assert written["budget_tokens"] == 512 and written["seed"] == 7
    assert written["eval_interval_tokens"] == 256  # --eval-interval-tokens: dashes read as _
    assert written["checkpoint_at_tokens"] == []  # 768 lies beyond the fork's 512 tokens
    assert json.loads((child / "manifest.json").read_text())["parent"]["run"] == str(
        parent_run.resolve()
    )


def test_fork_without_a_config_needs_its_own_out_dir(parent_run: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "fork", str(parent_run), "--no-progress"])
    assert result.exit_code == 2
    assert "--set out_dir=" in result.output
    # Dotted overrides where CONFIG would be: they are overrides, not a config path.
    result = runner.invoke(
        app,
        ["train", "fork", str(parent_run), f"--out_dir={tmp_path / 'c'}", "--budget_tokens=256",
         "--schedule=constant:value=1e-4", "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((tmp_path / "c" / "config.yaml").read_text())["budget_tokens"] == 256
    result = runner.invoke(
        app,
        [
            "train",
            "fork",
            str(parent_run),
            "--set",
            f"out_dir={tmp_path / 'b'}",
            "--set",
            "budget_tokens=256",
            "--set",
            "schedule=constant:value=1e-4",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "b" / "manifest.json").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model.n_head=3"], "model.n_head: 3 does not divide d_model=64"),  # as --set does
        (["--model.n_head", "3"], "write the value with '='"),
        (["--resum"], "no such option: --resum"),
        (["stray"], "unexpected argument 'stray'"),
        (["--model.n_head=3", "FIRST"], "model.n_head: 3 does not divide"),  # before CONFIG
    ],
)
def test_dotted_overrides_are_set_overrides(
    extra: list[str], message: str, tiny_data: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(make_config(tmp_path / "run", tiny_data)))
    if extra[-1] == "FIRST":  # the override typed before CONFIG
        args = ["train", "run", extra[0], str(config), "--no-progress"]
    else:
        args = ["train", "run", str(config), *extra, "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "run").exists()  # refused before any work


def test_python_m_evertrain_train_also_prints_one_line_warnings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torchrun runs `python -m evertrain.train` (the train app alone, not evertrain.cli)."""
    import warnings
    from types import SimpleNamespace

    from evertrain.train import cli as train_cli
    from evertrain.train import loop

    def fake_run(cfg, **kwargs):
        warnings.warn("budget_tokens=512 but the schedule ends at 256", UserWarning, stacklevel=1)
        return SimpleNamespace(final_eval=None)

    monkeypatch.setattr(loop, "run", fake_run)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(make_config(tmp_path / "run", {"prose": "data/prose"})))
    result = runner.invoke(train_cli.app, ["run", str(config)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "evertrain: warning: budget_tokens=512 but the schedule ends at 256"
    ]
