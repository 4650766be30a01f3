"""`evertrain law fit | predict | optimize | compare`.

`evertrain.cli` imports every area's CLI at start-up: matplotlib is imported only when a figure
is drawn (inside :mod:`evertrain.laws.plots`), scipy.signal only when the annealing law runs.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from evertrain._atomic import atomic_write_json, atomic_write_text
from evertrain._cli import fail
from evertrain._paths import check_output_file
from evertrain.laws import (
    SHARED_FIT,
    SHARED_SIZES,
    load_law,
    load_shared_curves,
    lr_array,
    make_law,
    shared_curves_dir,
)
from evertrain.laws.curves import schedule_label, schedule_total
from evertrain.laws.optimize import (
    compare_schedules,
    cosine_spec,
    optimize_schedule,
    wsd_candidates,
)
from evertrain.laws.plots import plot_fit, plot_predictions

app = typer.Typer(help="Loss-curve laws: fit, predict, optimize, compare.", no_args_is_help=True)

#: from this many runs the CPT benchmark's held-out errors met the 1 % targets on every case
#: (``benchmarks/cpt_law_runs.py``): ``law cpt design`` says so when asked for fewer
FEW_RUNS = 5


def _run(body: Any) -> Any:
    """Run ``body`` turning bad input (ValueError, incl. LawError/ScheduleError) into exit code 2."""
    try:
        return body()
    except (ValueError, FileNotFoundError) as exc:
        fail(exc)


@app.callback()
def _callback() -> None:
    """Fit loss-curve laws to a few runs; predict, rank and optimise schedules before training."""


@app.command()
def fit(
    curves: Annotated[
        list[Path] | None,
        typer.Argument(
            help="logged runs: evertrain run folders or their log.jsonl, TensorBoard event "
            "files/folders, CSV/TSV exports (W&B, MLflow, ...) with step, loss and lr columns"
        ),
    ] = None,
    example: Annotated[
        str | None,
        typer.Option(
            "--example",
            help="fit the packaged published curves of this size (25M or 100M) on the standard "
            "protocol's fit curves (cosine_24000, constant_24000, wsdcon_9) instead of CSV files",
        ),
    ] = None,
    law: Annotated[str, typer.Option("--law", help="mpl | annealing")] = "mpl",
    output: Annotated[Path, typer.Option("-o", "--output", help="fit JSON to write")] = Path(
        "fit.json"
    ),
    schedule: Annotated[
        list[str] | None,
        typer.Option(
            "--schedule", "-s", help="schedule spec per curve (one for all, or one each, in order)"
        ),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="PNG of fitted vs logged (default: <output>.png)")
    ] = None,
    seed: Annotated[int, typer.Option(help="seed of the multi-start")] = 0,
    warmup: Annotated[str, typer.Option(help="annealing law only: peak | as-is")] = "peak",
    method: Annotated[
        str | None,
        typer.Option(
            help="mpl: reference (default; the paper's early-stopped protocol) | multistart "
            "(converged multi-start L-BFGS-B); annealing: multistart"
        ),
    ] = None,
    step_col: Annotated[
        str | None, typer.Option("--step-col", help="CSV column of the step (default: found)")
    ] = None,
    loss_col: Annotated[
        str | None,
        typer.Option("--loss-col", help="CSV column / TensorBoard tag of the loss"),
    ] = None,
    lr_col: Annotated[
        str | None, typer.Option("--lr-col", help="CSV column / TensorBoard tag of the LR")
    ] = None,
    dropna: Annotated[
        bool, typer.Option("--dropna", help="drop rows without a loss (their count is printed)")
    ] = False,
    tokens_per_step: Annotated[
        float | None,
        typer.Option("--tokens-per-step", help="tokens per optimizer step (token-unit --schedule)"),
    ] = None,
    bootstrap: Annotated[
        int,
        typer.Option(
            "--bootstrap",
            help="block-bootstrap refits kept in the fit JSON for `law predict --interval` bands "
            "(0: none, the fast default)",
        ),
    ] = 0,
) -> None:
    """Fit a law to logged runs (or, with --example 25M, to the packaged published curves);
    write the fit JSON and a plot of fitted vs logged. Prints where each curve's per-step LR
    came from: --schedule, the run's recorded schedule, the log, or the log interpolated."""

    def body() -> None:
        # every output is checked before the fit: a bad -o must not cost the fit
        check_output_file(output, "-o")
        if bootstrap < 0 or bootstrap == 1:
            raise ValueError(f"--bootstrap {bootstrap}: give 0 (no bands) or >= 2 resamples")
        plot_target = check_output_file(
            plot or output.with_suffix(".png"), "--plot" if plot else "-o (its .png plot)"
        )
        read = {
            "step_col": step_col,
            "loss_col": loss_col,
            "lr_col": lr_col,
            "dropna": dropna,
            "tokens_per_step": tokens_per_step,
        }
        loaded = _fit_curves(list(curves or []), example, list(schedule or []), read)
        options = {"warmup": warmup} if law == "annealing" else {}
        model = make_law(law, **options)
        result = model.fit(loaded, seed=seed, method=method, bootstrap=bootstrap)
        result.save(output)
        plot_path = plot_fit(model, loaded, plot_target)
        typer.echo(
            f"{law} fit ({result.method}) on {len(loaded)} curves in {result.fit_seconds:.2f} s -> {output}, {plot_path}"
        )
        typer.echo("  " + ", ".join(f"{k}={v:.6g}" for k, v in result.params.items()))
        typer.echo(f"  R2={result.r2:.5f} PredE={result.prede:.5f} WorstE={result.worste:.5f}")

    _run(body)


