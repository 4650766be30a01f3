"""PBT on Ray Tune: exploit really copies a donor's state, explore perturbs, outputs replay,
bad input and a missing Ray are one line (exit 2) before Ray starts."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from evertrain import _yaml
from evertrain._hashing import file_sha256
from evertrain.cli import app
from evertrain.schedules import from_spec
from evertrain.train import run
from evertrain.train.config_history import read_config_history
from evertrain.train.logging import read_log
from evertrain.tune import pbt
from evertrain.tune.pbt import (
    TuneError,
    adopt_bundle,
    explore,
    member_config,
    parse_perturb,
    prepare,
    realised_mixture,
    realised_schedule,
    write_bundle,
)
from tests.tune.conftest import make_config

TOKENS_PER_STEP = 256  # make_config: batch 4 x seq 64
INTERVAL = 4 * TOKENS_PER_STEP
BUDGET = 8 * TOKENS_PER_STEP


def _config_file(tmp_path: Path, data: dict[str, str], **overrides: Any) -> Path:
    cfg = make_config(tmp_path / "unused", data, budget_tokens=BUDGET, **overrides)
    cfg.setdefault("data", {})["mixture"] = {"prose": 0.8, "code": 0.2}
    path = tmp_path / "config.yaml"
    path.write_text(_yaml.dump(cfg), encoding="utf-8")
    return path


def _train_losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_log(run_dir / "log.jsonl") if r["kind"] == "train"}


def _leg(setup: pbt.PBTSetup, hypers: dict[str, float], run_dir: Path, stop: int) -> list[str]:
    """Train one leg of a member as the Ray trainable does; return the warning lines."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(member_config(setup, hypers, run_dir), resume=True, progress=False, stop_at_tokens=stop)
    return [str(w.message) for w in caught]


# ------------------------------------------------------------------ exploit / explore, no Ray
def test_exploit_copies_the_donors_state_and_resume_records_the_perturbed_config(
    tmp_path: Path, tiny_data: dict[str, str]
) -> None:
    setup = prepare(
        _config_file(tmp_path, tiny_data),
        out=tmp_path / "out",
        population=2,
        perturb="peak,replay",
        interval_tokens=INTERVAL,
    )
    assert setup.replay_source == "code"  # the smaller weight of the two-source mixture
    donor_dir, member_dir = setup.members_dir / "member_1", setup.members_dir / "member_0"
    donor_hypers = {"peak": 6e-3, "replay": 0.3}
    _leg(setup, donor_hypers, donor_dir, INTERVAL)
    _leg(setup, {"peak": 1e-3, "replay": 0.2}, member_dir, INTERVAL)
    bundle = write_bundle(donor_dir, tmp_path / "bundle", member="member_1", hypers=donor_hypers)
    assert bundle["tokens"] == INTERVAL

    new_hypers = explore(donor_hypers, random.Random(0))
    event = adopt_bundle(member_dir, tmp_path / "bundle", member="member_0", hypers=new_hypers)
    assert event is not None and event["donor"] == "member_1" and event["tokens"] == INTERVAL
    # The weights the member continues from are the donor's, byte for byte.
    step = "checkpoints/step_00000004/model.safetensors"
    assert file_sha256(member_dir / step) == file_sha256(donor_dir / step)

    notices = _leg(setup, new_hypers, member_dir, BUDGET)
    changed = [n for n in notices if n.startswith("resumed with a changed config")]
    assert len(changed) == 2 and all("\n" not in n for n in changed)  # schedule, mixture
    history = read_config_history(member_dir)
    assert history[-1]["step"] == 4 and set(history[-1]["changes"]) == {"schedule", "data.mixture"}

    # Reference: the donor's own checkpoint resumed under the same perturbed config trains the
    # very same losses (the member's own weights, trained at peak 1e-3, would not).
    _leg(setup, new_hypers, donor_dir, BUDGET)
    member_losses, donor_losses = _train_losses(member_dir), _train_losses(donor_dir)
    assert [member_losses[s] for s in range(5, 9)] == [donor_losses[s] for s in range(5, 9)]
    # The member's log is its weights' lineage: the donor's first leg, then its own.
    assert [member_losses[s] for s in range(1, 5)] == [donor_losses[s] for s in range(1, 5)]

    # The realised schedule replays every LR the member used; the mixture jumps at the exploit.
    spec = realised_schedule(member_dir, TOKENS_PER_STEP)
    schedule = from_spec(spec)
    for record in read_log(member_dir / "log.jsonl"):
        if record["kind"] == "train":
            used = schedule(record["tokens"] - TOKENS_PER_STEP)
            assert used == pytest.approx(record["lr"], rel=1e-12, abs=1e-15)
    replay = from_spec(realised_mixture(member_dir)["code"])
    assert replay(0) == pytest.approx(0.3) and replay(INTERVAL) == pytest.approx(
        new_hypers["replay"]
    )

    # The results list every exploit (also one a later exploit's lineage copy would drop).
    pbt.record_exploit(setup, event)
    (member_dir / pbt.EVENTS_NAME).unlink()  # as when member_0 itself is exploited later
    summary = pbt.summarise(setup, {"member_0": new_hypers, "member_1": new_hypers})
    assert summary["exploits"] == [event]
    assert {row["member"]: row["final_eval"] for row in summary["members"]}["member_0"]
    assert from_spec(_yaml.load(pbt.write_outputs(setup, summary)["schedule"].read_text()))

    # A restart of the same member from its own checkpoint copies nothing.
    write_bundle(member_dir, tmp_path / "own", member="member_0", hypers=new_hypers)
    assert adopt_bundle(member_dir, tmp_path / "own", member="member_0", hypers=new_hypers) is None


