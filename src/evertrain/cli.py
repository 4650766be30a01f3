"""The one ``evertrain`` command.

Each area owns its sub-commands in ``<area>/cli.py`` (a ``typer.Typer`` named ``app``); this
file only wires them together, lazily: an area's module is imported the first time one of its
commands runs (or its ``--help`` is asked for), never to print ``evertrain --help``. Importing
this module loads typer and nothing of evertrain's rooms (no numpy, scipy, torch, matplotlib),
so ``evertrain --help`` and ``evertrain --version`` answer at once.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperGroup

from evertrain import __version__
from evertrain._cli import one_line_warnings


@dataclass(frozen=True)
class _LazyCommand:
    """Where a sub-command lives and the one line that ``evertrain --help`` prints for it."""

    module: str  #: e.g. ``evertrain.train.cli``
    attribute: str  #: a ``typer.Typer`` (a command group) or a command function
    help: str
    context_settings: dict[str, Any] | None = None  #: for a command function only
    #: (name, module, function): commands of a higher room mounted on this group, so a lower
    #: room never imports a higher one (``schedule suggest`` lives in the tune room)
    extra: tuple[tuple[str, str, str], ...] = ()


#: Every sub-command of ``evertrain``, in the order ``--help`` lists them. The help lines are
#: here, not read from the modules, so that listing them imports nothing (a test checks that
#: each line still matches the loaded command's own help).
LAZY_COMMANDS: dict[str, _LazyCommand] = {
    "schedule": _LazyCommand(
        "evertrain.schedules.cli",
        "app",
        "LR schedules: show, plot, export, refine.",
        extra=(("suggest", "evertrain.tune.cli", "suggest_command"),),
    ),
    "law": _LazyCommand(
        "evertrain.laws.cli", "app", "Loss-curve laws: fit, predict, optimize, compare."
    ),
    "data": _LazyCommand(
        "evertrain.data.cli", "app", "Corpora to token shards; inspect prepared data."
    ),
    "train": _LazyCommand(
        "evertrain.train.cli",
        "app",
        "The trainer (evertrain GPT or a Hugging Face causal LM): run, fork, export, average.",
    ),
    "continual": _LazyCommand(
        "evertrain.continual.cli",
        "app",
        "Continual pre-training plans and recipes.",
        # `branches --auto` suggests and trains decays: the tune room's command, which composes
        # continual's listing, replaces the listing-only one (continual never imports tune).
        extra=(("branches", "evertrain.tune.cli", "branches_command"),),
    ),
    "tune": _LazyCommand("evertrain.tune.cli", "app", "Tuning in the loop: PBT on Ray Tune."),
    # Top-level commands owned by the continual area: `evertrain demo`, `evertrain report`.
    "demo": _LazyCommand(
        "evertrain.continual.cli",
        "demo_command",
        "Pre-train a tiny GPT on OLD data, continue it on NEW data with 4 recipes, train the "
        "retrain baseline, and report forgetting, adaptation and compute.",
        # `--data a.txt --out X`: extras are collected so that demo names the real mistake.
        {"allow_extra_args": True, "ignore_unknown_options": True},
    ),
    "report": _LazyCommand(
        "evertrain.continual.cli",
        "report_command",
        "Write a self-contained HTML report (loss per distribution, LR, replay, savings) of RUNS.",
    ),
}


_COMPLETION_PARAMS = ("install_completion", "show_completion")


def _load(name: str, entry: _LazyCommand) -> Any:
    """Import ``entry``'s module and turn its typer app or command function into a click command."""
    target = getattr(importlib.import_module(entry.module), entry.attribute)
    if isinstance(target, typer.Typer):
        for extra_name, module, function in entry.extra:
            # An extra command replaces the area's own command of that name, once (a second load,
            # e.g. in tests, finds it registered already).
            command_function = getattr(importlib.import_module(module), function)
            if not any(info.callback is command_function for info in target.registered_commands):
                target.registered_commands[:] = [
                    info for info in target.registered_commands if info.name != extra_name
                ]
                target.command(extra_name)(command_function)
        command = typer.main.get_command(target)
        command.help = entry.help  # as `add_typer(help=...)` set it before the commands were lazy
    else:  # a command function: a one-command app is that command
        single = typer.Typer()
        single.command(name=name, context_settings=entry.context_settings)(target)
        command = typer.main.get_command(single)
    command.name = name
    # An app built alone gets typer's completion options; as a sub-command it never had them.
    command.params = [p for p in command.params if p.name not in _COMPLETION_PARAMS]
    return command


class _Commands(MutableMapping):
    """``TyperGroup.commands`` that imports an area's module on first access of its command."""

    def __init__(self, loaded: dict[str, Any]) -> None:
        self._loaded = dict(loaded)

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded and name in LAZY_COMMANDS:
            self._loaded[name] = _load(name, LAZY_COMMANDS[name])
        return self._loaded[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        yield from LAZY_COMMANDS
        yield from (name for name in self._loaded if name not in LAZY_COMMANDS)

    def __len__(self) -> int:
        return len(set(LAZY_COMMANDS) | set(self._loaded))


class _LazyGroup(TyperGroup):
    """The top-level group: lists every sub-command from :data:`LAZY_COMMANDS` without importing
    it, loads one when it runs (``evertrain train --help`` shows the real options)."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _Commands(dict(self.commands))
        self._listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)  # the names only: `.items()` would import every area

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if self._listing and cmd_name in LAZY_COMMANDS:  # the help page needs one line only
            return typer.core.TyperCommand(name=cmd_name, help=LAZY_COMMANDS[cmd_name].help)
        return super().get_command(ctx, cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    name="evertrain",
    help="Train language models that never have to start over.",
    cls=_LazyGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"evertrain {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print evertrain's version and exit.",
    ),
) -> None:
    """Train language models that never have to start over."""
    ctx.with_resource(one_line_warnings())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
