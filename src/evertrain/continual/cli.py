"""Sub-commands of `evertrain` for the continual area, and the top-level `demo` and `report`.

torch, tokenizers and matplotlib are imported only where a command trains or plots (inside
the continual modules), never at module level. `evertrain.cli` loads this module only for a
continual command (or `demo`, `report`); the continual modules are numpy/pydantic only and
import at the top.
"""

from __future__ import annotations

from pathlib import Path

import typer

from evertrain._cli import fail, one_line_warnings, unescape
from evertrain._lock import FolderLockedError
from evertrain._paths import check_output_dir
from evertrain.continual import demo as continual_demo
from evertrain.continual import runner as continual_runner
from evertrain.continual import suggest as continual_suggest
from evertrain.continual.branches import branch_tree, format_tree, plot_tree
from evertrain.continual.plan import load_plan
from evertrain.continual.report import write_report
from evertrain.data.cli import cli_words
from evertrain.train.preempt import EXIT_PREEMPTED, RunPreempted  # stdlib only, no torch

app = typer.Typer(help="continual commands", no_args_is_help=True)

# The library's errors name keyword arguments; through these commands they name the flag.
_DEMO_FLAGS = {"scale=": "--scale "}
_COMPARE_FLAGS = {"stage_tokens=": "--tokens "}


@app.callback()
def _callback() -> None:
    """Continual pre-training: plans, recipes from one base, branch trees."""


def _preempted(stop: RunPreempted) -> None:
    """A stage stopped on SIGTERM/SIGINT after saving its step: say so and exit 75 ('retry'),
    so a scheduler requeues the same command, which resumes the stage (finished stages are kept)."""
    typer.echo(f"{stop}; run the same command again to continue the plan", err=True)
    raise typer.Exit(EXIT_PREEMPTED)


def _demo_sources(
    data: tuple[str, str] | None, old: str | None, new: str | None, extra: list[str]
) -> tuple[str, str] | None:
    """The (OLD, NEW) sources from ``--data OLD NEW`` or ``--old``/``--new``, with one-line
    errors for what click would otherwise misread (``--data a.txt --out X`` takes ``--out`` as
    the second path)."""
    if data and (data[0].startswith("-") or data[1].startswith("-")):
        got = "nothing" if data[0].startswith("-") else repr(data[0])
        raise ValueError(
            f"--data needs two paths, OLD and NEW (e.g. --data english.txt german.txt), got {got} "
            f"before {data[1] if not data[0].startswith('-') else data[0]}"
        )
    if extra:
        word = extra[0]
        if word.startswith("-"):
            raise ValueError(f"no such option: {word} (see evertrain demo --help)")
        raise ValueError(
            f"unexpected argument {word!r}: --data takes exactly two paths, OLD and NEW"
        )
    if (old is None) != (new is None):
        raise ValueError(
            f"{'--old' if old is not None else '--new'} given alone: pass both --old OLD and --new NEW"
        )
    if old is not None and data:
        raise ValueError("pass either --data OLD NEW or --old/--new, not both")
    if old is not None:
        return (old, new)  # type: ignore[return-value]
    return None if not data or data == (None, None) else data


def demo_command(
    ctx: typer.Context,
    out: Path = typer.Option(
        Path("evertrain-demo"), "--out", "-o", help="output folder (resumable)"
    ),
    scale: float = typer.Option(1.0, "--scale", help="multiply tokens (×s) and model width (×√s)"),
    data: tuple[str, str] | None = typer.Option(
        None,
        "--data",
        metavar="OLD NEW",
        help="your own old (D0) and new (D1) data: two files/folders (.txt/.jsonl/.parquet) or "
        "builtin corpus names; default: the standard library's English and code",
    ),
    old: str | None = typer.Option(
        None, "--old", help="the old data (D0), with --new: another way to write --data OLD NEW"
    ),
    new: str | None = typer.Option(None, "--new", help="the new data (D1), with --old"),
    txt_separator: str | None = typer.Option(
        None,
        "--txt-separator",
        help="split .txt files into documents at this exact string, e.g. '\\n\\n' (escapes "
        "\\n \\t are read), or 'file' for one document per file; default: whole paragraphs "
        "packed into documents up to 8 KiB, as `evertrain data prepare` does",
    ),
    max_bytes: int | None = typer.Option(
        None,
        "--max-bytes",
        help="read at most this many bytes of each source (0: all; default 3 MB × scale, at "
        "least 1 MB); every cut is reported",
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="remove an earlier demo's outputs in --out (only what the demo wrote) and start over",
    ),
    workers: int = typer.Option(
        0, "--workers", help="parallel training processes (0: one per core, max 4)"
    ),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | auto"),
) -> None:
    """Pre-train a tiny GPT on OLD data, continue it on NEW data with 4 recipes, train the
    retrain baseline, and report forgetting, adaptation and compute.

    Without --data the OLD data is the standard library's English and the NEW its code.
    """
    try:
        sources = _demo_sources(data, old, new, list(ctx.args))
        check_output_dir(out, "--out")
        result = continual_demo.run_demo(
            out,
            scale=scale,
            data=sources,
            workers=workers or None,
            device=device,
            txt_separator=unescape(txt_separator),
            max_bytes=max_bytes,
            force=force,
        )
    except RunPreempted as stop:
        _preempted(stop)
    except (ValueError, FolderLockedError) as error:
        fail(cli_words(str(error), _DEMO_FLAGS))
    typer.echo("")
    typer.echo(continual_demo.format_table(result.rows, title=result.description))
    typer.echo(f"\nfinished in {result.seconds:.0f} s; report: {result.report}")


