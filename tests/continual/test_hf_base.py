"""Continual pre-training of a Hugging Face model: an external base (model: {hf: DIR}).

A tiny local Llama (tests/hf_models.py) is continued with ``rewarm+replay`` by a plan, exported
and reloaded (the end-to-end path of docs/models.md), and compared by ``continual compare``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

pytest.importorskip("transformers")

from evertrain.cli import app  # noqa: E402
from evertrain.continual.plan import PlanError, external_base_info, load_plan  # noqa: E402
from evertrain.data import prepare  # noqa: E402

from ..hf_models import documents, tiny_model_dir, write_jsonl  # noqa: E402

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
SEQ = 32


@pytest.fixture(scope="module")
def hf_setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny Llama directory, and 'web' (like its pre-training data) and 'code' prepared with
    its tokenizer."""
    root = tmp_path_factory.mktemp("hfbase")
    model = tiny_model_dir(root / "llama", "llama")
    for name, seed in (("web", 1), ("code", 2)):
        source = write_jsonl(root / f"{name}.jsonl", documents(60, seed))
        prepare([source], root / name, tokenizer=model, progress=False)
    return {"root": root, "model": model, "web": root / "web", "code": root / "code"}


def plan_dict(setup: dict[str, Path], out_dir: Path, **base: Any) -> dict[str, Any]:
    return {
        "out_dir": str(out_dir),
        "model": {"hf": str(setup["model"]), "seq_len": SEQ},
        "base": {"datasets": {"web": str(setup["web"])}, **base},
        "train": {"batch_size": 2, "device": "cpu", "eval_tokens": 2 * SEQ},
        "stages": [
            {
                "name": "code",
                "datasets": {"code": str(setup["code"])},
                "tokens": 8 * 2 * SEQ,
                "schedule": "rewarm",
                "replay": 0.25,
            }
        ],
    }


# ------------------------------------------------------------------------------ plan rules
def test_external_base_plan_rules(hf_setup: dict[str, Path], tmp_path: Path) -> None:
    plan = plan_dict(hf_setup, tmp_path / "o")
    loaded = load_plan(plan)
    assert loaded.external_base and loaded.old_datasets(0) == ["web"]
    assert loaded.stage_mixture(0) == {"web": 0.25, "code": 0.75}
    assert list(loaded.datasets) == ["web", "code"]  # the base's data is evaluated too
    gpt = {**plan, "model": {"n_layer": 2, "n_head": 2, "d_model": 32, "seq_len": SEQ}}
    with pytest.raises(
        PlanError, match=r"base: describes an external base model, which needs model: \{hf"
    ):
        load_plan(gpt)
    no_old = {**plan, "base": {}}
    with pytest.raises(
        PlanError, match="stage 0 has nothing to replay; set 0 or list the base's data"
    ):
        load_plan(no_old)
    cont = json.loads(json.dumps(plan))
    cont["stages"][0].update(schedule="continue", replay=0.0)
    with pytest.raises(PlanError, match="an external base has none: use 'rewarm' or 'finetune'"):
        load_plan(cont)
    finetune = json.loads(json.dumps(plan))
    finetune["stages"][0]["schedule"] = "finetune"
    load_plan(finetune)  # allowed: an external base has a final LR to continue at


