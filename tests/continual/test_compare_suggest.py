"""`evertrain continual compare --suggest`: after the compared recipes train, the CPT law is fitted
on the base and the runs and the recipe it prefers is printed with its bands; what it cannot use
(no per-distribution eval of the base, no recipe from the base's final checkpoint, a bad goal) is
a one-line exit-2 error before any recipe trains. Toy sizes on the real trainer (seconds)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from evertrain.cli import app  # noqa: E402
from evertrain.continual import runner, suggest  # noqa: E402

cli = CliRunner()
MODEL = {"n_layer": 1, "n_head": 1, "d_model": 16, "seq_len": 16}


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> dict[str, str]:
    """Two prepared datasets and two tiny bases: one evaluated on both, one on the old only."""
    from evertrain.data import prepare, train_tokenizer

    root = tmp_path_factory.mktemp("suggest")
    tokenizer = train_tokenizer(
        ["stdlib-english", "stdlib-code"], root / "tok.json", 300, max_bytes=20_000
    )
    data = {
        name: str(
            prepare([src], root / name, tokenizer=tokenizer, max_bytes=20_000, progress=False).path
        )
        for name, src in (("english", "stdlib-english"), ("code", "stdlib-code"))
    }
    train = {"batch_size": 4, "device": "cpu", "eval_tokens": 128, "seed": 0}
    for name, evals in (("base", data), ("base-old-only", {"english": data["english"]})):
        setup = runner.Setup(model=MODEL, train=train, eval=evals, eval_points=8)
        runner.train_base(
            setup,
            out_dir=root / name,
            datasets={"english": data["english"]},
            tokens=2048,
            peak=1e-2,
            progress=False,
        )
    return {**data, "root": str(root)}


def _compare(toy, tmp_path, *args: str, base: str = "base"):
    return cli.invoke(
        app,
        ["continual", "compare", *args, "--base", f"{toy['root']}/{base}",
         "--old", f"english={toy['english']}", "--new", f"code={toy['code']}",
         "--tokens", "1024", "--out", str(tmp_path / "cmp")],
    )  # fmt: skip


@pytest.mark.usefixtures("few_cpt_starts")
def test_suggest_prints_the_laws_recipe_with_bands_and_saves_the_law(toy, tmp_path, monkeypatch):
    # 4 refits, not 30: this checks the wiring (bands drawn, printed, saved), not their width
    monkeypatch.setattr(suggest, "SUGGEST_BOOTSTRAP", 4)
    result = _compare(
        toy, tmp_path, "rewarm", "rewarm+replay", "--suggest", "--goal", "weighted:0.5"
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "suggest: the CPT law fitted on the base + rewarm, rewarm+replay prefers" in out
    assert "goal weighted:0.5" in out
    # both runs re-warm to one peak: the law says what it cannot fit and what to train
    assert "share one peak LR" in out and "`evertrain law cpt design`" in out
    assert "probe each replay ratio at another peak" in out
    lines = {line.split()[0]: line for line in out.splitlines() if "-data loss" in line}
    for d in ("old-data", "new-data"):
        # "old-data loss 5.12345 [5.1, 5.2]  (base at the stage start ...)": value inside its band
        words = lines[d].replace("[", " ").replace("]", " ").replace(",", " ").split()
        value, lower, upper = float(words[2]), float(words[3]), float(words[4])
        assert lower <= value <= upper
    law = json.loads((tmp_path / "cmp" / "cpt_law.json").read_text())
    assert law["law"] == "cpt" and sorted(law["options"]["fitted_replays"]) == [0.0, 0.25]
    assert law["bootstrap"]["n"] == 4  # the bands came from a bootstrap of the fit


def test_suggest_without_per_distribution_eval_fails_before_training(toy, tmp_path):
    result = _compare(toy, tmp_path, "rewarm", "--suggest", base="base-old-only")
    assert result.exit_code == 2
    assert "--suggest needs the base run" in result.output
    assert "evaluates english" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "cmp" / "rewarm").exists()  # checked before the recipe trained


def test_suggest_needs_a_recipe_from_the_bases_final_checkpoint(toy, tmp_path):
    result = _compare(toy, tmp_path, "retrain", "--suggest")
    assert result.exit_code == 2
    assert "continue the base's final checkpoint" in result.output
    assert not (tmp_path / "cmp" / "retrain").exists()


def test_suggest_rejects_a_bad_goal_before_training(toy, tmp_path):
    result = _compare(toy, tmp_path, "rewarm", "--suggest", "--goal", "cheapest")
    assert result.exit_code == 2
    assert "--goal 'cheapest'" in result.output
    assert not (tmp_path / "cmp" / "rewarm").exists()
