"""Corpora -> token shards: ``prepare`` writes them, ``PreparedDataset`` reads them.

A prepared directory holds::

    tokenizer.json   the tokenizer the shards were made with
    train.bin        training tokens, a flat numpy array (uint16 if the vocabulary fits, else uint32)
    val.bin          held-out tokens, whole documents chosen by seed (never in train.bin)
    manifest.json    sources, document/token counts, tokenizer sha256, shard sha256, dtype, version

Each document is followed by the EOS token, so documents are separated in the stream. The
manifest is written last, atomically: a directory without one is an unfinished run and is
rebuilt on the next ``prepare``; a directory with one whose inputs match is left alone (no-op).

The validation split is by document: document i (0-based, over all sources in order) goes to
val when ``u_i < val_fraction``, where ``u_i`` is the i-th uniform of a counter-based generator
keyed by ``seed`` (so the split does not depend on batching or threads). If that leaves a split
empty (tiny corpora), the last document of the other split moves there: with at least two
documents and a non-zero ``val_fraction`` both splits always exist.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import numpy as np

from evertrain import __version__
from evertrain._atomic import atomic_write_json, fsync_dir
from evertrain._hashing import file_sha256
from evertrain._lock import LOCK_NAME, FolderLock, FolderLockedError
from evertrain._paths import check_output_dir, folders_to_create
from evertrain.data._rng import random_uniform, stream_key
from evertrain.data.corpora import (
    DocumentReading,
    SourceStats,
    check_max_bytes,
    check_not_empty,
    check_txt_separator,
    peek_text_fields,
    reads_txt,
    source_fingerprint,
    source_kind,
    txt_rule,
)
from evertrain.data.errors import DataError
from evertrain.data.integrity import damaged_files, rebuild_command, shard_max_id
from evertrain.data.tokenizer import (
    check_vocab_size,
    declared_eos,
    eos_token_id,
    load_tokenizer,
    train_tokenizer,
)

FORMAT = "evertrain.prepared/1"
MANIFEST = "manifest.json"
TOKENIZER_FILE = "tokenizer.json"
SHARD_FILES = {"train": "train.bin", "val": "val.bin"}
# What prepare writes, plus the folder lock it holds while writing (evertrain._lock).
_OWN_FILES = frozenset({MANIFEST, TOKENIZER_FILE, LOCK_NAME, *SHARD_FILES.values()})
_VAL_STREAM = 0x5A1  # stream id of the validation-split uniforms
# Documents per encode_batch call: enough to keep every tokenizers thread busy, bounded memory.
_BATCH_DOCUMENTS = 256
_BATCH_BYTES = 2 << 20
# Batches being encoded at once. encode_batch_fast releases the GIL, so while the main thread
# writes one batch (and reads the next documents), the next ones are encoded; a batch held up
# by one long document no longer leaves the other cores idle.
_BATCHES_IN_FLIGHT = 4


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id (0 .. vocab_size - 1) fits in 16 bits, else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def _version() -> str:
    return f"evertrain {__version__}"


class _ShardWriter:
    """Appends token arrays to ``<final>.<pid>.tmp``, hashing as it goes; ``commit`` renames."""

    def __init__(self, final: Path, dtype: np.dtype) -> None:
        self.final = final
        self.tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        self.dtype = dtype
        self.tokens = 0
        self.documents = 0
        self.max_id: int | None = None  # recorded in the manifest: the vocabulary check reads it
        self._sha = hashlib.sha256()
        self._handle: IO[bytes] = open(self.tmp, "wb")  # noqa: SIM115 - closed in commit/abort

    def write(self, tokens: np.ndarray, documents: int) -> None:
        data = np.ascontiguousarray(tokens, dtype=self.dtype).tobytes()
        self._handle.write(data)
        self._sha.update(data)
        if len(tokens):
            largest = int(np.max(tokens))
            self.max_id = largest if self.max_id is None else max(self.max_id, largest)
        self.tokens += len(tokens)
        self.documents += documents

    def truncate_last(self, n_tokens: int) -> None:
        """Remove the last ``n_tokens`` tokens (the last document, moved to the other split)."""
        self._handle.flush()
        self.tokens -= n_tokens
        self.documents -= 1
        self._handle.truncate(self.tokens * self.dtype.itemsize)
        self._handle.seek(0, os.SEEK_END)
        # The running hash covered the removed bytes: rehash the file (rare: tiny corpora only).
        self._handle.flush()
        kept = self.tmp.read_bytes()
        self._sha = hashlib.sha256(kept)
        self.max_id = shard_max_id(np.frombuffer(kept, dtype=self.dtype))

    def commit(self) -> dict[str, Any]:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        os.replace(self.tmp, self.final)
        return {
            "file": self.final.name,
            "tokens": self.tokens,
            "documents": self.documents,
            "sha256": self._sha.hexdigest(),
            "max_token_id": self.max_id,
        }

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._handle.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()


def _batched_documents(
    documents: Iterator[str],
) -> Iterator[list[str]]:
    batch: list[str] = []
    size = 0
    for text in documents:
        batch.append(text)
        size += len(text)
        if len(batch) >= _BATCH_DOCUMENTS or size >= _BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _move_last_document(
    writers: dict[str, _ShardWriter],
    last_document: dict[str, tuple[np.ndarray, dict[str, int]]],
    source: str,
    target: str,
) -> None:
    """Move the last document written to split ``source`` to the end of split ``target``."""
    tokens, counts = last_document[source]
    writers[source].truncate_last(len(tokens))
    writers[target].write(tokens, 1)
    counts[f"{source}_documents"] -= 1
    counts[f"{target}_documents"] += 1
    counts[f"{source}_tokens"] -= len(tokens)
    counts[f"{target}_tokens"] += len(tokens)


def _encoded_batches(
    tokenizer: Any, batches: Iterator[list[str]]
) -> Iterator[tuple[list[str], list[Any]]]:
    """(documents, encodings) per batch, in order, with up to _BATCHES_IN_FLIGHT encoding at once."""
    with ThreadPoolExecutor(max_workers=_BATCHES_IN_FLIGHT, thread_name_prefix="encode") as pool:
        pending: deque[tuple[list[str], Any]] = deque()
        try:
            for batch in batches:
                future = pool.submit(tokenizer.encode_batch_fast, batch, add_special_tokens=False)
                pending.append((batch, future))
                if len(pending) >= _BATCHES_IN_FLIGHT:
                    done, future = pending.popleft()
                    yield done, future.result()
            while pending:
                done, future = pending.popleft()
                yield done, future.result()
        finally:
            for _, future in pending:
                future.cancel()


@dataclass(frozen=True)
class _Build:
    """What one prepare tokenises and how (the arguments of :func:`prepare`, checked)."""

    sources: list[Any]
    reading: DocumentReading
    vocab_size: int
    val_fraction: float
    seed: int
    progress: bool
    # The EOS a Hugging Face model directory passed as the tokenizer declares (None: the usual
    # end-of-text tokens are looked up), see tokenizer.declared_eos.
    eos: str | int | None = None


def _inputs_record(build: _Build, tokenizer: str | Path | None) -> dict[str, Any]:
    """What the output depends on; a finished directory with the same record is not rebuilt."""
    record = {
        "sources": [source_fingerprint(s) for s in build.sources],
        "tokenizer": {"trained_vocab_size": build.vocab_size}
        if tokenizer is None
        else {"sha256": file_sha256(_tokenizer_file(tokenizer))},
        "val_fraction": build.val_fraction,
        "seed": build.seed,
        **build.reading.options(),
    }
    if build.eos is not None:  # only then: records of bare tokenizer.json files stay as they were
        record["eos"] = build.eos
    # Only where a .txt file is read: the rule changed what a .txt document is (a file became
    # packed paragraphs), so a dataset made under another rule must not pass for this one, while
    # datasets of other sources stay valid.
    if any(reads_txt(s) for s in build.sources):
        record["txt_documents"] = txt_rule(build.reading.txt_separator)
    return record


def _tokenizer_file(tokenizer: str | Path) -> Path:
    path = Path(tokenizer)
    if path.is_dir():
        path = path / TOKENIZER_FILE
    if not path.is_file():
        raise DataError(
            f"tokenizer {str(tokenizer)!r} does not exist: pass a tokenizer.json file, or tokenizer=None to train one"
        )
    return path


def _check_arguments(
    sources: Any, val_fraction: Any, seed: Any, vocab_size: Any, tokenizer: Any
) -> list[Any]:
    if isinstance(sources, str | Path):
        sources = [sources]
    sources = list(sources)
    if not sources:
        raise DataError("sources is empty: pass at least one file, folder or builtin corpus name")
    if (
        isinstance(val_fraction, bool)
        or not isinstance(val_fraction, int | float)
        or not 0 <= val_fraction < 1
    ):
        raise DataError(
            f"val_fraction={val_fraction!r} must be in [0, 1): e.g. 0.05 for 5% of documents"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataError(f"seed={seed!r} must be a non-negative integer")
    if tokenizer is None:
        check_vocab_size(vocab_size)
    for source in sources:
        source_kind(source)  # raises a clear error for a missing or unsupported source
    return sources


def _is_own_temp(name: str) -> bool:
    """A temp file of one of prepare's files: ``.train.bin.<pid>.tmp``, ``.manifest.json.<hex>.tmp``."""
    bare = name.lstrip(".")  # a temp of a temp (the trained tokenizer) has two leading dots
    return name.endswith(".tmp") and any(bare.startswith(f"{own}.") for own in _OWN_FILES)


