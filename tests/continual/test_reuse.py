"""A finished stage is re-used only for the same inputs: its config and its data's content
(the prepared datasets' tokenizer and shard checksums), not merely the same paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evertrain.continual import runner
from evertrain.continual.runner import ContinualError, describe_differences, stage_inputs


def _dataset(path, shard_sha: str, tokenizer_sha: str = "e" * 64):
    path.mkdir(parents=True, exist_ok=True)
    manifest = {
        "tokenizer": {"sha256": tokenizer_sha},
        "shards": {"train": {"sha256": shard_sha}, "val": {"sha256": "f" * 64}},
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    return str(path)


def _config(tmp_path, data: str, peak: float = 1e-3) -> dict:
    return {
        "out_dir": str(tmp_path / "run"),
        "model": {"n_layer": 1, "n_head": 2, "d_model": 32, "seq_len": 16},
        "data": {"train": {"d0": data}, "mixture": {"d0": 1.0}, "eval": {"d0": data}},
        "schedule": {"name": "constant", "value": peak, "unit": "tokens"},
        "batch_size": 2,
        "budget_tokens": 64,
        "eval_interval_tokens": 32,
        "checkpoint_interval_tokens": 64,
    }


def _finished_run(config: dict) -> None:
    out = Path(config["out_dir"])
    out.mkdir(parents=True)
    inputs = stage_inputs(config)
    meta = {"fingerprint": runner._fingerprint(inputs), "inputs": inputs, "finished": True}
    (out / "continual.json").write_text(json.dumps(meta))


def test_a_run_of_other_data_at_the_same_path_is_refused_naming_the_checksums(tmp_path):
    data = _dataset(tmp_path / "d0", "a" * 64)
    config = _config(tmp_path, data)
    _finished_run(config)
    _dataset(tmp_path / "d0", "b" * 64, tokenizer_sha="c" * 64)  # re-prepared from other text
    with pytest.raises(ContinualError) as error:
        runner.run_stage(config, name="base", recipe="base", old=[], new=["d0"], progress=False)
    message = str(error.value)
    assert "holds a run of another configuration" in message
    assert "data.train.d0.tokenizer_sha256: eeeeeeeeeeee -> cccccccccccc" in message
    assert "data.train.d0.shards_sha256.train: aaaaaaaaaaaa -> bbbbbbbbbbbb" in message


def test_a_run_of_another_schedule_is_refused_naming_old_and_new(tmp_path):
    data = _dataset(tmp_path / "d0", "a" * 64)
    _finished_run(_config(tmp_path, data, peak=1e-3))
    with pytest.raises(ContinualError, match=r"config.schedule.value: 0.001 -> 0.002"):
        runner.run_stage(
            _config(tmp_path, data, peak=2e-3),
            name="base",
            recipe="base",
            old=[],
            new=["d0"],
            progress=False,
        )


def test_differences_are_listed_briefly():
    old = {"a": {"b": 1, "c": "x" * 100}, "d": [1, 2]}
    new = {"a": {"b": 2, "c": "y" * 100}, "d": [1, 2], "e": 3}
    text = describe_differences(old, new, limit=2)
    assert text.startswith("a.b: 1 -> 2; a.c: xxxxx")
    assert text.endswith("and 1 more") and "..." in text
