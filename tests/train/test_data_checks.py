"""A run refuses data that is not what its manifest claims: a damaged shard, out-of-vocab ids."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from evertrain._hashing import file_sha256
from evertrain.cli import app
from evertrain.train import ConfigError, run

from .conftest import make_config

runner = CliRunner()
SHORT = {"budget_tokens": 2 * 256, "eval_interval_tokens": 2 * 256}


def copy_data(tiny_data: dict[str, str], root: Path) -> dict[str, str]:
    return {name: shutil.copytree(path, root / name) for name, path in tiny_data.items()}


def test_half_overwritten_train_shard_is_refused_naming_dataset_and_shard(
    tiny_data: dict[str, str], tmp_path: Path
) -> None:
    """Before: only sizes were checked, so this trained with exit 0."""
    data = copy_data(tiny_data, tmp_path / "data")
    shard = Path(data["code"]) / "train.bin"
    tokens = np.fromfile(shard, dtype=np.uint16)
    half = len(tokens) // 2
    tokens[half : 2 * half] = tokens[:half]  # valid ids, same size
    tokens.tofile(shard)
    out = tmp_path / "run"
    with pytest.raises(ConfigError) as error:
        run(make_config(out, {k: str(v) for k, v in data.items()}, **SHORT), progress=False)
    message = str(error.value)
    assert message.startswith("data.train.code: ") and str(shard) in message
    assert "sha256" in message and "--overwrite" in message
    assert not (out / "checkpoints").exists()  # refused before any step
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            make_config(tmp_path / "run2", {k: str(v) for k, v in data.items()}, **SHORT)
        )
    )
    result = runner.invoke(app, ["train", "run", str(config), "--no-progress"])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "train.bin" in result.output


def test_token_ids_past_the_vocabulary_are_refused_with_both_numbers(
    tiny_data: dict[str, str], tmp_path: Path
) -> None:
    """Before: an IndexError traceback from the embedding, naming no dataset."""
    data = copy_data(tiny_data, tmp_path / "data")
    folder = Path(data["prose"])
    shard = folder / "train.bin"
    tokens = np.fromfile(shard, dtype=np.uint16)
    tokens[10] = 400  # the tokenizer has 300 ids: a consistent manifest, an impossible id
    tokens.tofile(shard)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["shards"]["train"]["sha256"] = file_sha256(shard)
    del manifest["shards"]["train"]["max_token_id"]  # an older manifest: read from the shard
    (folder / "manifest.json").write_text(json.dumps(manifest))
    cfg = make_config(tmp_path / "run", {k: str(v) for k, v in data.items()}, **SHORT)
    with pytest.raises(ConfigError) as error:
        run(cfg, progress=False)
    message = str(error.value)
    assert message.startswith("data.train.prose: ") and "'prose'" in message
    assert "token id 400" in message and "300 ids" in message
    cfg["model"]["vocab_size"] = 401  # a model that has the id: trains
    assert run(cfg, progress=False).steps == 2
