"""`evertrain train ...`: run, resume, fork and inspect training runs.

Import heavy libraries (torch, tokenizers, matplotlib) inside command functions, never at
module level: `evertrain.cli` imports every area's CLI at start-up.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import typer

from evertrain._cli import EXIT_BAD_INPUT, fail
from evertrain._lock import FolderLockedError
from evertrain.train.preempt import (  # 75, EX_TEMPFAIL; stdlib only, no torch
    EXIT_PREEMPTED,
    RunPreempted,
)

app = typer.Typer(help="The reference GPT trainer.", no_args_is_help=True)

EXIT_NONFINITE = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT: a second Ctrl-C, no checkpoint of the current step


@app.callback()
def _callback() -> None:
    """The reference GPT trainer: run, resume, fork, list checkpoints."""


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Print each warning as ``warning: MESSAGE`` (one line), not Python's file:line + source."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        typer.echo(f"warning: {message}", err=True)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _train(
    config: Path,
    overrides: list[str],
    resume: bool,
    init_from: str | None,
    progress: bool,
    start_over_if_corrupt: bool = False,
) -> None:
    from evertrain.train.checkpoint import CheckpointError
    from evertrain.train.config import TrainConfig, apply_overrides
    from evertrain.train.loop import NonFiniteLossError, run

    try:
        with _one_line_warnings():
            cfg = TrainConfig.from_yaml(config, overrides)
            if init_from is not None:
                cfg = TrainConfig.model_validate(
                    apply_overrides(cfg.to_dict(), [f"init_from={init_from}"])
                )
            result = run(
                cfg, resume=resume, progress=progress, start_over_if_corrupt=start_over_if_corrupt
            )
    except NonFiniteLossError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(EXIT_NONFINITE) from None
    except RunPreempted as stop:  # saved; "temporary failure": a scheduler may requeue it
        if os.environ.get("RANK", "0") == "0":  # one line per run, not one per DDP rank
            typer.echo(str(stop), err=True)
        raise typer.Exit(EXIT_PREEMPTED) from None
    except KeyboardInterrupt:  # a second SIGINT while stopping: quit now, as Ctrl-C does
        typer.echo(
            "interrupted: stopped without saving the current step; "
            "--resume continues from the last checkpoint",
            err=True,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    # ConfigError, ScheduleError, data errors; another process holding the run folder.
    except (ValueError, CheckpointError, FolderLockedError) as error:
        fail(error)
    if result.final_eval is not None and os.environ.get("RANK", "0") == "0":  # one per run
        losses = ", ".join(f"{name}={loss:.4f}" for name, loss in result.final_eval.items())
        typer.echo(
            f"done: {result.steps} steps, {result.tokens:,} tokens in {result.wall_seconds:.1f}s; "
            f"eval {losses}; last checkpoint {result.last_checkpoint}"
        )


@app.command("run")
def run_command(
    config: Path = typer.Argument(..., help="YAML training config (see docs/train.md)."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from the newest valid checkpoint in out_dir."
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a field: --set batch_size=32 --set model.n_layer=4"
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
    start_over_if_corrupt: bool = typer.Option(
        False,
        "--start-over-if-corrupt",
        help="With --resume: when every checkpoint is corrupt, train from step 0 (the bad ones "
        "are kept as .corrupt-<name>) instead of refusing.",
    ),
) -> None:
    """Train a GPT as the config says; works unchanged under torchrun (DDP)."""
    if start_over_if_corrupt and not resume:
        fail("--start-over-if-corrupt only applies with --resume; add --resume or drop it")
    _train(config, set_, resume, None, progress, start_over_if_corrupt)


@app.command("fork")
def fork_command(
    checkpoint: str = typer.Argument(
        ..., help="Checkpoint directory (or a run directory: its newest checkpoint)."
    ),
    config: Path = typer.Argument(
        ..., help="YAML config of the new run (new schedule / mixture / out_dir)."
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a field, e.g. --set out_dir=runs/branch"
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Start a new run from CHECKPOINT's weights and optimizer state; the manifest records the parent."""
    _train(config, set_, False, checkpoint, progress)


@app.command("checkpoints")
def checkpoints_command(
    run_dir: Path = typer.Argument(..., help="A run's out_dir."),
    as_json: bool = typer.Option(False, "--json", help="Print manifest.json as is."),
    verify: bool = typer.Option(
        False, "--verify", help="Check every checkpoint's sha256 checksums."
    ),
) -> None:
    """List a run's checkpoints (manifest.json) with step, tokens and eval losses."""
    from evertrain.train.checkpoint import CheckpointError
    from evertrain.train.recovery import manifest_checkpoint_path, manifest_from_disk, read_manifest

    if not (run_dir / "manifest.json").is_file():
        fail(f"{run_dir / 'manifest.json'} not found; pass the out_dir of a training run")
    try:
        manifest = read_manifest(run_dir)
    except CheckpointError as error:  # derived data: list what is on disk instead, and say so
        manifest = manifest_from_disk(run_dir)
        typer.echo(
            f"warning: {error}; listing the {len(manifest['checkpoints'])} checkpoint(s) found in "
            f"{run_dir / 'checkpoints'} instead (a --resume rewrites the manifest)",
            err=True,
        )
    if as_json:
        typer.echo(json.dumps(manifest, indent=2))
        return
    parent = manifest.get("parent")
    if isinstance(parent, dict):
        typer.echo(
            f"parent: {parent.get('checkpoint')} (step {parent.get('step')}, tokens {parent.get('tokens')})"
        )
    failures = 0
    typer.echo(f"{'name':<20} {'step':>8} {'tokens':>14}  {'pinned':<6} eval")
    for entry in manifest.get("checkpoints", []):
        losses = " ".join(
            f"{k}={v:.4f}"
            for k, v in (entry.get("eval") or {}).items()
            if isinstance(v, (int, float))
        )
        line = f"{entry['name']:<20} {entry['step']:>8} {entry['tokens']:>14,}  {'yes' if entry.get('pinned') else '':<6} {losses}"
        if verify:
            from evertrain.train.checkpoint import verify_checkpoint

            try:
                verify_checkpoint(manifest_checkpoint_path(run_dir, entry))
                line += "  [ok]"
            except CheckpointError as error:
                failures += 1
                line += f"  [BAD: {error}]"
        typer.echo(line)
    if failures:
        raise typer.Exit(EXIT_BAD_INPUT)


@app.command("average")
def average_command(
    checkpoints: list[Path] = typer.Argument(..., help="Checkpoint folders to average."),
    out: Path = typer.Option(
        ..., "-o", "--out", help="The new checkpoint folder (must not exist)."
    ),
    weights: str = typer.Option(
        None,
        "--weights",
        help="One weight per checkpoint, summing to 1: 0.5,0.3,0.2 (default uniform).",
    ),
    from_average: bool = typer.Option(
        False,
        "--from-average",
        help="Average each checkpoint's averaged weights (average.safetensors of a run with "
        "averaging:) instead of its live ones; with one checkpoint: export its average.",
    ),
) -> None:
    """Average saved checkpoints (uniform or weighted) into a new checkpoint folder OUT."""
    from evertrain.train.averaging import average_checkpoints, parse_weights
    from evertrain.train.checkpoint import CheckpointError

    try:
        path = average_checkpoints(
            checkpoints,
            out,
            parse_weights(weights, len(checkpoints)),
            source_weights="average" if from_average else "model",
        )
    except CheckpointError as error:
        fail(error)
    typer.echo(f"averaged {len(checkpoints)} checkpoint(s) into {path}")