def test_missing_base_lrs_use_the_defaults_with_one_warning_each(
    hf_setup: dict[str, Path], tmp_path: Path
) -> None:
    plan = load_plan(plan_dict(hf_setup, tmp_path / "o"))
    info, lines = external_base_info(plan)
    assert len(lines) == 1 and lines[0].startswith("base.peak_lr is not set: the external base")
    assert "re-warms to the plan's default peak 0.003" in lines[0]
    assert plan.stage_schedule(0, info).to_spec()["peak"] == pytest.approx(3e-3)
    stated = load_plan(plan_dict(hf_setup, tmp_path / "o", peak_lr=1e-3))
    info, lines = external_base_info(stated)
    assert lines == [] and stated.stage_schedule(0, info).to_spec()["peak"] == pytest.approx(1e-3)
    finetune = plan_dict(hf_setup, tmp_path / "o", peak_lr=2e-3)
    finetune["stages"][0]["schedule"] = "finetune"
    loaded = load_plan(finetune)
    info, lines = external_base_info(loaded)
    assert len(lines) == 1 and lines[0].startswith("base.final_lr is not set")
    assert float(loaded.stage_schedule(0, info)(0)) == pytest.approx(2e-4)  # floor_fraction * peak
    finetune["base"]["final_lr"] = 5e-5
    info, lines = external_base_info(load_plan(finetune))
    assert lines == [] and float(load_plan(finetune).stage_schedule(0, info)(0)) == pytest.approx(
        5e-5
    )


