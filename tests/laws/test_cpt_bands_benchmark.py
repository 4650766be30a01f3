"""benchmarks/cpt_law_bands.py still runs end to end (its --toy mode: cpt_law.py's tiny grid, two
spanning sets with a 5-draw bootstrap) and writes every key it promises; its figures mean
nothing. Its summary is checked on hand-made rows without training."""

from __future__ import annotations

import sys

import pytest

from ..benchmark_scripts import REPO, run_toy

pytest.importorskip("torch")
pytest.importorskip("tokenizers")
sys.path.insert(0, str(REPO / "benchmarks"))
import cpt_law_bands  # noqa: E402


def _row(name: str, coverage: float, prede_old: float) -> dict:
    return {"fit_set": [name], "prede_old": prede_old, "prede_new": 0.005,
            "interval_coverage": coverage,
            "interval_coverage_by_distribution": {"old": coverage, "new": coverage},
            "final_halfwidth": {"old": 0.01, "new": 0.02}, "interpolating_folds": int(coverage < 0.95)}  # fmt: skip


def test_summary_counts_sets_in_over_and_under_the_target_range():
    rows = [_row("a", 0.99, 0.005), _row("b", 0.9, 0.005), _row("c", 0.9, 0.02),
            _row("d", 0.5, 0.005)]  # fmt: skip
    out = cpt_law_bands.summary(rows, ["c"])
    assert (out["share_in_range"], out["share_over"], out["share_under"]) == (0.5, 0.25, 0.25)
    # "c" is in range but misses the old-data error: only "b" meets both
    assert out["share_meeting_prede"] == 0.75 and out["share_meeting_all"] == 0.25
    assert out["coverage"]["median"] == pytest.approx(0.9)
    assert out["designed"]["fit_set"] == ["c"]
    assert cpt_law_bands.summary(rows, ["z"])["designed"] is None
    # "a" has no interpolating fold, the others one
    assert out["without"]["sets"] == 1 and out["without"]["share_over"] == 1.0
    assert out["with_interpolating_fold"]["sets"] == 3
    assert out["with_interpolating_fold"]["median_prede"]["old"] == pytest.approx(0.005)


@pytest.mark.slow  # trains the toy grid, then two bootstrap fits
def test_toy_bands_benchmark_writes_its_keys(tmp_path):
    payload = run_toy("cpt_law_bands.py", tmp_path, "--workers", "1", timeout=600)
    strong = payload["shifts"]["strong"]
    assert strong["summary"]["sets"] == len(strong["rows"]) == 2
    for row in strong["rows"]:
        assert 0 <= row["interval_coverage"] <= 1 and row["prede_old"] > 0
        assert row["final_halfwidth"]["old"] > 0
        assert row["band"] is not None
        assert 0 <= row["interpolating_folds"] <= 3
    assert "same_runs_as" not in strong  # --toy compares with no results file
