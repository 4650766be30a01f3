"""Trackers beside log.jsonl: TensorBoard's tokens axis and hyper-parameters, W&B offline and
MLflow (each through its example), and the one-line install hint when a package is missing."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from evertrain.cli import app
from evertrain.train import TrainConfig, run
from evertrain.train.trackers import flatten

from .conftest import make_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tensorboard_gets_a_tokens_axis_and_the_config(
    tiny_data: dict[str, str], tmp_path: Path
) -> None:
    pytest.importorskip("tensorboard", reason="tensorboard is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = make_config(
        tmp_path / "run", {"prose": tiny_data["prose"]}, budget_tokens=1024, tensorboard=True
    )
    cfg["model"]["n_layer"] = 1
    run(TrainConfig.model_validate(cfg), progress=False)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tags = events.Tags()
    assert {"train/loss", "train_tokens/loss", "eval/prose", "eval_tokens/prose"} <= set(
        tags["scalars"]
    )
    by_step = events.Scalars("train/loss")
    by_tokens = events.Scalars("train_tokens/loss")
    assert [e.step for e in by_step] == [1, 2, 3, 4]
    assert [e.step for e in by_tokens] == [256, 512, 768, 1024]  # tokens as the global step
    assert [e.value for e in by_tokens] == [e.value for e in by_step]
    assert "config/text_summary" in tags["tensors"]  # the YAML text summary
    text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "n_layer: 1" in text
    hparams = events.PluginTagToContent("hparams")
    assert "_hparams_/experiment" in hparams and "_hparams_/session_start_info" in hparams
    assert b"model.n_layer" in hparams["_hparams_/session_start_info"]


def test_flatten_gives_dotted_scalar_params() -> None:
    flat = flatten({"model": {"n_layer": 2}, "tags": [1, 2], "x": None, "s": {"name": "wsd"}})
    assert flat == {"model.n_layer": 2, "tags": "[1, 2]", "x": "null", "s.name": "wsd"}


def test_a_missing_tracker_package_is_a_one_line_install_hint_before_any_work(
    tiny_data: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "wandb" else real_find_spec(name, *a),
    )
    cfg = make_config(tmp_path / "run", tiny_data)
    cfg["logging"] = {"wandb": {"project": "p", "mode": "offline"}}
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(cfg))
    result = CliRunner().invoke(app, ["train", "run", str(config), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        "error: logging.wandb: the wandb package is not installed: pip install wandb "
        "(or remove logging.wandb from the config)"
    ]
    assert not (tmp_path / "run").exists()


def test_logging_settings_are_typed(tiny_data: dict[str, str], tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "run", tiny_data)
    cfg["logging"] = {"wandb": {"mode": "offlne"}}
    with pytest.raises(ValueError, match=r"logging\.wandb\.mode"):
        TrainConfig.model_validate(cfg)
    cfg["logging"] = {"mlflow": {"tracking_uri": "file:x", "experimnt": "e"}}
    with pytest.raises(ValueError, match=r"logging\.mlflow\.experimnt"):
        TrainConfig.model_validate(cfg)


def test_wandb_offline_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb", reason="wandb is not installed (pip install wandb)")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    offline_run = _load_example("wandb_offline").main(tmp_path)
    log = offline_run / f"run-{offline_run.name.rsplit('-', 1)[1]}.wandb"
    markers = (b"train/loss", b"eval/english", b"n_layer")
    # W&B's service process writes the transaction log on its own clock: under load (a CI
    # machine running the docs pages beside this) the file can still hold only its header
    # when finish() has returned, so wait for it (a finished process flushes it at exit)
    deadline = time.monotonic() + 60.0
    recorded = log.read_bytes()
    while not all(m in recorded for m in markers) and time.monotonic() < deadline:
        time.sleep(0.5)
        recorded = log.read_bytes()
    assert all(m in recorded for m in markers), recorded[:200]
    run_id = json.loads((tmp_path / "run" / "trackers.json").read_text())["wandb"]
    assert offline_run.name.endswith(run_id)  # a resume continues this W&B run


def test_mlflow_local_example(tmp_path: Path) -> None:
    pytest.importorskip("mlflow", reason="mlflow is not installed (pip install mlflow)")
    history = _load_example("mlflow_local").main(tmp_path)
    assert len(history["train/loss"]) == 6 and len(history["eval/english"]) == 2
    logged = [
        json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    ]
    assert history["train/loss"] == [r["loss"] for r in logged if r["kind"] == "train"]


def test_mlflow_keys_are_made_valid() -> None:
    from evertrain.train.trackers import _mlflow_key

    assert _mlflow_key("eval/web+code") == "eval/web_code"
    assert _mlflow_key("data.train.my set-1/x") == "data.train.my set-1/x"
