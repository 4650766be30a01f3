"""TrainConfig holds the parsed Schedule (parsed once, used as is by the loop), config.yaml keeps
the spec as written, and the process group the run created is destroyed when it ends."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import evertrain.schedules as schedules_package
from evertrain.schedules import Schedule, from_spec, get
from evertrain.schedules import registry as schedules_registry
from evertrain.train import TrainConfig, history, run
from evertrain.train import distributed as dist_module

from .conftest import make_config


def test_the_schedule_is_parsed_once_and_the_loop_trains_on_that_object(
    tiny_data: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = TrainConfig.model_validate(
        make_config(tmp_path / "run", tiny_data, budget_tokens=4 * 256)
    )
    assert isinstance(cfg.schedule, Schedule)

    def parse_again(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the schedule was parsed a second time")

    # The loop used to call evertrain.schedules.from_spec(cfg.schedule) again.
    monkeypatch.setattr(schedules_package, "from_spec", parse_again)
    monkeypatch.setattr(schedules_registry, "from_spec", parse_again)
    calls = []
    original = type(cfg.schedule).__call__
    monkeypatch.setattr(
        type(cfg.schedule), "__call__", lambda self, t: calls.append(self) or original(self, t)
    )
    run(cfg, progress=False)
    assert calls and all(schedule is cfg.schedule for schedule in calls)
    assert [r["lr"] for r in history(tmp_path / "run")] == [
        original(cfg.schedule, 256 * k) for k in range(4)
    ]


def test_config_yaml_keeps_the_spec_as_written_and_a_schedule_object_as_its_spec(
    tmp_path: Path,
) -> None:
    raw = make_config(tmp_path / "run", {"prose": "data/prose"})
    inline = {**raw, "schedule": "cosine:peak=3e-3,total=3072,warmup=768,unit=tokens"}
    cfg = TrainConfig.model_validate(inline)
    assert cfg.to_dict()["schedule"] == inline["schedule"]  # as written: a string stays one
    assert cfg.schedule == from_spec(inline["schedule"])
    again = TrainConfig.model_validate(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg and again.to_dict() == cfg.to_dict()
    given = get("constant", value=1e-3, unit="tokens")
    typed = TrainConfig.model_validate({**raw, "schedule": given})
    assert typed.schedule is given and typed.to_dict()["schedule"] == given.to_spec()
    assert TrainConfig.model_validate(typed.to_dict()) == typed
    replaced = cfg.model_copy(update={"schedule": given})  # no stale spec after a change
    assert replaced.to_dict()["schedule"] == given.to_spec()


def test_setup_creates_and_teardown_destroys_only_its_own_process_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    destroyed = []
    monkeypatch.setattr(dist_module.dist, "destroy_process_group", lambda: destroyed.append(1))
    # the barrier before the destroy (distributed.teardown says why) is recorded as 0
    monkeypatch.setattr(dist_module.dist, "barrier", lambda: destroyed.append(0))
    monkeypatch.setattr(dist_module.dist, "is_initialized", lambda: True)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    callers = dist_module.setup("cpu")  # the caller made the group before calling run()
    assert callers.enabled and not callers.owns_group
    dist_module.teardown(callers)
    assert destroyed == []
    dist_module.teardown(dist_module.DistInfo(rank=1, world_size=2, owns_group=True))
    assert destroyed == [0, 1]
    dist_module.teardown(dist_module.DistInfo())  # one process: nothing to destroy
    assert destroyed == [0, 1]