# `--data a.txt --out X` makes click take `--out` as the second path and `X` as an extra
# argument; collecting extras lets demo_command name the real mistake (evertrain.cli reads this).
demo_command.context_settings = {"allow_extra_args": True, "ignore_unknown_options": True}


def report_command(
    runs: list[Path] = typer.Argument(..., help="run directories (training out_dirs)"),
    out: Path = typer.Option(Path("report"), "--out", "-o", help="folder for index.html and PNGs"),
    baseline: str = typer.Option("retrain", "--baseline", help="run or recipe to compare against"),
    law: Path | None = typer.Option(
        None, "--law", help="a CPT law JSON (law cpt fit): overlay its predicted curves and bands"
    ),
) -> None:
    """Write a self-contained HTML report (loss per distribution, LR, replay, savings) of RUNS."""
    try:
        check_output_dir(out, "--out")
        page = write_report(runs, out, baseline=baseline, law=law)
    except ValueError as error:
        fail(error)
    typer.echo(str(page))


@app.command("run")
def run_command(plan: Path = typer.Argument(..., help="plan YAML (see docs/continual.md)")) -> None:
    """Run every stage of a continual plan, then write its report."""
    try:
        loaded = load_plan(plan)
        check_output_dir(Path(loaded.out_dir), "out_dir")
        with one_line_warnings():
            results = continual_runner.run_plan(loaded)
        page = write_report(
            [r.out_dir for r in results], Path(loaded.out_dir) / "report", baseline=None
        )
    except RunPreempted as stop:
        _preempted(stop)
    except (ValueError, FolderLockedError) as error:
        fail(error)
    _echo_results(page)
    typer.echo(f"report: {page}")


