"""benchmarks/cpt_law.py still runs end to end (its --toy mode: a tiny base, the 2 x 2 x 3 grid,
three fit sets) and writes every key the results file promises; its figures mean nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..benchmark_scripts import run_toy

pytest.importorskip("torch")
pytest.importorskip("tokenizers")

REPO = Path(__file__).resolve().parents[2]
HEADLINE = ("prede_old", "prede_new", "prede_old_curve", "prede_new_curve",
            "chosen_vs_best_gap", "interval_coverage", "fit_set")  # fmt: skip


@pytest.mark.slow  # ~60 s, almost all of it CPT fits and their leave-one-run-out refits
def test_toy_benchmark_writes_the_evidence_keys(tmp_path):
    payload = run_toy("cpt_law.py", tmp_path, "--workers", "1", timeout=600)
    for key in HEADLINE:
        assert key in payload
    # the headline is the fit set the library's design rule picks from the grid's axes
    assert payload["fit_set"] == payload["fit_sets"]["designed"]["runs"]
    assert payload["fit_set"] == ["cosine-peak0.01-replay0", "cosine-peak0.005-replay0.25",
                                  "wsd-peak0.01-replay0.5"]  # fmt: skip
    assert 0.0 <= payload["interval_coverage"] <= 1.0
    assert payload["grid"]["runs_per_shift"] == 12  # 2 schedules x 2 peaks x 3 replays
    strong = payload["shifts"]["strong"]
    assert strong["grid_run_wall_seconds"] > 0
    for label in ("designed", "main", "spread"):
        result = strong[label]
        assert result["held_out"] == 9 and len(result["rows"]) == 12
        assert sum(row["in_fit"] for row in result["rows"].values()) == 3
        row = next(iter(result["rows"].values()))
        for d in ("old", "new"):
            assert {"measured_final", "predicted_final", "band_final", "final_rel_error",
                    "curve_rel_error", "inside_band"} <= set(row[d])  # fmt: skip
        chosen = result["chosen"]
        assert {"schedule", "peak", "replay", "measured_objective", "predicted_final"} <= set(
            chosen
        )
        # the measured figure of the law's choice: a grid cell, or a run trained for it
        assert chosen["in_grid"] or chosen["measured_from"].startswith("trained")
    # the stage-seed noise floor and the spread over random fit sets
    floor = strong["noise_floor"]
    assert floor["seeds"] == [0, 1, 2] and len(floor["cells"]) == 1
    for d in ("old", "new"):
        assert floor["perfect_law_prede"][d] > 0  # other seeds do train on another data order
    designs = strong["designs"]
    assert designs["designs"] == 2 and len(designs["rows"]) == 2
    assert all(len({name.rsplit("replay", 1)[1] for name in row["fit_set"]}) >= 2
               for row in designs["rows"])  # fmt: skip
    assert designs["prede_old"]["min"] <= designs["prede_old"]["median"]
    spanning = strong["spanning"]  # the sets the design rule admits (toy: the first 2)
    assert spanning["designs"] == 2
    for row in spanning["rows"]:
        assert sorted(name.rsplit("replay", 1)[1] for name in row["fit_set"]) == ["0", "0.25", "0.5"]
        assert {name.split("-")[0] for name in row["fit_set"]} == {"cosine", "wsd"}
    assert payload["scale"]["params"] > 0 and payload["benchmark_seconds"] > 0
    assert payload["notes"]


def _load_script(monkeypatch):
    import importlib.util
    import sys

    # the script imports its sibling `continual`; both paths and modules are undone after
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    monkeypatch.setitem(sys.modules, "continual", None)  # undone after: restored or removed
    del sys.modules["continual"]
    spec = importlib.util.spec_from_file_location("cpt_law_bench", REPO / "benchmarks/cpt_law.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "cpt_law_bench", module)
    spec.loader.exec_module(module)
    return module


def test_paired_terms_counts_the_same_fit_sets_under_both_terms(tmp_path, monkeypatch):
    """--tables' comparison of the two annealing terms: design by design, summed over bases."""
    import json

    module = _load_script(monkeypatch)

    def write(name, old, new):
        rows = [{"fit_set": [f"set{i}"], "prede_old": o, "prede_new": n}
                for i, (o, n) in enumerate(zip(old, new, strict=True))]  # fmt: skip
        (tmp_path / name).write_text(json.dumps({"shifts": {"strong": {"designs": {"rows": rows}}}}))
        return tmp_path / name

    pairs = [(write("a0.json", [0.010, 0.020], [0.005, 0.005]),
              write("b0.json", [0.012, 0.019], [0.005, 0.006])),
             (write("a1.json", [0.008], [0.004]), write("b1.json", [0.009], [0.004]))]  # fmt: skip
    table = module.paired_terms(pairs)
    assert "| strong | old | 2 / 1 of 3 | -0.0010 |" in table  # -0.002, +0.001, -0.001
    assert "| strong | new | 1 / 0 of 3 | +0.0000 |" in table  # 0, -0.001, 0
    write("b1.json", [0.009, 0.1], [0.004, 0.1])  # another fit set: refused, not paired
    with pytest.raises(SystemExit, match="different fit sets"):
        module.paired_terms(pairs)


def test_the_design_rule_admits_36_fit_sets_of_the_grid_and_picks_one(monkeypatch):
    module = _load_script(monkeypatch)
    keys = [(s, p, r) for s in module.SCHEDULES for p in module.PEAKS for r in module.REPLAYS]
    admitted = module.spanning_designs(keys, module.FIT_SET_DESIGNED)
    # replay 0, 0.25, 0.5 one run each, 4 cells each (4^3 = 64), minus the sets at one peak
    # (2 x 2^3 = 16) or of one schedule (16), plus those of both (4, subtracted twice): 36
    assert len(admitted) == 36 and len(set(admitted)) == 36
    assert module.FIT_SET_DESIGNED in admitted
    assert module.FIT_SET not in admitted and module.FIT_SET_SPREAD in admitted


def test_a_chosen_replay_outside_the_sweep_gets_a_spec_of_its_own(tmp_path, monkeypatch):
    """The law may choose a replay the sweep has no run of (0.4 of 0, 0.25, 0.5): the measured
    figure then comes from a run trained for it, built from the rewarm run's spec."""
    module = _load_script(monkeypatch)
    scale = module.bench.TOY
    specs = {
        f"seed-0/strong/{module.bench.ratio_name(r)}": {"recipe": "rewarm", "out_dir": f"r{r}"}
        for r in scale.replay_ratios
    }
    own = module.run_spec(specs, "strong", ("cosine", scale.peak, 0.25), tmp_path, scale)
    assert own is specs["seed-0/strong/rewarm+replay-0.25"]  # a sweep run: its own spec
    chosen = module.run_spec(specs, "strong", ("cosine", scale.peak, 0.4), tmp_path, scale)
    assert chosen["recipe"] == "rewarm+replay"
    assert chosen["overrides"] == {"peak": scale.peak, "decay_shape": "cosine", "replay": 0.4}
    assert chosen["out_dir"].endswith("cosine-peak0.01-replay0.4")
