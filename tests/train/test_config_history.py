"""Every config a run was trained under is kept: config.yaml is the start config (never rewritten
by a resume), config_history.jsonl holds one entry per distinct config with the step it took
effect at, and a resume with a changed config warns one line per changed field."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from evertrain import _yaml
from evertrain.schedules import from_spec
from evertrain.train import TrainConfig, history, run
from evertrain.train.config_history import (
    HISTORY_NAME,
    config_changes,
    read_config_history,
    record_config,
    trained_config,
)

from .conftest import make_config

STEP = 256


def train(cfg: dict, resume: bool) -> list[str]:
    """Run ``cfg``; return the config-change warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(cfg, resume=resume, progress=False)
    return [str(w.message) for w in caught if "changed config" in str(w.message)]


def base(out: Path, data: dict[str, str], steps: int, **overrides) -> dict:
    cfg = make_config(out, data, budget_tokens=steps * STEP, **overrides)
    cfg["checkpoint_interval_tokens"] = cfg["eval_interval_tokens"] = 2 * STEP
    return cfg


def test_resume_with_the_same_config_writes_nothing(
    tiny_data: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    cfg = base(out, tiny_data, 2)
    assert train(cfg, resume=False) == []
    config_yaml, history_file = out / "config.yaml", out / HISTORY_NAME
    before = (config_yaml.read_bytes(), config_yaml.stat().st_ino, history_file.read_bytes())
    assert [e["step"] for e in read_config_history(out)] == [0]
    assert train(cfg, resume=True) == []  # a resume that trains nothing
    after = (config_yaml.read_bytes(), config_yaml.stat().st_ino, history_file.read_bytes())
    assert after == before  # not even rewritten with the same bytes (same inode)


def test_changed_schedule_and_mixture_are_warned_and_recorded_across_resumes(
    tiny_data: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "run"
    first = base(out, tiny_data, 2)
    train(first, resume=False)
    start_yaml = (out / "config.yaml").read_bytes()

    # Resume to train longer under a new schedule.
    second = base(out, tiny_data, 4)
    second["schedule"] = {"name": "linear", "peak": 2e-3, "total": 4 * STEP, "unit": "tokens"}
    lines = train(second, resume=True)
    old_schedule = TrainConfig.model_validate(first).schedule_spec
    assert lines == [
        "resumed with a changed config: schedule: cosine:"
        + ",".join(f"{k}={v}" for k, v in old_schedule.items() if k != "name")
        + " -> linear:peak=0.002,total=1024,unit=tokens at step 2 (tokens 512)",
        "resumed with a changed config: budget_tokens: 512 -> 1024 at step 2 (tokens 512)",
    ]
    # The steps after the resume trained under the new schedule.
    lrs = [r["lr"] for r in history(out, "train")]
    assert lrs[2:] == [from_spec(second["schedule"])(STEP * k) for k in (2, 3)]

    # The same config again: nothing new. A mixture change: one more entry.
    assert train(second, resume=True) == []
    third = {**second, "budget_tokens": 6 * STEP}
    third["data"] = {**second["data"], "mixture": {"prose": 2.0, "code": 1.0}}
    third["schedule"] = {**second["schedule"], "total": 6 * STEP}
    lines = train(third, resume=True)
    assert (
        'resumed with a changed config: data.mixture: None -> {"prose": 2.0, "code": 1.0} '
        "at step 4 (tokens 1024)"
    ) in lines

    entries = read_config_history(out)
    assert [(e["step"], e["tokens"]) for e in entries] == [(0, 0), (2, 512), (4, 1024)]
    assert entries[0]["changes"] == {}
    assert set(entries[1]["changes"]) == {"schedule", "budget_tokens"}
    assert set(entries[2]["changes"]) == {"data.mixture", "schedule", "budget_tokens"}
    assert (out / "config.yaml").read_bytes() == start_yaml  # still the start config
    # Which config trained which (1-based) log step.
    assert trained_config(out, 2)["schedule"] == entries[0]["config"]["schedule"]
    assert trained_config(out, 3)["schedule"]["name"] == "linear"
    assert trained_config(out)["data"]["mixture"] == {"prose": 2.0, "code": 1.0}


def test_entries_past_the_resumed_checkpoint_are_dropped(tmp_path: Path) -> None:
    """A resume from step 4 re-trains steps 5.., so a config recorded at step 8 never trained."""
    a = {"out_dir": "x", "schedule": "cosine:peak=1e-3,total=10", "seed": 0}
    b = {**a, "seed": 1}
    c = {**a, "seed": 2}
    tmp_path.mkdir(exist_ok=True)
    assert record_config(tmp_path, a, step=0, tokens=0, fresh=True) == []
    assert record_config(tmp_path, b, step=8, tokens=80, fresh=False) == [
        "seed: 0 -> 1 at step 8 (tokens 80)"
    ]
    assert record_config(tmp_path, c, step=4, tokens=40, fresh=False) == [
        "seed: 0 -> 2 at step 4 (tokens 40)"
    ]
    assert [(e["step"], e["config"]["seed"]) for e in read_config_history(tmp_path)] == [
        (0, 0),
        (4, 2),
    ]


def test_schedule_spelled_differently_is_no_change_and_out_dir_is_ignored() -> None:
    inline = {"out_dir": "a", "schedule": "cosine:peak=1e-3,total=100"}
    mapping = {"out_dir": "/abs/a", "schedule": {"name": "cosine", "peak": 0.001, "total": 100}}
    assert config_changes(inline, mapping) == {}
    assert config_changes(
        {"model": {"n_layer": 2, "d_model": 64}}, {"model": {"n_layer": 4, "d_model": 64}}
    ) == {"model.n_layer": [2, 4]}


def test_a_run_from_before_the_history_uses_its_config_yaml_as_the_start(
    tiny_data: dict[str, str], tmp_path: Path
) -> None:
    old = TrainConfig.model_validate(make_config(tmp_path, tiny_data)).to_dict()
    (tmp_path / "config.yaml").write_text(_yaml.dump(old))
    new = {**old, "budget_tokens": old["budget_tokens"] * 2}
    assert record_config(tmp_path, new, step=12, tokens=3072, fresh=False) == [
        "budget_tokens: 3072 -> 6144 at step 12 (tokens 3072)"
    ]
    entries = read_config_history(tmp_path)
    assert [e["step"] for e in entries] == [0, 12] and entries[0]["source"] == "config.yaml"
    assert json.loads((tmp_path / HISTORY_NAME).read_text().splitlines()[1])["changes"] == {
        "budget_tokens": [3072, 6144]
    }


@pytest.mark.parametrize("resume", [False, True])
def test_a_fresh_start_records_its_config(tmp_path: Path, resume: bool) -> None:
    cfg = {"out_dir": "x", "seed": 3}
    assert record_config(tmp_path, cfg, step=0, tokens=0, fresh=not resume) == []
    assert _yaml.load((tmp_path / "config.yaml").read_text()) == cfg
    assert read_config_history(tmp_path) == [{"step": 0, "tokens": 0, "config": cfg, "changes": {}}]


def test_a_history_written_before_a_field_existed_reads_the_default_as_no_change(
    tiny_data: dict[str, str], tmp_path: Path
) -> None:
    # A run recorded before `parallel` was a field: its default must not read as a change.
    config = TrainConfig.model_validate(make_config(tmp_path, tiny_data)).to_dict()
    older = {key: value for key, value in config.items() if key != "parallel"}
    (tmp_path / HISTORY_NAME).write_text(
        json.dumps({"step": 0, "tokens": 0, "config": older, "changes": {}}) + "\n"
    )
    assert record_config(tmp_path, config, step=4, tokens=1024, fresh=False) == []
    changed = {**config, "budget_tokens": config["budget_tokens"] * 2}
    assert record_config(tmp_path, changed, step=4, tokens=1024, fresh=False) == [
        f"budget_tokens: {config['budget_tokens']} -> {changed['budget_tokens']} "
        "at step 4 (tokens 1024)"
    ]
