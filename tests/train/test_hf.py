"""Hugging Face causal LMs as the trainer's model: config, tokenizer, training, export.

Every model is a tiny Llama / Qwen2 / GPT-2 built here (tests/hf_models.py); nothing is
downloaded.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("transformers")

from evertrain.cli import app  # noqa: E402
from evertrain.data import PreparedDataset, prepare  # noqa: E402
from evertrain.train import TrainConfig, history, run  # noqa: E402
from evertrain.train.config import ConfigError  # noqa: E402
from evertrain.train.hf_spec import HFFromConfig, HFPretrained  # noqa: E402

from ..hf_models import EOS, documents, tiny_model_dir, write_jsonl  # noqa: E402

runner = CliRunner()
SEQ = 32


@pytest.fixture(scope="module")
def hf_root(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny Llama / Qwen2 / GPT-2 directories and a dataset prepared with their tokenizer."""
    root = tmp_path_factory.mktemp("hf")
    dirs = {arch: tiny_model_dir(root / arch, arch) for arch in ("llama", "qwen2", "gpt2")}
    texts = documents(80)
    prepare(
        [write_jsonl(root / "web.jsonl", texts)],
        root / "web",
        tokenizer=dirs["llama"],
        progress=False,
    )
    return {**dirs, "web": root / "web", "root": root}


def hf_config(out_dir: Path, model: dict[str, Any], data: Path, **extra: Any) -> dict[str, Any]:
    steps = extra.pop("steps", 4)
    return {
        "out_dir": str(out_dir),
        "device": "cpu",
        "seed": 0,
        "model": {**model, "seq_len": SEQ},
        "data": {"train": {"web": str(data)}, "eval_tokens": 2 * SEQ},
        "schedule": {"name": "cosine", "peak": 3e-3, "total": steps, "warmup": 1},
        "batch_size": 2,
        "budget_tokens": steps * 2 * SEQ,
        "eval_interval_tokens": steps * 2 * SEQ,
        "checkpoint_interval_tokens": 2 * 2 * SEQ,
        **extra,
    }


# ------------------------------------------------------------------------------ config
def test_model_field_is_gpt_or_hf_by_key() -> None:
    base = hf_config(Path("o"), {}, Path("d"))
    assert isinstance(
        TrainConfig.model_validate({**base, "model": {"hf": "m", "seq_len": 8}}).model, HFPretrained
    )
    parsed = TrainConfig.model_validate({**base, "model": {"hf_config": "c.json", "seq_len": 8}})
    assert isinstance(parsed.model, HFFromConfig)
    assert TrainConfig.model_validate(parsed.to_dict()).model == parsed.model  # round trip
    with pytest.raises(ConfigError, match=r"model: give either hf: DIR or hf_config: FILE"):
        TrainConfig.model_validate({**base, "model": {"hf": "m", "hf_config": "c", "seq_len": 8}})
    with pytest.raises(ConfigError, match=r"model\.seq_len: required field is missing"):
        TrainConfig.model_validate({**base, "model": {"hf": "m"}})
    with pytest.raises(ConfigError, match=r"model\.n_layer: unknown field"):
        TrainConfig.model_validate({**base, "model": {"hf": "m", "seq_len": 8, "n_layer": 2}})
    # The GPT's errors keep their field paths (no union tag in them).
    gpt = {"n_layer": 2, "n_head": 3, "d_model": 64, "seq_len": 8}
    with pytest.raises(ConfigError, match=r"\n  model\.n_head: 3 does not divide d_model=64"):
        TrainConfig.model_validate({**base, "model": gpt})


def test_hub_name_is_a_one_line_error_and_nothing_is_downloaded(
    hf_root: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    cfg = hf_config(tmp_path / "run", {"hf": "meta-llama/Llama-3.2-1B"}, hf_root["web"])
    with pytest.raises(ConfigError, match="not a local directory; evertrain never downloads"):
        run(cfg, progress=False)
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(cfg))
    result = runner.invoke(app, ["train", "run", str(path), "--no-progress"])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: model.hf: 'meta-llama/Llama-3.2-1B' is not a")
    assert len(result.output.strip().splitlines()) == 1
    missing = hf_config(tmp_path / "r2", {"hf_config": str(tmp_path / "none.json")}, hf_root["web"])
    with pytest.raises(ConfigError, match=r"model\.hf_config: .* is not a local config\.json"):
        run(missing, progress=False)


def test_seq_len_beyond_the_models_positions_is_refused(
    hf_root: dict[str, Path], tmp_path: Path
) -> None:
    cfg = hf_config(tmp_path / "run", {"hf": str(hf_root["llama"])}, hf_root["web"])
    cfg["model"]["seq_len"] = 128  # the tiny models have 64 positions
    cfg["budget_tokens"] = 4 * 2 * 128
    with pytest.raises(
        ConfigError, match=r"model\.seq_len: 128 exceeds .*max_position_embeddings=64"
    ):
        run(cfg, progress=False)
    assert not (tmp_path / "run" / "checkpoints").exists()


