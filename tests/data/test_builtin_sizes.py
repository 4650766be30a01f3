"""The builtin-corpus sizes printed in docs/data.md and the README (slow: tokenises 11 MB)."""

from __future__ import annotations

import sys

import pytest

from evertrain.data import prepare, train_tokenizer

# Measured on CPython 3.11.7 (the stdlib differs between Python versions).
DOCUMENTED = {
    "stdlib-english": {"documents": 541, "bytes": 1_991_158, "tokens": 565_189},
    "stdlib-code": {"documents": 506, "bytes": 9_463_540, "tokens": 2_583_406},
}


@pytest.mark.slow
@pytest.mark.skipif(
    sys.version_info[:3] != (3, 11, 7), reason="sizes documented for CPython 3.11.7"
)
def test_documented_builtin_sizes(tmp_path) -> None:
    tokenizer = train_tokenizer(
        ["stdlib-english", "stdlib-code"], tmp_path / "tok.json", vocab_size=4096
    )
    for name, expected in DOCUMENTED.items():
        ds = prepare([name], tmp_path / name, tokenizer=tokenizer, progress=False)
        found = {
            "documents": sum(ds.manifest["documents"].values()),
            "bytes": ds.manifest["bytes"],
            "tokens": sum(ds.manifest["tokens"].values()),
        }
        assert found == expected, name
