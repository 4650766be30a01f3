"""`evertrain tune ...`: tuning in the loop (PBT on Ray Tune).

Ray, torch and the trainer are imported inside the command: `evertrain.cli` imports this module
at start-up, and Ray is an optional extra (``evertrain[tune]``).
"""

from __future__ import annotations

from pathlib import Path

import typer

from evertrain._cli import fail
from evertrain._lock import FolderLock, FolderLockedError
from evertrain._paths import OutputPathError, check_output_dir

app = typer.Typer(help="Tuning in the loop: PBT on Ray Tune.", no_args_is_help=True)


@app.callback()
def _callback() -> None:
    """Tuning in the loop: Population Based Training of evertrain runs on Ray Tune."""


def _check_out(out: Path) -> None:
    check_output_dir(out, "-o")
    members = out / "members"
    if members.is_dir() and any(members.iterdir()):
        raise OutputPathError(
            f"-o: {out} already holds a PBT population ({members}); choose a new -o folder"
        )


@app.command("pbt")
def pbt_command(
    config: Path = typer.Argument(..., help="training config YAML (see docs/train.md)"),
    population: int = typer.Option(4, "--population", "-n", help="members (>= 2)"),
    perturb: str = typer.Option(
        "peak", "--perturb", help="comma list of hyper-parameters to explore: peak, replay"
    ),
    interval_tokens: int = typer.Option(
        ..., "--interval-tokens", help="tokens each member trains between exploit/explore steps"
    ),
    address: str = typer.Option(
        None, "--address", help="an existing Ray cluster (e.g. ray://head:10001); default: local"
    ),
    out: Path = typer.Option(Path("pbt"), "--out", "-o", help="folder for members and results"),
    replay_source: str = typer.Option(
        None, "--replay-source", help="the replay dataset of data.mixture (default: smaller weight)"
    ),
    seed: int = typer.Option(0, "--seed", help="seed of the initial population and explore"),
    cpus: int = typer.Option(
        None, "--cpus", help="CPUs of the local Ray instance (default: min(population, cores))"
    ),
    gpus_per_member: float = typer.Option(0.0, "--gpus-per-member", help="GPUs per member"),
    overrides: list[str] = typer.Option(
        [], "--set", help="override a config field: --set batch_size=8 (repeatable)"
    ),
) -> None:
    """Population Based Training: members exploit (copy a better member's checkpoint) and
    explore (perturb peak LR / replay share); writes the winner's schedule and mixture specs."""
    from evertrain.train import ConfigError
    from evertrain.tune.pbt import TuneError, prepare, results_table

    try:
        _check_out(out)
        setup = prepare(
            config,
            out=out,
            population=population,
            perturb=perturb,
            interval_tokens=interval_tokens,
            replay_source=replay_source,
            seed=seed,
            overrides=overrides,
        )
        if cpus is not None and cpus < 1:
            raise TuneError(f"--cpus: {cpus} is not positive; give 1 or more")
        from evertrain.tune.ray_pbt import require_ray, run_pbt

        require_ray()  # the install hint, before any folder is made
        out.mkdir(parents=True, exist_ok=True)
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        typer.echo(
            f"PBT: {population} members in {setup.members_dir} (the config's out_dir is not "
            f"used), exploring {','.join(setup.perturb)} every {interval_tokens} tokens, on {where}"
        )
        with FolderLock(out, what="PBT folder"):
            summary = run_pbt(setup, address=address, cpus=cpus, gpus_per_member=gpus_per_member)
    except (ConfigError, TuneError, OutputPathError, FolderLockedError) as error:
        fail(error)
    typer.echo(results_table(summary))
    for kind, path in summary["outputs"].items():
        typer.echo(f"{kind}: {path}")
    typer.echo(f"members are run folders: evertrain report {setup.members_dir}/member_* -o report")


