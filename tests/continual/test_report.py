"""The report: figures exist, carry the right series, and the table has the right numbers."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from evertrain.continual.forgetting import stage_outcome
from evertrain.continual.report import ReportError, headline, replay_series, write_report
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


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.rows = 0

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])
        if tag == "tr":
            self.rows += 1


def test_report_is_self_contained_and_its_figures_carry_every_run(tmp_path, make_run):
    runs = _scenario(tmp_path, make_run)
    order = ["base", "finetune", "replay", "retrain"]
    page = write_report([runs[k] for k in order], tmp_path / "report")
    text = page.read_text()
    parser = _Images()
    parser.feed(text)
    assert len(parser.sources) == 2
    for source in parser.sources:
        assert source.startswith("data:image/png;base64,")  # no external files needed
        assert base64.b64decode(source.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert parser.rows == 1 + 4  # header + one row per run
    assert (tmp_path / "report" / "curves.png").stat().st_size > 10_000

    curves = json.loads((tmp_path / "report" / "curves.json").read_text())
    titles = [p["title"] for p in curves["panels"]]
    assert titles == [
        "validation loss on d0",
        "validation loss on d1",
        "learning rate",
        "share of old-data (replay) tokens per batch",
    ]
    d0 = {s["label"]: s for s in curves["panels"][0]["series"]}
    assert list(d0) == ["base", "finetune", "rewarm+replay", "retrain"]
    # offset by the base's 1000 tokens, starting from the base checkpoint's loss
    assert d0["finetune"]["x"] == [1000.0, 1500.0, 2000.0]
    assert d0["finetune"]["y"] == [2.0, 2.4, 2.6]
    assert d0["retrain"]["x"] == [1000.0, 2000.0]
    lr = {s["label"]: s for s in curves["panels"][2]["series"]}
    assert lr["finetune"]["y"] == [1e-4] * 10

    report = json.loads((tmp_path / "report" / "report.json").read_text())
    rows = {r["run"]: r for r in report["runs"]}
    assert rows["rewarm+replay"]["tokens_vs_baseline"] == pytest.approx(0.5)
    assert rows["rewarm+replay"]["loss_gap_vs_baseline"] == pytest.approx(2.2 / 2.175 - 1)
    assert "tokens_vs_baseline" not in rows["retrain"]  # the baseline is not compared to itself
    assert "Best replay recipe: rewarm+replay" in report["headline"]
    assert "1.15 % worse than retrain (more than 1 %)" in report["headline"]
    assert re.search(r"<td>rewarm\+replay</td>", text)


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