# ------------------------------------------------------------------------------ tokenizer
def test_prepare_with_a_model_directory_uses_its_tokenizer_and_eos(
    hf_root: dict[str, Path], tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    texts = documents(10, seed=3)
    source = write_jsonl(tmp_path / "d.jsonl", texts)
    result = runner.invoke(
        app,
        ["data", "prepare", str(source), "-o", str(tmp_path / "p"), "--tokenizer",
         str(hf_root["llama"]), "--val-fraction", "0", "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    dataset = PreparedDataset(tmp_path / "p")
    tokenizer = AutoTokenizer.from_pretrained(hf_root["llama"])
    # <|eot|> is none of the names evertrain guesses: it comes from tokenizer_config.json.
    assert dataset.manifest["tokenizer"]["eos_token"] == EOS
    assert dataset.eos_id == tokenizer.eos_token_id
    expected: list[int] = []
    for text in texts:
        expected += tokenizer(text, add_special_tokens=False)["input_ids"] + [
            tokenizer.eos_token_id
        ]
    assert np.asarray(dataset.train_tokens).tolist() == expected
    # Same tokenizer file as the shared dataset: the mixed-tokenizer check lets them train together.
    assert (
        dataset.manifest["tokenizer"]["sha256"]
        == PreparedDataset(hf_root["web"]).manifest["tokenizer"]["sha256"]
    )


def test_a_declared_eos_missing_from_the_vocabulary_is_an_error(
    hf_root: dict[str, Path], tmp_path: Path
) -> None:
    model = tmp_path / "model"
    shutil.copytree(hf_root["llama"], model)
    config_path = model / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["eos_token"] = "<|not-there|>"
    config_path.write_text(json.dumps(config))
    result = runner.invoke(
        app,
        ["data", "prepare", str(write_jsonl(tmp_path / "d.jsonl", documents(5))), "-o",
         str(tmp_path / "p"), "--tokenizer", str(model), "-q"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "declared EOS token '<|not-there|>' is not in its vocabulary" in result.output


# ------------------------------------------------------------------------------ training
@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_each_architecture_trains_checkpoints_and_resumes_exactly(
    arch: str, hf_root: dict[str, Path], tmp_path: Path
) -> None:
    cfg = hf_config(tmp_path / "full", {"hf": str(hf_root[arch])}, hf_root["web"])
    full = run(cfg, progress=False)
    losses = [r["loss"] for r in history(full.out_dir)]
    assert len(losses) == 4 and all(np.isfinite(losses))
    from transformers import AutoModelForCausalLM

    reference = AutoModelForCausalLM.from_pretrained(hf_root[arch])
    assert full.params == sum(p.numel() for p in reference.parameters())
    # Stopped after step 2 (its checkpoint is the newest one), resumed: the same losses.
    shutil.copytree(full.out_dir, tmp_path / "half")
    shutil.rmtree(tmp_path / "half" / "checkpoints" / "step_00000004")
    resumed = run({**cfg, "out_dir": str(tmp_path / "half")}, resume=True, progress=False)
    assert resumed.steps == 4
    assert [r["loss"] for r in history(tmp_path / "half")] == pytest.approx(losses, abs=1e-6)


def test_hf_config_is_a_seeded_random_init(hf_root: dict[str, Path], tmp_path: Path) -> None:
    spec = {"hf_config": str(hf_root["qwen2"] / "config.json")}

    def first_loss(name: str, seed: int) -> float:
        cfg = hf_config(tmp_path / name, spec, hf_root["web"], steps=1, seed=seed)
        run(cfg, progress=False)
        return history(tmp_path / name)[0]["loss"]

    seed_0 = first_loss("a", 0)
    assert first_loss("b", 0) == seed_0
    assert first_loss("c", 1) != seed_0
    # A directory holding config.json works too.
    run(
        hf_config(tmp_path / "d", {"hf_config": str(hf_root["qwen2"])}, hf_root["web"], steps=1),
        progress=False,
    )


def test_data_beyond_the_models_embeddings_is_refused(
    hf_root: dict[str, Path], tmp_path: Path
) -> None:
    import evertrain.data as data

    if not hasattr(data, "check_vocabulary"):
        pytest.skip(
            "evertrain.data.check_vocabulary (the train-time vocabulary check) not merged yet"
        )
    from transformers import AutoModelForCausalLM

    small = tmp_path / "small"
    model = AutoModelForCausalLM.from_pretrained(hf_root["llama"])
    model.resize_token_embeddings(100)  # fewer rows than the tokenizer's 300 ids
    model.save_pretrained(small)
    with pytest.raises(ConfigError, match=r"100.*300|300.*100"):
        run(hf_config(tmp_path / "run", {"hf": str(small)}, hf_root["web"]), progress=False)


# ------------------------------------------------------------------------------ export
@pytest.fixture(scope="module")
def trained(hf_root: dict[str, Path]) -> Path:
    """A tiny Llama trained 4 steps, with a pinned named checkpoint at step 2."""
    cfg = hf_config(
        hf_root["root"] / "trained",
        {"hf": str(hf_root["llama"])},
        hf_root["web"],
        checkpoint_at_tokens=[2 * 2 * SEQ],
        checkpoint_interval_tokens=4 * 2 * SEQ,
    )
    run(cfg, progress=False)
    return hf_root["root"] / "trained"


def checkpoint_logits(checkpoint: Path, x: Any) -> Any:
    import torch

    from evertrain.train import checkpoint as ckpt
    from evertrain.train.hf_model import rebuild_from_record

    state = ckpt.load_checkpoint(checkpoint)
    model = rebuild_from_record(state["model_config"])
    ckpt.load_checkpoint(checkpoint, model)
    model.eval()
    with torch.no_grad():
        return model(x)[0]


@pytest.mark.parametrize("which", ["run", "named"])
def test_export_reloads_with_the_same_logits_and_tokenizer(
    which: str, trained: Path, tmp_path: Path
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    checkpoint = trained if which == "run" else trained / "checkpoints" / f"tokens_{2 * 2 * SEQ}"
    result = runner.invoke(app, ["train", "export", str(checkpoint), "-o", str(tmp_path / "hf")])
    assert result.exit_code == 0, result.output
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert tokenizer.eos_token == EOS
    x = torch.randint(0, 300, (2, SEQ), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        exported = model(input_ids=x).logits
    source = (
        trained / "checkpoints" / ("step_00000004" if which == "run" else f"tokens_{2 * 2 * SEQ}")
    )
    assert (exported - checkpoint_logits(source, x)).abs().max().item() <= 1e-6
    meta = json.loads((tmp_path / "hf" / "evertrain_export.json").read_text())
    assert meta["step"] == (4 if which == "run" else 2)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-export")]


def test_export_refuses_gpt_checkpoints_and_used_folders(
    trained: Path, tmp_path: Path, tiny_data: dict[str, str]
) -> None:
    from .conftest import make_config

    gpt = run(make_config(tmp_path / "gpt", tiny_data, budget_tokens=256), progress=False)
    result = runner.invoke(app, ["train", "export", str(gpt.out_dir), "-o", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "is a checkpoint of evertrain's GPT" in result.output
    assert not (tmp_path / "x").exists()
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["train", "export", str(trained), "-o", str(tmp_path / "used")])
    assert result.exit_code == 2 and "already exists and is not empty" in result.output
    assert (tmp_path / "used" / "keep.txt").read_text() == "mine"


def test_export_is_atomic(trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from evertrain.train import hf_model

    def broken(target: Path, train_config: dict[str, Any]) -> str:
        raise OSError("disk full")

    monkeypatch.setattr(hf_model, "_write_tokenizer", broken)
    with pytest.raises(OSError, match="disk full"):
        hf_model.export_checkpoint(trained, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # neither out nor a temp folder


def test_the_model_trains_in_train_mode_from_the_first_step(hf_root: dict[str, Path]) -> None:
    from evertrain.train.hf_model import build_hf_model, hf_vocab_size, model_vocab_size

    spec = HFPretrained(hf=str(hf_root["llama"]), seq_len=SEQ)
    model = build_hf_model(spec)
    # from_pretrained returns eval mode: dropout would stay off until the first evaluation.
    assert model.training and all(module.training for module in model.modules())
    assert model_vocab_size(model) == hf_vocab_size(spec) == 320  # the config alone says it
    config = HFFromConfig(hf_config=str(hf_root["gpt2"]), seq_len=SEQ)
    assert hf_vocab_size(config) == model_vocab_size(build_hf_model(config)) == 320


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_fsdp_finds_the_blocks_of_each_architecture_under_the_wrapper(
    hf_root: dict[str, Path], arch: str
) -> None:
    # FSDP shards per block: a wrapped HF model whose blocks were not found would be sharded as
    # one unit (all parameters gathered at once), which defeats the memory saving.
    from evertrain.train.fsdp import transformer_blocks
    from evertrain.train.hf_model import build_hf_model

    model = build_hf_model(HFPretrained(hf=str(hf_root[arch]), seq_len=SEQ))
    blocks = transformer_blocks(model)
    assert len(blocks) == model.hf.config.num_hidden_layers and len(blocks) > 0
