"""`evertrain train ...`: run, resume, fork and inspect training runs.

Import heavy libraries (torch, tokenizers, matplotlib) inside command functions, never at
module level: `evertrain train --help` imports this module.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from evertrain._cli import EXIT_BAD_INPUT, fail, one_line_warnings
from evertrain._lock import FolderLockedError
from evertrain.train.preempt import (  # 75, EX_TEMPFAIL; stdlib only, no torch
    EXIT_PREEMPTED,
    RunPreempted,
)

app = typer.Typer(
    help="The trainer (evertrain GPT or a Hugging Face causal LM): run, fork, export, average.",
    no_args_is_help=True,
)

EXIT_NONFINITE = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT: a second Ctrl-C, no checkpoint of the current step


@app.callback()
def _callback(ctx: typer.Context) -> None:
    """The reference GPT trainer: run, resume, fork, list checkpoints."""
    # evertrain.cli does this for every command; `python -m evertrain.train` (torchrun) too.
    ctx.with_resource(one_line_warnings())


def _train(
    config: Path | None,
    overrides: list[str],
    resume: bool,
    init_from: str | None,
    progress: bool,
    start_over_if_corrupt: bool = False,
    stop_at_step: int | None = None,
) -> None:
    from evertrain.train.checkpoint import CheckpointError
    from evertrain.train.config import TrainConfig
    from evertrain.train.fork import fork_config
    from evertrain.train.loop import NonFiniteLossError, run

    try:
        # Warnings print as one line: evertrain.cli installs that for every command.
        if init_from is not None:  # a fork: the parent's config, then only the changes
            cfg = fork_config(init_from, config, overrides)
        else:
            assert config is not None
            cfg = TrainConfig.from_yaml(config, overrides)
        stop_at_tokens = None
        if stop_at_step is not None:  # checked before any work: a pause past the end is a typo
            if not 1 <= stop_at_step < cfg.total_steps:
                fail(f"--stop-at-step {stop_at_step} must be in [1, {cfg.total_steps}), the run's "
                     "steps (budget_tokens / tokens per step): lower it, or drop it to train to "
                     "the end")  # fmt: skip
            stop_at_tokens = stop_at_step * cfg.tokens_per_step
        result = run(
            cfg,
            resume=resume,
            progress=progress,
            start_over_if_corrupt=start_over_if_corrupt,
            stop_at_tokens=stop_at_tokens,
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
        paused = stop_at_step is not None and result.steps < cfg.total_steps
        typer.echo(
            (
                f"paused at step {result.steps} of {cfg.total_steps} (--resume trains on): "
                if paused
                else f"done: {result.steps} steps, "
            )
            + f"{result.tokens:,} tokens in {result.wall_seconds:.1f}s; "
            f"eval {losses}; last checkpoint {result.last_checkpoint}"
        )


# `--schedule.peak=3e-3` is `--set schedule.peak=3e-3`: click passes unknown options through
# (ctx.args) and _dotted_overrides reads them; anything else there is an error naming it.
_DOTTED = {"allow_extra_args": True, "ignore_unknown_options": True}


def _config_and_overrides(config: Path | None, extra: list[str]) -> tuple[Path | None, list[str]]:
    """CONFIG and the ``--key=value`` words, in any order: click hands an unknown option that
    comes before CONFIG (or stands in for an omitted one) to the CONFIG argument."""
    words = ([str(config)] if config is not None else []) + list(extra)
    paths = [word for word in words if not word.startswith("--")]
    found = Path(paths[0]) if paths else None
    rest = [word for word in words if word is not paths[0]] if paths else words
    return found, _dotted_overrides(rest)


def _dotted_overrides(extra: list[str]) -> list[str]:
    """``--key.sub=value`` words as ``key.sub=value`` overrides; any other stray word is bad input."""
    overrides = []
    for word in extra:
        key, sep, _ = word.removeprefix("--").partition("=")
        if not word.startswith("--") or not key or key.startswith("-"):
            fail(f"unexpected argument {word!r} (see --help)")
        if not sep:
            if "." in key:
                fail(f"{word}: write the value with '=', e.g. {word}=VALUE (or --set {key}=VALUE)")
            fail(f"no such option: {word} (a config field is --set {key}=VALUE or --{key}=VALUE)")
        overrides.append(f"{key.replace('-', '_')}={word.partition('=')[2]}")  # --budget-tokens
    return overrides


#: one option for `train run` and `train fork`: a pause, not an end (docs/train.md)
_STOP_AT_STEP = typer.Option(
    None,
    "--stop-at-step",
    help="Pause after this optimizer step (eval and checkpoint there), budget and schedule "
    "unchanged; the same command with --resume trains on (a CPT law's probe: docs/laws.md).",
)


@app.command("run", context_settings=_DOTTED)
def run_command(
    ctx: typer.Context,
    config: Path = typer.Argument(..., help="YAML training config (see docs/train.md)."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from the newest valid checkpoint in out_dir."
    ),
    set_: list[str] = typer.Option(
        [],
        "--set",
        help="Override a field: --set batch_size=32 --set model.n_layer=4; the same is "
        "--batch_size=32 --model.n_layer=4",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
    start_over_if_corrupt: bool = typer.Option(
        False,
        "--start-over-if-corrupt",
        help="With --resume: when every checkpoint is corrupt, train from step 0 (the bad ones "
        "are kept as .corrupt-<name>) instead of refusing.",
    ),
    stop_at_step: int | None = _STOP_AT_STEP,
) -> None:
    """Train a GPT as the config says; works unchanged under torchrun (DDP)."""
    if start_over_if_corrupt and not resume:
        fail("--start-over-if-corrupt only applies with --resume; add --resume or drop it")
    config_path, dotted = _config_and_overrides(config, ctx.args)
    if config_path is None:
        fail("missing CONFIG: pass the YAML training config, e.g. evertrain train run config.yaml")
    _train(config_path, [*set_, *dotted], resume, None, progress, start_over_if_corrupt,
           stop_at_step)  # fmt: skip


@app.command("fork", context_settings=_DOTTED)
def fork_command(
    ctx: typer.Context,
    checkpoint: str = typer.Argument(
        ..., help="Checkpoint directory (or a run directory: its newest checkpoint)."
    ),
    config: Path | None = typer.Argument(
        None,
        help="YAML of the changes (e.g. out_dir and a new schedule); every other field is the "
        "parent's config at CHECKPOINT. A full config works too.",
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a field, e.g. --set out_dir=runs/branch (or --out_dir=...)"
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue the fork from the newest valid checkpoint in its out_dir (same "
        "CHECKPOINT and changes as when it started).",
    ),
    stop_at_step: int | None = _STOP_AT_STEP,
) -> None:
    """Start a new run from CHECKPOINT's weights and optimizer state; the manifest records the parent.

    The fork inherits the config its parent trained CHECKPOINT with and takes only the changes
    (CONFIG, then --set); it needs its own out_dir.
    """
    config_path, dotted = _config_and_overrides(config, ctx.args)
    _train(config_path, [*set_, *dotted], resume, checkpoint, progress, stop_at_step=stop_at_step)


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
            f"evertrain: warning: {error}; listing the {len(manifest['checkpoints'])} checkpoint(s) found in "
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


@app.command("export")
def export_command(
    checkpoint: str = typer.Argument(
        ...,
        help="Checkpoint directory (a named branch / release one too) or a run directory "
        "(its newest valid checkpoint).",
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="New directory to write (save_pretrained layout + tokenizer)."
    ),
) -> None:
    """Write CHECKPOINT of a Hugging Face model as a directory that
    AutoModelForCausalLM.from_pretrained / AutoTokenizer.from_pretrained load."""
    from evertrain.train.hf_model import ExportError, export_checkpoint

    try:
        written = export_checkpoint(checkpoint, out)  # warnings: one line (the app callback)
    except (ExportError, ValueError) as error:
        fail(error)
    typer.echo(f"exported {checkpoint} -> {written}")


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
