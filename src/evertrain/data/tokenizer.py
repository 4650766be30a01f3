"""Byte-level BPE tokenizers (Hugging Face ``tokenizers``): train one, load one, hash one.

A byte-level BPE (Radford et al., 2019, GPT-2) starts from the 256 byte values, so every string
is encodable (no unknown token), and learns merges by pair frequency (Sennrich et al., 2016).
Our tokenizers carry one special token, ``<|endoftext|>``, which ``prepare`` writes between
documents.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from evertrain._atomic import atomic_write_text
from evertrain._paths import check_output_file
from evertrain.data.corpora import DocumentReading, check_not_empty
from evertrain.data.errors import DataError

EOS_TOKEN = "<|endoftext|>"
# Special tokens we accept as the document separator in a tokenizer the user brings.
_EOS_CANDIDATES = (EOS_TOKEN, "</s>", "<eos>", "<|end_of_text|>", "[SEP]", "<|im_end|>")
_MIN_VOCAB = 257  # 256 byte symbols + the EOS token


def _resolve_tokenizer_path(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise DataError(
            f"tokenizer {str(path)!r} does not exist: pass a tokenizer.json file (or train one with train_tokenizer)"
        )
    return path


def load_tokenizer(path: str | Path) -> Any:
    """Load a ``tokenizers`` JSON file (or the ``tokenizer.json`` inside a directory)."""
    from tokenizers import Tokenizer

    path = _resolve_tokenizer_path(path)
    try:
        return Tokenizer.from_file(str(path))
    except Exception as error:  # tokenizers raises a bare Exception on a bad file
        raise DataError(
            f"tokenizer {str(path)!r} could not be loaded ({error}): pass a Hugging Face tokenizer.json"
        ) from None


def declared_eos(tokenizer: str | Path) -> str | int | None:
    """The EOS a Hugging Face model or tokenizer directory declares, if ``tokenizer`` is one:
    ``tokenizer_config.json``'s ``eos_token`` (a string, or ``{"content": ...}``), else the
    ``eos_token_id`` of ``generation_config.json`` / ``config.json`` (the first, when a list).
    ``None`` for a bare tokenizer.json, or a directory that declares none."""
    import json

    directory = Path(tokenizer)
    if not directory.is_dir():
        return None

    def read(name: str) -> dict[str, Any]:
        try:
            value = json.loads((directory / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    token = read("tokenizer_config.json").get("eos_token")
    if isinstance(token, dict):
        token = token.get("content")
    if isinstance(token, str) and token:
        return token
    for name in ("generation_config.json", "config.json"):
        token_id = read(name).get("eos_token_id")
        if isinstance(token_id, list) and token_id:
            token_id = token_id[0]
        if isinstance(token_id, int) and not isinstance(token_id, bool):
            return token_id
    return None


def eos_token_id(
    tokenizer: Any, where: str = "tokenizer", declared: str | int | None = None
) -> tuple[str, int]:
    """The (token, id) used between documents: the ``declared`` one (a model directory's own EOS,
    :func:`declared_eos`), else the first of the usual end-of-text tokens found."""
    if isinstance(declared, str):
        token_id = tokenizer.token_to_id(declared)
        if token_id is None:
            raise DataError(
                f"{where}: the declared EOS token {declared!r} is not in its vocabulary: "
                "fix eos_token in tokenizer_config.json"
            )
        return declared, int(token_id)
    if isinstance(declared, int):
        token = tokenizer.id_to_token(declared)
        if token is None:
            raise DataError(
                f"{where}: the declared eos_token_id {declared} is not in its vocabulary "
                f"(size {tokenizer.get_vocab_size()}): fix eos_token_id in config.json"
            )
        return token, declared
    for token in _EOS_CANDIDATES:
        token_id = tokenizer.token_to_id(token)
        if token_id is not None:
            return token, int(token_id)
    raise DataError(
        f"{where} has none of the end-of-text tokens {list(_EOS_CANDIDATES)}: add one as a special token "
        "(prepare writes it between documents)"
    )


def _documents(sources: Sequence[Any], reading: DocumentReading) -> Iterable[str]:
    """Every document of ``sources`` in order; a source that yields none is an error."""
    for source in sources:
        stats, documents = reading.documents(source)
        yield from documents
        check_not_empty(stats)


def check_vocab_size(vocab_size: Any) -> int:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < _MIN_VOCAB:
        raise DataError(
            f"vocab_size={vocab_size!r} is too small: a byte-level BPE needs 256 byte symbols + 1 EOS token, "
            f"set vocab_size >= {_MIN_VOCAB}"
        )
    if vocab_size > 2**31 - 1:
        raise DataError(f"vocab_size={vocab_size} is too large: set vocab_size < 2**31")
    return vocab_size


def train_tokenizer(
    sources: Sequence[Any] | str | Path,
    out_path: str | Path,
    vocab_size: int = 4096,
    *,
    max_bytes: int | None = None,
    text_field: str = "text",
    text_column: str = "text",
    txt_separator: str | None = None,
    min_frequency: int = 2,
    progress: bool = False,
) -> Path:
    """Train a byte-level BPE on ``sources`` and save it (atomically) as a ``tokenizer.json``.

    Args:
        sources: files/folders (.txt/.jsonl/.parquet), local HF dataset dirs, or builtin names
            (``"stdlib-english"``, ``"stdlib-code"``).
        out_path: the JSON file to write; an existing directory gets ``tokenizer.json`` inside.
        vocab_size: final vocabulary size including the 256 bytes and ``<|endoftext|>``.
        max_bytes: cap on the UTF-8 bytes read from *each* source (None: everything).
        text_field / text_column / txt_separator: as for :func:`evertrain.data.prepare`.
        min_frequency: a pair must occur this often to be merged.

    Returns:
        The path written. Training is deterministic for the same inputs and version of
        ``tokenizers``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if isinstance(sources, str | Path):
        sources = [sources]
    if not sources:
        raise DataError("sources is empty: pass at least one file, folder or builtin corpus name")
    check_vocab_size(vocab_size)
    out_path = Path(out_path)
    if out_path.is_dir():
        out_path = out_path / "tokenizer.json"
    check_output_file(out_path, "out_path", error=DataError)  # before the minutes of training
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=progress,
    )
    tokenizer.train_from_iterator(
        _documents(
            list(sources),
            DocumentReading(
                max_bytes=max_bytes,
                text_field=text_field,
                text_column=text_column,
                txt_separator=txt_separator,
            ),
        ),
        trainer=trainer,
    )
    atomic_write_text(out_path, tokenizer.to_str())
    return out_path