@app.command("compare")
def compare_command(
    recipes: list[str] = typer.Argument(
        ..., help="recipes: retrain finetune rewarm rewarm+replay infinite+replay"
    ),
    base: Path = typer.Option(
        ...,
        "--base",
        help="the base run directory, or one of its checkpoints, trained on the old data",
    ),
    old: list[str] = typer.Option(..., "--old", help="NAME=PREPARED_DIR of old data (repeatable)"),
    new: list[str] = typer.Option(..., "--new", help="NAME=PREPARED_DIR of new data (repeatable)"),
    tokens: int = typer.Option(..., "--tokens", help="tokens of the new stage"),
    out: Path = typer.Option(
        Path("compare"), "--out", "-o", help="folder for the runs and the report"
    ),
    seq_len: int | None = typer.Option(
        None, "--seq-len", help="external (Hugging Face) base only: training sequence length"
    ),
    batch_size: int = typer.Option(
        8, "--batch-size", help="external base only: sequences per step"
    ),
    device: str = typer.Option("auto", "--device", help="external base only: cpu | cuda | auto"),
    base_peak_lr: float | None = typer.Option(
        None, "--base-peak-lr", help="external base only: its peak LR (what rewarm re-warms to)"
    ),
    base_final_lr: float | None = typer.Option(
        None, "--base-final-lr", help="external base only: its last LR (what finetune continues at)"
    ),
    suggest: bool = typer.Option(
        False, "--suggest", help="fit the CPT law on the runs and print the recipe it prefers"
    ),
    goal: str = typer.Option(
        "weighted:0.5", "--goal", help="--suggest's goal: weighted:W, forget:X or new"
    ),
) -> None:
    """Run several recipes from the same base and report them together.

    The base is a run of evertrain (or one of its checkpoints), or a local Hugging Face model
    directory (an external base: give --seq-len, and its LRs with --base-peak-lr/--base-final-lr).
    """
    try:
        check_output_dir(out, "--out")
        _check_compare_args(recipes, tokens)  # before the first recipe trains
        old_sets, new_sets = _named_paths("--old", old), _named_paths("--new", new)
        info = None
        if continual_runner.is_external_base(base):
            if seq_len is None:
                raise ValueError(
                    f"--base {base} is a Hugging Face model directory: pass --seq-len (its training "
                    "sequence length)"
                )
            info, defaults_used = continual_runner.external_base_lr(
                recipes, peak_lr=base_peak_lr, final_lr=base_final_lr
            )
            for line in defaults_used:
                typer.echo(f"evertrain: warning: {line}", err=True)
            config = {"model": {"hf": str(base), "seq_len": seq_len}, "batch_size": batch_size}
            config["device"] = device
            done = []
        else:
            _, config = continual_runner.base_info(
                base
            )  # for a checkpoint: its run's config, the LR state at its tokens
            done = [continual_runner.resolve_base(base)[0]]
        if suggest:
            if info is not None:
                raise ValueError(
                    f"--suggest fits the CPT law on the base's logged curve and {base} is a "
                    "Hugging Face model directory: use a base trained by evertrain, or drop --suggest"
                )
            continual_suggest.check_suggest(done[0], recipes, list(old_sets), list(new_sets), goal)
        train = {
            k: config[k]
            for k in ("batch_size", "grad_accum", "device", "seed", "dtype", "optimizer")
            if k in config
        }
        train["eval_tokens"] = config.get("data", {}).get("eval_tokens", 65536)
        setup = continual_runner.Setup(
            model=config["model"], train=train, eval={**old_sets, **new_sets}
        )
        for recipe in recipes:
            with one_line_warnings():
                result = continual_runner.run_recipe(
                    recipe,
                    setup,
                    base_dir=base,
                    old=old_sets,
                    new=new_sets,
                    stage_tokens=tokens,
                    out_dir=out / recipe,
                    base=info,
                )
            done.append(result.out_dir)
        page = write_report(
            done, out / "report", baseline="retrain" if "retrain" in recipes else None
        )
        _echo_results(page)
        typer.echo(f"report: {page}")
        if suggest:
            lines = continual_suggest.suggest(
                done[0], done[1:], list(old_sets), list(new_sets), goal, out / "cpt_law.json"
            )
            typer.echo("\n".join(lines))
    except RunPreempted as stop:
        _preempted(stop)
    except ValueError as error:
        fail(cli_words(str(error), _COMPARE_FLAGS))


@app.command("branches")
def branches_command(
    run: Path = typer.Argument(..., help="the main run directory"),
    plot: Path = typer.Option(None, "--plot", help="also write the branch tree as a PNG here"),
) -> None:
    """List the branch tree of RUN: forks, fork points, schedules, tokens and losses.

    (`evertrain continual branches` is this command with `--auto` added by the tune room:
    ``evertrain.tune.cli.branches_command``, mounted over it by ``evertrain.cli``.)"""
    try:
        show_branches(run, plot)
    except (ValueError, FolderLockedError) as error:
        fail(error)


def show_branches(run: Path, plot: Path | None) -> None:
    """Print RUN's branch tree (and write its plot): the listing both `branches` commands share."""
    tree = branch_tree(run)
    typer.echo(format_tree(tree))
    if plot is not None:
        plot_tree(tree, plot)
        typer.echo(f"plot: {plot}")


def _echo_results(page: Path) -> None:
    """The results table of a written report (``report.json`` beside ``page``), as the demo prints."""
    import json

    data = json.loads((page.parent / "report.json").read_text(encoding="utf-8"))
    typer.echo("")
    typer.echo(continual_demo.format_table(data["runs"], baseline=data.get("baseline")))
    if data.get("headline"):
        typer.echo(data["headline"])
    typer.echo("")


def _check_compare_args(recipes: list[str], tokens: int) -> None:
    """Every recipe name and --tokens checked before any recipe runs (a typo in the third
    recipe must not surface after the first two have trained)."""
    from evertrain.continual.recipes import RECIPES

    unknown = [name for name in recipes if name not in RECIPES]
    if unknown:
        raise ValueError(f"unknown recipe {unknown[0]!r}: choose from {', '.join(RECIPES)}")
    if tokens <= 0:
        raise ValueError(f"--tokens {tokens} must be a positive number of tokens")


def _named_paths(option: str, items: list[str]) -> dict[str, str]:
    parsed = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(
                f"{option} {item!r}: expected NAME=PREPARED_DIR, e.g. {option} code=data/code"
            )
        parsed[name] = path
    return parsed


# Functions listed here become top-level commands (`evertrain demo`, `evertrain report`);
# the command name is the function name without the `_command` suffix.
TOP_LEVEL_COMMANDS: list = [demo_command, report_command]
