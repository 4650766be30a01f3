"""Sub-commands of `evertrain` for the data area: prepare, info, corpora, tokenizer, mixture.

`evertrain.cli` loads this module for `evertrain data ...` only: the data modules import tokenizers,
pyarrow, datasets and matplotlib inside the functions that need them, never at module level.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

import typer

from evertrain import _yaml
from evertrain._cli import fail, unescape
from evertrain.data import corpora
from evertrain.data.mixtures import mixture_table, plot_mixture
from evertrain.data.shards import PreparedDataset, cut_source_lines, prepare
from evertrain.data.tokenizer import load_tokenizer, train_tokenizer

app = typer.Typer(help="Corpora to token shards; inspect prepared data.", no_args_is_help=True)


@app.callback()
def _callback() -> None:
    """Corpora to token shards; inspect prepared data."""


# The Python API's errors name keyword arguments (``text_column``, ``max_bytes=0``); through the
# CLI they name the flag instead (``--max-bytes=0`` is also how the flag can be typed). Names
# that are also plain words (seed, tokenizer, overwrite) are only rewritten as ``name=``.
_PREPARE_FLAGS = {
    "out_dir": "--out",
    "vocab_size": "--vocab-size",
    "val_fraction": "--val-fraction",
    "seed=": "--seed=",
    "max_bytes": "--max-bytes",
    "None for no cap": "0 for no cap",
    "text_field": "--text-field",
    "text_column": "--text-column",
    "txt_separator": "--txt-separator",
    "tokenizer=None": "no --tokenizer",
    "tokenizer=PATH": "--tokenizer PATH",
    "overwrite=True": "--overwrite",
}
_TOKENIZER_FLAGS = {
    "out_path": "--out",
    "vocab_size": "--vocab-size",
    "max_bytes": "--max-bytes",
    "None for no cap": "0 for no cap",
}
_MIXTURE_FLAGS = {"total_tokens": "--total-tokens", "plot path": "--plot"}


def cli_words(message: str, flags: Mapping[str, str]) -> str:
    """``message`` with keyword names swapped for flags (``max_bytes=0`` -> ``--max-bytes=0``).

    Quoted text (paths, values shown with ``!r``) is never rewritten.
    """
    alternatives = []
    for token in sorted(flags, key=len, reverse=True):
        # A token ending in a letter must end a word: max_bytes, not max_bytes_used.
        end = r"(?![\w])" if token[-1].isalnum() or token[-1] == "_" else ""
        alternatives.append(re.escape(token) + end)
    pattern = re.compile(r"'[^']*'|\"[^\"]*\"|(?<![\w./-])(" + "|".join(alternatives) + ")")

    def swap(match: re.Match[str]) -> str:
        token = match.group(1)
        return match.group(0) if token is None else flags[token]

    return pattern.sub(swap, message)


def _fail(error: Exception, flags: Mapping[str, str] | None = None) -> NoReturn:
    """:func:`evertrain._cli.fail`, the API's keyword names swapped for this command's flags."""
    fail(str(error) if flags is None else cli_words(str(error), flags))


@app.command("prepare")
def prepare_command(
    sources: list[str] = typer.Argument(
        ...,
        help="Files/folders (.txt, .jsonl, .parquet), HF save_to_disk dirs, or stdlib-english / stdlib-code.",
    ),
    out_dir: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Directory to write (train.bin, val.bin, tokenizer.json, manifest.json).",
    ),
    tokenizer: Path | None = typer.Option(
        None,
        "--tokenizer",
        "-t",
        help="A tokenizer.json, or a Hugging Face model directory (its tokenizer and its EOS); "
        "omit to train a byte-level BPE.",
    ),
    vocab_size: int = typer.Option(
        4096,
        "--vocab-size",
        help="Vocabulary size of the trained tokenizer (ignored with --tokenizer).",
    ),
    val_fraction: float = typer.Option(
        0.05, "--val-fraction", help="Fraction of documents held out for validation."
    ),
    seed: int = typer.Option(0, "--seed", help="Decides which documents are held out."),
    max_bytes: int = typer.Option(
        0,
        "--max-bytes",
        help="Read at most this many UTF-8 bytes from each source (0: all); a cut is reported.",
    ),
    text_field: str = typer.Option(
        "text", "--text-field", help="Field of .jsonl records that holds the text."
    ),
    text_column: str = typer.Option(
        "text", "--text-column", help="Column of parquet / HF datasets that holds the text."
    ),
    txt_separator: str | None = typer.Option(
        None,
        "--txt-separator",
        metavar="SEP",
        help="How .txt files become documents: 'paragraphs' (default: whole paragraphs packed "
        "into documents of at most 8 KiB, a smaller file is one document), 'file' (one document "
        "per file), or an exact separator, e.g. '\\n\\n' (one document per paragraph; \\n, \\t, "
        "\\r and \\\\ are read as escapes).",
    ),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Rebuild if OUT holds a dataset of other inputs, or of these inputs with a file "
        "that fails its sha256 check (hashes the shards first; intact: a no-op).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Tokenise SOURCE... into token shards with a held-out split and a manifest (a no-op if done)."""
    try:
        dataset = prepare(
            sources,
            out_dir,
            tokenizer=tokenizer,
            vocab_size=vocab_size,
            val_fraction=val_fraction,
            seed=seed,
            max_bytes=max_bytes or None,
            text_field=text_field,
            text_column=text_column,
            txt_separator=unescape(txt_separator),
            overwrite=overwrite,
            progress=not quiet,
        )
    except ValueError as error:
        _fail(error, _PREPARE_FLAGS)
    summary = dataset.summary()
    typer.echo(
        f"{summary['path']}: {summary['tokens_train']:,} train + {summary['tokens_val']:,} val tokens, "
        f"vocab {summary['vocab_size']} ({summary['dtype']})"
    )
    if quiet:
        # Never silent, even with --quiet: a cut source or replaced bytes change what the model sees.
        for line in cut_source_lines(dataset, max_bytes or None):
            typer.echo(cli_words(line, _PREPARE_FLAGS), err=True)
        if summary["undecodable_bytes"]:
            typer.echo(
                f"replaced {summary['undecodable_bytes']:,} undecodable bytes with U+FFFD", err=True
            )


