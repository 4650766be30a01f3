"""Sub-commands of `evertrain` for the continual area, and the top-level `demo` and `report`.

Import heavy libraries (torch, tokenizers, matplotlib) inside command functions, never at
module level: `evertrain.cli` imports every area's CLI at start-up.
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="continual commands", no_args_is_help=True)


@app.callback()
def _callback() -> None:
    """Continual pre-training: plans, recipes from one base, branch trees."""


def _fail(error: Exception) -> None:
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(2)


def demo_command(
    out: Path = typer.Option(
        Path("evertrain-demo"), "--out", "-o", help="output directory (resumable)"
    ),
    scale: float = typer.Option(1.0, "--scale", help="multiply tokens (×s) and model width (×√s)"),
    data: tuple[str, str] | None = typer.Option(
        None, "--data", help="your own D0 and D1: two files/folders (.txt/.jsonl/.parquet)"
    ),
    workers: int = typer.Option(
        0, "--workers", help="parallel training processes (0: one per core, max 4)"
    ),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | auto"),
) -> None:
    """Pre-train on English, continue on code with 4 recipes, train the retrain baseline, report."""
    from evertrain.continual.demo import format_table, run_demo

    sources = None if not data or data == (None, None) else data
    try:
        result = run_demo(out, scale=scale, data=sources, workers=workers or None, device=device)
    except ValueError as error:
        _fail(error)
    typer.echo("")
    typer.echo(format_table(result.rows))
    typer.echo(f"\nfinished in {result.seconds:.0f} s; report: {result.report}")


def report_command(
    runs: list[Path] = typer.Argument(..., help="run directories (training out_dirs)"),
    out: Path = typer.Option(Path("report"), "--out", "-o", help="folder for index.html and PNGs"),
    baseline: str = typer.Option("retrain", "--baseline", help="run or recipe to compare against"),
) -> None:
    """Write a self-contained HTML report (loss per distribution, LR, replay, savings) of RUNS."""
    from evertrain.continual.report import write_report

    try:
        page = write_report(runs, out, baseline=baseline)
    except ValueError as error:
        _fail(error)
    typer.echo(str(page))


@app.command("run")
def run_command(plan: Path = typer.Argument(..., help="plan YAML (see docs/continual.md)")) -> None:
    """Run every stage of a continual plan, then write its report."""
    from evertrain.continual.plan import load_plan
    from evertrain.continual.report import write_report
    from evertrain.continual.runner import run_plan

    try:
        loaded = load_plan(plan)
        results = run_plan(loaded)
        page = write_report(
            [r.out_dir for r in results], Path(loaded.out_dir) / "report", baseline=None
        )
    except ValueError as error:
        _fail(error)
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
) -> None:
    """Run several recipes from the same base and report them together."""
    from evertrain.continual.report import write_report
    from evertrain.continual.runner import Setup, base_info, resolve_base, run_recipe

    try:
        old_sets, new_sets = _named_paths("--old", old), _named_paths("--new", new)
        _, config = base_info(
            base
        )  # for a checkpoint: its run's config, the LR state at its tokens
        train = {
            k: config[k]
            for k in ("batch_size", "grad_accum", "device", "seed", "dtype", "optimizer")
            if k in config
        }
        train["eval_tokens"] = config.get("data", {}).get("eval_tokens", 65536)
        setup = Setup(model=config["model"], train=train, eval={**old_sets, **new_sets})
        done = [resolve_base(base)[0]]
        for recipe in recipes:
            result = run_recipe(
                recipe,
                setup,
                base_dir=base,
                old=old_sets,
                new=new_sets,
                stage_tokens=tokens,
                out_dir=out / recipe,
            )
            done.append(result.out_dir)
        page = write_report(
            done, out / "report", baseline="retrain" if "retrain" in recipes else None
        )
    except ValueError as error:
        _fail(error)
    typer.echo(f"report: {page}")


@app.command("branches")
def branches_command(
    run: Path = typer.Argument(..., help="the main run directory"),
    plot: Path = typer.Option(None, "--plot", help="also write the branch tree as a PNG here"),
) -> None:
    """List the branch tree of RUN: forks, fork points, schedules, tokens and losses."""
    from evertrain.continual.branches import branch_tree, format_tree, plot_tree

    try:
        tree = branch_tree(run)
        typer.echo(format_tree(tree))
        if plot is not None:
            plot_tree(tree, plot)
            typer.echo(f"plot: {plot}")
    except ValueError as error:
        _fail(error)


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
