"""Sub-commands of `evertrain` for the continual area.

Import heavy libraries (torch, tokenizers, matplotlib) inside command functions, never at
module level: `evertrain.cli` imports every area's CLI at start-up.
"""

from __future__ import annotations

import typer

app = typer.Typer(help="continual commands", no_args_is_help=True)


@app.callback()
def _callback() -> None:
    """continual commands."""


# Functions listed here become top-level commands (`evertrain demo`, `evertrain report`);
# the command name is the function name without the `_command` suffix.
TOP_LEVEL_COMMANDS: list = []