# `evertrain schedule suggest`: mounted on the `schedule` group by evertrain.cli (the schedules
# room imports nothing of ours; the tune room composes laws + schedules + continual).
def suggest_command(
    run_dir: Path = typer.Argument(..., help="the constant-LR main run (an evertrain run folder)"),
    budgets: str = typer.Option(..., "--budgets", help="token budgets, e.g. 1e8,2e8,4e8"),
    decays: str = typer.Option(
        "linear,cosine,1-sqrt,exponential", "--decays", help="candidate decay shapes"
    ),
    lengths: str = typer.Option(
        "0.1,0.2,0.3", "--lengths", help="candidate decay lengths, as fractions of the budget"
    ),
    branch: list[Path] = typer.Option(
        [],
        "--branch",
        help="a decay branch to fit on (repeatable; default: forks found beside RUN_DIR)",
    ),
    floor: float | None = typer.Option(
        None,
        "--floor",
        help="the decays' floor as a fraction of the main LR (default: the branch's)",
    ),
    bootstrap: int = typer.Option(
        100, "--bootstrap", help="bootstrap refits for the 90 % interval"
    ),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="folder for one branch spec per budget and suggest.json"
    ),
) -> None:
    """Suggest the decay for each budget from a constant-LR run and a decay branch.

    The multi-power law fitted on RUN_DIR and its decay branch predicts the final loss of each
    decay (shape x length) for every budget; the best per budget is printed with its interval
    and written as a branch spec."""
    from evertrain.tune.suggest import (
        SuggestError,
        format_table,
        parse_budgets,
        parse_lengths,
        parse_shapes,
        write_specs,
    )
    from evertrain.tune.suggest import suggest as suggest_decays

    try:
        if output is not None:
            _check_suggest_output(output)
        if bootstrap < 0 or bootstrap == 1:
            raise SuggestError(f"--bootstrap {bootstrap}: give 0 (no interval) or >= 2 refits")
        result = suggest_decays(
            run_dir,
            parse_budgets(budgets),
            shapes=parse_shapes(decays),
            lengths=parse_lengths(lengths),
            branches=branch or None,
            floor_fraction=floor,
            bootstrap=bootstrap,
        )
    except (SuggestError, ValueError) as error:
        fail(error)
    typer.echo(format_table(result))
    if output is not None:
        for path in write_specs(result, output):
            typer.echo(f"wrote {path}")


def _check_suggest_output(path: Path) -> None:
    try:
        check_output_dir(path, "-o")
    except OutputPathError as error:
        fail(error)


# `evertrain continual branches`: mounted over the continual room's listing command by
# evertrain.cli, adding `--auto` (suggest, then train): the continual room never imports tune.
def branches_command(
    run: Path = typer.Argument(..., help="the main run directory"),
    plot: Path = typer.Option(None, "--plot", help="also write the branch tree as a PNG here"),
    auto: bool = typer.Option(
        False, "--auto", help="train the decay `schedule suggest` picks for each --budgets"
    ),
    budgets: str = typer.Option(None, "--budgets", help="with --auto: token budgets, e.g. 1e8,2e8"),
    decays: str = typer.Option("linear,cosine,1-sqrt,exponential", "--decays", help="with --auto"),
    lengths: str = typer.Option("0.1,0.2,0.3", "--lengths", help="with --auto"),
) -> None:
    """List the branch tree of RUN: forks, fork points, schedules, tokens and losses.

    With --auto: fit the multi-power law on RUN and its decay branches, pick the best decay per
    budget among those forking at RUN's checkpoints, train each as ``suggest-<budget>``."""
    from evertrain.continual.cli import show_branches
    from evertrain.train.preempt import EXIT_PREEMPTED, RunPreempted

    try:
        if auto:
            _auto_branches(run, budgets, decays, lengths)
        elif budgets is not None:
            raise ValueError("--budgets is for --auto: add --auto to train the suggested branches")
        show_branches(run, plot)
    except RunPreempted as stop:
        # exit 75 ('retry'): the same command resumes the interrupted branch
        typer.echo(f"{stop}; run the same command again to continue", err=True)
        raise typer.Exit(EXIT_PREEMPTED) from None
    except (ValueError, FolderLockedError) as error:
        fail(error)


def _auto_branches(run: Path, budgets: str | None, decays: str, lengths: str) -> None:
    """`branches --auto`: suggest (evertrain.tune.suggest) then train the suggested branches."""
    from evertrain._cli import one_line_warnings
    from evertrain.tune import suggest as S

    if budgets is None:
        raise ValueError("--auto needs --budgets, e.g. --budgets 1e8,2e8,4e8")
    main = S.read_main(run)
    forks = sorted(S.main_checkpoints(main.path))
    result = S.suggest(
        run,
        S.parse_budgets(budgets),
        shapes=S.parse_shapes(decays),
        lengths=S.parse_lengths(lengths),
        fork_tokens=forks,
    )
    typer.echo(S.format_table(result))
    with one_line_warnings():
        runs = S.launch(result, progress=False)
    for budget, stage in runs.items():
        typer.echo(f"trained {stage.out_dir} for budget {budget:,}: {stage.final_eval}")
