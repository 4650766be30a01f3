"""Sub-commands of `evertrain` for the schedules area.

Import heavy libraries (torch, tokenizers, matplotlib) inside command functions, never at
module level: `evertrain.cli` imports every area's CLI at start-up.
"""

from __future__ import annotations

import typer

app = typer.Typer(help="schedules commands", no_args_is_help=True)


@app.callback()
def _callback() -> None:
    """schedules commands."""
