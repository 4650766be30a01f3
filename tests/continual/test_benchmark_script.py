"""benchmarks/continual.py still runs end to end (its --toy mode): the script calls the continual
API directly, and a refactor of that API once broke it only after 7 minutes of a real benchmark
run. The toy run also checks that every key the results file promises is written, with spreads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..benchmark_scripts import run_toy

pytest.importorskip("torch")
pytest.importorskip("tokenizers")

REPO = Path(__file__).resolve().parents[2]
RECIPES = {"retrain", "finetune", "rewarm", "rewarm+replay", "infinite+replay"}


@pytest.fixture(scope="module")
def toy_payload(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    return run_toy("continual.py", out, "--workers", "1"), out / "runs"


def test_toy_run_writes_todays_keys_as_seed_means(toy_payload):
    payload, _ = toy_payload
    assert set(payload["recipes"]) == RECIPES
    for row in payload["recipes"].values():
        for key in ("loss_old", "loss_new", "loss_avg", "tokens", "loss_avg_std", "loss_old_std"):
            assert isinstance(row[key], (int, float)), key
        assert row["loss_avg"] == pytest.approx((row["loss_old"] + row["loss_new"]) / 2)
        assert row["loss_avg_std"] >= 0
    assert payload["model_params"] > 0
    assert "demo_seconds" in payload
    assert payload["seeds"] >= 2


def test_toy_run_reports_flatness_forgetting_sweep_and_weak_shift(toy_payload):
    payload, _ = toy_payload
    assert isinstance(payload["base_flat"], float)
    forgetting = payload["forgetting"]
    assert set(forgetting) == RECIPES
    for entry in forgetting.values():
        assert "final" in entry["vs_base_final"]["reference"]
        assert entry["vs_base_final"]["std"] >= 0
    # infinite+replay forks before the anneal: it has a second, labelled reference
    fork = forgetting["infinite+replay"]["vs_fork_point"]
    assert "pre-anneal" in fork["reference"]
    assert "vs_fork_point" not in forgetting["finetune"]
    sweep = payload["replay_sweep"]
    assert "0" in sweep and "0.25" in sweep
    for row in sweep.values():
        assert {"loss_old", "loss_new", "loss_avg", "loss_avg_std"} <= set(row)
    # ratio 0 is the rewarm run itself
    assert sweep["0"]["loss_avg"] == pytest.approx(payload["recipes"]["rewarm"]["loss_avg"])
    assert set(payload["shifts"]["weak"]["recipes"]) == RECIPES
    assert (
        payload["shifts"]["weak"]["datasets"]["D1_name"]
        != payload["shifts"]["strong"]["datasets"]["D1_name"]
    )
    branching = payload["branching"]
    assert branching["total_tokens"]["wsd_branches"] < branching["total_tokens"]["cosine_runs"]


def test_toy_runs_evaluate_at_least_ten_times_per_stage(toy_payload):
    _, out = toy_payload
    log = out / "runs" / "seed-0" / "strong" / "rewarm" / "log.jsonl"
    evals = [json.loads(line) for line in log.read_text().splitlines() if '"eval"' in line]
    assert len([r for r in evals if r.get("kind") == "eval"]) >= 10
