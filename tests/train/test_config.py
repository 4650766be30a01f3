"""TrainConfig validation: every bad field gives a ConfigError naming the field and the fix."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from evertrain.schedules import from_spec
from evertrain.train import ConfigError, TrainConfig
from evertrain.train.config import apply_overrides

GOOD = {
    "out_dir": "runs/x",
    "model": {"n_layer": 2, "n_head": 4, "d_model": 64, "seq_len": 64},
    "data": {"train": {"web": "data/web"}},
    "schedule": "cosine:peak=1e-3,total=100",
    "batch_size": 8,
    "budget_tokens": 8 * 64 * 10,
    "eval_interval_tokens": 2048,
    "checkpoint_interval_tokens": 4096,
}


def with_changes(**changes) -> dict:
    cfg = copy.deepcopy(GOOD)
    for dotted, value in changes.items():
        node = cfg
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        if value is KeyError:
            del node[leaf]
        else:
            node[leaf] = value
    return cfg


def test_good_config_has_documented_defaults() -> None:
    cfg = TrainConfig.model_validate(GOOD)
    assert (
        cfg.seed == 0 and cfg.device == "auto" and cfg.dtype == "float32" and cfg.compile is False
    )
    assert (
        cfg.model.positional == "rope" and cfg.model.tie_embeddings and cfg.model.vocab_size is None
    )
    assert cfg.optimizer.weight_decay == 0.1 and cfg.optimizer.betas == (0.9, 0.95)
    assert cfg.optimizer.eps == 1e-8 and cfg.optimizer.grad_clip == 1.0
    assert cfg.grad_accum == 1 and cfg.keep_last == 2 and cfg.checkpoint_at_tokens == []
    assert cfg.init_from is None and cfg.nonfinite == "stop"
    assert cfg.tokens_per_step == 8 * 64 and cfg.total_steps == 10
    # to_dict round-trips
    assert TrainConfig.model_validate(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"model__n_head": 3},
            r"model\.n_head: 3 does not divide d_model=64; choose n_head dividing d_model",
        ),
        ({"model__n_layer": 0}, r"model\.n_layer: .*greater than 0"),
        ({"model__positional": "alibi"}, r"model\.positional: .*'rope' or 'learned'"),
        ({"model__dropout": 1.5}, r"model\.dropout"),
        ({"batch_size": KeyError}, r"batch_size: required field is missing"),
        ({"btach_size": 4}, r"btach_size: unknown field"),
        ({"dtype": "float8"}, r"dtype: .*'float32', 'bfloat16' or 'float16'"),
        ({"nonfinite": "ignore"}, r"nonfinite: .*'stop' or 'skip'"),
        (
            {"budget_tokens": 100},
            r"budget_tokens: 100 is less than one optimizer step \(batch_size\*grad_accum\*seq_len = 512\)",
        ),
        ({"schedule": "cosine:peak=1e-3,total=-5"}, r"schedule: .*total=-5"),
        ({"data__mixture": {"code": 1.0}}, r"data\.mixture: \['code'\] are not train datasets"),
        ({"data__mixture": {"web": -1.0}}, r"mixture\.web: weight -1.0 is negative"),
        ({"data__train": {}}, r"data\.train: at least one dataset"),
        ({"optimizer__betas": [0.9, 1.2]}, r"optimizer\.betas: .*outside \[0, 1\)"),
        ({"checkpoint_at_tokens": [100, -3]}, r"checkpoint_at_tokens: -3 is not positive"),
        (
            {"checkpoint_at_tokens": [1024, 9999]},
            r"checkpoint_at_tokens: \[9999\] lie beyond the run's last step at 5120",
        ),
    ],
)
def test_bad_field_is_named(changes: dict, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        TrainConfig.model_validate(with_changes(**changes))


def test_several_errors_reported_together() -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig.model_validate(with_changes(seed="x", keep_last=0))
    message = str(info.value)
    assert "seed:" in message and "keep_last:" in message
    assert isinstance(info.value, ValueError)


def test_from_yaml_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    cfg = TrainConfig.from_yaml(
        path, ["model.n_layer=4", "optimizer.betas=[0.9, 0.99]", "out_dir=runs/y"]
    )
    assert cfg.model.n_layer == 4 and cfg.optimizer.betas == (0.9, 0.99) and cfg.out_dir == "runs/y"
    with pytest.raises(ConfigError, match="does not exist"):
        TrainConfig.from_yaml(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="expected key=value"):
        TrainConfig.from_yaml(path, ["batch_size"])
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        TrainConfig.from_yaml(path)


def test_overrides_do_not_mutate_input() -> None:
    raw = {"model": {"n_layer": 2}}
    assert apply_overrides(raw, ["model.n_layer=3"]) == {"model": {"n_layer": 3}}
    assert raw == {"model": {"n_layer": 2}}


def test_checkpoint_at_tokens_sorted_unique() -> None:
    cfg = TrainConfig.model_validate(with_changes(checkpoint_at_tokens=[4096, 1024, 4096]))
    assert cfg.checkpoint_at_tokens == [1024, 4096]


def test_yaml_exponent_numbers_stay_numbers_into_the_saved_config(tmp_path: Path) -> None:
    """PyYAML (YAML 1.1) reads ``3e-3`` as a string; the config and what it saves hold floats."""
    path = tmp_path / "c.yaml"
    path.write_text(
        "out_dir: runs/x\n"
        "model: {n_layer: 2, n_head: 4, d_model: 64, seq_len: 64}\n"
        "data:\n  train: {web: data/web}\n  mixture: {web: {name: constant, value: '1e0'}}\n"
        "schedule: {name: cosine, peak: 3e-3, total: 1e2, warmup: '1e1'}\n"
        "batch_size: 8\nbudget_tokens: 5120\n"
        "eval_interval_tokens: 2048\ncheckpoint_interval_tokens: 4096\n"
    )
    cfg = TrainConfig.from_yaml(path)
    assert cfg.schedule_spec == {"name": "cosine", "peak": 0.003, "total": 100, "warmup": 10}
    assert cfg.schedule == from_spec(cfg.schedule_spec)  # parsed once, here
    assert cfg.data.mixture == {"web": {"name": "constant", "value": 1}}
    saved = yaml.safe_load(cfg.to_yaml())  # as any other reader (PyYAML) reads config.yaml
    assert isinstance(saved["schedule"]["peak"], float) and saved["schedule"]["peak"] == 0.003
    assert TrainConfig.model_validate(saved) == cfg
    overridden = TrainConfig.from_yaml(path, ["schedule.peak=1e-4", "optimizer.eps=1e-6"])
    assert overridden.schedule.to_spec()["peak"] == 1e-4 and overridden.optimizer.eps == 1e-6


def test_schedule_errors_show_numbers_not_strings(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "schedule": {"name": "cosine", "total": 100}}))
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_yaml(path, ["schedule.peak=-3e-3"])
    assert "peak=-0.003 must be >= 0" in str(info.value) and "'-3e-3'" not in str(info.value)


def test_eval_set_of_another_tokenizer_is_refused_naming_both(tiny_data, tmp_path):
    """The sampler refuses mixed tokenizers in the train mixture; an eval set prepared with another
    tokenizer would be scored with the wrong ids, so the run refuses it too, before any work."""
    from evertrain.data import prepare
    from evertrain.train import ConfigError, TrainConfig, run

    from .conftest import _write_jsonl, make_config

    other = prepare(
        [_write_jsonl(tmp_path / "other.jsonl", ["alpha beta gamma delta " * 20] * 60)],
        tmp_path / "other",
        vocab_size=280,
        progress=False,
    )
    cfg = make_config(
        tmp_path / "run", {"prose": tiny_data["prose"]}, data__eval={"other": str(other.path)}
    )
    with pytest.raises(
        ConfigError,
        match=r"data\.train\.prose.*data\.eval\.other|data\.eval\.other.*data\.train\.prose",
    ):
        run(TrainConfig.model_validate(cfg), progress=False)
    assert not (tmp_path / "run" / "checkpoints").exists()
