"""How a .txt file becomes documents: paragraphs packed up to 8 KiB, 'file', exact separators."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from evertrain.cli import app
from evertrain.data import TXT_DOCUMENT_BYTES, DataError, SourceStats, iter_documents, prepare
from evertrain.data.corpora import pack_paragraphs, reads_txt


def documents(source, **kwargs) -> list[str]:
    return list(iter_documents(source, stats=SourceStats(source=str(source), kind="?"), **kwargs))


def book_paragraphs(total_bytes: int, seed: int = 0) -> list[str]:
    """Paragraphs of 1-12 lines of prose (a few hundred bytes to ~1.5 KB each), ~total_bytes."""
    rng = random.Random(seed)
    words = "the river ran past old mills and over stones while the town slept é".split()
    paragraphs: list[str] = []
    size = 0
    while size < total_bytes:
        lines = [
            " ".join(rng.choice(words) for _ in range(rng.randint(4, 18)))
            for _ in range(rng.randint(1, 12))
        ]
        paragraph = f"§{len(paragraphs)} " + "\n".join(lines)
        paragraphs.append(paragraph)
        size += len(paragraph.encode()) + 2
    return paragraphs


def test_a_200kb_book_becomes_many_documents_of_whole_paragraphs(tmp_path: Path) -> None:
    paragraphs = book_paragraphs(200_000)
    text = "\n\n".join(paragraphs)
    (tmp_path / "book.txt").write_text(text, encoding="utf-8")
    docs = documents(tmp_path / "book.txt")
    assert len(docs) >= 200_000 // TXT_DOCUMENT_BYTES  # many, not one
    assert all(len(doc.encode()) <= TXT_DOCUMENT_BYTES for doc in docs)
    # Each document is a run of whole paragraphs, in order: nothing split, lost or reordered.
    assert "\n\n".join(docs) == text
    assert [p for doc in docs for p in doc.split("\n\n")] == paragraphs
    # Packed, not one paragraph each: the next paragraph would not have fitted.
    for doc, following in zip(docs, docs[1:], strict=False):
        next_paragraph = following.split("\n\n")[0]
        assert len(f"{doc}\n\n{next_paragraph}".encode()) > TXT_DOCUMENT_BYTES


def test_blank_lines_with_spaces_and_crlf_end_a_paragraph() -> None:
    first, second = "a" * 5000, "b" * 5000
    for separator in ("\n\n", "\n  \t\n\n", "\r\n\r\n"):
        assert list(pack_paragraphs(first + separator + second)) == [first, second]


def test_a_paragraph_over_the_cap_is_split_between_lines() -> None:
    lines = [f"line {i} " + "x" * 90 + "\n" for i in range(300)]  # ~30 KB, no blank line
    giant = "".join(lines)
    text = "short intro\n\n" + giant + "\nshort outro"
    docs = list(pack_paragraphs(text))
    assert docs[0] == "short intro" and docs[-1] == "short outro"
    pieces = docs[1:-1]
    assert len(pieces) >= 4 and all(len(p.encode()) <= TXT_DOCUMENT_BYTES for p in pieces)
    assert "".join(pieces) == giant.rstrip("\n")  # cut only at line ends, nothing lost
    assert all(piece.endswith("\n") for piece in pieces[:-1])
    # A single line longer than the cap has no line boundary: it stays whole.
    one_line = "word " * 3000
    assert list(pack_paragraphs(one_line)) == [one_line]


def test_a_small_file_stays_one_document_exactly(tmp_path: Path) -> None:
    text = "Title\n\nFirst paragraph.\n\nSecond paragraph.\n"
    (tmp_path / "note.txt").write_text(text)
    assert documents(tmp_path / "note.txt") == [text]
    # A folder of small .txt files: one document per file, as before.
    (tmp_path / "more.txt").write_text("another note")
    assert documents(tmp_path) == ["another note", text]


def test_file_rule_and_exact_separator_override_the_default(tmp_path: Path) -> None:
    paragraphs = book_paragraphs(30_000, seed=1)
    text = "\n\n".join(paragraphs)
    (tmp_path / "book.txt").write_text(text, encoding="utf-8")
    assert documents(tmp_path / "book.txt", txt_separator="file") == [text]
    assert documents(tmp_path / "book.txt", txt_separator="\n\n") == paragraphs
    assert documents(tmp_path / "book.txt", txt_separator="paragraphs") == documents(
        tmp_path / "book.txt"
    )
    with pytest.raises(DataError, match="txt_separator=''.*'paragraphs'.*'file'"):
        documents(tmp_path / "book.txt", txt_separator="")


def test_prepare_splits_a_book_and_records_the_rule(tmp_path: Path, tokenizer_path) -> None:
    book = tmp_path / "book.txt"
    book.write_text("\n\n".join(book_paragraphs(100_000)), encoding="utf-8")
    ds = prepare([book], tmp_path / "out", tokenizer=tokenizer_path, progress=False)
    assert ds.manifest["documents"]["train"] > 5 and ds.manifest["documents"]["val"] > 0
    rule = {"rule": "paragraphs", "max_document_bytes": TXT_DOCUMENT_BYTES}
    assert ds.manifest["inputs"]["txt_documents"] == rule
    # A dataset made under another rule is not taken for this one (no stale shards).
    with pytest.raises(DataError, match="txt_documents"):
        prepare(
            [book], tmp_path / "out", tokenizer=tokenizer_path, txt_separator="\n\n", progress=False
        )
    again = prepare(
        [book],
        tmp_path / "out",
        tokenizer=tokenizer_path,
        txt_separator="\n\n",
        overwrite=True,
        progress=False,
    )
    assert sum(again.manifest["documents"].values()) > sum(ds.manifest["documents"].values())
    with pytest.raises(DataError, match="the corpus has 1 document"):
        prepare([book], tmp_path / "one", tokenizer=tokenizer_path, txt_separator="file")


def test_builtin_corpora_and_jsonl_do_not_depend_on_the_txt_rule(
    english, tmp_path: Path, tokenizer_path
) -> None:
    assert not reads_txt("stdlib-english") and not reads_txt("stdlib-code")
    assert "txt_documents" not in english.manifest["inputs"]
    (tmp_path / "a.jsonl").write_text("".join(f'{{"text": "row {i}"}}\n' for i in range(10)))
    assert not reads_txt(tmp_path / "a.jsonl") and reads_txt(tmp_path) is False
    (tmp_path / "b.txt").write_text("a txt file in the folder")
    assert reads_txt(tmp_path)


def test_cli_prepares_one_book_without_options(tmp_path: Path, tokenizer_path) -> None:
    book = tmp_path / "book.txt"
    book.write_text("\n\n".join(book_paragraphs(60_000)), encoding="utf-8")
    out = tmp_path / "out"
    args = ["data", "prepare", str(book), "-t", str(tokenizer_path), "-q", "-o"]
    result = CliRunner().invoke(app, [*args, str(out)])
    assert result.exit_code == 0, result.output
    from evertrain.data import PreparedDataset

    assert PreparedDataset(out).manifest["documents"]["val"] > 0
    assert np.asarray(PreparedDataset(out).train_tokens).size > 0
    # One document per file: the error names the flags to use, not Python keywords.
    result = CliRunner().invoke(app, [*args, str(tmp_path / "o2"), "--txt-separator", "file"])
    assert result.exit_code == 2
    assert "--txt-separator" in result.output and "--val-fraction=0" in result.output
    assert "txt_separator" not in result.output and "val_fraction" not in result.output
