"""Average branches: a model for a budget from a constant-LR main run by averaging its
checkpoints in a window (no decay steps), beside WSD decay branches in one tree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("tokenizers")

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from evertrain.cli import app  # noqa: E402
from evertrain.continual.branches import (  # noqa: E402
    average_branch,
    branch_tree,
    format_tree,
    plot_tree,
    run_branches,
)
from evertrain.continual.runner import ContinualError, Setup  # noqa: E402
from evertrain.continual.runs import load_run  # noqa: E402


@pytest.fixture(scope="module")
def branches(tmp_path_factory) -> Path:
    """Main run to 1024 tokens (8 steps of 128) pinning 512/768/1024, an average branch for
    1024 over those three and a decay branch forking at 768."""
    from evertrain.data import prepare, train_tokenizer

    root = tmp_path_factory.mktemp("branches")
    tokenizer = train_tokenizer(["stdlib-english"], root / "tok.json", 300, max_bytes=30_000)
    data = str(
        prepare(
            ["stdlib-english"],
            root / "english",
            tokenizer=tokenizer,
            max_bytes=30_000,
            progress=False,
        ).path
    )
    setup = Setup(
        model={"n_layer": 1, "n_head": 2, "d_model": 32, "seq_len": 32},
        train={"batch_size": 4, "device": "cpu", "eval_tokens": 256},
        eval={"english": data},
        eval_points=1,
    )
    results = run_branches(
        setup,
        out_dir=root / "wsd",
        datasets={"english": data},
        budgets=[1024],
        peak=3e-3,
        decay_fraction=0.25,
        average_window_fraction=0.5,
        average_points=3,
        progress=False,
    )
    assert set(results) == {"main", "average-1024", "decay-1024"}
    return root / "wsd"


def test_average_branch_equals_train_average_of_the_same_checkpoints(
    branches: Path, tmp_path: Path
) -> None:
    sources = [branches / "main" / "checkpoints" / f"tokens_{t}" for t in (512, 768, 1024)]
    result = CliRunner().invoke(
        app, ["train", "average", *map(str, sources), "-o", str(tmp_path / "avg")]
    )
    assert result.exit_code == 0, result.output
    expected = load_file(tmp_path / "avg" / "model.safetensors")
    branch = load_file(branches / "average-1024" / "checkpoints" / "average" / "model.safetensors")
    assert branch.keys() == expected.keys()
    assert all(torch.equal(branch[name], expected[name]) for name in expected)
    meta = load_run(branches / "average-1024").meta
    assert meta["kind"] == "average" and meta["budget"] == 1024
    assert [s["tokens"] for s in meta["sources"]] == [512, 768, 1024]


def test_the_tree_lists_and_plots_both_kinds(branches: Path, tmp_path: Path) -> None:
    tree = branch_tree(branches / "main")
    kinds = {child.name: child.kind for child in tree.children}
    assert kinds == {"average-1024": "average", "decay-1024": "run"}
    average = next(c for c in tree.children if c.kind == "average")
    assert (average.fork_tokens, average.offset_tokens, average.tokens) == (1024, 1024, 0)
    assert set(average.final_eval) == {"english"}  # evaluated once, as the trainer would
    listing = format_tree(tree)
    assert (
        "average-1024 forked at 1,024 (tokens_1024)  "
        "[average of 3 checkpoints at tokens 512–1,024, no decay]  tokens 1,024 → 1,024"
    ) in listing
    assert "decay-1024 forked at 768 (tokens_768)  [linear" in listing
    figure = json.loads(plot_tree(tree, tmp_path / "tree.png").with_suffix(".json").read_text())
    assert [s["label"] for s in figure["panels"][0]["series"]] == [
        "main",
        "decay-1024",
        "average-1024",
    ]
    result = CliRunner().invoke(app, ["continual", "branches", str(branches / "main")])
    assert result.exit_code == 0 and "average of 3 checkpoints" in result.output


def test_a_finished_average_branch_is_returned_as_is(branches: Path) -> None:
    folder = branches / "average-1024"
    before = (folder / "manifest.json").read_text()
    again = average_branch(
        branches / "main",
        budget=1024,
        window_tokens=512,
        out_dir=folder,
        at_tokens=[512, 768, 1024],
    )
    assert again == folder and (folder / "manifest.json").read_text() == before


def test_an_empty_window_is_a_one_line_error(branches: Path, tmp_path: Path) -> None:
    with pytest.raises(ContinualError, match=r"no checkpoint at tokens 2,000–3,000 .*pin some"):
        average_branch(branches / "main", budget=3000, window_tokens=1000, out_dir=tmp_path / "x")