def _check_foreign(out_dir: Path) -> None:
    """Refuse to write into a folder that holds files prepare did not write."""
    foreign = [
        p.name for p in out_dir.iterdir() if p.name not in _OWN_FILES and not _is_own_temp(p.name)
    ]
    if foreign:
        raise DataError(
            f"out_dir {str(out_dir)!r} holds files prepare did not write ({sorted(foreign)[:5]}): "
            "choose an empty or new directory"
        )


def _remove_stale_temps(out_dir: Path) -> None:
    """Temp files of earlier prepares that died: safe to remove, we hold the folder's lock."""
    for path in out_dir.iterdir():
        if _is_own_temp(path.name) and path.is_file():
            path.unlink(missing_ok=True)


def _clear_unfinished(out_dir: Path, reason: str, progress: bool) -> None:
    """Remove what an earlier, unfinished prepare left; refuse to touch files it did not write."""
    _check_foreign(out_dir)
    if progress:
        print(f"evertrain data: {out_dir} {reason}: rebuilding it")
    for path in out_dir.iterdir():
        if path.name == LOCK_NAME:
            continue  # ours, held right now
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def _finished(out_dir: Path, inputs: dict[str, Any]) -> tuple[bool, str]:
    """(True, "") if out_dir holds a finished prepare of these inputs; else (False, why not)."""
    manifest_path = out_dir / MANIFEST
    if not manifest_path.exists():
        return False, "has no manifest.json (an unfinished or killed prepare)"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False, "has an unreadable manifest.json"
    if manifest.get("format") != FORMAT:
        return False, f"has a manifest of format {manifest.get('format')!r}, not {FORMAT!r}"
    wanted = json.loads(json.dumps(inputs))
    if manifest.get("inputs") != wanted:
        held = manifest.get("inputs") or {}
        differ = [key for key in wanted if held.get(key) != wanted[key]] or ["format"]
        raise DataError(
            f"out_dir {str(out_dir)!r} already holds a prepared dataset made from other inputs "
            f"({', '.join(differ)} differ): choose another out_dir, or pass overwrite=True"
        )
    for split, shard in manifest["shards"].items():
        path = out_dir / shard["file"]
        expected = shard["tokens"] * np.dtype(manifest["dtype"]).itemsize
        if not path.exists() or path.stat().st_size != expected:
            return False, f"has a missing or truncated {split} shard"
    if [p for p in out_dir.iterdir() if _is_own_temp(p.name)]:
        return False, "has stale temporary files"
    return True, ""


