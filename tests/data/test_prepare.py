"""prepare / PreparedDataset: shards, manifest, EOS, val split, no-op, rebuild, bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from evertrain._hashing import file_sha256
from evertrain.data import DataError, PreparedDataset, load_tokenizer, prepare, token_dtype

from ..lock_holder import lock_held_elsewhere


def write_docs(folder: Path, docs: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, doc in enumerate(docs):
        (folder / f"doc{i:03d}.txt").write_text(doc)
    return folder


DOCS = [f"Document number {i} says hello {'world ' * (i % 7 + 1)}." for i in range(40)]


def test_manifest_records_counts_checksums_and_provenance(english, tokenizer_path) -> None:
    m = english.manifest
    assert m["format"] == "evertrain.prepared/1" and m["created_by"].startswith("evertrain ")
    assert m["dtype"] == "uint16" and english.train_tokens.dtype == np.uint16
    assert (
        m["tokenizer"]["sha256"]
        == file_sha256(tokenizer_path)
        == file_sha256(english.tokenizer_path)
    )
    assert m["tokenizer"]["vocab_size"] == english.vocab_size == 512
    for split, tokens in (("train", english.train_tokens), ("val", english.val_tokens)):
        shard = m["shards"][split]
        assert shard["tokens"] == len(tokens) == m["tokens"][split] > 0
        assert shard["sha256"] == file_sha256(english.path / shard["file"])
    source = m["sources"][0]
    assert source["source"] == "stdlib-english" and source["kind"] == "builtin"
    assert source["tokens"] == len(english.train_tokens) + len(english.val_tokens)
    assert source["documents"] == m["documents"]["train"] + m["documents"]["val"]
    assert source["bytes"] == m["bytes"] <= 300_000 and source["truncated_at_max_bytes"]
    english.verify()


def test_every_document_ends_with_eos_and_round_trips(tmp_path, tokenizer_path) -> None:
    ds = prepare(
        [write_docs(tmp_path / "docs", DOCS)],
        tmp_path / "out",
        tokenizer=tokenizer_path,
        val_fraction=0.25,
        progress=False,
    )
    tok = load_tokenizer(ds.tokenizer_path)
    texts = []
    for tokens in (ds.train_tokens, ds.val_tokens):
        ids = np.asarray(tokens)
        assert ids[-1] == ds.eos_id
        ends = np.flatnonzero(ids == ds.eos_id)
        starts = np.concatenate([[0], ends[:-1] + 1])
        texts += [tok.decode(ids[s:e].tolist()) for s, e in zip(starts, ends, strict=True)]
    # Byte-level BPE is lossless; the split is by whole documents.
    assert sorted(texts) == sorted(DOCS)
    assert ds.manifest["documents"] == {
        "train": len(DOCS) - ds.manifest["documents"]["val"],
        "val": ds.manifest["documents"]["val"],
    }


def test_val_split_is_by_document_and_decided_by_seed(tmp_path, tokenizer_path) -> None:
    folder = write_docs(tmp_path / "docs", DOCS)
    a = prepare(
        [folder], tmp_path / "a", tokenizer=tokenizer_path, val_fraction=0.3, seed=1, progress=False
    )
    b = prepare(
        [folder], tmp_path / "b", tokenizer=tokenizer_path, val_fraction=0.3, seed=1, progress=False
    )
    c = prepare(
        [folder], tmp_path / "c", tokenizer=tokenizer_path, val_fraction=0.3, seed=2, progress=False
    )
    assert np.array_equal(a.val_tokens, b.val_tokens) and np.array_equal(
        a.train_tokens, b.train_tokens
    )
    assert not np.array_equal(a.val_tokens, c.val_tokens)
    assert 0 < a.manifest["documents"]["val"] < len(DOCS)
    # A split of 0 writes an empty val shard that still opens.
    d = prepare([folder], tmp_path / "d", tokenizer=tokenizer_path, val_fraction=0, progress=False)
    assert len(d.val_tokens) == 0 and d.manifest["documents"]["train"] == len(DOCS)


def test_a_tiny_corpus_still_gets_a_val_document(tmp_path, tokenizer_path) -> None:
    folder = write_docs(tmp_path / "docs", ["first document", "second document"])
    ds = prepare(
        [folder], tmp_path / "out", tokenizer=tokenizer_path, val_fraction=0.01, progress=False
    )
    assert ds.manifest["documents"] == {"train": 1, "val": 1}
    source = ds.manifest["sources"][0]  # the per-source counts follow the moved document
    assert (source["train_documents"], source["val_documents"]) == (1, 1)
    assert (source["train_tokens"], source["val_tokens"]) == (
        len(ds.train_tokens),
        len(ds.val_tokens),
    )
    assert ds.manifest["shards"]["train"]["sha256"] == file_sha256(ds.path / "train.bin")
    # Seed 0's first two uniforms are both < 0.05: both documents draw val, one moves back.
    ds = prepare(
        [folder], tmp_path / "out2", tokenizer=tokenizer_path, val_fraction=0.05, progress=False
    )
    assert ds.manifest["documents"] == {"train": 1, "val": 1}
    source = ds.manifest["sources"][0]
    assert (source["train_tokens"], source["val_tokens"]) == (
        len(ds.train_tokens),
        len(ds.val_tokens),
    )
    assert ds.manifest["shards"]["val"]["sha256"] == file_sha256(ds.path / "val.bin")
    with pytest.raises(DataError, match="at least 2"):
        prepare(
            [write_docs(tmp_path / "one", ["only"])],
            tmp_path / "o",
            tokenizer=tokenizer_path,
            progress=False,
        )


def test_rerun_on_a_finished_directory_is_a_noop(english, tokenizer_path) -> None:
    files = {p.name: p.stat().st_mtime_ns for p in english.path.iterdir()}
    again = prepare(
        ["stdlib-english"],
        english.path,
        tokenizer=tokenizer_path,
        max_bytes=300_000,
        progress=False,
    )
    assert {p.name: p.stat().st_mtime_ns for p in english.path.iterdir()} == files
    assert again.manifest == english.manifest


def test_rerun_with_other_inputs_is_refused_unless_overwrite(tmp_path, tokenizer_path) -> None:
    folder = write_docs(tmp_path / "docs", DOCS)
    prepare([folder], tmp_path / "out", tokenizer=tokenizer_path, progress=False)
    with pytest.raises(DataError, match=r"other inputs \(seed differ\)"):
        prepare([folder], tmp_path / "out", tokenizer=tokenizer_path, seed=5, progress=False)
    ds = prepare(
        [folder], tmp_path / "out", tokenizer=tokenizer_path, seed=5, overwrite=True, progress=False
    )
    assert ds.manifest["inputs"]["seed"] == 5


def test_half_written_directory_is_detected_and_rebuilt(tmp_path, tokenizer_path, capsys) -> None:
    folder = write_docs(tmp_path / "docs", DOCS)
    out = tmp_path / "out"
    reference = prepare([folder], out, tokenizer=tokenizer_path, progress=False)
    train = np.array(reference.train_tokens)
    # A run killed before the manifest: shards written, no manifest, a stale temp file.
    (out / "manifest.json").unlink()
    (out / ".train.bin.12345.tmp").write_bytes(b"partial")
    with pytest.raises(DataError, match="not a prepared dataset"):
        PreparedDataset(out)
    rebuilt = prepare([folder], out, tokenizer=tokenizer_path, progress=True)
    assert "rebuilding" in capsys.readouterr().out
    assert np.array_equal(rebuilt.train_tokens, train)
    assert not list(out.glob("*.tmp"))
    # A truncated shard under a manifest is also rebuilt, never served.
    with open(out / "train.bin", "r+b") as handle:
        handle.truncate(10)
    with pytest.raises(DataError, match="damaged"):
        PreparedDataset(out)
    assert np.array_equal(
        prepare([folder], out, tokenizer=tokenizer_path, progress=False).train_tokens, train
    )


def test_unknown_files_in_out_dir_are_never_deleted(tmp_path, tokenizer_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(DataError, match="did not write"):
        prepare(
            [write_docs(tmp_path / "docs", DOCS)], out, tokenizer=tokenizer_path, progress=False
        )
    assert (out / "precious.txt").read_text() == "keep me"


def test_verify_catches_a_flipped_byte(tmp_path, tokenizer_path) -> None:
    ds = prepare(
        [write_docs(tmp_path / "docs", DOCS)],
        tmp_path / "out",
        tokenizer=tokenizer_path,
        progress=False,
    )
    data = bytearray((ds.path / "train.bin").read_bytes())
    data[3] ^= 0xFF
    (ds.path / "train.bin").write_bytes(bytes(data))
    with pytest.raises(DataError, match="sha256"):
        PreparedDataset(ds.path).verify()


def test_prepare_trains_a_tokenizer_when_none_is_given(tmp_path) -> None:
    ds = prepare(
        [write_docs(tmp_path / "docs", DOCS * 3)], tmp_path / "out", vocab_size=300, progress=False
    )
    assert ds.vocab_size == 300 and ds.manifest["tokenizer"]["trained"]
    assert ds.tokenizer_path == tmp_path / "out" / "tokenizer.json"
    # Same inputs, same trained tokenizer: a no-op, not a mismatch.
    assert (
        prepare([tmp_path / "docs"], tmp_path / "out", vocab_size=300, progress=False).manifest
        == ds.manifest
    )


def test_token_dtype_by_vocabulary_size() -> None:
    assert token_dtype(512) == np.uint16 and token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32 and token_dtype(200_000) == np.uint32


def test_undecodable_bytes_are_replaced_counted_and_reported(
    tmp_path, tokenizer_path, capsys
) -> None:
    folder = write_docs(tmp_path / "docs", DOCS[:5])
    (folder / "bad.txt").write_bytes(b"valid text \xff\xfe then \xc3 more")  # 2 + 1 bad bytes
    ds = prepare(
        [folder], tmp_path / "out", tokenizer=tokenizer_path, val_fraction=0, progress=True
    )
    assert ds.manifest["undecodable_bytes"] == 3
    assert ds.manifest["sources"][0]["undecodable_bytes"] == 3
    assert "replaced 3 undecodable bytes" in capsys.readouterr().out
    text = load_tokenizer(ds.tokenizer_path).decode(np.asarray(ds.train_tokens).tolist())
    assert "valid text \ufffd\ufffd then \ufffd more" in text


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda t, tok: prepare([t / "missing.txt"], t / "o", tokenizer=tok), "does not exist"),
        (lambda t, tok: prepare([], t / "o", tokenizer=tok), "sources is empty"),
        (lambda t, tok: prepare(["stdlib-klingon"], t / "o", tokenizer=tok), "does not exist"),
        (lambda t, tok: prepare(["stdlib-code"], t / "o", tokenizer=t / "nope.json"), "tokenizer"),
        (
            lambda t, tok: prepare(["stdlib-code"], t / "o", tokenizer=tok, val_fraction=1.0),
            "val_fraction=1.0",
        ),
        (lambda t, tok: prepare(["stdlib-code"], t / "o", tokenizer=tok, seed=-3), "seed=-3"),
        (lambda t, tok: prepare(["stdlib-code"], t / "o", vocab_size=100), "vocab_size=100"),
        (
            lambda t, tok: prepare(["stdlib-code"], t / "o", tokenizer=tok, max_bytes=0),
            "max_bytes=0",
        ),
        (lambda t, tok: prepare([t / "data.csv"], t / "o", tokenizer=tok), "suffix '.csv'"),
        (lambda t, tok: prepare([t / "empty.txt"], t / "o", tokenizer=tok), "has no text"),
        (
            lambda t, tok: prepare([t / "emptydir"], t / "o", tokenizer=tok),
            "no .txt, .jsonl or .parquet",
        ),
        (lambda t, tok: prepare(["stdlib-code"], t / "data.csv", tokenizer=tok), "is a file"),
    ],
)
def test_bad_input_gets_a_clear_error(tmp_path, tokenizer_path, call, message) -> None:
    (tmp_path / "data.csv").write_text("a,b\n")
    (tmp_path / "empty.txt").write_text("  \n\n")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(DataError, match=message):
        call(tmp_path, tokenizer_path)
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_a_failed_prepare_leaves_no_shards_or_temp_files(tmp_path, tokenizer_path) -> None:
    folder = write_docs(tmp_path / "docs", DOCS)
    (folder / "zz.jsonl").write_text('{"text": "fine"}\n{"body": "no text field"}\n')
    with pytest.raises(DataError, match="text_field"):
        prepare([folder], tmp_path / "out", tokenizer=tokenizer_path, progress=False)
    # The folder did not exist: the failed prepare removes it (no shard, temp file, tokenizer).
    assert not (tmp_path / "out").exists()


def test_manifest_is_json_with_no_nan(english) -> None:
    text = (english.path / "manifest.json").read_text()
    assert "NaN" not in text and json.loads(text)["name"] == "english"


def test_rebuild_keeps_a_tokenizer_that_lives_in_out_dir(tmp_path, tokenizer_path) -> None:
    folder = write_docs(tmp_path / "docs", DOCS)
    out = tmp_path / "out"
    first = prepare([folder], out, tokenizer=tokenizer_path, progress=False)
    (out / "manifest.json").unlink()  # killed before the manifest
    again = prepare([folder], out, tokenizer=out / "tokenizer.json", progress=False)
    assert np.array_equal(again.train_tokens, first.train_tokens)
    assert file_sha256(out / "tokenizer.json") == file_sha256(tokenizer_path)


KILLED_RUN = """
import os, signal, sys
import evertrain.data.shards as prep
real = prep._encoded_batches

