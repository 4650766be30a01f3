"""Text sources: the builtin standard-library corpora, files, folders and local HF datasets.

Every source is read as a stream of *documents* (strings). What a document is:

===================  ==========================================================================
source               one document per
===================  ==========================================================================
``stdlib-english``   standard-library module (its module, class and function docstrings,
                     in source order, separated by blank lines), then one per
                     ``pydoc_data.topics.topics`` entry (sorted by key)
``stdlib-code``      standard-library ``.py`` file (its source text)
``*.txt``            block of paragraphs up to 8 KiB (``TXT_DOCUMENT_BYTES``; a file that
                     small is one document); ``txt_separator`` changes the rule: ``"file"``
                     (one document per file) or an exact separator such as ``"\\n\\n"``
``*.jsonl``          non-blank line (the ``text_field`` of the JSON object on it)
``*.parquet``        row (the ``text_column``)
folder               its ``.txt``/``.jsonl``/``.parquet`` files, recursively, in sorted order
HF ``save_to_disk``  row (``text_column``); a folder with ``dataset_info.json``/``state.json``
                     or ``dataset_dict.json`` is loaded with ``datasets.load_from_disk``
===================  ==========================================================================

Bytes that are not valid UTF-8 are replaced with U+FFFD and *counted* (``undecodable_bytes`` in
:class:`SourceStats`, the manifest and the CLI output), never dropped silently. Empty documents
are skipped and counted. Nothing is ever downloaded.
"""

from __future__ import annotations

import ast
import codecs
import json
import os
import re
import sys
import sysconfig
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evertrain.data.errors import DataError

#: The embedded corpora: name -> description. Built from the running Python's standard library,
#: so they need no download and are identical across runs on one Python version.
BUILTIN_CORPORA: dict[str, str] = {
    "stdlib-english": "docstrings of the Python standard library (modules, classes, functions) "
    "plus the pydoc_data help topics: English prose about code",
    "stdlib-code": "source code of the Python standard library (.py files, tests excluded)",
}

TEXT_SUFFIXES = (".txt", ".jsonl", ".parquet")

#: The default rule for .txt files packs paragraphs into documents of at most this many UTF-8
#: bytes. A book or a dump then becomes many documents (a validation split by document needs
#: several), while a file this small stays one document, as it always was. 8 KiB is about 2,000
#: tokens: long enough for any training context the demos use, short enough that a 100 KB text
#: gives a dozen documents.
TXT_DOCUMENT_BYTES = 8192
#: ``txt_separator`` values that name a rule instead of an exact separator string.
TXT_PARAGRAPHS = "paragraphs"
TXT_WHOLE_FILE = "file"
# A paragraph ends at a blank line: two or more line breaks with only spaces/tabs between them.
_BLANK_LINES = re.compile(r"\r?\n(?:[ \t\f\v]*\r?\n)+")

# Directories of the standard library that are not library code (tests, GUI, demos), are
# machine-specific (config-*, lib-dynload, site-packages) or are generated tables (encodings).
_STDLIB_SKIP_DIRS = frozenset(
    {
        "test",
        "tests",
        "idle_test",
        "idlelib",
        "tkinter",
        "turtledemo",
        "site-packages",
        "dist-packages",
        "lib-dynload",
        "__pycache__",
        "__phello__",
        "encodings",
        "ensurepip",
    }
)


@dataclass
class SourceStats:
    """What reading one source produced (recorded per source in the manifest)."""

    source: str
    kind: str
    documents: int = 0
    bytes: int = 0
    undecodable_bytes: int = 0
    empty_documents_skipped: int = 0
    truncated_at_max_bytes: bool = False
    #: UTF-8 bytes the whole source holds: ``bytes`` when nothing was cut; when ``max_bytes`` cut
    #: it, what can be known without reading the rest (file sizes of .txt sources and of
    #: ``stdlib-code``, a corpus already in memory), else None.
    bytes_available: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# UTF-8 decoding that counts what it replaces.

_replaced = threading.local()


def _count_and_replace(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):  # pragma: no cover - only decode uses it
        raise error
    _replaced.count = getattr(_replaced, "count", 0) + (error.end - error.start)
    return "\ufffd", error.end


codecs.register_error("evertrain-count-replace", _count_and_replace)


def decode_utf8_counting(data: bytes) -> tuple[str, int]:
    """Decode UTF-8, replacing each invalid byte sequence by U+FFFD; return (text, bytes replaced)."""
    try:
        return data.decode("utf-8"), 0
    except UnicodeDecodeError:
        pass
    _replaced.count = 0
    text = data.decode("utf-8", "evertrain-count-replace")
    return text, _replaced.count


