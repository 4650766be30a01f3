"""benchmarks/methods.py: the performance-profile score, the configs of every method, and (slow)
the whole harness end to end at toy size."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

from ..benchmark_scripts import run_toy

REPO = Path(__file__).resolve().parents[2]


def _harness():
    spec = importlib.util.spec_from_file_location(
        "methods_bench", REPO / "benchmarks" / "methods.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["methods_bench"] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return module


def test_profile_scores_by_hand() -> None:
    harness = _harness()
    inf = math.inf
    tokens = {
        "a": {"w1": 100.0, "w2": 300.0},  # best on w1, 1.5x on w2
        "b": {"w1": 200.0, "w2": 200.0},  # 2x on w1, best on w2
        "c": {"w1": 500.0, "w2": inf},  # 5x (outside tau <= 4) and a miss
    }
    scores, profiles = harness.profile_scores(tokens)
    # a: rho = 1/2 on [1, 1.5), 1 on [1.5, 4]  -> area (0.5*0.5 + 2.5*1) / 3
    assert scores["a"] == pytest.approx((0.5 * 0.5 + 2.5) / 3, abs=1e-12)
    # b: rho = 1/2 on [1, 2), 1 on [2, 4] -> (0.5 + 2) / 3
    assert scores["b"] == pytest.approx((0.5 + 2.0) / 3, abs=1e-12)
    assert scores["c"] == 0.0 and profiles["c"] == []
    assert profiles["a"] == [(1.0, 0.5), (1.5, 1.0)]


def test_a_method_fastest_on_every_workload_scores_one() -> None:
    harness = _harness()
    scores, _ = harness.profile_scores({"x": {"w": 10.0, "v": 5.0}, "y": {"w": 40.0, "v": 50.0}})
    assert scores["x"] == 1.0
    assert scores["y"] == 0.0  # 4x on w counts only at tau = 4 (no area), 10x on v never


def test_every_method_config_is_a_valid_train_config(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from evertrain.schedules import from_spec
    from evertrain.train import TrainConfig

    harness = _harness()
    scale = harness.BENCH
    data = {"english": str(tmp_path / "english"), "code": str(tmp_path / "code")}
    refined = from_spec({"name": "refine", "peak": 1e-2, "knots": [[0, 1.0], [scale.run_tokens, 0.0]],
                         "unit": "tokens"}).to_spec()  # fmt: skip
    for workload in scale.workloads:
        for method in harness.FIXED + ("autolrs", "pbt"):
            config = harness.method_config(method, 1e-2, 0, scale, workload, data,
                                           tmp_path / method, refined)  # fmt: skip
            cfg = TrainConfig.model_validate(config)
            assert cfg.budget_tokens == scale.run_tokens
            if method in ("cosine", "linear", "uba", "wsd-1sqrt"):
                # every fixed schedule ends at the run's end, warmed up to the peak
                assert cfg.schedule(scale.warmup_tokens) == pytest.approx(1e-2)
                assert cfg.schedule(scale.run_tokens) == pytest.approx(0.0, abs=1e-12)
    assert scale.run_tokens == scale.target_tokens * 3 // 2


def test_tokens_ratio_is_the_geometric_mean_where_both_reach() -> None:
    harness = _harness()
    payload = {
        "workloads": ["a", "b", "c"],
        "methods": {
            "cosine": {"tokens_to_target": {"a": 100.0, "b": 100.0, "c": None}},
            "autolrs": {"tokens_to_target": {"a": 200.0, "b": 50.0, "c": 10.0}},
        },
    }
    ratios = harness.tokens_ratios(payload, "autolrs")
    assert ratios["value"] == pytest.approx(1.0)
    assert ratios["per_workload"] == {"a": 2.0, "b": 0.5, "c": None}


@pytest.mark.slow
def test_toy_harness_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    printed = run_toy("methods.py", tmp_path, "--workers", "2")
    assert set(printed) == set(_harness().METHODS)
    for row in printed.values():
        assert 0.0 <= row["score"] <= 1.0
        assert len(row["tokens_to_target"]) == 3
    # the fastest method on a workload scores > 0: someone reaches every target
    assert max(row["score"] for row in printed.values()) > 0


def test_seed_scores_score_each_seed_on_its_own() -> None:
    harness = _harness()
    per_seed = {
        "a": {"w": [100.0, 300.0]},  # fastest at seed 0, 3x slower than b at seed 1
        "b": {"w": [200.0, 100.0]},
        "p": {"w": [math.inf]},  # one run only (PBT): reused for every seed
    }
    scores = harness.seed_scores(per_seed, 2)
    assert scores["a"] == [1.0, pytest.approx(1.0 / 3)]  # ratio 3: rho = 1 on [3, 4]
    assert scores["b"] == [pytest.approx(2.0 / 3), 1.0]
    assert scores["p"] == [0.0, 0.0]
