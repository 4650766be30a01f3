"""Sources (builtin, txt, jsonl, parquet, HF datasets on disk) and the tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import evertrain.data.corpora as corpora
from evertrain._hashing import file_sha256
from evertrain.data import (
    BUILTIN_CORPORA,
    DataError,
    SourceStats,
    builtin_documents,
    iter_documents,
    load_tokenizer,
    prepare,
    train_tokenizer,
)
from evertrain.data.corpora import clear_builtin_cache, decode_utf8_counting
from evertrain.data.tokenizer import EOS_TOKEN


def collect(source, **kwargs) -> tuple[list[str], SourceStats]:
    stats = SourceStats(source=str(source), kind="?")
    return list(iter_documents(source, stats=stats, **kwargs)), stats


def test_builtin_corpora_are_english_prose_and_code_in_a_fixed_order() -> None:
    assert set(BUILTIN_CORPORA) == {"stdlib-english", "stdlib-code"}
    english, _ = collect("stdlib-english", max_bytes=300_000)
    code, _ = collect("stdlib-code", max_bytes=300_000)
    # Prose vs code: code has far more `def` per byte than docstrings.
    english_sample, code_sample = "".join(english), "".join(code)
    assert code_sample.count("def ") / len(code_sample) > 5 * english_sample.count("def ") / len(
        english_sample
    )
    assert any("Return" in doc for doc in english)
    # Deterministic: a fresh walk of the standard library gives the same documents.
    clear_builtin_cache()
    assert collect("stdlib-english", max_bytes=300_000)[0] == english
    assert collect("stdlib-code", max_bytes=300_000)[0] == code
    # Sorted walk; tests, GUI and machine-specific files are left out.
    files = corpora._stdlib_files()
    assert len(files) > 300 and corpora._stdlib_files() == files
    parts = {part for f in files for part in f.relative_to(corpora.stdlib_root()).parts}
    assert not parts & {"test", "tests", "idlelib", "tkinter", "site-packages", "encodings"}
    assert not any(f.name.startswith("_sysconfigdata") for f in files)


def test_stdlib_english_is_module_docstrings_then_pydoc_topics(monkeypatch, tmp_path) -> None:
    from pydoc_data.topics import topics

    module = tmp_path / "mod.py"
    module.write_text(
        '"""Module doc."""\n\nclass A:\n    """Class doc."""\n\n    def f(self):\n        """Method doc."""\n\n'
        "def g():\n    pass\n"
    )
    (tmp_path / "broken.py").write_text("def (:\n")  # unparsable files are skipped
    monkeypatch.setattr(corpora, "_stdlib_files", lambda: [tmp_path / "broken.py", module])
    clear_builtin_cache()
    try:
        english = builtin_documents("stdlib-english")
        code = builtin_documents("stdlib-code")
    finally:
        clear_builtin_cache()
    assert english[0] == "Module doc.\n\nClass doc.\n\nMethod doc."
    assert list(english[1:]) == [topics[key] for key in sorted(topics) if topics[key].strip()]
    assert code == ("def (:\n", module.read_text())


def test_max_bytes_caps_a_source_at_a_character_boundary() -> None:
    docs, stats = collect("stdlib-english", max_bytes=10_000)
    assert stats.bytes == sum(len(d.encode()) for d in docs) <= 10_000
    assert stats.bytes > 9_000 and stats.truncated_at_max_bytes
    full, _ = collect("stdlib-english", max_bytes=20_000)
    assert docs[:-1] == list(full[: len(docs) - 1]) and full[len(docs) - 1].startswith(docs[-1])
    with pytest.raises(DataError, match="max_bytes=-5"):
        collect("stdlib-code", max_bytes=-5)


def test_decode_counts_every_replaced_byte() -> None:
    assert decode_utf8_counting("héllo".encode()) == ("héllo", 0)
    text, bad = decode_utf8_counting(b"a\xffb\xc3\xa9c\xe2\x82")  # \xff invalid, \xe2\x82 truncated
    assert text == "a\ufffdbéc\ufffd" and bad == 3
    # A genuine U+FFFD in the input is text, not a replacement.
    assert decode_utf8_counting("x\ufffd".encode()) == ("x\ufffd", 0)


def test_jsonl_field_blank_lines_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "one", "id": 1}\n\n{"text": "two"}\n{"text": "   "}\n')
    docs, stats = collect(path)
    assert docs == ["one", "two"] and stats.empty_documents_skipped == 1
    body = tmp_path / "b.jsonl"
    body.write_text('{"body": "x"}\n')
    assert collect(body, text_field="body")[0] == ["x"]
    with pytest.raises(DataError, match=r"b.jsonl:1 has no field 'text' \(found \['body'\]\)"):
        collect(body)
    (tmp_path / "c.jsonl").write_text('{"text": 5}\n')
    with pytest.raises(DataError, match="is a int, not a string"):
        collect(tmp_path / "c.jsonl")
    (tmp_path / "d.jsonl").write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(DataError, match="d.jsonl:2 is not valid JSON"):
        collect(tmp_path / "d.jsonl")


def test_jsonl_undecodable_bytes_are_counted(tmp_path: Path) -> None:
    (tmp_path / "e.jsonl").write_bytes(b'{"text": "caf\xe9"}\n')
    docs, stats = collect(tmp_path / "e.jsonl")
    assert docs == ["caf\ufffd"] and stats.undecodable_bytes == 1


def test_parquet_column_and_errors(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"content": ["alpha", None, "beta", ""], "n": [1, 2, 3, 4]})
    pq.write_table(table, tmp_path / "t.parquet")
    docs, stats = collect(tmp_path / "t.parquet", text_column="content")
    assert docs == ["alpha", "beta"] and stats.empty_documents_skipped == 1
    with pytest.raises(DataError, match=r"no column 'text' \(columns: \['content', 'n'\]\)"):
        collect(tmp_path / "t.parquet")
    with pytest.raises(DataError, match="holds int values"):
        collect(tmp_path / "t.parquet", text_column="n")
    pq.write_table(pa.table({"text": pa.array([b"ok\xff"], pa.binary())}), tmp_path / "b.parquet")
    docs, stats = collect(tmp_path / "b.parquet")
    assert docs == ["ok\ufffd"] and stats.undecodable_bytes == 1
    (tmp_path / "broken.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="not a readable parquet file"):
        collect(tmp_path / "broken.parquet")


def test_hf_datasets_from_disk_and_from_local_files(tmp_path: Path, tokenizer_path) -> None:
    # Optional: evertrain reads HF datasets only when the user has `datasets` installed.
    datasets = pytest.importorskip(
        "datasets", reason="HF `datasets` is not installed (an optional source, no extra ships it)"
    )

    ds = datasets.Dataset.from_dict(
        {"text": ["first row", "second row", "third"], "label": [0, 1, 0]}
    )
    ds.save_to_disk(str(tmp_path / "saved"))
    assert collect(tmp_path / "saved")[0] == ["first row", "second row", "third"]
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "dict"))
    assert collect(tmp_path / "dict")[0] == ["first row", "second row", "third"]
    datasets.DatasetDict({"test": ds}).save_to_disk(str(tmp_path / "nodict"))
    with pytest.raises(DataError, match="without a 'train' split"):
        collect(tmp_path / "nodict")
    with pytest.raises(DataError, match="no column 'body'"):
        collect(tmp_path / "saved", text_column="body")
    # A Dataset built from local files (never the hub) can be passed as is.
    (tmp_path / "local.jsonl").write_text(
        "".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(6))
    )
    local = datasets.load_dataset("json", data_files=str(tmp_path / "local.jsonl"), split="train")
    out = prepare(
        [local, tmp_path / "saved"],
        tmp_path / "out",
        tokenizer=tokenizer_path,
        val_fraction=0,
        progress=False,
    )
    assert out.manifest["documents"]["train"] == 9
    assert [s["kind"] for s in out.manifest["sources"]] == ["hf-dataset", "hf-disk"]


def test_folder_reads_txt_jsonl_parquet_recursively_in_sorted_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "a.txt").write_text("from a")
    (tmp_path / "b" / "c.jsonl").write_text('{"text": "from c"}\n')
    (tmp_path / "b" / "ignored.csv").write_text("x")
    assert collect(tmp_path)[0] == ["from a", "from c"]


def test_bad_source_types() -> None:
    with pytest.raises(DataError, match="is a int"):
        collect(42)


def test_tokenizer_training_is_deterministic_and_lossless(
    tmp_path: Path, tokenizer_path: Path
) -> None:
    again = train_tokenizer(
        ["stdlib-english", "stdlib-code"], tmp_path, vocab_size=512, max_bytes=300_000
    )
    assert again == tmp_path / "tokenizer.json"
    assert file_sha256(again) == file_sha256(tokenizer_path)
    tok = load_tokenizer(tokenizer_path)
    assert tok.get_vocab_size() == 512 and tok.token_to_id(EOS_TOKEN) == 0
    text = "def f(x):\n    return x  # ünïcode ✓ 🚀\n"
    ids = tok.encode(text).ids
    assert tok.decode(ids) == text and max(ids) < 512


def test_tokenizer_bad_input(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="vocab_size=256"):
        train_tokenizer(["stdlib-code"], tmp_path / "t.json", vocab_size=256)
    with pytest.raises(DataError, match="sources is empty"):
        train_tokenizer([], tmp_path / "t.json")
    with pytest.raises(DataError, match="does not exist"):
        load_tokenizer(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not a tokenizer")
    with pytest.raises(DataError, match="could not be loaded"):
        load_tokenizer(tmp_path / "bad.json")
    assert not (tmp_path / "t.json").exists()


def test_a_user_tokenizer_without_eos_is_refused(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "noeos.json"))
    (tmp_path / "d.txt").write_text("a a a")
    with pytest.raises(DataError, match="end-of-text tokens"):
        prepare(
            [tmp_path / "d.txt"],
            tmp_path / "out",
            tokenizer=tmp_path / "noeos.json",
            progress=False,
        )


def test_uint32_shards_for_a_large_vocabulary(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {f"w{i}": i for i in range(70_000)} | {"<|endoftext|>": 70_000, "[UNK]": 70_001}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "big.json"))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("w1 w69999 w5")
    (tmp_path / "docs" / "b.txt").write_text("w2 w3")
    ds = prepare(
        [tmp_path / "docs"],
        tmp_path / "out",
        tokenizer=tmp_path / "big.json",
        val_fraction=0,
        progress=False,
    )
    assert ds.train_tokens.dtype == np.uint32
    assert list(ds.train_tokens) == [1, 69999, 5, 70_000, 2, 3, 70_000]