@app.command("info")
def info_command(
    directory: Path = typer.Argument(..., help="A directory written by `evertrain data prepare`."),
    verify: bool = typer.Option(
        False, "--verify", help="Recompute the sha256 checksums of shards and tokenizer."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Sizes and provenance of a prepared dataset (from its manifest)."""
    try:
        dataset = PreparedDataset(directory)
        if verify:
            dataset.verify()
    except ValueError as error:
        _fail(error, _PREPARE_FLAGS)  # "re-run prepare with --overwrite"
    summary = dataset.summary()
    if verify:
        summary["verified"] = True
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    width = max(len(key) for key in summary)
    for key, value in summary.items():
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
        typer.echo(f"{key:<{width}}  {shown}")


@app.command("corpora")
def corpora_command(
    tokenizer: Path | None = typer.Option(
        None, "--tokenizer", "-t", help="Also count tokens under this tokenizer.json."
    ),
) -> None:
    """List the builtin corpora with their sizes (documents, bytes; tokens with --tokenizer)."""
    try:
        tok = None
        if tokenizer is not None:
            tok = load_tokenizer(tokenizer)
        for name, description in corpora.BUILTIN_CORPORA.items():
            documents = corpora.builtin_documents(name)
            size = sum(len(doc.encode("utf-8")) for doc in documents)
            line = f"{name:<15} {len(documents):>6,} documents {size:>12,} bytes"
            if tok is not None:
                tokens = sum(
                    len(e.ids) + 1
                    for e in tok.encode_batch_fast(list(documents), add_special_tokens=False)
                )
                line += f" {tokens:>12,} tokens"
            typer.echo(f"{line}  {description}")
    except ValueError as error:
        _fail(error)


@app.command("tokenizer")
def tokenizer_command(
    sources: list[str] = typer.Argument(
        ..., help="Files/folders or builtin corpus names to train on."
    ),
    out_path: Path = typer.Option(
        ..., "--out", "-o", help="tokenizer.json to write (or a directory)."
    ),
    vocab_size: int = typer.Option(4096, "--vocab-size", help="Final vocabulary size (>= 257)."),
    max_bytes: int = typer.Option(
        0, "--max-bytes", help="Read at most this many bytes from each source (0: all)."
    ),
) -> None:
    """Train a byte-level BPE tokenizer on SOURCE... and save it."""
    try:
        path = train_tokenizer(
            sources, out_path, vocab_size, max_bytes=max_bytes or None, progress=False
        )
    except ValueError as error:
        _fail(error, _TOKENIZER_FLAGS)
    typer.echo(f"wrote {path} (vocab {vocab_size})")


@app.command("mixture")
def mixture_command(
    weights: str = typer.Argument(
        ..., help='Weights as JSON (\'{"old": 0.25, "new": 0.75}\') or a .json/.yaml file.'
    ),
    total_tokens: int = typer.Option(
        ..., "--total-tokens", help="Training length to show, in tokens."
    ),
    points: int = typer.Option(11, "--points", help="Rows of the printed table."),
    plot: Path | None = typer.Option(
        None, "--plot", help="Also write a stacked-area plot (PNG/SVG/PDF)."
    ),
) -> None:
    """Show what a mixture recipe does over training: share of each source, table and plot."""
    try:
        spec = _load_weights(weights)
        table = mixture_table(spec, total_tokens, points=max(2, points))
        if plot is not None:
            plot_mixture(spec, total_tokens, plot)
    except ValueError as error:
        _fail(error, _MIXTURE_FLAGS)
    names = [key for key in table if key != "tokens"]
    typer.echo(f"{'tokens':>14}" + "".join(f"{name:>12}" for name in names))
    for row, tokens in enumerate(table["tokens"]):
        typer.echo(f"{tokens:>14,}" + "".join(f"{table[name][row]:>12.4f}" for name in names))
    if plot is not None:
        typer.echo(f"wrote {plot}")


def _load_weights(text: str) -> dict:
    """Weights from a JSON string or a .json / .yaml file (a dict name -> weight spec)."""
    path = Path(text)
    if path.suffix.lower() in (".json", ".yaml", ".yml"):
        if not path.is_file():
            raise ValueError(
                f"weights file {text!r} does not exist: pass a .json/.yaml file or a JSON string"
            )
        what, body = f"weights file {text!r}", path.read_text(encoding="utf-8")
    else:
        what, body = f"weights {text!r}", text
    try:
        # YAML is a superset of JSON; this loader reads 3e-3 as a number, as JSON does.
        loaded = _yaml.load(body)
    except _yaml.YAMLError as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(
            f"{what} is not valid YAML or JSON ({first_line}): fix it, e.g. "
            '\'{"old": 0.25, "new": 0.75}\''
        ) from None
    if not isinstance(loaded, dict) or not loaded:
        raise ValueError("weights must be a non-empty mapping name -> weight spec")
    return loaded
