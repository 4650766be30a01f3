"""What every area's CLI does with bad input: one line on stderr, exit code 2.

Kept torch-free and tiny: `evertrain.cli` imports every area's CLI module at start-up.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from typing import NoReturn

import typer

#: Exit status for input the user can fix (a bad field, path or flag), as click uses for usage.
EXIT_BAD_INPUT = 2


def fail(error: BaseException | str) -> NoReturn:
    """Print ``error: <message>`` (one line) to stderr and exit with :data:`EXIT_BAD_INPUT`."""
    message = " ".join(str(error).split("\n"))  # a message is one line, whatever raised it
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_BAD_INPUT)


def unescape(text: str | None) -> str | None:
    """A separator typed in a shell (``--txt-separator '\\n\\n'``): read the escapes ``\\n``,
    ``\\t``, ``\\r`` and ``\\\\`` as the characters they name; other text is kept as is."""
    if text is None:
        return None
    table = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
    return re.sub(r"\\(.)", lambda match: table.get(match.group(1), match.group(0)), text)


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Show each warning raised inside as ``warning: MESSAGE`` on stderr (one line), not Python's
    ``file:line: UserWarning`` plus a source line."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        typer.echo(f"warning: {' '.join(str(message).split())}", err=True)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield
