"""The one ``evertrain`` command.

Each area owns its sub-commands in ``<area>/cli.py`` (a ``typer.Typer`` named ``app``); this
file only wires them together. Area CLI modules import heavy libraries (torch, tokenizers)
inside their command functions, so ``evertrain schedule ...`` starts in a fraction of a second.
"""

from __future__ import annotations

import typer

from evertrain.continual import cli as continual_cli
from evertrain.data import cli as data_cli
from evertrain.laws import cli as laws_cli
from evertrain.schedules import cli as schedules_cli
from evertrain.train import cli as train_cli
from evertrain.tune import cli as tune_cli

app = typer.Typer(
    name="evertrain",
    help="Train language models that never have to start over.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

app.add_typer(schedules_cli.app, name="schedule", help="LR schedules: show, plot, export.")
app.add_typer(laws_cli.app, name="law", help="Loss-curve laws: fit, predict, optimize, compare.")
app.add_typer(data_cli.app, name="data", help="Corpora to token shards; inspect prepared data.")
app.add_typer(train_cli.app, name="train", help="The reference GPT trainer.")
app.add_typer(continual_cli.app, name="continual", help="Continual pre-training plans and recipes.")
app.add_typer(tune_cli.app, name="tune", help="Tuning in the loop: PBT on Ray Tune.")

# Top-level commands owned by the continual area: `evertrain demo`, `evertrain report`.
# A command may carry click context settings (`demo` collects stray arguments to name them).
for _command in getattr(continual_cli, "TOP_LEVEL_COMMANDS", []):
    app.command(
        name=_command.__name__.removesuffix("_command").replace("_", "-"),
        context_settings=getattr(_command, "context_settings", None),
    )(_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
