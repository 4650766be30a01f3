"""benchmarks/autotune.py still runs end to end (--toy) and writes every key it promises."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..benchmark_scripts import run_toy

pytest.importorskip("torch")
pytest.importorskip("tokenizers")

REPO = Path(__file__).resolve().parents[2]


def test_toy_run_reports_regret_per_budget_and_the_harness_keys(tmp_path: Path) -> None:
    payload = run_toy("autotune.py", tmp_path, timeout=600)
    for key in ("suggest_regret", "suggest_regret_mean", "autolrs_tokens_ratio",
                "pbt_tokens_ratio", "per_budget", "setup", "wall_seconds"):  # fmt: skip
        assert key in payload, key
    # the tuners' ratios are the methods harness's (copied from results/methods.json)
    assert "methods" in payload["autolrs_tokens_ratio_note"]
    assert "methods" in payload["pbt_tokens_ratio_note"]
    budgets = payload["per_budget"]
    assert len(budgets) >= 3
    for budget in budgets:
        assert budget["regret"] >= 0
        measured = [c["final_eval"] for c in budget["candidates"]]
        assert len(measured) == 6  # 3 shapes x 2 lengths, each really trained
        suggested = budget["candidates"][0]  # ranked best first by the prediction
        assert (suggested["shape"], suggested["fork_tokens"]) == tuple(budget["suggested"].values())
        assert budget["regret"] == pytest.approx(
            (suggested["final_eval"] - min(measured)) / min(measured)
        )
    assert payload["suggest_regret"] == pytest.approx(max(b["regret"] for b in budgets))
