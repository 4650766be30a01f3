"""The top-level `evertrain` command: lazy sub-commands, --version, one-line warnings."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import typer
from typer.testing import CliRunner

import evertrain
from evertrain import cli


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_importing_the_cli_loads_no_heavy_library() -> None:
    result = _python(
        "import evertrain.cli, sys; "
        "print(sorted({'scipy', 'torch', 'matplotlib', 'numpy', 'evertrain.continual'} "
        "& set(sys.modules)))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_top_level_help_lists_every_command_without_importing_them() -> None:
    result = _python(
        "import sys; from evertrain.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('LOADED', sorted(m for m in sys.modules if m.startswith('evertrain.') "
        "and m.endswith('.cli') and m != 'evertrain.cli') or None, "
        "'scipy' in sys.modules, 'numpy' in sys.modules)"
    )
    assert result.returncode == 0, result.stderr
    for name in cli.LAZY_COMMANDS:
        assert f" {name} " in result.stdout
    assert "LOADED None False False" in result.stdout


@pytest.mark.parametrize("name", list(cli.LAZY_COMMANDS))
def test_each_listed_help_line_is_the_loaded_commands_own(name: str) -> None:
    """The help lines are written in cli.py so listing imports nothing: they must not drift from
    the commands' docstrings (a group keeps the line its `add_typer(help=...)` gave it)."""
    entry = cli.LAZY_COMMANDS[name]
    command = cli._load(name, entry)
    assert command.name == name
    target = getattr(__import__(entry.module, fromlist=["_"]), entry.attribute)
    if not isinstance(target, typer.Typer):
        assert " ".join(target.__doc__.split()).startswith(" ".join(entry.help.split()))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["train", "run", "--help"], "--resume"),
        (["train", "fork", "--help"], "CHECKPOINT"),
        (["schedule", "show", "--help"], "--json"),
        (["data", "prepare", "--help"], "--text-column"),
        (["continual", "--help"], "compare"),
        (["demo", "--help"], "--txt-separator"),
        (["report", "--help"], "--baseline"),
    ],
)
def test_sub_command_help_still_lists_its_options(args: list[str], expected: str) -> None:
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    assert expected in result.output
    assert "--install-completion" not in result.output  # a sub-command never had it


def test_a_typo_still_suggests_the_command() -> None:
    result = CliRunner().invoke(cli.app, ["trian"])
    assert result.exit_code == 2
    assert "train" in result.output


def test_version() -> None:
    result = CliRunner().invoke(cli.app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"evertrain {evertrain.__version__}"


def test_demo_keeps_its_stray_argument_handling() -> None:
    """demo collects extra arguments to name the real mistake (its context settings survive)."""
    result = CliRunner().invoke(cli.app, ["demo", "--data", "a.txt", "--out", "x"])
    assert result.exit_code == 2
    assert "--data needs two paths" in result.output


def test_warnings_are_one_line_in_the_cli_and_normal_afterwards() -> None:
    probe = typer.Typer()

    @probe.command()
    def warn() -> None:
        warnings.warn(
            "schedule ends at 10 but the run at 20; set --set schedule.total=20", stacklevel=1
        )

    cli.LAZY_COMMANDS["probe-warn"] = cli._LazyCommand(__name__, "_probe_warn", "probe")
    try:
        globals()["_probe_warn"] = warn
        result = CliRunner().invoke(cli.app, ["probe-warn"])
    finally:
        del cli.LAZY_COMMANDS["probe-warn"]
        globals().pop("_probe_warn")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "evertrain: warning: schedule ends at 10 but the run at 20; set --set schedule.total=20"
    ]
    assert "UserWarning" not in result.output
    # The library's users keep Python's warnings: nothing stays installed after the command.
    assert warnings.showwarning.__module__ == "warnings"


def test_demo_errors_name_the_flag_not_the_keyword(tmp_path) -> None:
    result = CliRunner().invoke(cli.app, ["demo", "--out", str(tmp_path / "d"), "--scale", "0.01"])
    assert result.exit_code == 2
    assert "--scale 0.01 must be a number" in result.output and "scale=" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["retrain", "rewarmm"], "unknown recipe 'rewarmm'"),
        (["retrain", "--tokens", "0"], "--tokens 0 must be a positive"),
    ],
)
def test_continual_compare_checks_recipes_and_tokens_before_any_work(
    args: list[str], message: str, tmp_path
) -> None:
    base = ["--base", str(tmp_path / "nobase"), "--old", "a=x", "--new", "b=y"]
    if "--tokens" not in args:
        base += ["--tokens", "100"]
    result = CliRunner().invoke(
        cli.app, ["continual", "compare", *args, *base, "--out", str(tmp_path / "c")]
    )
    assert result.exit_code == 2, result.output
    assert message in result.output