def _fit_curves(
    paths: list[Path], example: str | None, specs: list[str], read: dict[str, Any] | None = None
) -> list[Any]:
    """The curves `law fit` fits: logged runs (with their --schedule specs) or a packaged example.

    For each logged run one line says how it was read (columns, dropped rows, the LR's source)."""
    if example is not None:
        if paths or specs:
            raise ValueError(
                "--example fits the packaged curves: give either --example SIZE or CSV files "
                "(with --schedule), not both"
            )
        if example not in SHARED_SIZES:
            raise ValueError(
                f"--example {example}: no packaged curves of that size; use one of "
                f"{', '.join(SHARED_SIZES)}"
            )
        curves = load_shared_curves(shared_curves_dir(example), SHARED_FIT)
        return [curves[name] for name in SHARED_FIT]
    if not paths:
        raise ValueError(
            "no curves to fit: give run folders, log.jsonl, TensorBoard or CSV files, or "
            "--example 25M for the packaged published curves"
        )
    if specs and len(specs) not in (1, len(paths)):
        raise ValueError(
            f"--schedule given {len(specs)} times for {len(paths)} curves: give it once or once per curve"
        )
    from evertrain.laws.logs import load_log_curve

    loaded = []
    for i, path in enumerate(paths):
        spec = (specs[0] if len(specs) == 1 else specs[i]) if specs else None
        curve, notes = load_log_curve(path, schedule=spec, **(read or {}))
        typer.echo(f"{curve.name}: {len(curve.steps)} losses; " + "; ".join(notes))
        loaded.append(curve)
    return loaded


def _is_token_spec(spec: str) -> bool:
    from evertrain.schedules import from_spec

    try:
        return from_spec(spec).unit == "tokens"
    except ValueError:
        return False  # a bad spec: schedule_total names it with its own message


def _write_prediction_csv(path: Path, steps: Any, lr: Any, pred: Any, band: Any = None) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["step", "lr", "pred"] + (["lower", "upper"] if band is not None else []))
    for index, (step, rate, value) in enumerate(
        zip(steps.tolist(), lr.tolist(), pred.tolist(), strict=True)
    ):
        extra = (
            [] if band is None else [repr(float(band.lower[index])), repr(float(band.upper[index]))]
        )
        writer.writerow([step, repr(rate), repr(value), *extra])
    atomic_write_text(path, buffer.getvalue())


def _prediction_csv_paths(csv_path: Path | None, specs: list[str]) -> list[Path]:
    """`predict --csv PATH`: PATH for one schedule, PATH_1.csv, PATH_2.csv, ... for several."""
    if csv_path is None:
        return []
    if len(specs) == 1:
        return [csv_path]
    return [
        csv_path.with_name(f"{csv_path.stem}_{index + 1}{csv_path.suffix}")
        for index in range(len(specs))
    ]


