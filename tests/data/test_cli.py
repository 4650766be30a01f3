"""`evertrain data ...` commands: happy paths and exit code 2 with a clear message on bad input."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from evertrain.cli import app

from ..lock_holder import lock_held_elsewhere

runner = CliRunner()


def test_prepare_then_info(tmp_path, tokenizer_path) -> None:
    (tmp_path / "docs").mkdir()
    for i in range(12):
        (tmp_path / "docs" / f"{i}.txt").write_text(f"document {i} " * 20)
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "data",
            "prepare",
            str(tmp_path / "docs"),
            "-t",
            str(tokenizer_path),
            "-o",
            str(out),
            "-q",
            "--val-fraction",
            "0.2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "train +" in result.output and (out / "manifest.json").exists()
    result = runner.invoke(app, ["data", "info", str(out), "--verify", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["verified"] and summary["documents_train"] + summary["documents_val"] == 12
    assert (
        summary["tokens_train"]
        == json.loads((out / "manifest.json").read_text())["tokens"]["train"]
    )
    result = runner.invoke(app, ["data", "info", str(out)])
    assert result.exit_code == 0 and "tokens_train" in result.output


def test_bad_input_exits_2_with_the_message(tmp_path, tokenizer_path) -> None:
    result = runner.invoke(
        app,
        [
            "data",
            "prepare",
            str(tmp_path / "missing.txt"),
            "-t",
            str(tokenizer_path),
            "-o",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 2 and "does not exist" in result.output
    result = runner.invoke(
        app, ["data", "prepare", "stdlib-code", "--vocab-size", "10", "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "--vocab-size=10 is too small" in result.output
    assert "set --vocab-size >= 257" in result.output
    result = runner.invoke(app, ["data", "info", str(tmp_path)])
    assert result.exit_code == 2 and "not a prepared dataset" in result.output
    result = runner.invoke(
        app,
        ["data", "tokenizer", "stdlib-code", "-o", str(tmp_path / "t.json"), "--vocab-size", "3"],
    )
    assert result.exit_code == 2 and "--vocab-size=3" in result.output


def test_tokenizer_and_corpora_commands(tmp_path, monkeypatch) -> None:
    (tmp_path / "a.txt").write_text("hello world, hello tokenizer " * 50)
    result = runner.invoke(
        app,
        [
            "data",
            "tokenizer",
            str(tmp_path / "a.txt"),
            "-o",
            str(tmp_path / "tok.json"),
            "--vocab-size",
            "300",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "tok.json").exists()
    # The full walk of the standard library takes seconds; the command's own logic does not.
    import evertrain.data.corpora as corpora

    monkeypatch.setattr(corpora, "builtin_documents", lambda name: ("hello world", "héllo"))
    result = runner.invoke(app, ["data", "corpora", "-t", str(tmp_path / "tok.json")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("stdlib-english") and lines[1].startswith("stdlib-code")
    # 2 documents, 11 + 6 UTF-8 bytes, tokens include one EOS per document.
    assert "2 documents" in lines[0] and "17 bytes" in lines[0] and " tokens" in lines[0]


def test_quiet_prepare_still_reports_replaced_bytes(tmp_path, tokenizer_path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_bytes(b"caf\xe9 au lait")
    (tmp_path / "docs" / "b.txt").write_text("plain text")
    result = CliRunner().invoke(
        app,
        [
            "data",
            "prepare",
            str(tmp_path / "docs"),
            "-t",
            str(tokenizer_path),
            "-o",
            str(tmp_path / "o"),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "replaced 1 undecodable bytes" in result.output


def _prepare_args(tmp_path, tokenizer_path, out) -> list[str]:
    (tmp_path / "docs").mkdir(exist_ok=True)
    for i in range(6):
        (tmp_path / "docs" / f"{i}.txt").write_text(f"document {i} " * 20)
    return ["data", "prepare", str(tmp_path / "docs"), "-t", str(tokenizer_path), "-o", str(out)]


def test_an_output_path_that_is_a_file_is_one_line_exit_2(tmp_path, tokenizer_path, monkeypatch):
    import evertrain.data.shards as shards

    # Checked before tokenising: encoding never starts.
    monkeypatch.setattr(shards, "_encoded_batches", lambda *a: pytest.fail("tokenising started"))
    (tmp_path / "taken").write_text("a file")
    for out, says in (
        (tmp_path / "taken", "is a file, but a folder is written here: give a folder path"),
        (tmp_path / "taken" / "ds", f"{tmp_path / 'taken'} is a file, not a folder: choose"),
    ):
        result = runner.invoke(app, _prepare_args(tmp_path, tokenizer_path, out))
        assert result.exit_code == 2, result.output
        assert result.output.count("\n") == 1 and says in result.output
        assert f"--out {out}: " in result.output
    assert (tmp_path / "taken").read_text() == "a file"


def test_a_prepare_into_a_folder_in_use_is_one_line_exit_2(tmp_path, tokenizer_path) -> None:
    from evertrain._lock import FolderLock

    out = tmp_path / "out"
    args = _prepare_args(tmp_path, tokenizer_path, out)
    with lock_held_elsewhere(out, "dataset folder") as holder:
        result = runner.invoke(app, args)
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert f"dataset folder {out} is in use by pid {holder.pid}" in result.output
    assert not (out / "manifest.json").exists()
    with FolderLock(out):  # released: a dead holder's lock is taken over
        pass
    assert runner.invoke(app, [*args, "-q"]).exit_code == 0


def test_a_missing_column_names_the_flag_and_leaves_no_folder(tmp_path, tokenizer_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"content": ["alpha", "beta"]}), tmp_path / "t.parquet")
    out = tmp_path / "new" / "out"
    result = runner.invoke(
        app,
        ["data", "prepare", str(tmp_path / "t.parquet"), "-t", str(tokenizer_path), "-o", str(out)],
    )
    assert result.exit_code == 2
    assert (
        "set --text-column to one of them" in result.output and "text_column" not in result.output
    )
    assert not (tmp_path / "new").exists()
    (tmp_path / "a.jsonl").write_text('{"body": "x"}\n')
    result = runner.invoke(
        app,
        ["data", "prepare", str(tmp_path / "a.jsonl"), "-t", str(tokenizer_path), "-o", str(out)],
    )
    assert result.exit_code == 2 and "set --text-field to the field" in result.output
    assert not (tmp_path / "new").exists()


def test_cli_words_swaps_keywords_for_flags_outside_quotes() -> None:
    from evertrain.data.cli import _PREPARE_FLAGS, cli_words

    assert cli_words("max_bytes=0 must be (or None for no cap)", _PREPARE_FLAGS) == (
        "--max-bytes=0 must be (or 0 for no cap)"
    )
    assert cli_words("seed=-3 must be; the seed decides", _PREPARE_FLAGS) == (
        "--seed=-3 must be; the seed decides"
    )
    assert cli_words("'/data/text_field/a.jsonl' lacks text_field", _PREPARE_FLAGS) == (
        "'/data/text_field/a.jsonl' lacks --text-field"
    )
    assert cli_words("choose another out_dir, or pass overwrite=True", _PREPARE_FLAGS) == (
        "choose another --out, or pass --overwrite"
    )
    assert cli_words("bytes_used and max_bytes_x stay", _PREPARE_FLAGS) == (
        "bytes_used and max_bytes_x stay"
    )


def test_quiet_prepare_still_reports_a_cut_source(tmp_path, tokenizer_path) -> None:
    args = _prepare_args(tmp_path, tokenizer_path, tmp_path / "out")
    result = CliRunner().invoke(app, [*args, "-q", "--max-bytes", "300"])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if "cut at the" in line)
    assert "300-byte cap per source" in line and "300 of" in line and "%" in line
    # 0 means everything, as in `evertrain demo --max-bytes`.
    result = CliRunner().invoke(app, [*args[:-1], str(tmp_path / "all"), "-q", "--max-bytes", "0"])
    assert result.exit_code == 0 and "cut at the" not in result.output


def test_mixture_yaml_reads_exponent_numbers_as_numbers(tmp_path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("old: 3e-3\nnew:\n  name: piecewise_linear\n  points: [[0, 1], [1e5, 0.5]]\n")
    result = runner.invoke(
        app, ["data", "mixture", str(recipe), "--total-tokens", "100000", "--points", "2"]
    )
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[1].split()
    assert first[0] == "0" and abs(float(first[1]) - 0.003 / 1.003) < 1e-4
    last = result.output.splitlines()[2].split()
    assert abs(float(last[1]) - 0.003 / 0.503) < 1e-4
    (tmp_path / "bad.yaml").write_text("old: [1,\n")
    result = runner.invoke(
        app, ["data", "mixture", str(tmp_path / "bad.yaml"), "--total-tokens", "10"]
    )
    assert result.exit_code == 2 and "is not valid YAML" in result.output
    assert result.output.count("\n") == 1


def test_tokenizer_and_plot_outputs_below_a_file_are_one_line_exit_2(tmp_path) -> None:
    (tmp_path / "taken").write_text("a file")
    (tmp_path / "a.txt").write_text("hello world " * 50)
    result = runner.invoke(
        app,
        ["data", "tokenizer", str(tmp_path / "a.txt"), "-o", str(tmp_path / "taken" / "t.json")],
    )
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "--out" in result.output and "is a file, not a folder" in result.output
    result = runner.invoke(
        app,
        ["data", "mixture", '{"a": 1, "b": 1}', "--total-tokens", "10", "--plot", str(tmp_path)],
    )
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert f"--plot {tmp_path}: is a folder" in result.output
