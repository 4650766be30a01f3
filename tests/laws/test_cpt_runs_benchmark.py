"""benchmarks/cpt_law_runs.py still runs end to end (its --toy mode: cpt_law.py's tiny grid, run
counts 3 and 4, the 4-run design evaluated in full) and writes every key it promises; its
figures mean nothing."""

from __future__ import annotations

import pytest

from ..benchmark_scripts import run_toy

pytest.importorskip("torch")
pytest.importorskip("tokenizers")


@pytest.mark.slow  # ~25 s: point fits, and one fit with bands and its leave-one-run-out refits
def test_toy_run_count_benchmark_writes_its_keys(tmp_path):
    payload = run_toy("cpt_law_runs.py", tmp_path, "--workers", "1", timeout=600)
    assert payload["run_counts"] == [3, 4] and payload["full_counts"] == [4]
    strong = payload["shifts"]["strong"]
    every = strong["all_runs"]
    assert every["runs"] == 12  # 2 schedules x 2 peaks x 3 replays, all fitted at once
    assert 0 < every["prede_old"] <= every["worst_old"]
    for n in ("3", "4"):
        row = strong["by_run_count"][n]
        assert len(row["designed"]["fit_set"]) == int(n)
        assert row["random"]["designs"] == 2
        assert all(len(r["fit_set"]) == int(n) for r in row["random"]["rows"])
    # the 3-run design is cpt_law.py's headline set: the two scripts score the same runs
    assert strong["by_run_count"]["3"]["designed"]["fit_set"] == [
        "cosine-peak0.01-replay0", "cosine-peak0.005-replay0.25", "wsd-peak0.01-replay0.5"
    ]  # fmt: skip
    full = strong["designed_4"]
    assert full["held_out"] == 8 and sum(r["in_fit"] for r in full["rows"].values()) == 4
    assert 0.0 <= full["interval_coverage"] <= 1.0 and "chosen_vs_best_gap" in full
    assert "same_runs_as" not in strong  # --toy compares with no results file
