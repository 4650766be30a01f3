"""Tuning evidence: does `schedule suggest` pick the decay that really trains best?

    python benchmarks/autotune.py            # ~10 min on one core; writes benchmarks/results/autotune.json
    python benchmarks/autotune.py --toy      # tiny sizes (~30 s), prints the JSON, writes nothing

What it does (every run through the library: ``evertrain.data`` to prepare the standard
library's English docstrings, ``evertrain.continual.runner`` to train, ``evertrain.tune.suggest``
to suggest):

1. one small GPT trained at constant LR (linear warmup) to 90 % of the largest budget, pinning a
   checkpoint at every candidate fork point of every budget;
2. one short *fit* branch: a linear decay over ``FIT_DECAY`` of the smallest budget, forked at
   ``FIT_FORK`` of it (the decay data the multi-power law needs);
3. ``suggest`` (the multi-power law fitted on 1 + 2, bootstrap bands) ranks, for each of three
   budgets, every candidate decay (``SHAPES`` x ``LENGTHS``, forks at the pinned checkpoints);
4. every candidate of every budget is trained (forked from the main run, as `continual
   branches --auto` would), and its final validation loss measured.

``suggest_regret`` is, per budget, ``(L(suggested) - min L(trained)) / min L(trained)`` of the
final validation losses; the key holds the largest over the budgets (``_mean``: their mean).
Rerun with the same ``--out`` to continue (finished runs are re-read, a killed one resumes).

``autolrs_tokens_ratio`` and ``pbt_tokens_ratio`` come from the time-to-target harness
(``benchmarks/methods.py``, which writes them here when it runs): this script copies them from
``results/methods.json`` when that file exists (null, with a note, when it does not).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evertrain._atomic import atomic_write_json
from evertrain.continual.branches import decay_schedule, main_schedule
from evertrain.continual.runner import Setup, run_stage, stage_config
from evertrain.data import prepare, train_tokenizer
from evertrain.schedules import from_spec
from evertrain.tune.suggest import SHAPES, suggest

RESULTS = Path(__file__).parent / "results" / "autotune.json"
CANDIDATE_SHAPES = ("linear", "cosine", "1-sqrt")
LENGTHS = (0.1, 0.3)
FIT_FORK, FIT_DECAY = 0.5, 0.25  # fractions of the smallest budget
FLOOR_FRACTION = 0.1
METHODS_RESULTS = Path(__file__).parent / "results" / "methods.json"
assert set(CANDIDATE_SHAPES) <= set(SHAPES)


@dataclass(frozen=True)
class Scale:
    """Every size of one benchmark run."""

    vocab_size: int
    max_bytes: int
    n_layer: int
    n_head: int
    d_model: int
    seq_len: int
    batch_size: int
    budget_steps: tuple[int, ...]
    warmup_steps: int
    peak: float
    eval_tokens: int
    bootstrap: int


BENCH = Scale(512, 2_000_000, 2, 4, 64, 64, 8, (800, 1600, 3200), 40, 3e-3, 16384, 50)
TOY = Scale(300, 60_000, 1, 2, 32, 32, 4, (40, 60, 80), 4, 3e-3, 512, 10)


def _setup(scale: Scale, data: str) -> Setup:
    return Setup(
        model={"n_layer": scale.n_layer, "n_head": scale.n_head, "d_model": scale.d_model,
               "seq_len": scale.seq_len},
        train={"batch_size": scale.batch_size, "device": "cpu", "seed": 0, "threads": 1,
               "eval_tokens": scale.eval_tokens},
        eval={"english": data},
        eval_points=1,
    )  # fmt: skip


def fork_step(budget: int, length: float) -> int:
    """The fork of a decay over ``length`` of a budget of ``budget`` steps (as suggest forks)."""
    return int(round((1.0 - length) * budget))


def train_all(out: Path, scale: Scale, data: str) -> dict[str, Any]:
    """Main run, fit branch, and every candidate of every budget; their folders."""
    setup = _setup(scale, data)
    tps = setup.tokens_per_step
    sets = {"english": data}
    budgets = scale.budget_steps
    fit_fork = int(FIT_FORK * budgets[0])
    forks = sorted({fork_step(b, f) for b in budgets for f in LENGTHS} | {fit_fork})
    main_steps = max(forks)
    main = stage_config(setup, out_dir=out / "main", train_sets=sets, mixture={"english": 1.0},
                        schedule=main_schedule(scale.peak, scale.warmup_steps * tps),
                        tokens=main_steps * tps, checkpoint_at_tokens=[f * tps for f in forks])  # fmt: skip
    run_stage(main, name="main", recipe="wsd-main", old=[], new=["english"], progress=False)

    def branch(name: str, fork: int, steps: int, shape: str, budget: int | None) -> Path:
        spec = decay_schedule(scale.peak, scale.peak * FLOOR_FRACTION, steps * tps, "linear")
        if shape != "linear":  # the candidate shapes beyond branches.py's linear/cosine
            spec = from_spec({"name": "wsd", "peak": scale.peak,
                              "floor": scale.peak * FLOOR_FRACTION, "total": steps * tps,
                              "decay": steps * tps, "warmup": 0, "decay_shape": shape,
                              "unit": "tokens"})  # fmt: skip
        config = stage_config(setup, out_dir=out / name, train_sets=sets, mixture={"english": 1.0},
                              schedule=spec, tokens=steps * tps,
                              init_from=out / "main" / "checkpoints" / f"tokens_{fork * tps}")  # fmt: skip
        run_stage(config, name=name, recipe="wsd-branch", old=[], new=["english"],
                  offset_tokens=fork * tps, progress=False,
                  extra_meta={"budget": budget * tps} if budget else None)  # fmt: skip
        return out / name

    fit = branch("fit-branch", fit_fork, int(FIT_DECAY * budgets[0]), "linear", None)
    trained: dict[int, dict[tuple[str, int], Path]] = {}
    for budget in budgets:
        for length in LENGTHS:
            fork = fork_step(budget, length)
            for shape in CANDIDATE_SHAPES:
                name = f"cand-{budget}-{shape}-{fork}"
                folder = branch(name, fork, budget - fork, shape, budget)
                trained.setdefault(budget * tps, {})[(shape, fork * tps)] = folder
    return {"main": out / "main", "fit": fit, "trained": trained, "tokens_per_step": tps,
            "forks": [f * tps for f in forks]}  # fmt: skip


def final_eval(folder: Path) -> float:
    from evertrain.continual.runs import load_run, mean

    return mean(list(load_run(folder).final_eval.values()))


def final_train_loss(folder: Path) -> float:
    from evertrain.continual.runs import load_run

    return float(load_run(folder).train_records[-1]["loss"])


def measure(out: Path, scale: Scale) -> dict[str, Any]:
    started = time.perf_counter()
    tok = train_tokenizer(["stdlib-english"], out / "tok.json", scale.vocab_size,
                          max_bytes=scale.max_bytes)  # fmt: skip
    data = str(prepare(["stdlib-english"], out / "english", tokenizer=tok,
                       max_bytes=scale.max_bytes, progress=False).path)  # fmt: skip
    runs = train_all(out, scale, data)
    trained_at = time.perf_counter()
    suggested = suggest(runs["main"], sorted(runs["trained"]), shapes=CANDIDATE_SHAPES,
                        lengths=LENGTHS, branches=[runs["fit"]], bootstrap=scale.bootstrap,
                        fork_tokens=runs["forks"])  # fmt: skip
    suggest_seconds = time.perf_counter() - trained_at
    per_budget = []
    for budget in suggested.budgets:
        folders = runs["trained"][budget.budget_tokens]
        measured = {key: final_eval(path) for key, path in folders.items()}
        best_key = min(measured, key=measured.get)
        pick = (budget.best.shape, budget.best.fork_tokens)
        rows = []
        for c in budget.candidates:
            key = (c.shape, c.fork_tokens)
            train = final_train_loss(folders[key])
            rows.append({**c.to_dict(), "final_eval": measured[key], "final_train_loss": train,
                         "interval_holds_train_loss": c.lower <= train <= c.upper})  # fmt: skip
        per_budget.append({
            "budget_tokens": budget.budget_tokens,
            "suggested": {"shape": pick[0], "fork_tokens": pick[1]},
            "best_trained": {"shape": best_key[0], "fork_tokens": best_key[1]},
            "regret": (measured[pick] - measured[best_key]) / measured[best_key],
            "candidates": rows,
        })  # fmt: skip
    regrets = [b["regret"] for b in per_budget]
    rows = [r for b in per_budget for r in b["candidates"]]
    return {
        "suggest_regret": max(regrets),
        "suggest_regret_mean": statistics.fmean(regrets),
        "suggest_regret_target": 0.005,
        "suggest_regret_note": "largest over the budgets of (final val loss of the suggested "
        "decay - best trained) / best trained; _mean: mean over the budgets",
        "interval_coverage_train_loss": sum(r["interval_holds_train_loss"] for r in rows)
        / len(rows),
        "per_budget": per_budget,
        **harness_ratios(),
        "setup": {
            **asdict(scale),
            "tokens_per_step": runs["tokens_per_step"],
            "candidate_shapes": list(CANDIDATE_SHAPES),
            "lengths": list(LENGTHS),
            "fit_branch": {"fork": FIT_FORK, "decay": FIT_DECAY, "of": "smallest budget"},
            "floor_fraction": FLOOR_FRACTION,
            "data": "stdlib-english (the running Python's standard library docstrings)",
            "threads": 1,
        },
        "wall_seconds": time.perf_counter() - started,
        "suggest_seconds": suggest_seconds,
        "machine": {"python": platform.python_version(), "processor": platform.processor()},
    }


def harness_ratios(path: Path = METHODS_RESULTS) -> dict[str, Any]:
    """The tuners' tokens-to-target ratios of the methods harness (its results file)."""
    if not path.exists():
        note = f"run benchmarks/methods.py first: {path.name} is missing"
        return {"autolrs_tokens_ratio": None, "autolrs_tokens_ratio_note": note,
                "pbt_tokens_ratio": None, "pbt_tokens_ratio_note": note}  # fmt: skip
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import methods  # the sibling benchmark script

    return methods.tuner_ratios(json.loads(path.read_text()), path.name)


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--toy", action="store_true", help="tiny sizes; print, write nothing")
    parser.add_argument("--out", type=Path, help="folder for the runs (default: a temp folder)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core: the benchmark shares the machine
    scale = TOY if args.toy else BENCH
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        payload = measure(args.out, scale)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            payload = measure(Path(tmp), scale)
    text = json.dumps(payload, indent=2)
    if not args.toy:
        atomic_write_json(args.results, payload)
    print(text)


if __name__ == "__main__":
    main()
