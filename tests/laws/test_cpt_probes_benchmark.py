"""benchmarks/cpt_law_probes.py still runs end to end (its --toy mode: cpt_law.py's tiny grid,
two of the admitted 3-run sets, the designed set with bands without and with its probes) and
writes every key it promises; its figures mean nothing."""

from __future__ import annotations

import pytest

from ..benchmark_scripts import run_toy

pytest.importorskip("torch")
pytest.importorskip("tokenizers")


@pytest.mark.slow  # ~40 s with the toy grid trained: point fits, two fits with bands
def test_toy_probe_benchmark_writes_its_keys(tmp_path):
    payload = run_toy("cpt_law_probes.py", tmp_path, "--workers", "1", timeout=600)
    assert payload["probe_fraction"] == 0.2
    strong = payload["shifts"]["strong"]
    spanning = strong["spanning"]
    assert spanning["runs"]["designs"] == spanning["probes"]["designs"] == 2
    for with_probes, alone in zip(
        spanning["probes"]["rows"], spanning["runs"]["rows"], strict=True
    ):
        assert with_probes["fit_set"] == alone["fit_set"] and len(with_probes["probes"]) >= 1
        assert not set(with_probes["probes"]) & set(with_probes["fit_set"])
    for d in ("old", "new"):
        paired = spanning["paired"][d]
        assert paired["lower"] + paired["higher"] <= 2
    designed = strong["designed"]
    # the toy grid's designed set and the cells probe_runs adds: each replay at the other peak
    assert designed["probes"] == ["cosine-peak0.005-replay0", "cosine-peak0.01-replay0.25",
                                  "wsd-peak0.005-replay0.5"]  # fmt: skip
    for label in ("designed", "designed_probes"):
        view = designed[label]
        assert view["held_out"] == 12 - 3 - 3  # scored on the same runs, with or without probes
        assert 0.0 <= view["interval_coverage"] <= 1.0 and "chosen_vs_best_gap" in view
        assert view["prede_old"] > 0 and view["prede_new"] > 0
    one_peak = strong["one_peak"]  # a replay sweep at one peak, with each replay at the other
    assert one_peak["probed"] == ["cosine-peak0.005-replay0", "cosine-peak0.005-replay0.25",
                                  "cosine-peak0.005-replay0.5"]  # fmt: skip
    assert one_peak["held_out"] == 6
    assert all(one_peak[k][f"prede_{d}"] > 0 for k in ("runs", "probes") for d in ("old", "new"))
    assert "same_runs_as" not in strong  # --toy compares with no results file
