"""The report: the page is self-contained, embeds every run and distribution with every
evaluation, its series are computed right (average, EMA, steps), and the table has the right
numbers. The browser side is in test_report_browser.py."""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from evertrain.continual.forgetting import stage_outcome
from evertrain.continual.report import (
    MAX_TRAIN_POINTS,
    ReportError,
    headline,
    lr_series,
    offset_steps,
    replay_series,
    run_styles,
    train_loss_series,
    write_report,
)
from evertrain.continual.report_page import embedded_data
from evertrain.continual.runs import load_run

BASE_TOKENS = 1000


def _scenario(tmp_path: Path, make_run) -> dict[str, Path]:
    base = make_run(
        tmp_path,
        "base",
        evals=[(500, {"d0": 3.0, "d1": 5.0}), (BASE_TOKENS, {"d0": 2.0, "d1": 4.0})],
        train=[(t, 1e-3, {"d0": t}) for t in range(100, 1001, 100)],
        meta={"name": "base", "recipe": "base", "old": [], "new": ["d0"]},
    )
    parent = {"checkpoint": str(base / "checkpoints" / "final"), "run": str(base)}
    # finetune: forgets d0 (2.0 -> 2.6), learns d1 (4.0 -> 2.2)
    finetune = make_run(
        tmp_path,
        "finetune",
        evals=[(500, {"d0": 2.4, "d1": 2.8}), (1000, {"d0": 2.6, "d1": 2.2})],
        train=[(t, 1e-4, {"d1": t}) for t in range(100, 1001, 100)],
        meta={
            "name": "finetune",
            "recipe": "finetune",
            "old": ["d0"],
            "new": ["d1"],
            "offset_tokens": BASE_TOKENS,
            "wall_seconds": 12.5,
        },
        parent=parent,
    )
    # rewarm+replay: 1 row in 4 from d0
    replay = make_run(
        tmp_path,
        "rewarm+replay",
        evals=[(500, {"d0": 2.2, "d1": 2.9}), (1000, {"d0": 2.1, "d1": 2.3})],
        train=[(t, 1e-3, {"d0": t // 4, "d1": t - t // 4}) for t in range(100, 1001, 100)],
        meta={
            "name": "rewarm+replay",
            "recipe": "rewarm+replay",
            "old": ["d0"],
            "new": ["d1"],
            "offset_tokens": BASE_TOKENS,
        },
        parent=parent,
    )
    retrain = make_run(
        tmp_path,
        "retrain",
        evals=[(1000, {"d0": 2.5, "d1": 3.0}), (2000, {"d0": 2.1, "d1": 2.25})],
        train=[(t, 1e-3, {"d0": t // 2, "d1": t - t // 2}) for t in range(200, 2001, 200)],
        meta={"name": "retrain", "recipe": "retrain", "old": ["d0"], "new": ["d1"]},
    )
    return {"base": base, "finetune": finetune, "replay": replay, "retrain": retrain}


def test_stage_outcome_measures_forgetting_against_the_parent_checkpoint(tmp_path, make_run):
    runs = _scenario(tmp_path, make_run)
    outcome = stage_outcome(runs["finetune"])
    assert outcome.before == {"d0": 2.0, "d1": 4.0}
    assert outcome.forgetting == pytest.approx(0.6)
    assert outcome.adaptation == pytest.approx(1.8)
    assert outcome.old_trajectory == (2.4, 2.6)
    assert outcome.peak_forgetting == pytest.approx(0.6)
    replay = stage_outcome(runs["replay"])  # 2.0 -> 2.2 -> 2.1: the rise peaks mid-stage
    assert replay.peak_forgetting == pytest.approx(0.2) and replay.forgetting == pytest.approx(0.1)
    assert outcome.loss_avg == pytest.approx((2.6 + 2.2) / 2)
    assert outcome.tokens == 1000
    # a run from scratch has no "before": forgetting is undefined, not 0
    assert outcome.wall_seconds == 12.5
    assert stage_outcome(runs["retrain"]).to_dict()["forgetting"] is None


def test_replay_share_is_read_from_cumulative_tokens_per_source(tmp_path, make_run):
    runs = _scenario(tmp_path, make_run)
    share = replay_series(load_run(runs["replay"]), ["d0"])
    assert share.y == pytest.approx([0.25] * 10, abs=0.01)
    assert share.x[0] == BASE_TOKENS + 100  # continual runs start where the base stopped
    assert replay_series(load_run(runs["finetune"]), ["d0"]).y == [0.0] * 10


class _Page(HTMLParser):
    """The page's tags that could load something, its inline scripts and its table rows."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[tuple[str, str]] = []
        self.inline_scripts = 0
        self.rows = 0

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for name in ("src", "href", "data"):
            if attributes.get(name):
                self.loads.append((tag, attributes[name]))
        if tag == "link":
            self.loads.append((tag, attributes.get("href", "")))
        if tag == "script" and "src" not in attributes:
            self.inline_scripts += 1
        if tag == "tr":
            self.rows += 1


def test_report_is_self_contained_and_embeds_every_run_and_distribution(tmp_path, make_run):
    runs = _scenario(tmp_path, make_run)
    order = ["base", "finetune", "replay", "retrain"]
    page = write_report([runs[k] for k in order], tmp_path / "report")
    text = page.read_text()
    parser = _Page()
    parser.feed(text)
    # nothing is fetched at view time: no script, style sheet, image or font from anywhere;
    # the only links are the PNG exports beside the page
    assert parser.loads == [("a", "curves.png"), ("a", "summary.png")]
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", text)
    assert not re.search(r"url\(\s*[\"']?(https?:)?//|@import", text)
    assert parser.inline_scripts == 2  # the data, and the charting script
    assert parser.rows == 1 + 4  # header + one row per run
    assert (tmp_path / "report" / "curves.png").stat().st_size > 10_000
    assert (tmp_path / "report" / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    data = embedded_data(text)
    names = ["base", "finetune", "rewarm+replay", "retrain"]
    assert [r["name"] for r in data["runs"]] == names
    assert data["curves"]["datasets"] == ["d0", "d1"]
    ids = [p["id"] for p in data["curves"]["panels"]]
    assert ids == ["avg", "loss:d0", "loss:d1", "train", "lr", "replay"]
    for panel in data["curves"]["panels"]:  # every panel holds every run, in the legend's order
        assert [s["label"] for s in panel["series"]] == names
    assert [r["label"] for r in data["rows"]] == names
    assert data["summary"]["runs"] == names
    # the page and curves.json carry the same numbers
    curves = json.loads((tmp_path / "report" / "curves.json").read_text())
    assert curves == data["curves"]

    panels = {p["id"]: {s["label"]: s for s in p["series"]} for p in curves["panels"]}
    # offset by the base's 1000 tokens, starting from the base checkpoint's loss
    assert panels["loss:d0"]["finetune"]["x"] == [1000.0, 1500.0, 2000.0]
    assert panels["loss:d0"]["finetune"]["y"] == [2.0, 2.4, 2.6]
    assert panels["loss:d0"]["retrain"]["x"] == [1000.0, 2000.0]
    # the headline metric: the mean over the distributions at each evaluation
    assert panels["avg"]["finetune"]["y"] == pytest.approx([3.0, 2.6, 2.4])
    assert panels["avg"]["retrain"]["y"] == pytest.approx([2.75, 2.175])
    assert panels["lr"]["finetune"]["y"] == [1e-4] * 10
    # steps continue the base's: its final checkpoint is step 10, finetune's eval at 500 is step 5
    assert panels["loss:d0"]["finetune"]["steps"] == [10.0, 15.0, 20.0]
    assert "half-life" in curves["panels"][3]["title"]

    report = json.loads((tmp_path / "report" / "report.json").read_text())
    rows = {r["run"]: r for r in report["runs"]}
    assert rows["rewarm+replay"]["tokens_vs_baseline"] == pytest.approx(0.5)
    assert rows["rewarm+replay"]["loss_gap_vs_baseline"] == pytest.approx(2.2 / 2.175 - 1)
    assert "tokens_vs_baseline" not in rows["retrain"]  # the baseline is not compared to itself
    assert "Best replay recipe: rewarm+replay" in report["headline"]
    assert "1.15 % worse than retrain (more than 1 %)" in report["headline"]
    assert re.search(r"<td>rewarm\+replay</td>", text)
    # the page names the datasets with their roles, and the scale
    assert "datasets: d0 (old), d1 (new)" in report["context"]
    assert "4 runs, 5,000 tokens trained in all" in report["context"]
    assert html.escape(report["context"]) in text


def test_every_evaluation_of_a_dense_run_is_a_point(tmp_path, make_run):
    evals = [(t, {"d0": 3.0 - t / 10_000}) for t in range(100, 1501, 100)]  # 15 evaluations
    run = make_run(
        tmp_path, "dense", evals=evals, train=[(t, 1e-3, {"d0": t}) for t in range(10, 1501, 10)]
    )
    page = write_report([run], tmp_path / "report")
    panels = {p["id"]: p for p in embedded_data(page.read_text())["curves"]["panels"]}
    assert panels["loss:d0"]["kind"] == "eval"  # drawn with a marker on every point
    assert panels["loss:d0"]["series"][0]["x"] == [float(t) for t, _ in evals]
    assert len(panels["avg"]["series"][0]["y"]) == 15
    assert len(panels["lr"]["series"][0]["x"]) == 150


def test_report_of_thirty_runs_keeps_every_run_and_evaluation(tmp_path, make_run):
    """The scale of the continual benchmark: recipes x seeds, dense evals, three distributions."""
    datasets = ("d0", "d1", "d2")
    runs = [
        make_run(
            tmp_path,
            f"run{i:02d}",
            evals=[
                (t, {d: 5.0 - t / 1e5 + i / 100 for d in datasets})
                for t in range(2000, 24001, 2000)
            ],
            train=[(t, 1e-3, {"d0": t // 2, "d1": t - t // 2}) for t in range(100, 24001, 100)],
        )
        for i in range(30)
    ]
    page = write_report(runs, tmp_path / "report")
    data = embedded_data(page.read_text())
    assert len(data["runs"]) == 30
    for panel in data["curves"]["panels"]:
        assert len(panel["series"]) == 30
        if panel["kind"] == "eval":
            assert all(len(s["x"]) == 12 for s in panel["series"])
    styles = {(r["color"], r["dash"], r["marker"]) for r in data["runs"]}
    assert len(styles) == 30  # no two runs look alike
    assert page.stat().st_size < 3_000_000


def test_run_styles_differ_and_later_lines_are_thinner():
    styles = run_styles(140)
    assert len({(s["color"], s["dash"], s["marker"]) for s in styles}) == 140
    widths = [s["width"] for s in run_styles(6)]
    assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1]


def test_training_loss_is_an_ema_with_its_half_life_in_tokens(tmp_path, make_run):
    run_dir = make_run(
        tmp_path,
        "r",
        evals=[(300, {"d0": 1.0})],
        train=[(t, 1e-3, {"d0": t}) for t in (100, 200, 300)],
    )
    lines = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    losses = iter([4.0, 2.0, float("nan")])  # the last step was skipped (non-finite)
    for line in lines:
        if line["kind"] == "train":
            line["loss"] = next(losses)
    (run_dir / "log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    smoothed = train_loss_series(load_run(run_dir), half_life_tokens=100)
    assert smoothed.x == [100.0, 200.0]  # the NaN is left out, not averaged in
    assert smoothed.y == pytest.approx([4.0, 3.0])  # one half-life later: halfway to the new loss
    assert train_loss_series(load_run(run_dir), half_life_tokens=1e-9).y == pytest.approx(
        [4.0, 2.0]
    )


def test_long_train_series_are_thinned_keeping_both_ends(tmp_path, make_run):
    train = [(t, t / 1e6, {"d0": t}) for t in range(1, 5001)]
    run = make_run(tmp_path, "long", evals=[(5000, {"d0": 1.0})], train=train)
    series = lr_series(load_run(run))
    assert len(series.x) == MAX_TRAIN_POINTS
    assert series.x[0] == 1.0 and series.x[-1] == 5000.0
    assert series.x == sorted(series.x)


def test_page_survives_names_that_look_like_markup(tmp_path, make_run):
    evil = "</script><b>x</b>&"
    run = make_run(
        tmp_path, "odd", evals=[(100, {"d<0>": 2.0})], meta={"name": evil, "recipe": "r"}
    )
    twin = make_run(
        tmp_path, "twin", evals=[(100, {"d<0>": 2.5})], meta={"name": evil, "recipe": "r"}
    )
    text = write_report([run, twin], tmp_path / "report").read_text()
    data = embedded_data(text)
    assert [r["name"] for r in data["runs"]] == [evil, f"{evil} #2"]  # repeats told apart
    assert data["curves"]["datasets"] == ["d<0>"]
    assert "<b>x</b>" not in text  # escaped in the table, \u003c in the JSON


def test_offset_steps_follow_the_parent_checkpoint_or_are_estimated(tmp_path, make_run):
    runs = _scenario(tmp_path, make_run)
    assert offset_steps(load_run(runs["finetune"])) == 10  # the base's final checkpoint step
    assert offset_steps(load_run(runs["base"])) == 0
    # parent gone: tokens per step of the run itself (100 tokens per step here)
    import shutil

    shutil.rmtree(runs["base"])
    assert offset_steps(load_run(runs["finetune"])) == 10
    # the trainer records the parent's step and tokens in the manifest: read, not estimated
    manifest = runs["finetune"] / "manifest.json"
    recorded = json.loads(manifest.read_text())
    recorded["parent"].update(step=7, tokens=BASE_TOKENS)
    manifest.write_text(json.dumps(recorded))
    assert offset_steps(load_run(runs["finetune"])) == 7


def test_report_rejects_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="neither log.jsonl nor manifest.json"):
        write_report([tmp_path / "empty"], tmp_path / "out")
    with pytest.raises(ReportError, match="no runs"):
        write_report([], tmp_path / "out")


@pytest.mark.parametrize(
    ("gap", "words"),
    [
        (-0.0111, "1.11 % better than retrain,"),
        (0.004, "0.40 % worse than retrain (within 1 %),"),
        (0.02, "2.00 % worse than retrain (more than 1 %),"),
    ],
)
def test_headline_says_better_or_worse_in_words(gap, words):
    rows = [
        {"run": "retrain", "recipe": "retrain", "loss_avg": 2.0},
        {
            "run": "rewarm+replay",
            "recipe": "rewarm+replay",
            "loss_avg": 2.0 * (1 + gap),
            "loss_gap_vs_baseline": gap,
            "tokens_vs_baseline": 0.5,
        },
    ]
    sentence = headline(rows, "retrain")
    assert words in sentence and "training 50 % of its tokens" in sentence
    assert "-1.11" not in sentence and "against" not in sentence


def test_average_panel_uses_the_datasets_every_run_measured(tmp_path, make_run):
    # A base evaluated on three datasets and a stage on two of them: an average over all three
    # would have no point for the stage, and its line would vanish from the headline panel.
    base = make_run(
        tmp_path, "base", evals=[(t, {"d0": 3.0, "d1": 4.0, "d2": 5.0}) for t in (100, 200)]
    )
    stage = make_run(tmp_path, "stage", evals=[(t, {"d0": 3.2, "d1": 3.8}) for t in (100, 200)])
    page = write_report([base, stage], tmp_path / "report")
    avg = {p["id"]: p for p in embedded_data(page.read_text())["curves"]["panels"]}["avg"]
    assert "d2 left out" in avg["title"]
    by_label = {s["label"]: s["y"] for s in avg["series"]}
    assert by_label["stage"] == [pytest.approx(3.5)] * 2
    assert by_label["base"] == [pytest.approx(3.5)] * 2


def test_a_run_stopped_short_is_said_marked_and_kept_out_of_the_headline(tmp_path, make_run):
    """A probe (`--stop-at-step`) or a preempted run: its last eval is mid-recipe, so the report
    warns once naming both token counts, marks its row, and never calls it the best recipe."""
    runs = _scenario(tmp_path, make_run)
    probe = make_run(
        tmp_path,
        "probe",
        evals=[(200, {"d0": 1.5, "d1": 1.5})],  # better than every run: mid-recipe, not best
        train=[(t, 1e-3, {"d0": t // 4, "d1": t - t // 4}) for t in range(100, 201, 100)],
        meta={"name": "probe", "recipe": "rewarm+replay-probe", "old": ["d0"], "new": ["d1"],
              "offset_tokens": BASE_TOKENS},  # fmt: skip
        parent={"checkpoint": str(runs["base"] / "checkpoints" / "final"), "run": str(runs["base"])},
        config={"budget_tokens": 1000},
    )
    with pytest.warns(UserWarning) as caught:
        path = write_report([*runs.values(), probe], tmp_path / "report")
    said = [str(w.message) for w in caught if "stopped at" in str(w.message)]
    assert said == [
        f"run probe ({probe}) stopped at 200 of its 1,000 tokens (paused, preempted or still "
        "running): its row shows where it stopped, not its recipe's end; `--resume` it to "
        "compare it whole"
    ]
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    flags = {row["run"]: row["stopped_short"] for row in report["runs"]}
    assert flags == {"base": False, "finetune": False, "rewarm+replay": False, "retrain": False,
                     "probe": True}  # fmt: skip
    assert report["headline"].startswith("Best replay recipe: rewarm+replay reaches")
    assert "200 (stopped short)" in path.read_text()