# ------------------------------------------------------------------------------ end to end
def run_export_reload(setup: dict[str, Path], root: Path, plan: dict[str, Any]) -> None:
    """`continual run PLAN` -> `train export` -> from_pretrained: same logits, report written."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evertrain.train.hf_model import rebuild_from_record

    plan_path = root / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(plan))
    result = runner.invoke(app, ["continual", "run", str(plan_path)])
    assert result.exit_code == 0, result.output
    last = plan["stages"][-1]["name"]
    report = Path(plan["out_dir"]) / "report" / "index.html"
    assert report.is_file() and last in report.read_text()
    meta = json.loads((Path(plan["out_dir"]) / last / "continual.json").read_text())
    assert (
        meta["old"] == ["web"]
        and meta["new"] == [name for s in plan["stages"] for name in s["datasets"]][-1:]
    )
    exported = root / "exported"
    result = runner.invoke(
        app, ["train", "export", str(Path(plan["out_dir"]) / last), "-o", str(exported)]
    )
    assert result.exit_code == 0, result.output
    reloaded = AutoModelForCausalLM.from_pretrained(exported).eval()
    assert AutoTokenizer.from_pretrained(exported).eos_token == "<|eot|>"
    from evertrain.train import checkpoint as ckpt

    checkpoint = ckpt.resolve_checkpoint(Path(plan["out_dir"]) / last)
    state = ckpt.load_checkpoint(checkpoint)
    model = rebuild_from_record(state["model_config"])
    ckpt.load_checkpoint(checkpoint, model)
    model.eval()
    x = torch.randint(0, 300, (2, SEQ), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (reloaded(input_ids=x).logits - model(x)[0]).abs().max().item() <= 1e-6
        base = AutoModelForCausalLM.from_pretrained(setup["model"]).eval()
        assert (reloaded(input_ids=x).logits - base(input_ids=x).logits).abs().max().item() > 1e-4


def test_hf_base_rewarm_replay_export_reload(hf_setup: dict[str, Path], tmp_path: Path) -> None:
    plan = plan_dict(hf_setup, tmp_path / "out", peak_lr=1e-3)
    run_export_reload(hf_setup, tmp_path, plan)
    # The sampler drew the replayed base data: 25 % of the rows were 'web'.
    log = [
        json.loads(line)
        for line in (tmp_path / "out" / "code" / "log.jsonl").read_text().splitlines()
    ]
    per_source = [r for r in log if r.get("kind") == "train"][-1]["tokens_per_source"]
    assert set(per_source) == {"web", "code"} and per_source["web"] > 0


def test_a_changed_schedule_on_rerun_names_the_change(
    hf_setup: dict[str, Path], tmp_path: Path
) -> None:
    plan = plan_dict(hf_setup, tmp_path / "out", peak_lr=1e-3)
    plan["stages"][0]["tokens"] = 2 * 2 * SEQ
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    assert runner.invoke(app, ["continual", "run", str(path)]).exit_code == 0
    plan["base"]["peak_lr"] = 2e-3  # a new schedule for the stage already trained
    path.write_text(yaml.safe_dump(plan))
    result = runner.invoke(app, ["continual", "run", str(path)])
    assert result.exit_code == 2
    assert (
        "holds a run of another configuration (config.schedule.peak: 0.001 -> 0.002"
        in result.output
    )


def test_compare_from_an_hf_base(hf_setup: dict[str, Path], tmp_path: Path) -> None:
    args = ["continual", "compare", "--base", str(hf_setup["model"]), "--old", f"web={hf_setup['web']}",
            "--new", f"code={hf_setup['code']}", "--tokens", str(2 * 2 * SEQ), "--batch-size", "2",
            "--device", "cpu", "-o", str(tmp_path / "cmp")]  # fmt: skip
    refused = runner.invoke(
        app, [*args[:2], "rewarm", "infinite+replay", *args[2:], "--seq-len", str(SEQ)]
    )
    assert refused.exit_code == 2 and "an external Hugging Face base supports" in refused.output
    assert not (tmp_path / "cmp").exists()  # refused before anything trained
    no_seq = runner.invoke(app, [*args[:2], "rewarm", *args[2:]])
    assert no_seq.exit_code == 2 and "pass --seq-len" in no_seq.output
    result = runner.invoke(
        app,
        [
            *args[:2],
            "rewarm+replay",
            "finetune",
            *args[2:],
            "--seq-len",
            str(SEQ),
            "--base-peak-lr",
            "1e-3",
        ],
    )
    assert result.exit_code == 0, result.output
    warned = [
        line for line in result.output.splitlines() if line.startswith("evertrain: warning: ")
    ]
    assert len(warned) == 1 and warned[0].startswith(
        "evertrain: warning: --base-final-lr is not set"
    )
    assert (tmp_path / "cmp" / "report" / "index.html").is_file()
    config = yaml.safe_load((tmp_path / "cmp" / "rewarm+replay" / "config.yaml").read_text())
    assert config["model"] == {"hf": str(hf_setup["model"]), "seq_len": SEQ}
    assert config["schedule"]["peak"] == pytest.approx(1e-3)


@pytest.mark.slow
def test_hf_base_two_stages_through_the_command_line(
    hf_setup: dict[str, Path], tmp_path: Path
) -> None:
    """The same path in child processes, two stages (rewarm+replay, then finetune), no LRs
    given: the default is used with its warning line."""
    plan = plan_dict(hf_setup, tmp_path / "out")
    plan["stages"].append(
        {"name": "more", "datasets": {"more": str(hf_setup["code"])}, "tokens": 8 * 2 * SEQ,
         "schedule": "finetune", "replay": 0.25}
    )  # fmt: skip
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-m", "evertrain.cli"]
    done = subprocess.run(
        [*command, "continual", "run", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("evertrain: warning: base.peak_lr is not set") == 1
    exported = subprocess.run(
        [*command, "train", "export", str(tmp_path / "out" / "more"), "-o", str(tmp_path / "hf")],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr[-3000:]
    with warnings.catch_warnings():
        from transformers import AutoModelForCausalLM

        assert AutoModelForCausalLM.from_pretrained(tmp_path / "hf").config.model_type == "llama"


def test_a_model_directory_saved_again_is_another_base(
    hf_setup: dict[str, Path], tmp_path: Path
) -> None:
    import shutil

    from transformers import AutoModelForCausalLM

    model = tmp_path / "model"
    shutil.copytree(hf_setup["model"], model)
    plan = plan_dict(hf_setup, tmp_path / "out", peak_lr=1e-3)
    plan["model"]["hf"] = str(model)
    plan["stages"][0]["tokens"] = 2 * 2 * SEQ
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    assert runner.invoke(app, ["continual", "run", str(path)]).exit_code == 0
    assert runner.invoke(app, ["continual", "run", str(path)]).exit_code == 0  # re-used
    # New weights in the same directory (the base trained further elsewhere): not re-used.
    AutoModelForCausalLM.from_pretrained(model).save_pretrained(model)
    result = runner.invoke(app, ["continual", "run", str(path)])
    assert result.exit_code == 2
    assert "holds a run of another configuration (model.weights.model.safetensors" in result.output