def _state_of(
    out_dir: Path, inputs: dict[str, Any], overwrite: bool, verify: bool = False
) -> tuple[str, str]:
    """What out_dir holds: ("empty" | "done" | "rebuild" | "replace", why).

    "rebuild": an unfinished or damaged prepare, cleared before writing; "replace": a finished
    dataset of other inputs, or (``verify``) of the same inputs whose files fail their sha256
    check, with ``overwrite``; kept until the new one is complete.
    """
    if not out_dir.is_dir() or all(p.name == LOCK_NAME for p in out_dir.iterdir()):
        return "empty", ""
    try:
        done, why = _finished(out_dir, inputs)
    except DataError:
        if not overwrite:
            raise
        return "replace", "holds a dataset of other inputs (overwrite=True)"
    if done and verify:
        # Sizes match; only the checksums tell a shard overwritten in place (one hash pass).
        damaged = damaged_files(PreparedDataset(out_dir))
        if damaged:
            return "replace", f"has files that fail their sha256 check ({', '.join(damaged)})"
    return ("done", "") if done else ("rebuild", why)


def _remove_created(created: list[Path]) -> None:
    """Remove the folders this prepare created (deepest first), each only if it is empty."""
    for folder in created:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (someone else's files) or gone: its parents are not ours to judge


@contextlib.contextmanager
def _writing(out_dir: Path, created: list[Path]) -> Iterator[None]:
    """Hold out_dir's folder lock; if the body fails, remove what this call created and only that.

    A folder that existed before is never removed, and neither are its files: the body writes
    only temp files until the new dataset is complete (see ``_commit``).
    """
    lock_file = out_dir / LOCK_NAME
    lock_existed = lock_file.exists()
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(FolderLock(out_dir, what="dataset folder"))
        except FolderLockedError as error:
            raise DataError(str(error)) from None
        except OSError as error:
            _remove_created(created)
            raise DataError(
                f"out_dir {str(out_dir)!r} cannot be written ({error.strerror or error}): "
                "choose a writable out_dir"
            ) from None
        try:
            yield
        except BaseException:
            # Unlinked while still held: a process that opens it anew gets a fresh lock file.
            if not lock_existed:
                lock_file.unlink(missing_ok=True)
            _remove_created(created)
            raise


def prepare(
    sources: Sequence[str | Path | Any] | str | Path,
    out_dir: str | Path,
    *,
    tokenizer: str | Path | None = None,
    vocab_size: int = 4096,
    val_fraction: float = 0.05,
    seed: int = 0,
    max_bytes: int | None = None,
    text_field: str = "text",
    text_column: str = "text",
    txt_separator: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> PreparedDataset:
    """Tokenise ``sources`` into ``out_dir`` (train/val shards + manifest) and open the result.

    Args:
        sources: files/folders (.txt, .jsonl, .parquet), local HF ``save_to_disk`` folders,
            ``datasets.Dataset`` objects, or builtin names ``"stdlib-english"``/``"stdlib-code"``.
        out_dir: the directory to write (created if missing).
        tokenizer: a ``tokenizer.json`` (or a directory holding one); None trains a byte-level
            BPE of ``vocab_size`` on these sources. Either way it is copied into ``out_dir``.
        vocab_size: only used when ``tokenizer`` is None.
        val_fraction: fraction of *documents* held out (0 <= val_fraction < 1).
        seed: decides which documents are held out.
        max_bytes: cap on UTF-8 bytes read from each source (None: all). A source it cuts is
            recorded (``PreparedDataset.sources``) and, with ``progress``, named in one line.
        text_field / text_column: the text field of .jsonl records / column of parquet and HF data.
        txt_separator: how .txt files become documents: None or ``"paragraphs"`` packs whole
            paragraphs into documents of at most 8 KiB (a smaller file is one document);
            ``"file"``: one document per file; any other string splits at exactly that string
            (e.g. ``"\\n\\n"``: one document per paragraph).
        overwrite: rebuild even if ``out_dir`` holds a finished dataset of other inputs, or of
            these inputs with a file that fails its sha256 check (one hash pass over the
            shards; the old dataset stays until the new one is complete).
        progress: tqdm bar over bytes tokenised, and a summary line.

    A re-run with the same inputs on a finished directory returns at once without writing. One
    prepare writes a directory at a time (a second one gets a ``DataError`` naming the first);
    a prepare that fails leaves no folder it created and keeps what the directory held before.
    """
    sources = _check_arguments(sources, val_fraction, seed, vocab_size, tokenizer)
    check_max_bytes(max_bytes)
    check_txt_separator(txt_separator)
    out_dir = Path(out_dir)
    reading = DocumentReading(
        max_bytes=max_bytes,
        text_field=text_field,
        text_column=text_column,
        txt_separator=txt_separator,
    )
    eos = None if tokenizer is None else declared_eos(tokenizer)
    build = _Build(sources, reading, vocab_size, val_fraction, seed, progress, eos)
    inputs = _inputs_record(build, tokenizer)
    # Read a given tokenizer now: it may live in out_dir, which a rebuild empties.
    tokenizer_bytes = None if tokenizer is None else _tokenizer_file(tokenizer).read_bytes()
    # A finished dataset is reopened without the lock, so read-only dataset folders still work;
    # with ``overwrite`` its checksums are checked first, under the lock (a repair writes).
    if not overwrite and out_dir.is_dir() and _state_of(out_dir, inputs, overwrite)[0] == "done":
        return _already_done(out_dir, progress)
    # Before any work: a file, a path below a file or a read-only folder fails in one line.
    check_output_dir(out_dir, "out_dir", error=DataError)
    created = folders_to_create(out_dir)
    for source in sources:
        peek_text_fields(source, text_field, text_column)
    with _writing(out_dir, created):
        _remove_stale_temps(out_dir)
        # Again: another writer may have run. With overwrite, a dataset of the same inputs whose
        # checksums fail is rebuilt (what `data info --verify` advises).
        state, why = _state_of(out_dir, inputs, overwrite, verify=overwrite)
        if state == "done":
            return _already_done(out_dir, progress)
        if state == "rebuild":
            _clear_unfinished(out_dir, why, progress)
        elif state == "replace":
            _check_foreign(out_dir)
            if progress:
                print(f"evertrain data: {out_dir} {why}: rebuilding it")
        return _build(build, out_dir, inputs, tokenizer_bytes)


def _already_done(out_dir: Path, progress: bool) -> PreparedDataset:
    if progress:
        print(f"evertrain data: {out_dir} already holds these inputs prepared: nothing to do")
    return PreparedDataset(out_dir)


def _build(
    build: _Build, out_dir: Path, inputs: dict[str, Any], tokenizer_bytes: bytes | None
) -> PreparedDataset:
    """Tokenise into temp files in out_dir, then commit them (the caller holds the lock)."""
    tokenizer_tmp = out_dir / f".{TOKENIZER_FILE}.{os.getpid()}.tmp"
    try:
        return _tokenise_and_commit(build, out_dir, inputs, tokenizer_bytes, tokenizer_tmp)
    finally:
        tokenizer_tmp.unlink(missing_ok=True)  # renamed away on success


def _tokenise_and_commit(
    build: _Build,
    out_dir: Path,
    inputs: dict[str, Any],
    tokenizer_bytes: bytes | None,
    tokenizer_tmp: Path,
) -> PreparedDataset:
    from evertrain._progress import progress_bar  # tqdm is imported only for a drawn bar

    sources, val_fraction, progress = build.sources, build.val_fraction, build.progress
    started = time.perf_counter()
    if tokenizer_bytes is None:
        train_tokenizer(sources, tokenizer_tmp, build.vocab_size, **build.reading.options())
    else:
        tokenizer_tmp.write_bytes(tokenizer_bytes)
    tok = load_tokenizer(tokenizer_tmp)
    eos_token, eos_id = eos_token_id(tok, str(out_dir / TOKENIZER_FILE), declared=build.eos)
    vocab = tok.get_vocab_size()
    dtype = token_dtype(vocab)

    writers = {split: _ShardWriter(out_dir / name, dtype) for split, name in SHARD_FILES.items()}
    val_key = stream_key(build.seed, _VAL_STREAM)
    source_records: list[tuple[SourceStats, dict[str, int]]] = []
    bytes_before_source = 0
    document_index = 0
    last_document: dict[str, tuple[np.ndarray, dict[str, int]]] = {}
    bar = progress_bar(None, enabled=progress, unit="B", unit_scale=True, desc="tokenising")
    try:
        for source in sources:
            stats, documents = build.reading.documents(source)
            counts = {"train_documents": 0, "val_documents": 0, "train_tokens": 0, "val_tokens": 0}
            for batch, encodings in _encoded_batches(tok, _batched_documents(documents)):
                to_val = (
                    random_uniform(val_key, np.arange(document_index, document_index + len(batch)))
                    < val_fraction
                )
                document_index += len(batch)
                for split, chosen in (("train", ~to_val), ("val", to_val)):
                    ids: list[int] = []
                    for encoding, take in zip(encodings, chosen, strict=True):
                        if take:
                            ids.extend(encoding.ids)
                            ids.append(eos_id)
                    if ids:
                        array = np.array(ids, dtype=dtype)
                        writers[split].write(array, int(chosen.sum()))
                        counts[f"{split}_documents"] += int(chosen.sum())
                        counts[f"{split}_tokens"] += len(array)
                for split, chosen in (("train", ~to_val), ("val", to_val)):
                    positions = np.flatnonzero(chosen)
                    if len(positions):
                        last = [*encodings[positions[-1]].ids, eos_id]
                        last_document[split] = (np.array(last, dtype=dtype), counts)
                # Bytes read so far (reading runs a few batches ahead of encoding).
                bar.update(bytes_before_source + stats.bytes - bar.n)
            check_not_empty(stats)
            bytes_before_source += stats.bytes
            source_records.append((stats, counts))
        bar.close()
        documents_total = writers["train"].documents + writers["val"].documents
        if val_fraction > 0 and documents_total < 2:
            raise DataError(
                f"the corpus has {documents_total} document: a validation split by document "
                "needs at least 2, so add documents, split .txt files with txt_separator (e.g. "
                "'\\n\\n' for paragraphs) or set val_fraction=0"
            )
        # A tiny corpus can leave a split empty by chance: move one whole document across
        # (the last one of the other split), so both splits exist whenever there are 2 documents.
        if val_fraction > 0 and writers["val"].documents == 0:
            _move_last_document(writers, last_document, source="train", target="val")
        if writers["train"].documents == 0 and writers["val"].documents >= 2:
            _move_last_document(writers, last_document, source="val", target="train")
        if writers["train"].tokens == 0:
            raise DataError(
                f"every document went to the validation split: lower val_fraction={val_fraction} or add documents"
            )
        # The point of no return. Remove the old manifest first: a run killed in the next lines
        # leaves a folder without one, which the next prepare rebuilds instead of trusting.
        (out_dir / MANIFEST).unlink(missing_ok=True)
        fsync_dir(out_dir)
        shards = {split: writer.commit() for split, writer in writers.items()}
    except BaseException:
        bar.close()
        for writer in writers.values():
            writer.abort()
        raise
    tokenizer_path = out_dir / TOKENIZER_FILE
    os.replace(tokenizer_tmp, tokenizer_path)
    fsync_dir(out_dir)

    per_source = [
        {**stats.to_dict(), **counts, "tokens": counts["train_tokens"] + counts["val_tokens"]}
        for stats, counts in source_records
    ]
    undecodable = sum(s["undecodable_bytes"] for s in per_source)
    manifest = {
        "format": FORMAT,
        "name": out_dir.resolve().name,
        "created_by": _version(),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "inputs": inputs,
        "sources": per_source,
        "tokenizer": {
            "file": TOKENIZER_FILE,
            "sha256": file_sha256(tokenizer_path),
            "vocab_size": vocab,
            "eos_token": eos_token,
            "eos_id": eos_id,
            "trained": tokenizer_bytes is None,
        },
        "dtype": dtype.name,
        "documents": {split: shard["documents"] for split, shard in shards.items()},
        "tokens": {split: shard["tokens"] for split, shard in shards.items()},
        "bytes": sum(s["bytes"] for s in per_source),
        "undecodable_bytes": undecodable,
        "shards": shards,
        "seconds": round(time.perf_counter() - started, 3),
    }
    atomic_write_json(out_dir / MANIFEST, manifest)
    dataset = PreparedDataset(out_dir)
    if progress:
        print(
            f"evertrain data: {out_dir}: {manifest['bytes']:,} bytes, {sum(manifest['documents'].values()):,} documents -> "
            f"{manifest['tokens']['train']:,} train + {manifest['tokens']['val']:,} val tokens ({dtype.name}) "
            f"in {manifest['seconds']:.1f} s"
        )
        for line in cut_source_lines(dataset, build.reading.max_bytes):
            print(line)
        if undecodable:
            print(
                f"evertrain data: replaced {undecodable:,} undecodable bytes with U+FFFD (counted in manifest.json)"
            )
    return dataset


def cut_source_lines(dataset: PreparedDataset, max_bytes: int | None = None) -> list[str]:
    """One line per source that ``max_bytes`` cut: the source, bytes used / available, fraction.

    Worded without keyword names, so the Python API and the CLI print the same line.
    """
    cap = f"the {max_bytes:,}-byte cap" if max_bytes is not None else "the byte cap"
    lines = []
    for record in dataset.sources:
        if not record["truncated"]:
            continue
        used, available = record["bytes_used"], record["bytes_available"]
        of = (
            f"{used:,} of {available:,} bytes used ({used / available:.1%})"
            if available
            else f"{used:,} bytes used, of a total not known without reading it all"
        )
        lines.append(f"evertrain data: {record['source']} cut at {cap} per source: {of}")
    return lines


def check_same_tokenizer(datasets: Mapping[str, Any]) -> str | None:
    """The tokenizer sha256 that all prepared ``datasets`` share; DataError if they differ.

    Token ids only mean the same text under the same tokenizer: a mixture of datasets prepared
    with two tokenizers trains on noise for one of them without any error. Values may be
    :class:`PreparedDataset` objects or their directories; token arrays carry no tokenizer and
    are skipped (None when no value is a prepared dataset).
    """
    found: dict[str, tuple[str, PreparedDataset]] = {}
    for name, dataset in datasets.items():
        if isinstance(dataset, str | os.PathLike):
            dataset = PreparedDataset(dataset)
        if isinstance(dataset, PreparedDataset):
            found[name] = (dataset.manifest["tokenizer"]["sha256"], dataset)
    shas = {sha for sha, _ in found.values()}
    if len(shas) > 1:
        named = ", ".join(
            f"{name!r} (tokenizer {dataset.tokenizer_path}, sha256 {sha[:12]})"
            for name, (sha, dataset) in found.items()
        )
        raise DataError(
            f"datasets were prepared with different tokenizers: {named}; token ids mean different "
            "text under each, so prepare all of them with the same tokenizer "
            "(prepare(..., tokenizer=PATH), CLI: evertrain data prepare ... -t PATH)"
        )
    return shas.pop() if shas else None


class PreparedDataset:
    """A directory written by :func:`prepare`, opened read-only.

    Attributes:
        train_tokens, val_tokens: 1-D read-only ``np.memmap`` (uint16 or uint32); an empty split
            is a zero-length array.
        vocab_size: the tokenizer's vocabulary size (a model needs at least this many embeddings).
        eos_id: the id written after every document.
        tokenizer_path: ``out_dir/tokenizer.json``.
        manifest: the parsed ``manifest.json``.
        name: the directory name (what logs call this dataset by default).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        if not manifest_path.is_file():
            raise DataError(
                f"{str(self.path)!r} is not a prepared dataset (no {MANIFEST}): run "
                f"`evertrain data prepare SOURCE... -o {self.path}` first"
            )
        try:
            self.manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DataError(
                f"{manifest_path} is not valid JSON ({error}): re-run prepare on this directory"
            ) from None
        if self.manifest.get("format") != FORMAT:
            raise DataError(
                f"{manifest_path} has format {self.manifest.get('format')!r}, expected {FORMAT!r}: re-run prepare"
            )
        self.dtype = np.dtype(self.manifest["dtype"])
        self.name: str = self.manifest.get("name") or self.path.resolve().name
        self.vocab_size: int = int(self.manifest["tokenizer"]["vocab_size"])
        self.eos_id: int = int(self.manifest["tokenizer"]["eos_id"])
        self.tokenizer_path = self.path / self.manifest["tokenizer"]["file"]
        self.train_tokens = self._open("train")
        self.val_tokens = self._open("val")

    def _open(self, split: str) -> np.ndarray:
        shard = self.manifest["shards"][split]
        path = self.path / shard["file"]
        expected = shard["tokens"] * self.dtype.itemsize
        if not path.is_file() or path.stat().st_size != expected:
            found = path.stat().st_size if path.is_file() else "missing"
            raise DataError(
                f"{path} should hold {expected} bytes ({shard['tokens']} tokens) but is {found}: "
                "the directory is damaged, re-run prepare (it rebuilds it)"
            )
        if shard["tokens"] == 0:
            return np.zeros(0, dtype=self.dtype)  # np.memmap cannot map an empty file
        return np.memmap(path, dtype=self.dtype, mode="r", shape=(shard["tokens"],))

    def verify(self) -> None:
        """Recompute the shard and tokenizer sha256 checksums; raise DataError on a mismatch,
        naming every damaged file and the ``evertrain data prepare ... --overwrite`` command that
        rebuilds the dataset."""
        damaged = damaged_files(self)
        if damaged:
            tokenizer_ok = not any(item.startswith("tokenizer") for item in damaged)
            one = len(damaged) == 1
            raise DataError(
                f"{self.path}: {', '.join(damaged)} fail{'s' if one else ''} the sha256 check "
                f"(changed after prepare wrote {'it' if one else 'them'}): rebuild with "
                f"`{rebuild_command(self, tokenizer_ok)}`"
            )

    @property
    def sources(self) -> list[dict[str, Any]]:
        """What was used of each source: ``source``, ``bytes_used``, ``bytes_available``, ``truncated``.

        ``truncated``: ``max_bytes`` cut the source; ``bytes_available``: its whole size when known
        (equal to ``bytes_used`` when it was not cut; None when it was cut and the total cannot be
        known without reading it all, e.g. .jsonl/parquet; see ``corpora.available_bytes``).
        """
        records = []
        for record in self.manifest["sources"]:
            truncated = bool(record.get("truncated_at_max_bytes", False))
            available = record.get("bytes_available", None if truncated else record["bytes"])
            records.append(
                {
                    "source": record["source"],
                    "bytes_used": record["bytes"],
                    "bytes_available": available,
                    "truncated": truncated,
                }
            )
        return records

    def tokenizer(self) -> Any:
        """The ``tokenizers.Tokenizer`` the shards were made with."""
        return load_tokenizer(self.tokenizer_path)

    def summary(self) -> dict[str, Any]:
        """Sizes and provenance in one flat dict (what ``evertrain data info`` prints)."""
        m = self.manifest
        return {
            "name": self.name,
            "path": str(self.path),
            "sources": [s["source"] for s in m["sources"]],
            "documents_train": m["documents"]["train"],
            "documents_val": m["documents"]["val"],
            "tokens_train": m["tokens"]["train"],
            "tokens_val": m["tokens"]["val"],
            "bytes": m["bytes"],
            "bytes_per_token": round(m["bytes"] / max(1, sum(m["tokens"].values())), 3),
            "undecodable_bytes": m["undecodable_bytes"],
            "vocab_size": self.vocab_size,
            "dtype": m["dtype"],
            "tokenizer_sha256": m["tokenizer"]["sha256"],
            "created_by": m["created_by"],
        }

    def __repr__(self) -> str:
        return (
            f"PreparedDataset({str(self.path)!r}, train_tokens={len(self.train_tokens)}, "
            f"val_tokens={len(self.val_tokens)}, vocab_size={self.vocab_size})"
        )
