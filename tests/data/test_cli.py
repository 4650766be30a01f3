"""`evertrain data ...` commands: happy paths and exit code 2 with a clear message on bad input."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from evertrain.cli import app

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
    assert result.exit_code == 2 and "vocab_size=10" in result.output
    result = runner.invoke(app, ["data", "info", str(tmp_path)])
    assert result.exit_code == 2 and "not a prepared dataset" in result.output
    result = runner.invoke(
        app,
        ["data", "tokenizer", "stdlib-code", "-o", str(tmp_path / "t.json"), "--vocab-size", "3"],
    )
    assert result.exit_code == 2 and "vocab_size=3" in result.output


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
