"""Text sources: the builtin standard-library corpora, files, folders and local HF datasets.

Every source is read as a stream of *documents* (strings). What a document is:

===================  ==========================================================================
source               one document per
===================  ==========================================================================
``stdlib-english``   standard-library module (its module, class and function docstrings,
                     in source order, separated by blank lines), then one per
                     ``pydoc_data.topics.topics`` entry (sorted by key)
``stdlib-code``      standard-library ``.py`` file (its source text)
``*.txt``            file (or piece between ``txt_separator``, e.g. ``"\\n\\n"``)
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


def _iter_txt(path: Path, separator: str | None, stats: SourceStats) -> Iterator[str]:
    text, replaced = decode_utf8_counting(path.read_bytes())
    stats.undecodable_bytes += replaced
    if separator is None:
        yield text
    else:
        yield from text.split(separator)


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

    ``txt_separator`` splits each .txt file into documents at that string (e.g. ``"\\n\\n"``
    for paragraphs); by default a .txt file is one document. ``max_bytes`` caps the UTF-8 size of what is yielded: the document that crosses the cap is
    cut at the last whole character before it and reading stops (``truncated_at_max_bytes``).
    """
    if max_bytes is not None and (not isinstance(max_bytes, int) or max_bytes < 1):
        raise DataError(f"max_bytes={max_bytes!r} must be a positive integer (or None for no cap)")
    kind = source_kind(source)
    stats = stats if stats is not None else SourceStats(source=str(source), kind=kind)
    if txt_separator is not None and (not isinstance(txt_separator, str) or not txt_separator):
        raise DataError(
            f"txt_separator={txt_separator!r} must be a non-empty string, e.g. '\\n\\n'"
        )
    for text in _iter_raw(source, kind, text_field, text_column, txt_separator, stats):
        if not text.strip():
            stats.empty_documents_skipped += 1
            continue
        size = len(text.encode("utf-8"))
        if max_bytes is not None and stats.bytes + size >= max_bytes:
            remaining = max_bytes - stats.bytes
            if remaining < size:
                text = text.encode("utf-8")[:remaining].decode("utf-8", "ignore")
                size = len(text.encode("utf-8"))
                stats.truncated_at_max_bytes = True
            if text.strip():
                stats.documents += 1
                stats.bytes += size
                yield text
            return
        stats.documents += 1
        stats.bytes += size
        yield text


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
