"""Small prepared datasets shared by the data tests (builtin corpora capped with max_bytes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from evertrain.data import PreparedDataset, prepare, train_tokenizer

CAP = 300_000  # bytes per builtin corpus: big enough for real statistics, tokenises in < 1 s


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def tokenizer_path(data_root: Path) -> Path:
    return train_tokenizer(
        ["stdlib-english", "stdlib-code"],
        data_root / "tokenizer.json",
        vocab_size=512,
        max_bytes=CAP,
    )


@pytest.fixture(scope="session")
def english(data_root: Path, tokenizer_path: Path) -> PreparedDataset:
    return prepare(
        ["stdlib-english"],
        data_root / "english",
        tokenizer=tokenizer_path,
        max_bytes=CAP,
        progress=False,
    )


@pytest.fixture(scope="session")
def code(data_root: Path, tokenizer_path: Path) -> PreparedDataset:
    return prepare(
        ["stdlib-code"], data_root / "code", tokenizer=tokenizer_path, max_bytes=CAP, progress=False
    )
