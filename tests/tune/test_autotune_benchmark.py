"""benchmarks/autotune.py still runs end to end (--toy) and writes every key it promises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("tokenizers")

REPO = Path(__file__).resolve().parents[2]


def test_toy_run_reports_regret_per_budget_and_the_harness_keys(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    completed = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "autotune.py"), "--toy",
         "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "none.json")],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert not (tmp_path / "none.json").exists()  # --toy prints, never writes a results file
    payload = json.loads(completed.stdout[completed.stdout.index("{\n") :])
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