def killed_after_first_batch(tokenizer, batches):
    for index, item in enumerate(real(tokenizer, batches)):
        if index == 1:
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no finally: like a power cut
        yield item

prep._encoded_batches = killed_after_first_batch
prep._BATCH_DOCUMENTS = 10
prep.prepare([sys.argv[1]], sys.argv[2], tokenizer=sys.argv[3], progress=False)
"""


def test_a_run_killed_mid_write_is_detected_and_rebuilt(tmp_path, tokenizer_path) -> None:
    import signal
    import subprocess
    import sys

    folder = write_docs(tmp_path / "docs", DOCS)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(folder), str(out), str(tokenizer_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert not (out / "manifest.json").exists()
    assert list(out.glob(".train.bin.*.tmp"))  # the half-written shard is still there
    with pytest.raises(DataError, match="not a prepared dataset"):
        PreparedDataset(out)
    rebuilt = prepare([folder], out, tokenizer=tokenizer_path, progress=False)
    clean = prepare([folder], tmp_path / "clean", tokenizer=tokenizer_path, progress=False)
    assert np.array_equal(rebuilt.train_tokens, clean.train_tokens)
    assert np.array_equal(rebuilt.val_tokens, clean.val_tokens)
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


def test_one_big_txt_file_is_split_into_documents_with_txt_separator(
    tmp_path, tokenizer_path
) -> None:
    paragraphs = [f"Paragraph {i}: " + "words and more words " * (i % 5 + 1) for i in range(30)]
    book = tmp_path / "book.txt"
    book.write_text("\n\n".join(paragraphs))
    with pytest.raises(DataError, match="txt_separator"):
        prepare([book], tmp_path / "one", tokenizer=tokenizer_path, progress=False)
    ds = prepare(
        [book],
        tmp_path / "out",
        tokenizer=tokenizer_path,
        txt_separator="\n\n",
        val_fraction=0.2,
        progress=False,
    )
    assert sum(ds.manifest["documents"].values()) == 30 and ds.manifest["documents"]["val"] > 0
    assert ds.manifest["inputs"]["txt_separator"] == "\n\n"
    tok = load_tokenizer(ds.tokenizer_path)
    ids = np.asarray(ds.train_tokens)
    ends = np.flatnonzero(ids == ds.eos_id)
    first = tok.decode(ids[: ends[0]].tolist())
    assert first in paragraphs
    with pytest.raises(DataError, match="txt_separator=''"):
        prepare(
            [book], tmp_path / "bad", tokenizer=tokenizer_path, txt_separator="", progress=False
        )


def test_cli_txt_separator_reads_escapes(tmp_path, tokenizer_path) -> None:
    from typer.testing import CliRunner

    from evertrain.cli import app

    (tmp_path / "book.txt").write_text("one para\n\ntwo para\n\nthree para")
    result = CliRunner().invoke(
        app,
        [
            "data",
            "prepare",
            str(tmp_path / "book.txt"),
            "-t",
            str(tokenizer_path),
            "-o",
            str(tmp_path / "o"),
            "-q",
            "--txt-separator",
            "\\n\\n",
        ],
    )
    assert result.exit_code == 0, result.output
    assert sum(PreparedDataset(tmp_path / "o").manifest["documents"].values()) == 3


# --- what max_bytes cut ------------------------------------------------------------------------


def test_a_cut_source_is_recorded_and_named_with_the_fraction(tmp_path, tokenizer_path, capsys):
    folder = write_docs(tmp_path / "docs", DOCS)
    total = sum(len(doc.encode()) for doc in DOCS)
    ds = prepare([folder], tmp_path / "out", tokenizer=tokenizer_path, max_bytes=1000)
    assert ds.sources == [
        {"source": str(folder), "bytes_used": 1000, "bytes_available": total, "truncated": True}
    ]
    assert ds.manifest["sources"][0]["bytes_available"] == total
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "cut at the" in line)
    assert str(folder) in line and f"1,000 of {total:,} bytes used" in line
    assert f"({1000 / total:.1%})" in line
    # Not cut: everything used, nothing printed about it.
    whole = prepare([folder], tmp_path / "whole", tokenizer=tokenizer_path)
    assert whole.sources[0] == {
        "source": str(folder),
        "bytes_used": total,
        "bytes_available": total,
        "truncated": False,
    }
    assert "cut at the" not in capsys.readouterr().out


def test_a_cut_jsonl_source_has_an_unknown_total(tmp_path, tokenizer_path, capsys):
    lines = "".join(json.dumps({"text": doc}) + "\n" for doc in DOCS)
    (tmp_path / "a.jsonl").write_text(lines)
    ds = prepare([tmp_path / "a.jsonl"], tmp_path / "out", tokenizer=tokenizer_path, max_bytes=500)
    assert ds.sources[0]["truncated"] and ds.sources[0]["bytes_available"] is None
    assert "500 bytes used, of a total not known" in capsys.readouterr().out


def test_a_cap_filled_exactly_by_whole_documents_still_counts_as_a_cut(tmp_path) -> None:
    from evertrain.data import SourceStats, iter_documents

    folder = write_docs(tmp_path / "docs", ["aaaa", "bbbb", "cccc"])
    stats = SourceStats(source=str(folder), kind="folder")
    assert list(iter_documents(folder, max_bytes=8, stats=stats)) == ["aaaa", "bbbb"]
    assert stats.truncated_at_max_bytes and stats.bytes_available == 12
    stats = SourceStats(source=str(folder), kind="folder")
    assert len(list(iter_documents(folder, max_bytes=12, stats=stats))) == 3
    assert not stats.truncated_at_max_bytes and stats.bytes_available == 12


def test_stdlib_code_knows_its_size_when_cut(code) -> None:
    (record,) = code.sources
    assert record["truncated"] and record["bytes_used"] <= 300_000
    assert record["bytes_available"] > 1_000_000  # the whole stdlib, from its file sizes


# --- a failed prepare --------------------------------------------------------------------------


def test_a_failed_prepare_removes_every_folder_it_created(tmp_path, tokenizer_path) -> None:
    folder = write_docs(tmp_path / "docs", DOCS)
    (folder / "zz.jsonl").write_text('{"text": "fine"}\n{"body": "no text field"}\n')
    with pytest.raises(DataError, match="text_field"):
        prepare([folder], tmp_path / "a" / "b" / "out", tokenizer=tokenizer_path, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["docs"]
    # A folder that existed is kept, and left as it was (no lock file, no temp file).
    (tmp_path / "mine").mkdir()
    with pytest.raises(DataError, match="text_field"):
        prepare([folder], tmp_path / "mine", tokenizer=tokenizer_path, progress=False)
    assert os.listdir(tmp_path / "mine") == []


def test_a_failed_overwrite_keeps_the_previous_dataset(tmp_path, tokenizer_path) -> None:
    folder = write_docs(tmp_path / "docs", DOCS)
    good = prepare([folder], tmp_path / "out", tokenizer=tokenizer_path, progress=False)
    train, manifest = np.array(good.train_tokens), good.manifest
    bad = write_docs(tmp_path / "bad", DOCS[:5])
    (bad / "zz.jsonl").write_text('{"text": "fine"}\n{"body": "no text field"}\n')
    with pytest.raises(DataError, match="text_field"):
        prepare([bad], tmp_path / "out", tokenizer=tokenizer_path, overwrite=True, progress=False)
    kept = PreparedDataset(tmp_path / "out")
    kept.verify()
    assert kept.manifest == manifest and np.array_equal(kept.train_tokens, train)
    assert not [name for name in os.listdir(tmp_path / "out") if name.endswith(".tmp")]


def test_a_missing_column_fails_before_the_tokenizer_is_trained(tmp_path, monkeypatch) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    import evertrain.data.shards as shards

    def never(*args, **kwargs):
        raise AssertionError("tokenizer training started before the inputs were checked")

    monkeypatch.setattr(shards, "train_tokenizer", never)
    pq.write_table(pa.table({"content": ["alpha", "beta"]}), tmp_path / "t.parquet")
    with pytest.raises(DataError, match="no column 'text'"):
        prepare([tmp_path / "t.parquet"], tmp_path / "out", progress=False)
    (tmp_path / "a.jsonl").write_text('{"body": "x"}\n')
    with pytest.raises(DataError, match="has no field 'text'"):
        prepare(["stdlib-code", tmp_path / "a.jsonl"], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


# --- the output folder -------------------------------------------------------------------------


def test_a_second_prepare_into_a_held_folder_is_refused(tmp_path, tokenizer_path) -> None:
    out = tmp_path / "out"
    with lock_held_elsewhere(out, "dataset folder") as holder:
        with pytest.raises(DataError, match=rf"dataset folder {out} is in use by pid {holder.pid}"):
            prepare([write_docs(tmp_path / "docs", DOCS)], out, tokenizer=tokenizer_path)
    # The holder died: its lock is taken over.
    ds = prepare([tmp_path / "docs"], out, tokenizer=tokenizer_path, progress=False)
    assert ds.manifest["documents"]["train"] > 0


@pytest.mark.parametrize("where", ["file", "below a file"])
def test_an_out_dir_that_cannot_be_a_folder_fails_before_any_work(
    tmp_path, monkeypatch, where
) -> None:
    import evertrain.data.shards as shards

    monkeypatch.setattr(shards, "train_tokenizer", lambda *a, **k: pytest.fail("work started"))
    (tmp_path / "taken").write_text("a file")
    out = tmp_path / "taken" if where == "file" else tmp_path / "taken" / "sub" / "out"
    message = "is a file" if where == "file" else r"out_dir .*: .*taken is a file, not a folder"
    with pytest.raises(DataError, match=message):
        prepare([write_docs(tmp_path / "docs", DOCS)], out, progress=False)
    assert (tmp_path / "taken").read_text() == "a file"


def test_a_read_only_parent_fails_before_any_work(tmp_path, tokenizer_path) -> None:
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("this user (root) can write a 0555 folder: read-only is not testable here")
        with pytest.raises(DataError, match="cannot write in .*ro .*fix its permissions"):
            prepare([write_docs(tmp_path / "docs", DOCS)], locked / "out", tokenizer=tokenizer_path)
    finally:
        locked.chmod(0o755)


def test_a_finished_dataset_in_a_read_only_folder_still_reopens(tmp_path, tokenizer_path) -> None:
    folder = write_docs(tmp_path / "docs", DOCS)
    ds = prepare([folder], tmp_path / "out", tokenizer=tokenizer_path, progress=False)
    (tmp_path / "out").chmod(0o555)
    try:
        again = prepare([folder], tmp_path / "out", tokenizer=tokenizer_path, progress=False)
    finally:
        (tmp_path / "out").chmod(0o755)
    assert again.manifest == ds.manifest