# --------------------------------------------------------------------------------------------
# Builtin corpora.


def stdlib_root() -> Path:
    """The directory of the running Python's standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def _stdlib_files() -> list[Path]:
    root = stdlib_root()
    files: list[Path] = []
    for directory, subdirs, names in os.walk(root):
        # Sorted in place so os.walk descends in a deterministic order.
        subdirs[:] = sorted(
            d for d in subdirs if d not in _STDLIB_SKIP_DIRS and not d.startswith("config-")
        )
        for name in sorted(names):
            # _sysconfigdata* describes the build machine, not the library: not deterministic.
            if name.endswith(".py") and not name.startswith(
                ("_sysconfigdata", "__phello__", "__hello__")
            ):
                files.append(Path(directory) / name)
    return files


def _docstrings_in_source_order(tree: ast.AST) -> list[str]:
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                found.append(doc)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child)

    visit(tree)
    return found


def iter_builtin_documents(name: str) -> Iterator[str]:
    """Yield the documents of a builtin corpus lazily (so a ``max_bytes`` cap stops the walk early)."""
    if name not in BUILTIN_CORPORA:
        raise DataError(f"unknown builtin corpus {name!r}: choose one of {sorted(BUILTIN_CORPORA)}")
    cached = _builtin_cache.get(name)
    if cached is not None:
        yield from cached
        return
    for path in _stdlib_files():
        text, _ = decode_utf8_counting(path.read_bytes())
        if name == "stdlib-code":
            if text.strip():
                yield text
            continue
        try:
            tree = ast.parse(text, filename=str(path))
        except (SyntaxError, ValueError):
            continue  # a few stdlib files are deliberately invalid (e.g. lib2to3 fixtures)
        docstrings = _docstrings_in_source_order(tree)
        if docstrings:
            yield "\n\n".join(docstrings)
    if name == "stdlib-english":
        # pydoc_data.topics is a plain dict literal; importing it has no side effects.
        from pydoc_data.topics import topics

        yield from (topics[key] for key in sorted(topics) if topics[key].strip())


_builtin_cache: dict[str, tuple[str, ...]] = {}


def builtin_documents(name: str) -> tuple[str, ...]:
    """All documents of a builtin corpus (cached per process; a few seconds the first time)."""
    if name not in _builtin_cache:
        _builtin_cache[name] = tuple(iter_builtin_documents(name))
    return _builtin_cache[name]


def clear_builtin_cache() -> None:
    """Forget the cached builtin corpora (the next use walks the standard library again)."""
    _builtin_cache.clear()


# --------------------------------------------------------------------------------------------
# Resolving and reading sources.


def _is_hf_disk_dir(path: Path) -> bool:
    return path.is_dir() and any(
        (path / marker).exists()
        for marker in ("dataset_info.json", "state.json", "dataset_dict.json")
    )


def source_kind(source: Any) -> str:
    """Classify a source: builtin, txt, jsonl, parquet, folder, hf-disk or hf-dataset."""
    if not isinstance(source, str | os.PathLike):
        if hasattr(source, "column_names") and hasattr(source, "__getitem__"):
            return "hf-dataset"
        raise DataError(
            f"source {source!r} is a {type(source).__name__}: pass a file or folder path, a builtin "
            f"name ({', '.join(sorted(BUILTIN_CORPORA))}) or a datasets.Dataset"
        )
    if isinstance(source, str) and source in BUILTIN_CORPORA:
        return "builtin"
    path = Path(source)
    if not path.exists():
        hint = f" or a builtin corpus ({', '.join(sorted(BUILTIN_CORPORA))})"
        raise DataError(
            f"source {str(source)!r} does not exist: pass an existing file/folder{hint}"
        )
    if path.is_dir():
        return "hf-disk" if _is_hf_disk_dir(path) else "folder"
    suffix = path.suffix.lower()
    if suffix in (".txt", ".jsonl", ".parquet"):
        return suffix[1:]
    raise DataError(
        f"source {str(path)!r} has suffix {suffix!r}: supported are .txt, .jsonl, .parquet or a folder"
    )


def _folder_files(path: Path) -> list[Path]:
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    if not files:
        raise DataError(
            f"folder {str(path)!r} has no .txt, .jsonl or .parquet files: point at a folder that does"
        )
    return files


def source_fingerprint(source: Any) -> dict[str, Any]:
    """What identifies a source's content cheaply (for the no-op check of ``prepare``)."""
    kind = source_kind(source)
    if kind == "builtin":
        return {"builtin": source, "python": sys.version.split()[0], "stdlib": str(stdlib_root())}
    if kind == "hf-dataset":
        return {"hf-dataset": getattr(source, "_fingerprint", None) or repr(source)}
    path = Path(source).resolve()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {
        "path": str(path),
        "files": [
            [
                str(f.relative_to(path)) if f != path else f.name,
                f.stat().st_size,
                f.stat().st_mtime_ns,
            ]
            for f in files
        ],
    }


