"""benchmarks/cpt_law_designs.py still runs end to end (its --toy mode: cpt_law.py's tiny grid,
two sets of each design family, point fits) and writes every key it promises; its figures mean
nothing. The family rules themselves are checked on the benchmark's grid without training."""

from __future__ import annotations

import sys

import pytest

from ..benchmark_scripts import REPO, run_toy

pytest.importorskip("torch")
pytest.importorskip("tokenizers")
sys.path.insert(0, str(REPO / "benchmarks"))
import cpt_law  # noqa: E402
import cpt_law_designs  # noqa: E402

GRID = [(s, p, r) for s in cpt_law.SCHEDULES for p in cpt_law.PEAKS for r in cpt_law.REPLAYS]


def test_families_on_the_benchmark_grid_hold_what_they_say():
    designed_3 = cpt_law.designed_fit_set(cpt_law.PEAKS, cpt_law.REPLAYS)
    designed_4 = cpt_law.designed_fit_set(cpt_law.PEAKS, cpt_law.REPLAYS, runs=4)
    sets = cpt_law_designs.families(GRID, designed_3, designed_4)
    counts = {name: len(family) for name, family in sets.items()}
    assert counts == {"spanning": 36, "contrast": 320, "contrast_extremes": 32,
                      "four_runs_high_3": 56, "four_runs_high_2": 84, "four_runs_high_1": 56}  # fmt: skip
    assert designed_3 in sets["spanning"] and not cpt_law_designs.contrast(designed_3)
    # the rule's 4-run pick is a 2 + 2 set, one of the family it is compared with
    assert tuple(sorted(designed_4)) in {tuple(sorted(s)) for s in sets["four_runs_high_2"]}
    for pick in sets["contrast"]:
        same_replay = [(a, b) for a in pick for b in pick if a[2] == b[2] and a[1] > b[1]]
        same_peak = [(a, b) for a in pick for b in pick if a[1] == b[1] and a[2] > b[2]]
        assert same_replay and same_peak
    for pick in sets["four_runs_high_3"]:
        assert len({k[2] for k in pick if k[1] == max(cpt_law.PEAKS)}) == 3


@pytest.mark.slow  # trains the toy grid, then a dozen point fits
def test_toy_designs_benchmark_writes_its_keys(tmp_path):
    payload = run_toy("cpt_law_designs.py", tmp_path, "--workers", "1", timeout=600)
    strong = payload["shifts"]["strong"]
    assert {"spanning", "contrast"} <= set(strong["families"])
    for spread in strong["families"].values():
        assert 1 <= spread["designs"] <= cpt_law_designs.TOY_SETS + 1  # + the rule's pick
        assert spread["prede_old"]["max"] >= spread["prede_old"]["median"] > 0
        assert 0 <= spread["share_meeting_both"] <= 1
    designed = strong["designed_3"]
    assert designed is not None and designed["in"]["spanning"]["old"] >= 1
    assert "same_runs_as" not in strong  # --toy compares with no results file
