"""benchmarks/cpt_law_split.py still runs end to end (its --toy mode: cpt_law.py's tiny grid,
two spanning fit sets, each fitted free and anchored) and writes every key it promises; its
figures mean nothing."""

from __future__ import annotations

import pytest

from ..benchmark_scripts import run_toy

pytest.importorskip("torch")
pytest.importorskip("tokenizers")


@pytest.mark.slow  # trains the toy grid, then six point fits per set
def test_toy_split_benchmark_writes_its_keys(tmp_path):
    payload = run_toy("cpt_law_split.py", tmp_path, "--workers", "1", timeout=600)
    strong = payload["shifts"]["strong"]
    assert len(strong["rows"]) == 2 and strong["summary"]["sets"] == 2
    for row in strong["rows"]:
        assert len(row["fit_set"]) == 3
        for label in ("free", "anchored"):
            assert row[label]["old"] > 0 and row[label]["new"] > 0
    for d in ("old", "new"):
        entry = strong["summary"][d]
        assert entry["anchored_lower"] + entry["anchored_higher"] <= 2
        assert entry["worst_free"] >= entry["median_free"]
    assert "same_runs_as" not in strong  # --toy compares with no results file
