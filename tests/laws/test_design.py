"""design_fit_runs and `evertrain law cpt design`: which continual runs to fit the CPT law on."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import evertrain.laws.design as design_module
from evertrain.cli import app
from evertrain.laws import (
    FitRun,
    LawError,
    design_fit_runs,
    lr_array,
    parse_recipe,
    probe_runs,
)

GRID = {"peaks": (1e-2, 3e-3), "replays": (0.0, 0.05, 0.1, 0.25, 0.5)}


def test_three_runs_on_the_benchmark_grid_span_every_axis():
    runs = design_fit_runs(**GRID)
    # replay spread on its own first (0, 0.25, 0.5, not 0, 0.05, 0.5); then, of the sets with
    # both peaks and both families, the maximin one: its closest pair is sqrt(0.5^2 + 1) apart
    # (one replay step and one other axis), tied with others, of which it has the largest sum
    # of distances (1.118 + 1.414 + 1.5) and comes first in the grid's order
    assert runs == [FitRun("cosine", 1e-2, 0.0), FitRun("cosine", 3e-3, 0.25),
                    FitRun("wsd", 1e-2, 0.5)]  # fmt: skip


def test_two_runs_take_the_extremes_and_both_families():
    assert design_fit_runs(**GRID, runs=2) == [
        FitRun("cosine", 1e-2, 0.0),
        FitRun("wsd", 3e-3, 0.5),
    ]


def test_no_value_is_used_more_often_than_the_run_count_forces():
    runs = design_fit_runs(**GRID, runs=4)
    peaks = [r.peak for r in runs]
    assert peaks.count(1e-2) == peaks.count(3e-3) == 2
    assert sorted(r.replay for r in runs) == [0.0, 0.1, 0.25, 0.5]  # four distinct, spread
    assert {r.family for r in runs} == {"cosine", "wsd"}


def test_one_family_and_one_peak_spread_the_replay_ratios():
    runs = design_fit_runs((1e-2,), (0.0, 0.05, 0.1, 0.3, 0.5), families=("cosine",), runs=3)
    assert runs == [FitRun("cosine", 1e-2, r) for r in (0.0, 0.3, 0.5)]  # 0.3: 0.2 from both


def test_peaks_are_spread_in_log():
    runs = design_fit_runs((1e-2, 5e-3, 1e-3, 1e-4), (0.0, 0.5), runs=3)
    # log spacing: 1e-3 is the peak farthest from both 1e-2 and 1e-4 (5e-3 would be in linear)
    assert sorted({r.peak for r in runs}) == [1e-4, 1e-3, 1e-2]


def test_the_greedy_search_of_large_grids_keeps_the_rules(monkeypatch):
    monkeypatch.setattr(design_module, "EXHAUSTIVE_LIMIT", 0)
    peaks = list(np.geomspace(1e-4, 1e-2, 9))
    replays = list(np.linspace(0.0, 0.5, 11))
    runs = design_fit_runs(peaks, replays, runs=5)
    assert len(set(runs)) == 5
    assert runs[0] == FitRun("cosine", max(peaks), 0.0)  # grown from the grid's first run
    assert {r.family for r in runs} == {"cosine", "wsd"}
    assert len({r.peak for r in runs}) == 5 and len({r.replay for r in runs}) == 5
    assert min(r.peak for r in runs) == min(peaks) and max(r.replay for r in runs) == 0.5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"peaks": (), "replays": (0.0,)}, "give one or more peaks"),
        ({"peaks": (0.0, 1e-3), "replays": (0.0,)}, "must be > 0"),
        ({"peaks": (1e-3,), "replays": (0.0, 1.0)}, "must be in [0, 1)"),
        ({"peaks": (1e-3,), "replays": (0.0,), "runs": 3}, "1 families x 1 peaks x 1 replay"),
        ({"peaks": (1e-3,), "replays": (0.0,), "runs": 0}, "runs=0"),
        # a family recipe_spec cannot build is refused, not turned into a WSD later
        ({"peaks": (1e-3,), "replays": (0.0,), "families": ("linear",)}, "families ['linear']"),
    ],
)
def test_bad_grids_are_one_line_errors(kwargs, message):
    kwargs.setdefault("families", ("cosine",))
    with pytest.raises(LawError, match=None) as info:
        design_fit_runs(**kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_cli_prints_recipes_that_predict_and_fit_read(tmp_path):
    out = tmp_path / "design.json"
    result = CliRunner().invoke(
        app, ["law", "cpt", "design", "--peaks", "1e-2,3e-3", "--steps", "500", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines() if "schedule=" in line]
    assert len(lines) == 3 and "note:" not in result.output
    assert "tip: 3 run(s) predicted" in result.output and "--runs 5" in result.output
    payload = json.loads(out.read_text())
    assert [row["recipe"] for row in payload["runs"]] == lines
    for line, row in zip(lines, payload["runs"], strict=True):
        recipe = parse_recipe(line)
        lr = lr_array(recipe.schedule, recipe.steps)
        assert recipe.steps == 500 and recipe.replay == row["replay"]
        assert math.isclose(float(lr.max()), row["peak"], rel_tol=1e-12)
        floor = 0.1 * row["peak"]
        assert floor * (1 - 1e-12) <= float(lr[-1]) <= 1.1 * floor  # one update above the floor
        assert lr[0] < lr[9] < lr[10] == pytest.approx(row["peak"])  # re-warm: steps/50 = 10


def test_the_docs_show_what_the_command_prints(tmp_path, monkeypatch):
    page = (Path(__file__).resolve().parents[2] / "docs" / "laws.md").read_text()
    commands = [line for line in page.splitlines() if line.startswith("evertrain law cpt design")]
    assert len(commands) == 2  # the three runs; with --probes
    monkeypatch.chdir(tmp_path)
    for command in commands:
        shown = page.split(command, 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
        result = CliRunner().invoke(app, command.split()[1:])
        assert result.exit_code == 0, result.output
        assert result.output == shown


def test_cli_says_what_a_one_peak_design_cannot_fit():
    result = CliRunner().invoke(app, ["law", "cpt", "design", "--peaks", "1e-2"])
    assert result.exit_code == 0, result.output
    assert "one peak: gamma stays 0" in result.output


def test_cli_gives_no_tip_for_five_runs_or_a_grid_too_small_for_five():
    five = CliRunner().invoke(app, ["law", "cpt", "design", "--peaks", "1e-2,3e-3", "--runs", "5"])
    small = CliRunner().invoke(
        app, ["law", "cpt", "design", "--peaks", "1e-2", "--replays", "0,0.5"]
    )  # 2 families x 1 peak x 2 replays: 4 runs in all
    for result in (five, small):
        assert result.exit_code == 0, result.output
        assert "tip:" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--peaks", "1e-2,x"], "--peaks '1e-2,x' must be comma-separated numbers"),
        (["--peaks", "1e-2", "--families", "cosine,linear"], "--families ['linear']"),
        (["--peaks", "1e-2", "--steps", "1"], "--steps 1 must be >= 2"),
        (["--peaks", "1e-2", "--runs", "40"], "--runs 40 must be in [1, 10]"),
        (["--peaks", "1e-2,0"], "--peaks '1e-2,0': every peak LR must be > 0"),
        (["--peaks", "1e-2", "--replays", "0,1"], "--replays '0,1': every replay ratio"),
        (["--peaks", ""], "--peaks '': give one or more numbers"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(args, message, tmp_path):
    result = CliRunner().invoke(
        app, ["law", "cpt", "design", *args, "-o", str(tmp_path / "d.json")]
    )
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "d.json").exists()


def test_recipe_spec_refuses_a_family_it_cannot_build():
    from evertrain.laws.cpt import recipe_spec

    assert recipe_spec("wsd", 1e-2, 100, 2, 0.1)["name"] == "wsd"
    with pytest.raises(LawError, match="schedule family 'linear': choose from cosine, wsd"):
        recipe_spec("linear", 1e-2, 100, 2, 0.1)  # was: silently a WSD


def test_probes_show_each_fitted_replay_ratio_at_the_other_peak():
    runs = design_fit_runs(peaks=(1e-2, 3e-3), replays=(0.0, 0.05, 0.1, 0.25, 0.5), runs=3)
    assert probe_runs(runs, (1e-2, 3e-3)) == [
        FitRun("cosine", 3e-3, 0.0), FitRun("cosine", 1e-2, 0.25), FitRun("wsd", 3e-3, 0.5)
    ]  # fmt: skip
    # three peaks: the farthest in log (from the middle one, a tie goes to the higher)
    three = [FitRun("cosine", 1e-2, 0.0), FitRun("cosine", 1e-3, 0.25),
             FitRun("wsd", 10**-2.5, 0.5)]  # fmt: skip
    assert probe_runs(three, (1e-2, 10**-2.5, 1e-3)) == [
        FitRun("cosine", 1e-3, 0.0), FitRun("cosine", 1e-2, 0.25), FitRun("wsd", 1e-2, 0.5)
    ]  # fmt: skip


def test_probes_skip_fitted_and_repeated_recipes_and_need_two_peaks():
    runs = [FitRun("cosine", 1e-2, 0.0), FitRun("cosine", 3e-3, 0.0), FitRun("wsd", 1e-2, 0.5),
            FitRun("wsd", 1e-2, 0.5)]  # fmt: skip
    assert probe_runs(runs, (1e-2, 3e-3)) == [FitRun("wsd", 3e-3, 0.5)]
    assert probe_runs(runs, (1e-2,)) == []


def test_cli_probes_name_the_stop_step_and_the_json_keeps_them(tmp_path):
    out = tmp_path / "design.json"
    result = CliRunner().invoke(app, ["law", "cpt", "design", "--peaks", "1e-2,3e-3", "--steps",
                                      "500", "--probes", "-o", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "train these 3 continual runs and 3 probes" in result.output
    assert "train each only to step 100 of 500" in result.output
    assert "--stop-at-step 100" in result.output
    payload = json.loads(out.read_text())
    assert [(r["family"], r["peak"], r["replay"]) for r in payload["probes"]] == [
        ("cosine", 3e-3, 0.0), ("cosine", 1e-2, 0.25), ("wsd", 3e-3, 0.5)
    ]  # fmt: skip
    assert {r["stop_at_step"] for r in payload["probes"]} == {100}
    for row in payload["probes"]:  # the whole recipe: a probe is the start of that run
        assert parse_recipe(row["recipe"]).steps == 500 and row["recipe"] in result.output
    one_peak = CliRunner().invoke(app, ["law", "cpt", "design", "--peaks", "1e-2", "--probes"])
    assert one_peak.exit_code == 0 and "no probes: they need two or more peaks" in one_peak.output