def check_max_bytes(max_bytes: Any) -> None:
    """Raise unless ``max_bytes`` is None (no cap) or a positive integer."""
    if max_bytes is not None and (
        isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1
    ):
        raise DataError(f"max_bytes={max_bytes!r} must be a positive integer (or None for no cap)")


def check_txt_separator(txt_separator: Any) -> None:
    """Raise unless ``txt_separator`` is None, a rule name or a non-empty separator string."""
    if txt_separator is not None and (not isinstance(txt_separator, str) or not txt_separator):
        raise DataError(
            f"txt_separator={txt_separator!r} must be a non-empty string: {TXT_PARAGRAPHS!r} "
            f"(the default), {TXT_WHOLE_FILE!r} (one document per file) or a separator such as '\\n\\n'"
        )


def txt_rule(txt_separator: str | None) -> dict[str, Any]:
    """How .txt files become documents under ``txt_separator``, as a manifest records it.

    The record names the cap of the default rule, so a prepared dataset made under another rule
    (or an older version, when a .txt file was always one document) is never taken for current.
    """
    check_txt_separator(txt_separator)
    if txt_separator is None or txt_separator == TXT_PARAGRAPHS:
        return {"rule": TXT_PARAGRAPHS, "max_document_bytes": TXT_DOCUMENT_BYTES}
    if txt_separator == TXT_WHOLE_FILE:
        return {"rule": TXT_WHOLE_FILE}
    return {"rule": "separator", "separator": txt_separator}


def reads_txt(source: Any) -> bool:
    """Whether ``source`` is a .txt file or a folder holding one (so the .txt rule matters)."""
    kind = source_kind(source)
    if kind == "folder":
        return any(f.suffix.lower() == ".txt" for f in _folder_files(Path(source)))
    return kind == "txt"


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8"))