@app.command()
def predict(
    fit_json: Annotated[Path, typer.Argument(help="fit JSON from `evertrain law fit`")],
    specs: Annotated[
        list[str], typer.Argument(help="schedule specs, e.g. wsd:peak=3e-4,total=24000,warmup=2160")
    ],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="PNG with every predicted curve")
    ] = Path("pred.png"),
    steps: Annotated[
        int | None, typer.Option(help="steps to predict (default: each schedule's total)")
    ] = None,
    every: Annotated[
        int | None, typer.Option(help="predict every N steps (default: ~1000 points)")
    ] = None,
    csv_path: Annotated[
        Path | None,
        typer.Option("--csv", help="CSV step,lr,pred (several specs: PATH_1.csv, PATH_2.csv, ...)"),
    ] = None,
    tokens_per_step: Annotated[
        float | None,
        typer.Option(
            "--tokens-per-step",
            help="tokens per optimizer step: needed by token-unit specs (step k uses s(k x N))",
        ),
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(
            "--interval",
            help="prediction band at this level (e.g. 0.9), from the fit's bootstrap "
            "(`law fit --bootstrap N`): printed, plotted, and lower/upper columns in --csv",
        ),
    ] = None,
) -> None:
    """Predict whole loss curves for schedules; print each final loss, plot them together."""

    def body() -> None:
        check_output_file(output, "-o")
        csv_targets = [
            check_output_file(target, "--csv") for target in _prediction_csv_paths(csv_path, specs)
        ]
        if tokens_per_step is not None and not tokens_per_step > 0:
            raise ValueError(f"--tokens-per-step {tokens_per_step:g} must be > 0")
        for spec in specs:  # every spec is checked before the law is loaded and any prediction
            if _is_token_spec(spec) and tokens_per_step is None:
                raise ValueError(
                    f"schedule {spec!r} counts tokens: pass --tokens-per-step (tokens per "
                    "optimizer step) so step k is evaluated at k x tokens_per_step"
                )
        law = load_law(fit_json)
        if interval is not None:
            from evertrain.laws.intervals import check_level

            check_level(interval)
            if not law.bootstrap:
                raise ValueError(
                    f"--interval: {fit_json} has no bootstrap resamples; refit with "
                    "`evertrain law fit ... --bootstrap 200`"
                )
        predictions = {}
        bands = {}
        for index, spec in enumerate(specs):
            total = steps or schedule_total(spec, tokens_per_step=tokens_per_step)
            if total is None:
                raise ValueError(f"schedule {spec!r} has no total: pass --steps")
            stride = every or max(1, total // 1000)
            grid = np.unique(np.r_[np.arange(1, total, stride), total - 1])
            lr = lr_array(spec, total, tokens_per_step=tokens_per_step)
            pred = law.predict_lr(lr, grid)
            band = None
            if interval is not None:
                from evertrain.laws.intervals import law_band

                band = law_band(law, lr, grid, interval)
            label = schedule_label(spec)
            key = label if label not in predictions else f"{label} ({index + 1})"
            predictions[key] = (grid, lr[grid], pred)
            if band is not None:
                bands[key] = band
            if csv_targets:
                _write_prediction_csv(csv_targets[index], grid, lr[grid], pred, band)
        plot_predictions(law, predictions, output, bands=bands)
        width = max(len(label) for label in predictions)
        typer.echo(f"{'schedule':<{width}}  final loss")
        for label, (grid, _, pred) in sorted(predictions.items(), key=lambda item: item[1][2][-1]):
            extra = ""
            if label in bands:
                extra = f"  [{bands[label].lower[-1]:.5f}, {bands[label].upper[-1]:.5f}] ({interval:.0%} band)"
            typer.echo(f"{label:<{width}}  {pred[-1]:.5f}  (step {int(grid[-1])}){extra}")
        typer.echo(f"plot -> {output}" + (f", csv -> {csv_path}" if csv_path else ""))

    _run(body)


@app.command()
def optimize(
    fit_json: Annotated[Path, typer.Argument(help="fit JSON from `evertrain law fit`")],
    steps: Annotated[int, typer.Option(help="run length in optimizer steps")],
    peak: Annotated[
        float, typer.Option(help="peak LR (the warmup's target, the schedule's maximum)")
    ],
    floor: Annotated[float, typer.Option(help="lowest LR allowed (> 0)")],
    warmup: Annotated[int, typer.Option(help="linear warmup steps (0 -> peak)")] = 0,
    knots: Annotated[int, typer.Option(help="piecewise-linear knots of the decay")] = 64,
    output: Annotated[
        Path, typer.Option("-o", "--output", help="JSON with the optimal spec and baselines")
    ] = Path("optimal_schedule.json"),
    plot: Annotated[
        Path | None,
        typer.Option(help="PNG of optimum vs cosine vs best WSD (default: <output>.png)"),
    ] = None,
) -> None:
    """The schedule minimising the predicted final loss (non-increasing after warmup, LR
    between floor and peak) as a piecewise_linear spec, with its gain over cosine and the best WSD."""

    def body() -> None:
        check_output_file(output, "-o")
        plot_target = check_output_file(
            plot or output.with_suffix(".png"), "--plot" if plot else "-o (its .png plot)"
        )
        law = load_law(fit_json)
        result = optimize_schedule(law, steps, peak, floor, warmup, n_knots=knots)
        points = result.spec["points"]
        if points[-1][0] < steps:
            # The knots end at the last update (steps - 1); a point at `steps` holds that value
            # and makes the spec's total the run's length, so training with it warns of nothing.
            points.append([steps, points[-1][1]])
        atomic_write_json(output, result.to_dict())
        grid = np.unique(np.r_[np.arange(1, steps, max(1, steps // 1000)), steps - 1])
        curves = {}
        for label, lr in (
            ("optimised", result.lr),
            ("cosine", lr_array(result.cosine["schedule"], steps)),
            (result.wsd["label"], lr_array(result.wsd["schedule"], steps)),
        ):
            curves[label] = (grid, lr[grid], law.predict_lr(lr, grid))
        plot_path = plot_predictions(law, curves, plot_target, title="optimised schedule")
        typer.echo(f"optimised final loss {result.final_loss:.5f}")
        typer.echo(
            f"cosine               {result.cosine['final_loss']:.5f}  (gain {result.gain_vs_cosine:+.5f})"
        )
        typer.echo(
            f"best WSD {result.wsd['label']:<12} {result.wsd['final_loss']:.5f}  (gain {result.gain_vs_wsd:+.5f})"
        )
        typer.echo(f"spec -> {output}, plot -> {plot_path}")

    _run(body)


@app.command()
def compare(
    fit_json: Annotated[Path, typer.Argument(help="fit JSON from `evertrain law fit`")],
    specs: Annotated[list[str] | None, typer.Argument(help="candidate schedule specs")] = None,
    steps: Annotated[int, typer.Option(help="budget in optimizer steps")] = 24000,
    peak: Annotated[
        float | None, typer.Option(help="with --floor: add cosine and a WSD grid at this peak")
    ] = None,
    floor: Annotated[
        float | None, typer.Option(help="final LR of the generated cosine/WSD candidates")
    ] = None,
    warmup: Annotated[int, typer.Option(help="warmup of the generated candidates")] = 0,
    fractions: Annotated[
        str, typer.Option(help="WSD decay fractions")
    ] = "0.05,0.1,0.15,0.2,0.25,0.3,0.35,0.4",
    shapes: Annotated[
        str, typer.Option(help="WSD decay shapes")
    ] = "linear,cosine,1-sqrt,exponential",
    json_out: Annotated[
        Path | None, typer.Option("--json", help="write the ranking as JSON")
    ] = None,
) -> None:
    """Rank candidate schedules by predicted final loss at --steps."""

    def body() -> None:
        if json_out is not None:
            check_output_file(json_out, "--json")
        law = load_law(fit_json)
        candidates: dict[str, Any] = {spec: spec for spec in specs or []}
        if (peak is None) != (floor is None):
            raise ValueError(
                "give --peak and --floor together to add generated cosine/WSD candidates"
            )
        if peak is not None and floor is not None:
            try:
                fraction_list = [float(f) for f in fractions.split(",") if f.strip()]
            except ValueError as exc:
                raise ValueError(
                    f"--fractions {fractions!r} must be comma-separated numbers"
                ) from exc
            candidates["cosine"] = cosine_spec(steps, peak, floor, warmup)
            candidates.update(
                wsd_candidates(steps, peak, floor, warmup, fraction_list, shapes.split(","))
            )
        if not candidates:
            raise ValueError("nothing to compare: give schedule specs and/or --peak/--floor")
        ranking = compare_schedules(law, candidates, steps)
        width = max(len(row["label"]) for row in ranking)
        typer.echo(f"{'rank':>4}  {'schedule':<{width}}  final loss  gap")
        for row in ranking:
            typer.echo(
                f"{row['rank']:>4}  {row['label']:<{width}}  {row['final_loss']:.5f}     {row['gap']:+.5f}"
            )
        if json_out is not None:
            atomic_write_json(json_out, {"steps": steps, "law": law.to_dict(), "ranking": ranking})

    _run(body)


# --------------------------------------------------------------------------------------------
# `evertrain law cpt fit | predict | optimize`
# --------------------------------------------------------------------------------------------

cpt_app = typer.Typer(
    help="The continual pre-training law: choose the runs to fit on (design), fit on a base "
    "run and continual runs, predict "
    "old- and new-data losses of any recipe, optimise a recipe for a goal.",
    no_args_is_help=True,
)
app.add_typer(cpt_app, name="cpt")


def _band_text(value: float, lower: Any, upper: Any) -> str:
    if lower is None:
        return f"{value:.5f}"
    return f"{value:.5f} [{float(lower[-1]):.5f}, {float(upper[-1]):.5f}]"


def _write_cpt_csv(path: Path, prediction: Any) -> None:
    from evertrain.laws.cpt import DISTRIBUTIONS

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    header = ["step", "lr"]
    for d in DISTRIBUTIONS:
        header += [f"loss_{d}"] + (
            [f"loss_{d}_lower", f"loss_{d}_upper"] if prediction.lower else []
        )
    writer.writerow(header)
    for i, step in enumerate(prediction.steps.tolist()):
        row = [step, repr(float(prediction.lr[i]))]
        for d in DISTRIBUTIONS:
            row.append(repr(float(prediction.loss[d][i])))
            if prediction.lower:
                row += [repr(float(prediction.lower[d][i])), repr(float(prediction.upper[d][i]))]
        writer.writerow(row)
    atomic_write_text(path, buffer.getvalue())


def _number_list(text: str, option: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{option} {text!r} must be comma-separated numbers") from None
    if not values:
        raise ValueError(f"{option} {text!r}: give one or more numbers")
    return values


@cpt_app.command("design")
def cpt_design(
    peaks: Annotated[str, typer.Option(help="re-warm peak LRs you consider, comma-separated")],
    replays: Annotated[
        str, typer.Option(help="replay ratios you consider, comma-separated")
    ] = "0,0.05,0.1,0.25,0.5",
    families: Annotated[str, typer.Option(help="schedule families you consider")] = "cosine,wsd",
    runs: Annotated[
        int,
        typer.Option(
            help="continual runs to train for the fit: 3 fit every parameter; more predict "
            "better (docs/laws.md, 'How many runs to fit on')"
        ),
    ] = 3,
    steps: Annotated[int, typer.Option(help="stage length in updates")] = 1000,
    warmup: Annotated[int | None, typer.Option(help="re-warm steps (default: steps/50)")] = None,
    floor_ratio: Annotated[float, typer.Option(help="final LR as a share of the peak")] = 0.1,
    probes: Annotated[
        bool,
        typer.Option(
            "--probes",
            help="also name short probes: each fitted run's replay ratio at the other peak, "
            "trained only for the stage's first fifth (docs/laws.md, 'Probes')",
        ),
    ] = False,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="JSON with the runs' recipes")
    ] = None,
) -> None:
    """Which continual runs to train first, so that the law fitted on them predicts the rest:
    they span the peaks, replay ratios and schedule families you consider."""

    def body() -> None:
        from evertrain.laws.cpt import RECIPE_FAMILIES, recipe_spec
        from evertrain.laws.design import PROBE_FRACTION, design_fit_runs, probe_runs

        if output is not None:
            check_output_file(output, "-o")
        if steps < 2:
            raise ValueError(f"--steps {steps} must be >= 2")
        rewarm = warmup if warmup is not None else max(0, steps // 50)
        if not 0 <= rewarm < steps:
            raise ValueError(f"--warmup {rewarm} must be in [0, --steps {steps})")
        if not 0.0 <= floor_ratio <= 1.0:
            raise ValueError(f"--floor-ratio {floor_ratio:g} must be in [0, 1]")
        family_list = [f.strip() for f in families.split(",") if f.strip()]
        bad = sorted(set(family_list) - set(RECIPE_FAMILIES))
        if bad:
            raise ValueError(f"--families {bad}: choose from {', '.join(RECIPE_FAMILIES)}")
        peak_list = _number_list(peaks, "--peaks")
        replay_list = _number_list(replays, "--replays")
        if min(peak_list) <= 0:
            raise ValueError(f"--peaks {peaks!r}: every peak LR must be > 0")
        if min(replay_list) < 0 or max(replay_list) >= 1:
            raise ValueError(f"--replays {replays!r}: every replay ratio must be in [0, 1)")
        size = len(set(family_list)) * len(set(peak_list)) * len(set(replay_list))
        if not 1 <= runs <= size:
            raise ValueError(
                f"--runs {runs} must be in [1, {size}]: the families x peaks x replays you gave "
                "make that many recipes (add values or ask for fewer runs)"
            )
        chosen = design_fit_runs(peak_list, replay_list, family_list, runs)

        def row_of(run: Any) -> dict[str, Any]:
            spec = recipe_spec(run.family, run.peak, steps, rewarm, floor_ratio)
            text = f"schedule={schedule_label(spec)};replay={run.replay:g};steps={steps}"
            return {"family": run.family, "peak": run.peak, "replay": run.replay,
                    "schedule": spec, "recipe": text}  # fmt: skip

        rows = [row_of(run) for run in chosen]
        probe_rows = [row_of(run) for run in probe_runs(chosen, peak_list)] if probes else []
        stop = max(1, round(PROBE_FRACTION * steps))
        for row in probe_rows:
            row["stop_at_step"] = stop
        fit = "`evertrain law cpt fit` on them" + (" all" if probe_rows else "")
        typer.echo(f"train these {len(rows)} continual runs" + (
            f" and {len(probe_rows)} probes" if probe_rows else "") + f", then {fit}:")  # fmt: skip
        for row in rows:
            typer.echo(f"  {row['recipe']}")
        if probe_rows:
            typer.echo(f"  probes: train each only to step {stop} of {steps}, its schedule "
                       "unchanged, with two or more evals by then (`evertrain train run CONFIG "
                       f"--stop-at-step {stop}`; --resume finishes one later):")  # fmt: skip
        for row in probe_rows:
            typer.echo(f"  {row['recipe']}")
        if probes and not probe_rows:
            typer.echo("  note: no probes: they need two or more peaks")
        if probe_rows:
            typer.echo(
                "  tip: on evertrain's CPT benchmark the probes lowered the strong shift's "
                "old-data error on 27-30 of 36 three-run sets and made no consistent difference "
                "on its weak shift (docs/laws.md, 'Probes')"
            )
        missing = []
        if len({r.peak for r in chosen}) < 2:
            missing.append("one peak: gamma stays 0, other peaks are extrapolated")
        if len({r.replay for r in chosen}) < 2:
            missing.append("one replay ratio: kappa stays 1, other ratios are extrapolated")
        if len({r.family for r in chosen}) < 2:
            missing.append("one schedule family: the loss drop's shape is seen on one decay")
        for note in missing:
            typer.echo(f"  note: {note}")
        if len(rows) < FEW_RUNS <= size and not probe_rows:
            typer.echo(
                f"  tip: {len(rows)} run(s) predicted evertrain's CPT benchmark to about 1 %; "
                f"{FEW_RUNS} (--runs {FEW_RUNS}) to about 0.5 % on its strong shift's old data "
                "(docs/laws.md, 'How many runs to fit on')"
            )
        if output is not None:
            payload = {"runs": rows, "steps": steps, "warmup": rewarm}
            if probes:
                payload["probes"] = probe_rows
            atomic_write_json(output, payload)
            typer.echo(f"  -> {output}")

    _run(body)


@cpt_app.command("fit")
def cpt_fit(
    runs: Annotated[
        list[Path],
        typer.Argument(
            help="the base run first, then one or more continual runs from it (three spanning "
            "your peaks, replay ratios and schedules fit every parameter; `law cpt design` names "
            "them): evertrain run folders (eval losses per distribution) or CSV files (step, lr, "
            "loss_old, loss_new)"
        ),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="law JSON to write")] = Path(
        "cpt_law.json"
    ),
    old: Annotated[
        list[str] | None,
        typer.Option("--old", help="eval name(s) of the old data (default: continual.json's)"),
    ] = None,
    new: Annotated[
        list[str] | None,
        typer.Option("--new", help="eval name(s) of the new data (default: continual.json's)"),
    ] = None,
    replay: Annotated[
        list[float] | None,
        typer.Option(
            "--replay", help="replay ratio per continual run, in order (default: data.mixture)"
        ),
    ] = None,
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", help="block-bootstrap refits for bands (0: none)")
    ] = 50,
    seed: Annotated[int, typer.Option(help="seed of the bootstrap")] = 0,
    annealing: Annotated[
        str,
        typer.Option(
            "--annealing",
            help="the LR-annealing term: 'multi-power' (the multi-power law's loss drop) or "
            "'annealing' (the annealing law's S2, the paper's); see docs/laws.md",
        ),
    ] = "multi-power",
) -> None:
    """Fit the CPT law (Wang, Tissue et al. 2025) to a base run and its continual runs."""

    def body() -> None:
        from evertrain.laws.cpt import CPTLaw, read_cpt_runs

        check_output_file(output, "-o")
        if len(runs) < 2:
            raise ValueError(
                f"give the base run then one or more continual runs ({len(runs)} RUN given)"
            )
        if bootstrap < 0 or bootstrap == 1:
            raise ValueError(f"--bootstrap {bootstrap}: give 0 (no bands) or >= 2 resamples")
        law = CPTLaw(annealing=annealing)  # checks the name before any reading or fitting
        base, stages = read_cpt_runs(runs[0], runs[1:], old=old, new=new, replay=replay)
        law.fit(base, stages, bootstrap=bootstrap, seed=seed)
        law.save(output)
        typer.echo(
            f"cpt law on {base.name} + {', '.join(s.name for s in stages)} "
            f"(replay {', '.join(f'{s.replay:g}' for s in stages)}) -> {output}"
        )
        for d, report in law.fit_report["per_distribution"].items():
            params = ", ".join(f"{k}={v:.4g}" for k, v in law.params[d].items())  # type: ignore[index]
            typer.echo(
                f"  {d}: PredE={report['prede']:.5f} WorstE={report['worste']:.5f}  {params}"
            )
        if not law.kappa_fitted:
            typer.echo("  kappa not fitted (one replay ratio): fixed at 1")
        if not law.gamma_fitted:
            typer.echo(
                "  gamma not fitted (one peak LR): fixed at 0, the paper's form; other peaks are "
                "extrapolated (`evertrain law cpt design` names runs that span them)"
            )

    _run(body)


@cpt_app.command("predict")
def cpt_predict(
    law_json: Annotated[Path, typer.Argument(help="law JSON from `evertrain law cpt fit`")],
    recipes: Annotated[
        list[str],
        typer.Argument(
            help="recipes: 'schedule=SPEC;replay=R;steps=N' (or tokens=T), or a YAML file/mapping "
            "with schedule, replay, steps|tokens"
        ),
    ],
    interval: Annotated[
        float | None,
        typer.Option("--interval", help="band level (default 0.9 when the law has a bootstrap)"),
    ] = None,
    csv_path: Annotated[
        Path | None,
        typer.Option(
            "--csv", help="CSV step,lr,loss_old[_lower,_upper],loss_new[...] (several: PATH_N.csv)"
        ),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="PNG of every recipe's curves with bands")
    ] = None,
) -> None:
    """Predict the old- and new-data loss curves of continual recipes; print the final losses."""

    def body() -> None:
        from evertrain.laws.cpt import load_cpt_law, parse_recipe

        targets = [check_output_file(t, "--csv") for t in _prediction_csv_paths(csv_path, recipes)]
        if plot is not None:
            check_output_file(plot, "--plot")
        law = load_cpt_law(law_json)
        level = interval if interval is not None else (0.9 if law.bootstrap else None)
        parsed = [
            parse_recipe(
                text,
                default_steps=max(law.fitted_steps or [0]) or None,
                tokens_per_step=law.tokens_per_step,
            )
            for text in recipes
        ]
        rows, notes = [], []
        for index, recipe in enumerate(parsed):
            prediction = law.predict(recipe, interval=level, warn=False)
            rows.append((recipe.label(), prediction))
            notes += [f"{recipe.label()}: {n}" for n in law.extrapolation(recipe)]
            if targets:
                _write_cpt_csv(targets[index], prediction)
        width = max(len(label) for label, _ in rows)
        band = f" [{level:.0%} band]" if level else ""
        typer.echo(f"{'recipe':<{width}}  old-data loss{band}  new-data loss{band}")
        for label, p in rows:
            typer.echo(
                f"{label:<{width}}  {_band_text(p.final('old'), p.lower.get('old'), p.upper.get('old'))}"
                f"  {_band_text(p.final('new'), p.lower.get('new'), p.upper.get('new'))}"
            )
        for note in notes:
            typer.echo(
                f"warning: {note}: the law extrapolates there (fit on runs that span it; "
                "`evertrain law cpt design` picks them)"
            )
        if csv_path:
            typer.echo(f"csv -> {', '.join(str(t) for t in targets)}")
        if plot is not None:
            from evertrain.laws.plots import plot_cpt

            typer.echo(f"plot -> {plot_cpt([p for _, p in rows], plot)}")

    _run(body)


@cpt_app.command("optimize")
def cpt_optimize(
    law_json: Annotated[Path, typer.Argument(help="law JSON from `evertrain law cpt fit`")],
    goal: Annotated[
        str,
        typer.Option(
            "--goal",
            help="weighted:W (minimise W new + (1-W) old), forget:X (min new-data loss, old-data "
            "loss at most +X % over the base), or new",
        ),
    ],
    steps: Annotated[
        int | None, typer.Option(help="stage length in steps (default: longest fitted run)")
    ] = None,
    warmup: Annotated[int | None, typer.Option(help="re-warm steps (default: steps/50)")] = None,
    floor_ratio: Annotated[float, typer.Option(help="final LR as a share of the peak")] = 0.1,
    families: Annotated[str, typer.Option(help="schedule families searched")] = "cosine,wsd",
    peaks: Annotated[
        str | None,
        typer.Option(help="peak LRs searched, comma-separated (default: 7 over the fitted peaks)"),
    ] = None,
    interval: Annotated[float, typer.Option("--interval", help="band level")] = 0.9,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="JSON with the chosen recipe")
    ] = None,
) -> None:
    """Search replay ratio (0 to 0.5), peak LR and schedule family (cosine, WSD) for a goal."""

    def body() -> None:
        from evertrain.laws.cpt import load_cpt_law, parse_goal, schedule_label

        if output is not None:
            check_output_file(output, "-o")
        parse_goal(goal)  # a bad goal fails before the law is read
        if not 0.0 <= floor_ratio <= 1.0:
            raise ValueError(f"--floor-ratio {floor_ratio:g} must be in [0, 1]")
        try:
            peak_list = [float(v) for v in peaks.split(",") if v.strip()] if peaks else None
        except ValueError:
            raise ValueError(f"--peaks {peaks!r} must be comma-separated numbers") from None
        if peak_list is not None and (not peak_list or min(peak_list) <= 0):
            raise ValueError(f"--peaks {peaks!r}: give one or more LRs > 0")
        law = load_cpt_law(law_json)
        level = interval if law.bootstrap else None
        result = law.optimize(
            goal,
            steps=steps,
            warmup=warmup,
            floor_ratio=floor_ratio,
            families=[f.strip() for f in families.split(",") if f.strip()],
            peaks=peak_list,
            interval=level,
        )
        recipe, prediction = result["recipe"], result["prediction"]
        typer.echo(f"goal {goal}: best of {result['searched']} recipes")
        typer.echo(
            f"  schedule {schedule_label(recipe.schedule)}  replay {recipe.replay:g}  steps {recipe.steps}"
        )
        for d in ("old", "new"):
            typer.echo(
                f"  {d}-data loss {_band_text(prediction.final(d), prediction.lower.get(d), prediction.upper.get(d))}"
                f"  (base at the stage start {result['reference'][d]:.5f})"
            )
        if level is None:
            typer.echo("  no bands: the law was fitted with --bootstrap 0")
        for note in result["extrapolates"]:
            typer.echo(f"  warning: {note}: the law extrapolates there")
        if output is not None:
            atomic_write_json(
                output,
                {
                    "goal": goal,
                    "recipe": {"schedule": recipe.schedule, "replay": recipe.replay, "steps": recipe.steps},
                    "final": result["final"],
                    "band": {d: [float(prediction.lower[d][-1]), float(prediction.upper[d][-1])]
                             for d in prediction.lower},
                    "reference": result["reference"],
                    "extrapolates": result["extrapolates"],
                },
            )  # fmt: skip
            typer.echo(f"  -> {output}")

    _run(body)