def test_member_runs_are_report_run_folders(tmp_path: Path, tiny_data: dict[str, str]) -> None:
    from evertrain.continual.runs import load_run

    setup = prepare(
        _config_file(tmp_path, tiny_data),
        out=tmp_path / "out",
        population=2,
        perturb="peak",
        interval_tokens=INTERVAL,
    )
    member_dir = setup.members_dir / "member_0"
    _leg(setup, {"peak": 2e-3}, member_dir, INTERVAL)
    loaded = load_run(member_dir)
    assert loaded.records and loaded.config["schedule"]["name"] == "scale"
    assert loaded.config["schedule"]["factor"] == pytest.approx(2e-3 / 3e-3)


def test_explore_multiplies_by_the_pbt_factors_and_keeps_a_share_within_one() -> None:
    rng = random.Random(3)
    for _ in range(50):
        new = explore({"peak": 1e-3, "replay": 0.95}, rng)
        assert new["peak"] / 1e-3 == pytest.approx(0.8) or new["peak"] / 1e-3 == pytest.approx(1.2)
        assert new["replay"] in (pytest.approx(0.76), 1.0)


def test_initial_population_starts_from_the_config_and_spreads(
    tmp_path: Path, tiny_data: dict[str, str]
) -> None:
    setup = prepare(
        _config_file(tmp_path, tiny_data),
        out=tmp_path / "out",
        population=3,
        perturb="peak,replay",
        interval_tokens=INTERVAL,
    )
    starts = pbt.initial_hypers(setup)
    assert starts[0] == {"peak": pytest.approx(3e-3), "replay": pytest.approx(0.2)}
    assert len({s["peak"] for s in starts}) == 3
    assert all(1.5e-3 <= s["peak"] <= 6e-3 and 0 <= s["replay"] <= 1 for s in starts)


def test_parse_perturb_names_the_flag() -> None:
    assert parse_perturb("replay, peak,peak") == ("replay", "peak")
    with pytest.raises(TuneError, match="--perturb: momentum"):
        parse_perturb("peak,momentum")


# ------------------------------------------------------------------ CLI: one line, exit 2
@pytest.fixture
def no_ray_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the command gets as far as Ray."""
    from evertrain.tune import ray_pbt

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("Ray was reached before the input was checked")

    monkeypatch.setattr(ray_pbt, "require_ray", refuse)
    monkeypatch.setattr(ray_pbt, "run_pbt", refuse)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--population", "1", "--perturb", "peak"], "--population: 1"),
        (["--population", "2", "--perturb", "peak,momentum"], "--perturb: momentum"),
        (
            ["--population", "2", "--perturb", "peak", "--interval-tokens", "2048"],
            "--interval-tokens",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_before_ray(
    tmp_path: Path, tiny_data: dict[str, str], no_ray_start: None, flags: list[str], message: str
) -> None:
    config = _config_file(tmp_path, tiny_data)
    args = ["tune", "pbt", str(config), "-o", str(tmp_path / "out"), *flags]
    if "--interval-tokens" not in flags:
        args += ["--interval-tokens", str(INTERVAL)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not (tmp_path / "out").exists()


def test_replay_needs_a_two_source_mixture(
    tmp_path: Path, tiny_data: dict[str, str], no_ray_start: None
) -> None:
    config = _config_file(tmp_path, tiny_data)
    raw = _yaml.load(config.read_text())
    raw["data"]["mixture"] = None
    config.write_text(_yaml.dump(raw))
    args = ["tune", "pbt", str(config), "--perturb", "replay", "--interval-tokens", str(INTERVAL)]
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "out"), "-n", "2"])
    assert result.exit_code == 2 and "data.mixture" in result.output


def test_missing_ray_says_how_to_install_it(
    tmp_path: Path, tiny_data: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    monkeypatch.setitem(sys.modules, "ray.tune", None)
    config = _config_file(tmp_path, tiny_data)
    args = ["tune", "pbt", str(config), "-n", "2", "--interval-tokens", str(INTERVAL)]
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and 'pip install "evertrain[tune]"' in lines[0]


def test_importing_the_cli_imports_neither_ray_nor_torch() -> None:
    code = "import sys, evertrain.tune.cli; print(sorted({'ray', 'torch'} & set(sys.modules)))"
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "[]"


# ------------------------------------------------------------------ the real thing, on Ray
@pytest.mark.slow
def test_pbt_on_local_ray_exploits_a_better_member(
    tmp_path: Path, tiny_data: dict[str, str]
) -> None:
    pytest.importorskip("ray.tune")
    from evertrain.continual.runs import load_run
    from evertrain.tune.ray_pbt import run_pbt

    setup = prepare(
        _config_file(tmp_path, tiny_data),
        out=tmp_path / "out",
        population=2,
        perturb="peak,replay",
        interval_tokens=INTERVAL,
    )
    summary = run_pbt(setup, cpus=2)
    assert sorted(row["member"] for row in summary["members"]) == ["member_0", "member_1"]
    (event,) = summary["exploits"]  # one boundary before the budget, one loser of two
    assert event["tokens"] == INTERVAL
    step = "checkpoints/step_00000004/model.safetensors"
    exploited, donor = setup.members_dir / event["member"], setup.members_dir / event["donor"]
    assert file_sha256(exploited / step) == file_sha256(donor / step)
    for row in summary["members"]:
        assert load_run(row["run_dir"]).records[-1]["tokens"] == BUDGET
    out = Path(setup.out)
    from_spec(_yaml.load((out / "winner_schedule.yaml").read_text()))
    mixture = _yaml.load((out / "winner_mixture.yaml").read_text())
    assert set(mixture) == {"prose", "code"}
    results = json.loads((out / "pbt_results.json").read_text())
    assert results["winner"] == summary["winner"]