def _paragraph_spans(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each paragraph: the text between runs of blank lines."""
    position = 0
    for match in _BLANK_LINES.finditer(text):
        yield position, match.start()
        position = match.end()
    yield position, len(text)


def _pack_lines(paragraph: str, max_bytes: int) -> Iterator[str]:
    """A paragraph over the cap, cut only between lines (a single longer line stays whole)."""
    piece: list[str] = []
    size = 0
    for line in paragraph.splitlines(keepends=True):
        line_size = _utf8_size(line)
        if piece and size + line_size > max_bytes:
            yield "".join(piece)
            piece, size = [], 0
        piece.append(line)
        size += line_size
    if piece:
        yield "".join(piece)


def pack_paragraphs(text: str, max_bytes: int = TXT_DOCUMENT_BYTES) -> Iterator[str]:
    """Split a text into documents of whole paragraphs of at most ``max_bytes`` UTF-8 bytes.

    A text within the cap is one document. Otherwise consecutive paragraphs (separated by blank
    lines) are packed into a document while it stays within the cap; each document is the
    text's exact span, blank lines inside it included, and the blank lines at a boundary
    between two documents are dropped. A paragraph longer than the cap is cut between lines
    (``_pack_lines``), never inside one.
    """
    if _utf8_size(text) <= max_bytes:
        yield text
        return
    start: int | None = None  # span of the document being packed: text[start:end]
    end = size = 0
    for paragraph_start, paragraph_end in _paragraph_spans(text):
        paragraph_size = _utf8_size(text[paragraph_start:paragraph_end])
        if start is not None:
            joined = size + _utf8_size(text[end:paragraph_start]) + paragraph_size
            if joined <= max_bytes:
                end, size = paragraph_end, joined
                continue
            yield text[start:end]
            start = None
        if paragraph_size > max_bytes:
            yield from _pack_lines(text[paragraph_start:paragraph_end], max_bytes)
        else:
            start, end, size = paragraph_start, paragraph_end, paragraph_size
    if start is not None:
        yield text[start:end]


def _iter_txt(path: Path, separator: str | None, stats: SourceStats) -> Iterator[str]:
    text, replaced = decode_utf8_counting(path.read_bytes())
    stats.undecodable_bytes += replaced
    if separator == TXT_WHOLE_FILE:
        yield text
    elif separator is None or separator == TXT_PARAGRAPHS:
        yield from pack_paragraphs(text)
    else:
        yield from text.split(separator)


def available_bytes(source: Any, kind: str) -> int | None:
    """The size of a whole source in bytes, where it is known without reading it all; else None.

    .txt files: their size on disk (the text's UTF-8 bytes, up to replaced bytes and the blank
    lines dropped between documents); ``stdlib-code``: the sizes of its files; a builtin corpus
    already read in this process: its exact size. JSON lines, parquet and HF data hold other
    bytes than the text (keys, compression), so for them it is unknown.
    """
    if kind == "txt":
        return Path(source).stat().st_size
    if kind == "folder":
        files = _folder_files(Path(source))
        if all(f.suffix.lower() == ".txt" for f in files):
            return sum(f.stat().st_size for f in files)
        return None
    if kind == "builtin":
        cached = _builtin_cache.get(source)
        if cached is not None:
            return sum(_utf8_size(document) for document in cached)
        if source == "stdlib-code":
            return sum(path.stat().st_size for path in _stdlib_files())
    return None


def _iter_jsonl(path: Path, text_field: str, stats: SourceStats) -> Iterator[str]:
    with open(path, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            line, replaced = decode_utf8_counting(raw)
            stats.undecodable_bytes += replaced
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(
                    f"{path}:{line_number} is not valid JSON ({error.msg}): each line must be one JSON object"
                ) from None
            if not isinstance(record, dict) or text_field not in record:
                keys = sorted(record) if isinstance(record, dict) else type(record).__name__
                raise DataError(
                    f"{path}:{line_number} has no field {text_field!r} (found {keys}): set text_field to the field that holds the text"
                )
            value = record[text_field]
            if not isinstance(value, str):
                raise DataError(
                    f"{path}:{line_number} field {text_field!r} is a {type(value).__name__}, not a string: set text_field to a text field"
                )
            yield value


def _decode_cell(value: Any, where: str, text_column: str, stats: SourceStats) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        text, replaced = decode_utf8_counting(value)
        stats.undecodable_bytes += replaced
        return text
    if isinstance(value, str):
        return value
    raise DataError(
        f"{where} column {text_column!r} holds {type(value).__name__} values, not text: set text_column to a text column"
    )


def _iter_parquet(path: Path, text_column: str, stats: SourceStats) -> Iterator[str]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises several types for a corrupt file
        raise DataError(
            f"{path} is not a readable parquet file ({error}): check the file"
        ) from None
    columns = parquet.schema_arrow.names
    if text_column not in columns:
        raise DataError(
            f"{path} has no column {text_column!r} (columns: {columns}): set text_column to one of them"
        )
    for batch in parquet.iter_batches(columns=[text_column], batch_size=4096):
        for value in batch.column(0).to_pylist():
            text = _decode_cell(value, str(path), text_column, stats)
            if text is not None:
                yield text


def _iter_hf(dataset: Any, where: str, text_column: str, stats: SourceStats) -> Iterator[str]:
    if hasattr(dataset, "keys") and not hasattr(dataset, "column_names"):
        raise DataError(
            f"{where} is a DatasetDict without a 'train' split (splits: {list(dataset.keys())}): save one split"
        )
    if isinstance(dataset.column_names, dict):  # a DatasetDict
        if "train" not in dataset:
            raise DataError(
                f"{where} is a DatasetDict without a 'train' split (splits: {list(dataset.keys())}): save one split"
            )
        dataset = dataset["train"]
    if text_column not in dataset.column_names:
        raise DataError(
            f"{where} has no column {text_column!r} (columns: {dataset.column_names}): set text_column to one of them"
        )
    column = dataset.select_columns([text_column])
    for start in range(0, len(column), 4096):
        for value in column[start : start + 4096][text_column]:
            text = _decode_cell(value, where, text_column, stats)
            if text is not None:
                yield text


def _iter_raw(
    source: Any,
    kind: str,
    text_field: str,
    text_column: str,
    txt_separator: str | None,
    stats: SourceStats,
) -> Iterator[str]:
    if kind == "builtin":
        yield from iter_builtin_documents(source)
    elif kind == "txt":
        yield from _iter_txt(Path(source), txt_separator, stats)
    elif kind == "jsonl":
        yield from _iter_jsonl(Path(source), text_field, stats)
    elif kind == "parquet":
        yield from _iter_parquet(Path(source), text_column, stats)
    elif kind == "folder":
        for file in _folder_files(Path(source)):
            yield from _iter_raw(
                file, file.suffix.lower()[1:], text_field, text_column, txt_separator, stats
            )
    elif kind == "hf-disk":
        import datasets

        yield from _iter_hf(datasets.load_from_disk(str(source)), str(source), text_column, stats)
    elif kind == "hf-dataset":
        yield from _iter_hf(source, "the datasets object", text_column, stats)
    else:  # pragma: no cover - source_kind returns only the kinds above
        raise AssertionError(kind)


def iter_documents(
    source: Any,
    *,
    text_field: str = "text",
    text_column: str = "text",
    txt_separator: str | None = None,
    max_bytes: int | None = None,
    stats: SourceStats | None = None,
) -> Iterator[str]:
    """Yield the non-empty documents of one source, updating ``stats`` as it goes.

    ``txt_separator`` says how a .txt file becomes documents: None or ``"paragraphs"`` (default)
    packs whole paragraphs into documents of at most ``TXT_DOCUMENT_BYTES`` (8 KiB; a smaller
    file is one document, see :func:`pack_paragraphs`); ``"file"`` makes each file one document;
    any other string is an exact separator (e.g. ``"\\n\\n"``: one document per paragraph).
    ``max_bytes`` caps the UTF-8 size of what is yielded: the document that crosses the cap is
    cut at the last whole character before it and reading stops (``truncated_at_max_bytes``,
    and ``bytes_available`` where the whole size is known).
    """
    check_max_bytes(max_bytes)
    kind = source_kind(source)
    stats = stats if stats is not None else SourceStats(source=str(source), kind=kind)
    check_txt_separator(txt_separator)
    for text in _iter_raw(source, kind, text_field, text_column, txt_separator, stats):
        if not text.strip():
            stats.empty_documents_skipped += 1
            continue
        if max_bytes is not None and stats.bytes >= max_bytes:
            # Earlier documents filled the cap exactly: this one, and all after it, are cut.
            stats.truncated_at_max_bytes = True
            break
        size = len(text.encode("utf-8"))
        if max_bytes is not None and stats.bytes + size > max_bytes:
            text = text.encode("utf-8")[: max_bytes - stats.bytes].decode("utf-8", "ignore")
            stats.truncated_at_max_bytes = True
            if text.strip():
                stats.documents += 1
                stats.bytes += len(text.encode("utf-8"))
                yield text
            break
        stats.documents += 1
        stats.bytes += size
        yield text
    if stats.truncated_at_max_bytes:
        known = available_bytes(source, kind)
        stats.bytes_available = None if known is None else max(known, stats.bytes)
    else:
        stats.bytes_available = stats.bytes


@dataclass(frozen=True)
class DocumentReading:
    """How every source of one tokenizer training or prepare is read: the options of
    :func:`iter_documents` besides the source (same names, same meaning)."""

    max_bytes: int | None = None
    text_field: str = "text"
    text_column: str = "text"
    txt_separator: str | None = None

    def options(self) -> dict[str, Any]:
        """As keyword arguments (of ``iter_documents``, ``train_tokenizer``, a prepare record)."""
        return asdict(self)

    def documents(self, source: Any) -> tuple[SourceStats, Iterator[str]]:
        """The documents of ``source`` and the stats they fill in as they are read."""
        stats = SourceStats(source=str(source), kind=source_kind(source))
        return stats, iter_documents(source, **self.options(), stats=stats)


def peek_text_fields(source: Any, text_field: str = "text", text_column: str = "text") -> None:
    """Fail now, not after minutes of tokenising, if a .jsonl field or parquet column is missing.

    Reads only the first record of each .jsonl file and the schema and first rows of each
    parquet file (a later record without the field still fails when it is reached).
    """
    kind = source_kind(source)
    files = _folder_files(Path(source)) if kind == "folder" else [source]
    for file in files:
        suffix = Path(file).suffix.lower() if kind in ("folder", "jsonl", "parquet") else ""
        stats = SourceStats(source=str(file), kind=suffix[1:])
        if suffix == ".jsonl":
            next(_iter_jsonl(Path(file), text_field, stats), None)
        elif suffix == ".parquet":
            next(_iter_parquet(Path(file), text_column, stats), None)


def check_not_empty(stats: SourceStats) -> None:
    """Raise if a source produced no text at all."""
    if stats.documents == 0:
        skipped = (
            f" ({stats.empty_documents_skipped} empty documents skipped)"
            if stats.empty_documents_skipped
            else ""
        )
        raise DataError(
            f"source {stats.source!r} has no text{skipped}: point at a non-empty corpus"
        )
