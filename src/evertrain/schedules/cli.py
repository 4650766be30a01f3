"""``evertrain schedule``: show, plot and export learning-rate schedules.

SPEC is an inline ``name:key=value,...`` string (``"wsd:peak=3e-4,total=24000,warmup=2160"``)
or a path to a YAML/JSON spec file. Bad specs print a one-line error and exit with code 2.
matplotlib is imported inside ``plot`` only (this module loads for any ``evertrain schedule`` command).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import typer

from evertrain._atomic import atomic_write_bytes, atomic_write_text
from evertrain._cli import fail
from evertrain._paths import OutputPathError, check_output_file
from evertrain.schedules import ScheduleError, from_spec, summary

app = typer.Typer(help="LR schedules: show, plot, export, refine.", no_args_is_help=True)


def _load(spec: str) -> Any:
    try:
        return from_spec(spec)
    except ScheduleError as error:
        fail(error)


def _check_output_file(path: Path, flag: str) -> None:
    """A folder, a file as parent or a read-only folder as output: one line, exit 2, now."""
    try:
        check_output_file(path, flag)
    except OutputPathError as error:
        fail(error)


@app.callback()
def _callback() -> None:
    """LR schedules as pure functions of progress (steps or tokens)."""


@app.command()
def show(
    spec: str = typer.Argument(..., help="inline 'name:key=value,...' or a .yaml/.json file"),
    as_json: bool = typer.Option(False, "--json", help="print the normalised spec as JSON"),
) -> None:
    """Print the key points of a schedule: start, end of warmup, start of decay, end, min/max."""
    schedule = _load(spec)
    if as_json:
        typer.echo(json.dumps(schedule.to_spec(), indent=2))
        return
    unit = schedule.unit
    total = "open-ended" if schedule.total is None else f"{schedule.total:g} {unit}"
    typer.echo(f"{schedule.to_spec()['name']}  (unit: {unit}, total: {total})")
    width = max(len(label) for label, _ in summary.key_points(schedule)) + 2
    typer.echo(f"{'point':<{width}}{unit:>16}  {'lr':>14}")
    for label, position in summary.key_points(schedule):
        typer.echo(f"{label:<{width}}{position:>16g}  {schedule(position):>14.6g}")
    low, high = summary.extremes(schedule)
    typer.echo(f"{'min':<{width}}{'':>16}  {low:>14.6g}")
    typer.echo(f"{'max':<{width}}{'':>16}  {high:>14.6g}")


def _x_axis(
    schedule: Any, x: str, tokens_per_step: float | None, num_points: int, until: float | None
):
    """Progress grid in the schedule's unit and the matching x values in the plot's unit."""
    if x == schedule.unit:
        progress = summary.sample(schedule, num_points, until)
        return progress, progress
    if tokens_per_step is None:
        fail(f"schedule unit is {schedule.unit!r} but --x {x}: give --tokens-per-step N to convert")
    factor = tokens_per_step if x == "tokens" else 1.0 / tokens_per_step
    limit = None if until is None else until / factor
    progress = summary.sample(schedule, num_points, limit)
    return progress, progress * factor


@app.command()
def plot(
    specs: list[str] = typer.Argument(..., help="one or more schedule specs"),
    output: Path = typer.Option(
        Path("lr.png"), "-o", "--output", help="image file (.png, .pdf, .svg)"
    ),
    x: str = typer.Option("steps", "--x", help="x axis: steps or tokens"),
    tokens_per_step: float | None = typer.Option(
        None, "--tokens-per-step", help="convert steps <-> tokens"
    ),
    until: float | None = typer.Option(None, "--until", help="x-axis end (default: longest total)"),
    points: int = typer.Option(2000, "--points", help="points per curve"),
    log_y: bool = typer.Option(False, "--log-y", help="logarithmic LR axis"),
) -> None:
    """Plot one or more schedules on one figure."""
    if x not in ("steps", "tokens"):
        fail(f"--x {x!r}: use steps or tokens")
    if tokens_per_step is not None and tokens_per_step <= 0:
        fail(f"--tokens-per-step={tokens_per_step} must be > 0")
    if points < 2:
        fail(f"--points={points} must be >= 2")
    _check_output_file(output, "-o")
    schedules = [_load(spec) for spec in specs]
    curves = [
        (spec, *_x_axis(s, x, tokens_per_step, points, until))
        for spec, s in zip(specs, schedules, strict=True)
    ]
    if until is None:
        # Share one x range: the longest curve's.
        end = max(float(curve[2][-1]) for curve in curves)
        curves = [
            (spec, *_x_axis(s, x, tokens_per_step, points, end))
            for spec, s in zip(specs, schedules, strict=True)
        ]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5))
    for (spec, progress, xs), schedule in zip(curves, schedules, strict=True):
        label = spec if len(spec) <= 60 else schedule.to_spec()["name"]
        axis.plot(xs, schedule(progress), label=label)
    axis.set_xlabel(x)
    axis.set_ylabel("learning rate")
    if log_y:
        axis.set_yscale("log")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    suffix = output.suffix.lstrip(".").lower() or "png"
    try:
        figure.savefig(buffer, format=suffix, dpi=120)
    except ValueError as error:
        fail(f"cannot write {output}: {error}")
    finally:
        plt.close(figure)
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(output, buffer.getvalue())
    typer.echo(f"wrote {output}")


@app.command()
def export(
    spec: str = typer.Argument(..., help="schedule spec"),
    csv: bool = typer.Option(True, "--csv/--json", help="CSV (progress,lr) or JSON"),
    points: int = typer.Option(1001, "--points", help="number of points (every step if it fits)"),
    until: float | None = typer.Option(
        None, "--until", help="last progress value (default: total)"
    ),
    output: Path | None = typer.Option(None, "-o", "--output", help="file (default: stdout)"),
) -> None:
    """Export sampled values: ``progress,lr`` rows (CSV) or ``{"progress": [...], "lr": [...]}``."""
    if points < 2:
        fail(f"--points={points} must be >= 2")
    if until is not None and until <= 0:
        fail(f"--until={until} must be > 0")
    if output is not None:
        _check_output_file(output, "-o")
    schedule = _load(spec)
    progress = summary.sample(schedule, points, until)
    values = schedule(progress)
    if csv:
        unit = schedule.unit
        lines = [f"{unit},lr"] + [
            f"{p:.17g},{v:.17g}" for p, v in zip(progress, values, strict=True)
        ]
        text = "\n".join(lines) + "\n"
    else:
        text = json.dumps(
            {"spec": schedule.to_spec(), "progress": progress.tolist(), "lr": values.tolist()}
        )
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(output, text)
        typer.echo(f"wrote {len(progress)} points to {output}", err=True)


@app.command()
def refine(
    log: Path = typer.Argument(
        ..., help="a run's log.jsonl (train records with grad_norm) or a .csv file"
    ),
    output: Path = typer.Option(..., "-o", "--output", help="spec file to write (.yaml or .json)"),
    peak: float = typer.Option(..., "--peak", help="the highest LR of the refined schedule"),
    warmup: float = typer.Option(0.0, "--warmup", help="linear warmup length (schedule units)"),
    filter_width: int | None = typer.Option(
        None, "--filter-width", help="median filter width in rows (default: 5% of the rows)"
    ),
    knots: int = typer.Option(256, "--knots", help="knots kept in the spec (evenly spaced rows)"),
    grad_col: str | None = typer.Option(
        None, "--grad-col", help="gradient-norm field/column (default grad_norm)"
    ),
    step_col: str | None = typer.Option(
        None, "--step-col", help="progress field/column (default: step, or tokens with --units)"
    ),
    units: str = typer.Option("steps", "--units", help="schedule unit: steps or tokens"),
    power: float = typer.Option(2.0, "--power", help="w_t = g_t^-power (2: SGD; 1: Adam, l1)"),
) -> None:
    """Refine a schedule from a logged run's gradient norms (Defazio et al. 2023) into a spec."""
    # Every flag is checked before the log is read; the spec needs no log at run time.
    from evertrain import _yaml
    from evertrain.schedules.refine import refine_from_norms
    from evertrain.schedules.refine_input import read_grad_norms

    if units not in ("steps", "tokens"):
        fail(f"--units {units!r}: use steps or tokens")
    if output.suffix.lower() not in (".yaml", ".yml", ".json"):
        fail(f"-o {output}: give a .yaml, .yml or .json file (what schedule specs are read from)")
    if not peak > 0:
        fail(f"--peak={peak} must be > 0")
    if knots < 2:
        fail(f"--knots={knots} must be >= 2")
    if filter_width is not None and filter_width < 1:
        fail(f"--filter-width={filter_width} must be >= 1")
    _check_output_file(output, "-o")
    try:
        found = read_grad_norms(log, grad_col=grad_col, step_col=step_col, unit=units)
        schedule = refine_from_norms(
            found.progress, found.grad_norms, peak=peak, filter_width=filter_width, knots=knots,
            power=power, warmup=warmup, unit=units, source=str(log),
        )  # fmt: skip
    except ScheduleError as error:
        fail(error)
    if found.skipped:
        typer.echo(
            f"skipped {found.skipped} rows without a usable gradient norm (missing, NaN, <= 0)",
            err=True,
        )
    spec = schedule.to_spec()
    if output.suffix.lower() == ".json":
        text = json.dumps(spec, indent=2) + "\n"
    else:
        text = _yaml.dump(spec, sort_keys=False, default_flow_style=None)
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output, text)
    top = int(schedule.values.argmax())
    typer.echo(
        f"wrote {output}: refine from {len(found.grad_norms)} gradient norms, "
        f"{len(spec['knots'])} knots, peak {peak:g} at {schedule.times[top]:g} {units}, "
        f"ends at {schedule.total:g} {units}"
    )
