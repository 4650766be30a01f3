"""What every area's CLI does with bad input (one line on stderr, exit code 2) and with
warnings (one ``evertrain: warning: ...`` line each).

Kept torch-free and tiny: every area's CLI module imports it.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from typing import IO, NoReturn

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


def show_warning_as_one_line(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: IO[str] | None = None,
    line: str | None = None,
) -> None:
    """``evertrain: warning: MESSAGE`` on stderr: the fix is in the message; Python's
    ``file:line: UserWarning`` and the source line say nothing to a user of the command."""
    typer.echo(f"evertrain: warning: {' '.join(str(message).split())}", err=True)


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Show warnings as one line while a command runs; Python's display is restored afterwards
    (a library user, or a test calling the app twice, keeps normal warnings)."""
    with warnings.catch_warnings():
        warnings.showwarning = show_warning_as_one_line
        yield
