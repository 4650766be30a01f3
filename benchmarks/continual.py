"""Continual pre-training evidence: recipes vs retrain, forgetting, decay branches vs cosine runs.

    python benchmarks/continual.py                       # everything, ~15-20 min on 2 busy cores
    python benchmarks/continual.py --skip-demo           # without timing a plain `evertrain demo`

Writes ``benchmarks/results/continual.json``:

- ``recipes``: for ``retrain``, ``finetune``, ``rewarm``, ``rewarm+replay``, ``infinite+replay``:
  final validation loss on D0 (``loss_old``), D1 (``loss_new``), their mean (``loss_avg``) and
  ``tokens`` (the second stage's tokens for a continual recipe, all tokens for ``retrain``);
- ``criterion``: is the best replay recipe within 1 % of retrain's average loss at <= 60 % of its
  tokens;
- ``forgetting``: loss on D0 after − before the stage for finetune / rewarm+replay / infinite+replay;
- ``branching``: three budgets from one constant-LR main run with decay branches (WSD) against
  three separate cosine runs: final losses and total compute;
- ``model_params``, ``demo_seconds`` (wall time of a plain ``evertrain demo``), the scale.

D0 = standard-library English, D1 = standard-library code (a strong shift), one shared BPE.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

from evertrain._atomic import atomic_write_json
from evertrain.continual.demo import DemoSettings, run_demo
from evertrain.continual.runner import Setup

RESULTS = Path(__file__).parent / "results" / "continual.json"

#: The benchmark's scale: the demo's model (2 layers x 128 wide, 0.66M parameters), 500k tokens
#: per stage (2x the demo), budgets of 150k-450k tokens for branching. Chosen to finish in about
#: 20 min on the 2-core machine while it is shared with other work.
BENCH = DemoSettings(
    scale=0.0,
    vocab_size=2048,
    max_bytes=3_000_000,
    n_layer=2,
    n_head=4,
    d_model=128,
    seq_len=64,
    batch_size=16,
    base_tokens=500_000,
    stage_tokens=500_000,
    peak=2e-3,
    eval_tokens=16_384,
    eval_points=5,
)
#: One size up (3 layers x 160 wide, 1.25M parameters, ~1.9x the compute per token), same tokens.
MEDIUM = DemoSettings(
    **{**BENCH.__dict__, "n_layer": 3, "n_head": 5, "d_model": 160},
)
BRANCH_BUDGETS = (150_000, 300_000, 450_000)
#: A toy size to check the script end to end in a minute (``--toy``); its figures mean nothing.
TOY = DemoSettings(
    scale=0.0,
    vocab_size=300,
    max_bytes=60_000,
    n_layer=1,
    n_head=2,
    d_model=32,
    seq_len=32,
    batch_size=4,
    base_tokens=2048,
    stage_tokens=2048,
    peak=3e-3,
    eval_tokens=512,
    eval_points=2,
)
BRANCH_DECAY_FRACTION = 0.2


def time_plain_demo() -> float:
    """Wall seconds of ``evertrain demo`` with no options, in a fresh folder."""
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        subprocess.run(
            ["evertrain", "demo", "--out", str(Path(folder) / "demo")],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return time.perf_counter() - started


def _branch_job(kind: str, kwargs: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    from evertrain.continual import branches, runner

    setup = Setup(**kwargs.pop("setup"))
    if kind == "branches":
        runs = branches.run_branches(setup, **kwargs)
        return {
            name: {"tokens": r.tokens, "final_eval": r.final_eval, "wall_seconds": r.wall_seconds}
            for name, r in runs.items()
        }
    budget = kwargs.pop("budget")
    peak = kwargs.pop("peak")
    smallest = kwargs.pop("smallest")
    # The trainer's one budget rule: whole optimizer steps, and the schedule spans exactly them
    # (as run_branches rounds its budgets), so the cosine runs and the branches train alike.
    tokens = setup.whole_steps(budget)
    schedule = runner.R.rewarm_schedule(
        peak=peak,
        tokens=tokens,
        warmup_fraction=0.02 * smallest / tokens,
        floor_fraction=0.1,
        decay_shape="cosine",
    )
    config = runner.stage_config(
        setup, schedule=schedule, tokens=tokens, mixture={"D0": 1.0}, **kwargs
    )
    result = runner.run_stage(
        config, name=f"cosine-{budget}", recipe="cosine", old=[], new=["D0"], progress=False
    )
    return {
        f"cosine-{budget}": {
            "tokens": result.tokens,
            "final_eval": result.final_eval,
            "wall_seconds": result.wall_seconds,
        }
    }


def branching(
    out: Path, data: dict[str, str], settings: DemoSettings, workers: int, budgets: tuple[int, ...]
) -> dict:
    """Three budgets: WSD main + decay branches vs three cosine runs, on D0, same model."""
    setup = Setup(
        model=settings.model,
        train={
            "batch_size": settings.batch_size,
            "device": "cpu",
            "eval_tokens": settings.eval_tokens,
        },
        eval={"D0": data["D0"]},
        eval_points=2,
    )
    setup_dict = asdict(setup)
    # Same warmup (2% of the smallest budget) for every run so only the decay differs.
    jobs = [
        (
            "branches",
            {
                "setup": dict(setup_dict),
                "out_dir": str(out / "wsd"),
                "datasets": {"D0": data["D0"]},
                "budgets": list(budgets),
                "peak": settings.peak,
                "decay_fraction": BRANCH_DECAY_FRACTION,
                "progress": False,
            },
        )
    ]
    for budget in budgets:
        jobs.append(
            (
                "cosine",
                {
                    "setup": dict(setup_dict),
                    "out_dir": str(out / f"cosine-{budget}"),
                    "train_sets": {"D0": data["D0"]},
                    "budget": budget,
                    "peak": settings.peak,
                    "smallest": min(budgets),
                },
            )
        )
    results: dict = {}
    import multiprocessing

    with ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        for future in [pool.submit(_branch_job, kind, kwargs) for kind, kwargs in jobs]:
            results.update(future.result())
    # run_branches rounds each budget to whole optimizer steps (150000 -> decay-150528); the
    # cosine runs train the same ceil(budget / step) steps.
    decay_names = sorted(
        (k for k in results if k.startswith("decay-")), key=lambda k: int(k.split("-")[1])
    )
    decay_of = dict(zip(sorted(budgets), decay_names, strict=True))
    wsd_tokens = results["main"]["tokens"] + sum(results[decay_of[b]]["tokens"] for b in budgets)
    cosine_tokens = sum(results[f"cosine-{b}"]["tokens"] for b in budgets)
    return {
        "dataset": "D0",
        "budgets": list(budgets),
        "decay_fraction": BRANCH_DECAY_FRACTION,
        "wsd_branches": {str(b): results[decay_of[b]]["final_eval"]["D0"] for b in budgets},
        "tokens_per_model": {
            str(b): {
                "wsd_branch": int(decay_of[b].split("-")[1]),
                "cosine_run": results[f"cosine-{b}"]["tokens"],
            }
            for b in budgets
        },
        "cosine_runs": {str(b): results[f"cosine-{b}"]["final_eval"]["D0"] for b in budgets},
        "total_tokens": {"wsd_branches": wsd_tokens, "cosine_runs": cosine_tokens},
        "compute_saving": 1 - wsd_tokens / cosine_tokens,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", default=os.path.join(tempfile.gettempdir(), "evertrain-bench-continual")
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--results", default=str(RESULTS), help="the JSON file to write")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument(
        "--demo-only", action="store_true", help="only time a plain demo; update demo_seconds"
    )
    parser.add_argument("--skip-branching", action="store_true")
    parser.add_argument("--size", choices=("small", "medium"), default="small", help="model size")
    parser.add_argument(
        "--toy", action="store_true", help="tiny sizes, to check the script (no results file)"
    )
    args = parser.parse_args()
    out = Path(args.out)
    started = time.perf_counter()
    results_path = Path(args.results)
    existing = json.loads(results_path.read_text()) if results_path.exists() else {}

    demo_seconds = existing.get("demo_seconds") if args.skip_demo else time_plain_demo()
    if not args.skip_demo:
        print(f"plain `evertrain demo`: {demo_seconds:.0f} s", flush=True)
    if args.demo_only:
        atomic_write_json(results_path, {**existing, "demo_seconds": demo_seconds})
        return

    settings = TOY if args.toy else MEDIUM if args.size == "medium" else BENCH
    budgets = (1280, 2560, 3840) if args.toy else BRANCH_BUDGETS
    result = run_demo(out / "recipes", settings=settings, workers=args.workers, progress=True)
    rows = {row["run"]: row for row in result.rows}
    recipes = {}
    for name in ("retrain", "finetune", "rewarm", "rewarm+replay", "infinite+replay"):
        row = rows[name]
        recipes[name] = {
            "loss_old": row["after"]["D0"],
            "loss_new": row["after"]["D1"],
            "loss_avg": row["loss_avg"],
            "tokens": row["tokens"],
            "forgetting_old": row.get("forgetting"),
            "peak_forgetting_old": row.get("peak_forgetting"),
            "wall_seconds": row.get("wall_seconds"),
        }
    retrain = recipes["retrain"]
    replay = {k: v for k, v in recipes.items() if "replay" in k}
    best = min(replay, key=lambda k: replay[k]["loss_avg"])
    gap = replay[best]["loss_avg"] / retrain["loss_avg"] - 1
    share = replay[best]["tokens"] / retrain["tokens"]
    params = json.loads((out / "recipes" / "runs" / "base" / "continual.json").read_text())[
        "params"
    ]

    data = {"D0": str(out / "recipes" / "data" / "D0")}
    branch = (
        None
        if args.skip_branching
        else branching(out / "branching", data, settings, args.workers, budgets)
    )
    payload = {
        "recipes": recipes,
        "model_params": params,
        "demo_seconds": demo_seconds,
        "criterion": {
            "best_replay_recipe": best,
            "loss_gap_vs_retrain": gap,
            "tokens_vs_retrain": share,
            "within_1pct_at_most_60pct_tokens": bool(gap <= 0.01 and share <= 0.6),
        },
        "forgetting_old": {
            k: {"final": recipes[k]["forgetting_old"], "peak": recipes[k]["peak_forgetting_old"]}
            for k in ("finetune", "rewarm", "rewarm+replay", "infinite+replay")
        },
        "base": {
            "tokens": rows["base"]["tokens"],
            "loss_old": rows["base"]["after"]["D0"],
            "loss_new": rows["base"]["after"]["D1"],
        },
        "branching": branch,
        "scale": {
            "model": result.settings.model,
            "vocab_size": result.settings.vocab_size,
            "batch_size": result.settings.batch_size,
            "base_tokens": result.settings.base_tokens,
            "stage_tokens": result.settings.stage_tokens,
            "peak_lr": result.settings.peak,
            "eval_tokens_per_dataset": result.settings.eval_tokens,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "workers": args.workers,
            "note": "2-core machine shared with other work while measuring",
        },
        "benchmark_seconds": time.perf_counter() - started,
    }
    if args.toy:
        print(json.dumps(payload, indent=2))
        return
    atomic_write_json(results_path, payload)
    print(json.dumps(payload["criterion"], indent=2))
    print(f"wrote {results_path}")


if __name__ == "__main__":
    sys.exit(main())
