"""End to end on a toy size: the demo pipeline (data -> base -> 4 recipes + retrain -> report)
and decay branches, checked through the files the runs leave behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

# ~25 s of CPU (six toy runs); the default suite covers the same wiring in test_runner.py.
pytestmark = pytest.mark.slow

pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from evertrain.continual import recipes as R  # noqa: E402
from evertrain.continual.branches import (  # noqa: E402
    branch_tree,
    format_tree,
    plot_tree,
    resume_from_branch,
    run_branches,
)
from evertrain.continual.demo import DemoSettings, run_demo  # noqa: E402
from evertrain.continual.runner import ContinualError, Setup, lr_state  # noqa: E402
from evertrain.continual.runs import load_run  # noqa: E402

TOY = DemoSettings(
    scale=0.01,
    vocab_size=300,
    max_bytes=60_000,
    n_layer=1,
    n_head=2,
    d_model=32,
    seq_len=32,
    batch_size=4,
    base_tokens=2048,
    stage_tokens=2048,
    peak=3e-3,
    eval_tokens=512,
    eval_points=2,
)
STEP = TOY.batch_size * TOY.seq_len


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return run_demo(out, settings=TOY, workers=1, progress=False)


def _train(run_dir: Path) -> list[dict]:
    return [r for r in load_run(run_dir).records if r["kind"] == "train"]


def test_demo_trains_every_recipe_from_the_right_checkpoint(demo):
    runs = {name: load_run(path) for name, path in demo.runs.items()}
    assert set(runs) == {
        "base",
        "finetune",
        "rewarm",
        "rewarm+replay",
        "infinite+replay",
        "retrain",
    }
    base = runs["base"]
    pre_anneal = base.meta["pre_anneal_tokens"]
    assert pre_anneal % STEP == 0 and 0 < pre_anneal < base.tokens
    names = {Path(e["path"]).name for e in base.manifest["checkpoints"]}
    assert f"tokens_{pre_anneal}" in names  # pinned for infinite+replay
    # manifest paths are relative to the run folder (a moved run folder still resumes)
    newest = max(base.manifest["checkpoints"], key=lambda e: e["tokens"])["path"]
    final = str((base.path / newest).resolve())
    for name in ("finetune", "rewarm", "rewarm+replay"):
        assert runs[name].parent["checkpoint"] == final
        assert runs[name].meta["offset_tokens"] == base.tokens
    assert Path(runs["infinite+replay"].parent["checkpoint"]).name == f"tokens_{pre_anneal}"
    assert runs["retrain"].parent is None
    assert runs["retrain"].tokens == base.tokens + runs["rewarm"].tokens
    # every run is evaluated on both distributions
    for run in runs.values():
        assert set(run.final_eval) == {"D0", "D1"}


def test_demo_lr_and_mixture_follow_each_recipe(demo):
    base = load_run(demo.runs["base"])
    info = lr_state(base.config["schedule"], base.tokens, STEP, base.meta["pre_anneal_tokens"])
    finetune = _train(demo.runs["finetune"])
    assert [r["lr"] for r in finetune] == pytest.approx([info.final_lr] * len(finetune))
    assert info.final_lr == pytest.approx(
        _train(demo.runs["base"])[-1]["lr"]
    )  # continues the base's last LR
    rewarm = [r["lr"] for r in _train(demo.runs["rewarm"])]
    # warmup (1% of the stage) is shorter than one step here: step 1 already sits near the peak
    assert rewarm[0] == 0.0 and 0.95 * TOY.peak < max(rewarm) <= TOY.peak
    infinite = [r["lr"] for r in _train(demo.runs["infinite+replay"])]
    assert infinite[0] == pytest.approx(info.constant_lr) and infinite[-1] < infinite[0]
    # replay: a quarter of the rewarm+replay tokens come from D0, none of finetune's
    replay = _train(demo.runs["rewarm+replay"])[-1]["tokens_per_source"]
    assert replay["D0"] / (replay["D0"] + replay["D1"]) == pytest.approx(0.25, abs=0.2)
    assert set(_train(demo.runs["finetune"])[-1]["tokens_per_source"]) == {"D1"}


def test_demo_report_and_rerun_reuses_finished_runs(demo, tmp_path):
    assert demo.report.exists() and demo.report.name == "index.html"
    rows = {r["run"]: r for r in demo.rows}
    assert rows["rewarm"]["tokens_vs_baseline"] == pytest.approx(0.5)
    assert rows["finetune"]["forgetting"] is not None
    curves = json.loads((demo.report.parent / "curves.json").read_text())
    assert [s["label"] for s in curves["panels"][0]["series"]] == list(demo.runs)
    walls = {n: load_run(p).meta["wall_seconds"] for n, p in demo.runs.items()}
    again = run_demo(demo.out_dir, settings=TOY, workers=1, progress=False)
    assert {n: load_run(p).meta["wall_seconds"] for n, p in again.runs.items()} == walls
    # a different size in the same folder is refused, and nothing is overwritten
    bigger = DemoSettings(**{**TOY.__dict__, "stage_tokens": 4096})
    with pytest.raises(
        ContinualError,
        match=r"holds a demo of other inputs \(settings.stage_tokens: 2048 -> 4096\)",
    ):
        run_demo(demo.out_dir, settings=bigger, workers=1, progress=False)
    assert load_run(demo.runs["rewarm"]).tokens == 2048


def test_demo_refuses_other_data_in_the_same_folder_naming_the_difference(demo, tmp_path):
    manifest = (demo.out_dir / "data" / "D0" / "manifest.json").read_text()
    walls = {n: load_run(p).meta["wall_seconds"] for n, p in demo.runs.items()}
    # the roles swapped: the bug re-used the English -> code runs and printed their table
    with pytest.raises(ContinualError) as swapped:
        run_demo(
            demo.out_dir,
            data=("stdlib-code", "stdlib-english"),
            settings=TOY,
            workers=1,
            progress=False,
        )
    message = str(swapped.value)
    assert "--data OLD: stdlib-english -> stdlib-code" in message
    assert "--data NEW: stdlib-code -> stdlib-english" in message
    assert "--force" in message and "another --out" in message and "\n" not in message
    # other data of the user's own, and another --max-bytes: each named as old -> new
    german = tmp_path / "german.txt"
    german.write_text("Ein Absatz über Äpfel.\n\nNoch ein Absatz über Birnen.\n" * 50)
    with pytest.raises(ContinualError, match=r"--data NEW: stdlib-code -> .*german.txt"):
        run_demo(demo.out_dir, data=("stdlib-english", german), settings=TOY, progress=False)
    with pytest.raises(ContinualError, match=r"--max-bytes: 60000 -> 0"):
        run_demo(demo.out_dir, settings=TOY, max_bytes=0, progress=False)
    # refused before any work: the prepared data and the runs are untouched
    assert (demo.out_dir / "data" / "D0" / "manifest.json").read_text() == manifest
    assert {n: load_run(p).meta["wall_seconds"] for n, p in demo.runs.items()} == walls


def test_demo_force_starts_over_and_keeps_files_it_did_not_write(demo, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(demo.out_dir, out)
    (out / "notes.txt").write_text("mine")
    tiny = DemoSettings(**{**TOY.__dict__, "base_tokens": 1024, "stage_tokens": 512})
    swapped = ("stdlib-code", "stdlib-english")
    with pytest.raises(ContinualError, match="--force"):
        run_demo(out, data=swapped, settings=tiny, workers=1, progress=False)
    result = run_demo(out, data=swapped, settings=tiny, workers=1, progress=False, force=True)
    assert (out / "notes.txt").read_text() == "mine"
    assert load_run(result.runs["base"]).tokens == 1024  # trained again, not re-used
    sources = json.loads((out / "data" / "D0" / "manifest.json").read_text())["sources"]
    assert [s["source"] for s in sources] == ["stdlib-code"]
    assert result.description.startswith("stdlib-code (D0) → stdlib-english (D1): a ")
    page = result.report.read_text()
    assert "stdlib-code (D0) → stdlib-english (D1)" in page and "M-parameter GPT" in page
    # and now the same inputs re-use these runs
    again = run_demo(out, data=swapped, settings=tiny, workers=1, progress=False)
    assert (
        load_run(again.runs["base"]).meta["wall_seconds"]
        == load_run(result.runs["base"]).meta["wall_seconds"]
    )


def test_demo_schedules_end_where_the_trainer_stops(demo):
    from evertrain.schedules import from_spec
    from evertrain.train import TrainConfig

    for name, path in demo.runs.items():
        cfg = TrainConfig.model_validate(load_run(path).config)
        total = from_spec(cfg.schedule).total
        if total is None:
            continue  # finetune: a constant LR has no end
        last_step = (cfg.total_steps - 1) * cfg.tokens_per_step
        assert last_step < total <= cfg.total_steps * cfg.tokens_per_step, name


def test_decay_branches_share_one_main_run_and_record_their_lineage(demo, tmp_path):
    data = demo.out_dir / "data"
    setup = Setup(
        model=TOY.model,
        train={"batch_size": 4, "device": "cpu", "eval_tokens": 256},
        eval={"D0": str(data / "D0")},
        eval_points=1,
    )
    results = run_branches(
        setup,
        out_dir=tmp_path / "wsd",
        datasets={"D0": str(data / "D0")},
        budgets=[1280, 2560],
        peak=3e-3,
        decay_fraction=0.2,
        progress=False,
    )
    assert set(results) == {"main", "decay-1280", "decay-2560"}
    assert results["main"].tokens == 2048  # (1 - 0.2) * the largest budget
    tree = branch_tree(tmp_path / "wsd" / "main")
    assert [c.fork_tokens for c in sorted(tree.children, key=lambda c: c.fork_tokens)] == [
        1024,
        2048,
    ]
    for child in tree.children:
        budget = child.run.meta["budget"]
        assert child.offset_tokens + child.tokens == budget
        lrs = [r["lr"] for r in child.run.train_records]
        assert lrs[0] == pytest.approx(3e-3) and lrs[-1] < lrs[0]
    assert np.all(np.array([r["lr"] for r in tree.run.train_records][1:]) == pytest.approx(3e-3))
    listing = format_tree(tree)
    assert listing.splitlines()[0].startswith("main") and "forked at 1,024 (tokens_1024)" in listing
    png = plot_tree(tree, tmp_path / "tree.png")
    figure = json.loads(png.with_suffix(".json").read_text())
    assert [s["label"] for s in figure["panels"][1]["series"]] == [
        "main",
        "decay-1280",
        "decay-2560",
    ]
    # WSD-S: go on at the peak from the decayed 1280-token branch; the tree records it
    resumed = resume_from_branch(
        setup,
        branch_dir=tmp_path / "wsd" / "decay-1280",
        out_dir=tmp_path / "wsd" / "main-s",
        datasets={"D0": str(data / "D0")},
        tokens=512,
        peak=3e-3,
        progress=False,
    )
    assert [r["lr"] for r in load_run(resumed.out_dir).train_records] == pytest.approx([3e-3] * 4)
    tree = branch_tree(tmp_path / "wsd" / "main")
    decayed = next(c for c in tree.children if c.name == "decay-1280")
    assert [c.name for c in decayed.children] == ["main-s"]
    assert decayed.children[0].offset_tokens == 1280  # 1024 main + 256 decay
    assert R.RECIPES  # the recipes module stays importable next to torch


def test_demo_with_two_worker_processes_gives_the_same_runs(demo, tmp_path):
    parallel = run_demo(tmp_path / "parallel", settings=TOY, workers=2, progress=False)
    assert set(parallel.runs) == set(demo.runs)
    for name in demo.runs:
        one, two = load_run(demo.runs[name]), load_run(parallel.runs[name])
        assert two.tokens == one.tokens
        # same seed, same data, same schedule: the same losses whichever process trained them
        assert two.final_eval == pytest.approx(one.final_eval, rel=1e-5)
