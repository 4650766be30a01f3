"""Is a prepared dataset what its manifest claims? The checks a training run makes on its data.

Two checks, both before the first step, both refusing with one line that names the dataset:

* :func:`verify_shards`: every shard's sha256 against the manifest. A shard overwritten with
  valid token ids has the right size, so the size check of :class:`PreparedDataset` passes it;
  only the checksum catches it. The whole file is hashed in one streaming pass (4 MiB reads,
  one core): 380 MB/s measured on a loaded, shared 2-core machine (``benchmarks/data.py``, row
  ``verify``: ~5 s per billion uint16 tokens; sha256 alone reaches ~1.5 GB/s on a quiet core),
  so a 10-billion-token dataset costs under a minute once per run open, against hours of
  training, and a cold page cache is bounded by the disk rather than the hash. Per-chunk hashes checked as the sampler first reads each chunk would spread that
  cost, but need a new manifest format, a hook in the sampler's hot path and a refusal in the
  middle of a run; one pass at open is simpler and refuses before any work.
* :func:`check_vocabulary`: the data's largest token id against a model's vocabulary size (an
  ``int``, so the reference GPT and a Hugging Face model's ``config.vocab_size`` use the same
  check). An id at or past the embedding size is an ``IndexError`` deep inside the model
  otherwise. ``prepare`` records each shard's ``max_token_id`` in the manifest; a manifest of an
  earlier version lacks it, and the maximum is then read from the shard (numpy, ~15 GB/s).

:func:`rebuild_command` spells out the ``evertrain data prepare ... --overwrite`` command that
remakes a dataset from its manifest's recorded inputs; ``--overwrite`` rebuilds a dataset whose
checksums fail even when its inputs are unchanged.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

import numpy as np

from evertrain._hashing import file_sha256
from evertrain.data.errors import DataError

if TYPE_CHECKING:  # shards.py imports this module inside PreparedDataset.verify
    from evertrain.data.shards import PreparedDataset

_CHUNK_BYTES = 1 << 22  # as evertrain._hashing.file_sha256


def shard_max_id(tokens: np.ndarray) -> int | None:
    """The largest id in a token array, None for an empty one (reads it in chunks)."""
    if len(tokens) == 0:
        return None
    step = _CHUNK_BYTES // tokens.dtype.itemsize * 16  # 64 MiB of a memmap at a time
    return max(int(tokens[start : start + step].max()) for start in range(0, len(tokens), step))


def _label(dataset: PreparedDataset, name: str | None) -> str:
    return f"dataset {name or dataset.name!r} ({dataset.path})"


def damaged_files(dataset: PreparedDataset, tokenizer: bool = True) -> list[str]:
    """The files of ``dataset`` whose sha256 differs from its manifest ("train shard train.bin",
    "tokenizer tokenizer.json"); empty when all match."""
    failed = []
    for split, shard in dataset.manifest["shards"].items():
        if file_sha256(dataset.path / shard["file"]) != shard["sha256"]:
            failed.append(f"{split} shard {shard['file']}")
    if tokenizer and file_sha256(dataset.tokenizer_path) != dataset.manifest["tokenizer"]["sha256"]:
        failed.append(f"tokenizer {dataset.tokenizer_path.name}")
    return failed


def verify_shards(dataset: PreparedDataset, name: str | None = None) -> None:
    """Recompute the sha256 of every shard of ``dataset``; DataError naming the dataset, the shard
    and the command that rebuilds it on a mismatch.

    The tokenizer file is not checked: training reads only the shards (``data info --verify``
    checks it too).
    """
    for split, shard in dataset.manifest["shards"].items():
        path = dataset.path / shard["file"]
        if file_sha256(path) != shard["sha256"]:
            raise DataError(
                f"{_label(dataset, name)}: {split} shard {path} fails its sha256 check (the file "
                f"changed after prepare wrote it): rebuild it with `{rebuild_command(dataset)}`"
            )


def max_token_id(dataset: PreparedDataset) -> int | None:
    """The largest token id in the shards of ``dataset`` (None when they are empty).

    From the manifest (``prepare`` records it per shard); read from the shards for a manifest
    written before it did.
    """
    found: list[int] = []
    for split, shard in dataset.manifest["shards"].items():
        if "max_token_id" in shard:
            value = shard["max_token_id"]
        else:
            value = shard_max_id(dataset.train_tokens if split == "train" else dataset.val_tokens)
        if value is not None:
            found.append(int(value))
    return max(found) if found else None


def check_vocabulary(dataset: PreparedDataset, vocab_size: int, name: str | None = None) -> None:
    """DataError unless every token id of ``dataset`` is below ``vocab_size`` (the model's
    embedding rows); the message names the dataset, both numbers and the fix."""
    largest = max_token_id(dataset)
    if largest is not None and largest >= vocab_size:
        raise DataError(
            f"{_label(dataset, name)} holds token id {largest}, but the model's vocabulary has "
            f"{vocab_size} ids (0..{vocab_size - 1}): use a model with vocab_size of at least "
            f"{largest + 1}, or prepare the data with the model's tokenizer"
        )


def _escaped(separator: str) -> str:
    """A separator as `--txt-separator` reads it (the CLI turns \\n, \\t, \\r, \\\\ into escapes)."""
    return (
        separator.replace("\\", "\\\\")
        .replace("\n", "\\n")
        .replace("\t", "\\t")
        .replace("\r", "\\r")
    )


def rebuild_command(dataset: PreparedDataset, tokenizer_ok: bool = True) -> str:
    """The ``evertrain data prepare ... --overwrite`` command that remakes ``dataset`` from the
    inputs its manifest records (SOURCE stands for a source that cannot be named on a command
    line, such as an in-memory ``datasets.Dataset``).

    A given tokenizer is taken from the dataset's own copy (same sha256, so the same inputs)
    unless ``tokenizer_ok`` is False (that copy is damaged): then TOKENIZER stands for it.
    """
    inputs: dict[str, Any] = dataset.manifest.get("inputs") or {}
    words = ["evertrain", "data", "prepare"]
    for source in inputs.get("sources") or [{}]:
        words.append(source.get("builtin") or source.get("path") or "SOURCE")
    words += ["-o", str(dataset.path.resolve())]
    tokenizer = inputs.get("tokenizer") or {}
    if "trained_vocab_size" in tokenizer:
        words += ["--vocab-size", str(tokenizer["trained_vocab_size"])]
    else:
        words += ["-t", str(dataset.tokenizer_path.resolve()) if tokenizer_ok else "TOKENIZER"]
    for key, flag in (("val_fraction", "--val-fraction"), ("seed", "--seed")):
        if key in inputs:
            words += [flag, str(inputs[key])]
    if inputs.get("max_bytes"):
        words += ["--max-bytes", str(inputs["max_bytes"])]
    for key, flag in (("text_field", "--text-field"), ("text_column", "--text-column")):
        if inputs.get(key, "text") != "text":
            words += [flag, str(inputs[key])]
    if inputs.get("txt_separator") is not None:
        words += ["--txt-separator", _escaped(inputs["txt_separator"])]
    words.append("--overwrite")
    return shlex.join(words)


__all__ = [
    "check_vocabulary",
    "damaged_files",
    "max_token_id",
    "rebuild_command",
    "shard_max_id",
    "verify_shards",
]
