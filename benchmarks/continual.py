"""Continual pre-training evidence where forgetting is real: a flattened base, two shifts, seeds.

    python benchmarks/continual.py                  # the whole benchmark (~50 min on 2 busy cores)
    python benchmarks/continual.py --toy --workers 1   # tiny sizes, prints the JSON (a test runs it)

Run it again with the same ``--out`` and it continues: finished runs are re-read, not retrained
(the continual runner re-uses a run folder only for the same inputs), a killed run resumes from
its last checkpoint.

What it measures (see ``docs/continual.md``, "Evidence"):

- one small GPT pre-trained on D0 for many tokens per parameter, with the library's infinite
  schedule (warmup, cooldown, constant, a release anneal over 10 % of the tokens) whose anneal
  ends at 75 % of the tokens and whose floor LR is then held to the end, until its D0
  validation loss has flattened: ``base_flat`` is the relative D0 improvement over the last
  20 % of its tokens, all of them at the floor LR (so the anneal's own gain is not counted as
  "still improving");
- the same base (one per seed) continued on two shifts: **strong** D0 -> stdlib code, and **weak**
  D0 -> the Python help topics (English reference prose; D0 is the standard library's English
  docstrings). D0 is ``stdlib-english`` with its ``pydoc_data`` help topics taken out, and those
  topics are the weak shift's D1: both are cut from the running Python's standard library, in
  a fixed order, into documents of at most 2 KiB at paragraph boundaries (no download);
- recipes ``finetune``, ``rewarm``, ``rewarm+replay`` (25 % replay), ``infinite+replay`` (forks
  from the base's pre-anneal checkpoint) and ``retrain`` (from scratch on D0 u D1, all tokens);
- a replay sweep 0 / 0.05 / 0.1 / 0.25 / 0.5 of ``rewarm+replay`` on the strong shift (0 is
  ``rewarm``);
- WSD decay branches from one constant-LR run against separate cosine runs on D0;
- every figure over ``seeds`` seeds (a seed changes the model's init and the data order): means,
  and the sample standard deviation beside each (``*_std``).

Writes ``benchmarks/results/continual.json``; keys are described in ``docs/continual.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evertrain._atomic import atomic_write_json
from evertrain.continual import runs as continual_runs
from evertrain.continual.forgetting import stage_outcome
from evertrain.continual.jobs import Job, next_job
from evertrain.continual.runner import Setup, base_schedule, planned_base_info
from evertrain.data import prepare, train_tokenizer
from evertrain.data.corpora import builtin_documents, pack_paragraphs

RESULTS = Path(__file__).parent / "results" / "continual.json"
RECIPES = ("retrain", "finetune", "rewarm", "rewarm+replay", "infinite+replay")
REPLAY_RATIOS = (0.0, 0.05, 0.1, 0.25, 0.5)
#: The base anneals over 10 % of its tokens and then holds the floor LR for this share of them:
#: longer than the 20 % ``base_flat`` looks at, so that window starts after the anneal (and after
#: the loss's lag behind the LR drop). In probes (3M tokens, one seed each) the last 20 % then
#: improved D0 by 0.5-0.8 %, against 1.6 % at constant LR and 4 % with the anneal inside it.
BASE_HOLD_FRACTION = 0.25
#: The replay share of the ``rewarm+replay`` / ``infinite+replay`` rows of the recipe tables.
DEFAULT_REPLAY = 0.25
#: Largest document cut from the weak-shift sources (paragraph boundaries; see the docstring).
DOCUMENT_BYTES = 2048
OLD = "D0"
#: dataset name of each shift's D1 and what it is
SHIFTS = {
    "strong": ("D1-code", "stdlib-code: source code of the Python standard library"),
    "weak": ("D1-topics", "pydoc_data help topics: the Python reference manual's English prose"),
}
D0_LABEL = "stdlib-english docstrings (its pydoc help topics taken out)"


@dataclass(frozen=True)
class Scale:
    """Every size of one benchmark run."""

    vocab_size: int
    n_layer: int
    n_head: int
    d_model: int
    seq_len: int
    batch_size: int
    base_tokens: int
    stage_tokens: int
    peak: float
    eval_tokens: int
    #: evaluations per continual stage (the base gets twice as many, for ``base_flat``)
    evals_per_stage: int
    #: bytes of stdlib-code read (D0 and the help topics are used whole)
    code_bytes: int
    #: bytes of each of D0 and the help topics read (0: all)
    english_bytes: int
    branch_budgets: tuple[int, ...]
    seeds: tuple[int, ...]
    #: replay ratios of the strong shift's sweep (0 is the ``rewarm`` run)
    replay_ratios: tuple[float, ...] = REPLAY_RATIOS
    #: share of the base's tokens trained at the floor LR after its anneal
    #: (:func:`evertrain.continual.runner.base_schedule`)
    base_hold_fraction: float = BASE_HOLD_FRACTION

    @property
    def model(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ("n_layer", "n_head", "d_model", "seq_len")}


#: The benchmark's scale: a 2-layer x 32-wide GPT with a 512-token BPE (about 41k parameters,
#: embeddings included), a base of 3M tokens (~73 tokens per parameter, ~3.9 passes over D0's
#: training split; a 2M base still improved 4.7 % over its last 20 %), stages of 500k tokens.
#: Chosen from a timing probe (65k tokens/s on one idle core, ~3x slower with the machine busy)
#: so the 5 seeds' runs finish in about 15 min on the idle 2-core machine (~10 s a stage).
BENCH = Scale(
    vocab_size=512,
    n_layer=2,
    n_head=1,
    d_model=32,
    seq_len=64,
    batch_size=16,
    base_tokens=3_000_000,
    stage_tokens=500_000,
    peak=1e-2,
    eval_tokens=16_384,
    evals_per_stage=12,
    code_bytes=3_000_000,
    english_bytes=0,
    branch_budgets=(200_000, 400_000, 600_000),
    seeds=(0, 1, 2, 3, 4),
)
#: A toy size to check the script end to end (``--toy``); its figures mean nothing.
TOY = Scale(
    vocab_size=300,
    n_layer=1,
    n_head=1,
    d_model=16,
    seq_len=16,
    batch_size=2,
    base_tokens=1024,
    stage_tokens=640,
    peak=1e-2,
    eval_tokens=128,
    evals_per_stage=10,
    code_bytes=40_000,
    english_bytes=40_000,
    branch_budgets=(256, 512),
    seeds=(0, 1),
    replay_ratios=(0.0, 0.25),
)
BRANCH_DECAY_FRACTION = 0.2


# --------------------------------------------------------------------------------------------
# Data: three prepared datasets with one shared tokenizer.


def write_english_sources(folder: Path) -> dict[str, Path]:
    """D0 (docstrings) and the weak shift's D1 (help topics) as .jsonl files, one document a
    line: ``stdlib-english`` split into its two parts, each document cut at paragraph
    boundaries into pieces of at most ``DOCUMENT_BYTES`` (so each has many validation
    documents). Deterministic for one Python version."""
    from pydoc_data.topics import topics

    topic_texts = {text for text in topics.values() if text.strip()}
    parts: dict[str, list[str]] = {"docstrings": [], "help-topics": []}
    for document in builtin_documents("stdlib-english"):
        part = "help-topics" if document in topic_texts else "docstrings"
        parts[part].extend(p for p in pack_paragraphs(document, DOCUMENT_BYTES) if p.strip())
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for part, documents in parts.items():
        text = "".join(json.dumps({"text": d}) + "\n" for d in documents)
        paths[part] = folder / f"{part}.jsonl"
        if not paths[part].exists() or paths[part].read_text() != text:
            paths[part].write_text(text)  # fixed content: rewritten only if it differs
    return paths


def prepare_data(out: Path, scale: Scale) -> dict[str, str]:
    """The three datasets (D0, D1-code, D1-topics) under ``out/data``, prepared once."""
    data = out / "data"
    stamp = data / "inputs.json"
    inputs = {
        "python": platform.python_version(),
        "vocab_size": scale.vocab_size,
        "code_bytes": scale.code_bytes,
        "english_bytes": scale.english_bytes,
        "document_bytes": DOCUMENT_BYTES,
    }
    paths = {name: str(data / name) for name in (OLD, *(d for d, _ in SHIFTS.values()))}
    if stamp.exists() and json.loads(stamp.read_text()) == inputs:
        return paths
    english = write_english_sources(data / "sources")
    sources = {
        OLD: (str(english["docstrings"]), scale.english_bytes or None),
        "D1-code": ("stdlib-code", scale.code_bytes),
        "D1-topics": (str(english["help-topics"]), scale.english_bytes or None),
    }
    tokenizer = data / "tokenizer.json"
    print(f"training a {scale.vocab_size}-token BPE on D0 + code + help topics ...", flush=True)
    train_tokenizer(
        [s for s, _ in sources.values()],
        tokenizer,
        scale.vocab_size,
        max_bytes=max(scale.code_bytes, scale.english_bytes) or None,
    )
    for name, (source, max_bytes) in sources.items():
        prepare(
            [source],
            paths[name],
            tokenizer=tokenizer,
            max_bytes=max_bytes,
            overwrite=True,
            progress=False,
        )
    atomic_write_json(stamp, inputs)
    return paths


# --------------------------------------------------------------------------------------------
# Runs: one job per training run, dispatched to worker processes.


def setup_for(scale: Scale, seed: int, datasets: dict[str, str], evals: int) -> Setup:
    """What every run of one seed shares, evaluated ``evals`` times on ``datasets``."""
    return Setup(
        model=scale.model,
        train={
            "batch_size": scale.batch_size,
            "device": "cpu",
            "seed": seed,
            "eval_tokens": scale.eval_tokens,
        },
        eval=dict(datasets),
        eval_points=evals,
    )


def ratio_name(ratio: float) -> str:
    """The run folder of one replay ratio of the sweep (0 is the ``rewarm`` run)."""
    return "rewarm" if ratio == 0 else f"rewarm+replay-{ratio:g}"


#: Job priorities (added to a job's tokens, so the longest of a tier goes first): the bases,
#: then the strong shift's five recipes, the weak shift's, the replay sweep, the branching runs.
#: On a machine slower than planned the runs left undone are then the least important ones.
TIER_STRONG, TIER_WEAK, TIER_SWEEP, TIER_WEAK_SWEEP = 1e12, 1e9, 1e6, -1e9
CORE_FOLDERS = ("finetune", "rewarm", "rewarm+replay-0.25", "infinite+replay", "retrain")


def plan_jobs(out: Path, scale: Scale, paths: dict[str, str]) -> tuple[list[Job], dict[str, dict]]:
    """Every run of the benchmark as a :class:`Job` (its length orders the runs: each seed's
    base first, as everything of that seed waits on it, then by tier, then by tokens) and its
    keyword arguments."""
    jobs: list[Job] = []
    specs: dict[str, dict] = {}
    base_tokens = scale.base_tokens
    for seed in scale.seeds:
        root = out / "runs" / f"seed-{seed}"
        base_setup = setup_for(scale, seed, paths, 2 * scale.evals_per_stage)
        probe = setup_for(scale, seed, {}, 1)
        hold = scale.base_hold_fraction
        pre_anneal = base_schedule(
            probe, probe.whole_steps(base_tokens), scale.peak, hold_fraction=hold
        )[1]
        planned = asdict(planned_base_info(probe, base_tokens, scale.peak, hold_fraction=hold))
        base = f"seed-{seed}/base"
        # Bases first, in seed order: every other run of a seed waits for its base.
        jobs.append(Job(base, 1e15 - seed))
        specs[base] = {
            "kind": "base",
            "setup": asdict(base_setup),
            "out_dir": str(root / "base"),
            "datasets": {OLD: paths[OLD]},
            "tokens": base_tokens,
            "peak": scale.peak,
            "hold_fraction": hold,
        }
        for shift, (new, _) in SHIFTS.items():
            setup = asdict(
                setup_for(scale, seed, {OLD: paths[OLD], new: paths[new]}, scale.evals_per_stage)
            )
            ratios = scale.replay_ratios
            runs: dict[str, dict] = {"finetune": {}, "infinite+replay": {"replay": DEFAULT_REPLAY}}
            for ratio in ratios:
                runs[ratio_name(ratio)] = {"replay": ratio} if ratio else {}
            runs["retrain"] = {}
            for folder, overrides in runs.items():
                recipe = (
                    folder
                    if folder in ("finetune", "infinite+replay", "retrain", "rewarm")
                    else "rewarm+replay"
                )
                name = f"seed-{seed}/{shift}/{folder}"
                after = {base: 1.0}
                if recipe == "infinite+replay":
                    after = {base: pre_anneal / base_tokens}
                elif recipe == "retrain":
                    after = {}
                length = (
                    base_tokens + scale.stage_tokens if recipe == "retrain" else scale.stage_tokens
                )
                core = folder in CORE_FOLDERS
                tier = (TIER_STRONG if shift == "strong" else TIER_WEAK) if core else TIER_SWEEP
                if shift == "weak" and not core:
                    tier = TIER_WEAK_SWEEP  # after the branching runs: "if time allows"
                jobs.append(Job(name, tier + length, after))
                specs[name] = {
                    "kind": "recipe",
                    "recipe": recipe,
                    "label": folder,
                    "setup": setup,
                    "base_dir": str(root / "base"),
                    "old": {OLD: paths[OLD]},
                    "new": {new: paths[new]},
                    "stage_tokens": scale.stage_tokens,
                    "out_dir": str(root / shift / folder),
                    "overrides": overrides,
                    "base": planned if recipe in ("retrain", "infinite+replay") else None,
                }
        branch_setup = asdict(setup_for(scale, seed, {OLD: paths[OLD]}, scale.evals_per_stage))
        budgets = list(scale.branch_budgets)
        wsd_tokens = budgets[-1] * (1 - BRANCH_DECAY_FRACTION) + BRANCH_DECAY_FRACTION * sum(
            budgets
        )
        name = f"seed-{seed}/branching/wsd"
        jobs.append(Job(name, wsd_tokens))
        specs[name] = {
            "kind": "branches",
            "setup": branch_setup,
            "out_dir": str(root / "branching" / "wsd"),
            "datasets": {OLD: paths[OLD]},
            "budgets": budgets,
            "peak": scale.peak,
            "decay_fraction": BRANCH_DECAY_FRACTION,
        }
        for budget in budgets:
            name = f"seed-{seed}/branching/cosine-{budget}"
            jobs.append(Job(name, budget))
            specs[name] = {
                "kind": "cosine",
                "setup": branch_setup,
                "out_dir": str(root / "branching" / f"cosine-{budget}"),
                "train_sets": {OLD: paths[OLD]},
                "budget": budget,
                "peak": scale.peak,
                "smallest": min(budgets),
            }
    return jobs, specs


def run_job(spec: dict[str, Any]) -> dict[str, Any]:
    """Train (or resume, or re-read) one run in this process with one torch thread."""
    import torch

    torch.set_num_threads(1)
    from evertrain.continual import branches, runner

    spec = dict(spec)
    kind = spec.pop("kind")
    setup = Setup(**spec.pop("setup"))
    started = time.perf_counter()
    if kind == "base":
        runner.train_base(setup, progress=False, **spec)
    elif kind == "recipe":
        base = runner.R.BaseModelInfo(**spec["base"]) if spec["base"] else None
        runner.run_recipe(
            spec["recipe"],
            setup,
            base_dir=spec["base_dir"],
            old=spec["old"],
            new=spec["new"],
            stage_tokens=spec["stage_tokens"],
            out_dir=spec["out_dir"],
            progress=False,
            base=base,
            **spec["overrides"],
        )
        # Each ratio of the sweep is its own run: its folder's name, not only the recipe's.
        continual_runs.write_meta(spec["out_dir"], name=spec["label"])
    elif kind == "branches":
        branches.run_branches(setup, progress=False, **spec)
    else:  # a separate cosine run of one budget, the same warmup as the branches
        tokens = setup.whole_steps(spec["budget"])
        schedule = runner.R.rewarm_schedule(
            peak=spec["peak"],
            tokens=tokens,
            warmup_fraction=0.02 * spec["smallest"] / tokens,
            floor_fraction=0.1,
            decay_shape="cosine",
        )
        config = runner.stage_config(
            setup,
            out_dir=spec["out_dir"],
            schedule=schedule,
            tokens=tokens,
            mixture={OLD: 1.0},
            train_sets=spec["train_sets"],
        )
        runner.run_stage(
            config,
            name=Path(spec["out_dir"]).name,
            recipe="cosine",
            old=[],
            new=[OLD],
            progress=False,
        )
    return {"seconds": time.perf_counter() - started}


def dispatch(jobs: list[Job], specs: dict[str, dict], workers: int, out: Path) -> None:
    """Run every job, a free worker taking the longest whose dependencies are met
    (:func:`evertrain.continual.jobs.next_job`); ``infinite+replay`` and ``retrain`` need only
    the base's pre-anneal checkpoint or nothing. A failed run is reported and the others go on;
    the benchmark then stops with the failures listed (run it again to retry them)."""
    pending, done, failed = list(jobs), set(), {}

    def reached(name: str, fraction: float) -> bool:
        if name in done:
            return True
        if fraction >= 1 or name in failed:
            return False
        base_dir = Path(specs[name]["out_dir"])
        meta = base_dir / continual_runs.META_FILE
        if not meta.exists():
            return False
        pre = json.loads(meta.read_text()).get("pre_anneal_checkpoint")
        return bool(pre) and (base_dir / "checkpoints" / pre / "meta.json").is_file()

    def ready(job: Job) -> bool:
        return all(reached(n, f) for n, f in job.after.items())

    def log(message: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)

    started = time.perf_counter()
    if workers == 1:
        while pending:
            job = next_job(pending, ready)
            if job is None:
                break
            pending.remove(job)
            _run_logged(job.name, specs[job.name], done, failed, log)
    else:
        context = multiprocessing.get_context("spawn")
        running: dict[str, Future] = {}
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            while pending or running:
                for name, future in list(running.items()):
                    if future.done():
                        del running[name]
                        try:
                            seconds = future.result()["seconds"]
                            done.add(name)
                            log(f"done {name} ({seconds:.0f} s; {len(done)}/{len(jobs)})")
                        except Exception as error:  # noqa: BLE001 - reported, retried next time
                            failed[name] = f"{type(error).__name__}: {error}"
                            log(f"FAILED {name}: {failed[name]}")
                while pending and len(running) < workers:
                    job = next_job(pending, ready)
                    if job is None:
                        break
                    pending.remove(job)
                    log(f"start {job.name}")
                    running[job.name] = pool.submit(run_job, specs[job.name])
                if not running and pending and next_job(pending, ready) is None:
                    break  # what is left waits on a failed run
                time.sleep(0.5)
    blocked = [job.name for job in pending]
    log(f"all runs: {time.perf_counter() - started:.0f} s")
    if failed or blocked:
        lines = [f"{name}: {why}" for name, why in failed.items()]
        lines += [f"{name}: not run (waits on a failed run)" for name in blocked]
        raise SystemExit(
            "benchmark runs failed (run the same command again to retry):\n" + "\n".join(lines)
        )


def _run_logged(name: str, spec: dict, done: set, failed: dict, log: Any) -> None:
    log(f"start {name}")
    try:
        seconds = run_job(spec)["seconds"]
        done.add(name)
        log(f"done {name} ({seconds:.0f} s)")
    except Exception as error:  # noqa: BLE001 - reported at the end
        traceback.print_exc()
        failed[name] = f"{type(error).__name__}: {error}"


# --------------------------------------------------------------------------------------------
# Summary: everything read back from the run folders.


def spread(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for a single value) of ``values``."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def eval_curve(run: continual_runs.Run, dataset: str) -> list[tuple[int, float]]:
    """(tokens, loss on ``dataset``) at every evaluation of ``run``."""
    return [
        (int(r["tokens"]), float(r["eval"][dataset]))
        for r in run.eval_records
        if dataset in r["eval"]
    ]


def loss_near(curve: list[tuple[int, float]], tokens: float) -> tuple[int, float]:
    """The evaluation closest to ``tokens``."""
    return min(curve, key=lambda point: abs(point[0] - tokens))


def base_summary(base: continual_runs.Run) -> dict[str, Any]:
    """The base's final losses, its pre-anneal point and how flat its D0 loss is at the end."""
    curve = eval_curve(base, OLD)
    tokens = base.tokens
    pre_tokens = int(base.meta["pre_anneal_tokens"])
    at_80, loss_80 = loss_near(curve, 0.8 * tokens)
    pre = continual_runs.eval_at_tokens(base, pre_tokens) or dict(
        [(OLD, loss_near(curve, pre_tokens)[1])]
    )
    at_pre80, loss_pre80 = loss_near(curve, 0.8 * pre_tokens)
    final = base.final_eval
    # where the anneal ends and the hold at the floor LR begins: the boundary of the recorded
    # join (runner.base_schedule); without a hold the anneal ends with the run
    schedule = base.config.get("schedule") or {}
    held = schedule.get("name") == "join"
    loss_anneal_end = loss_near(curve, schedule["boundaries"][0])[1] if held else final[OLD]
    return {
        "tokens": tokens,
        "final": final,
        "pre_anneal_tokens": pre_tokens,
        "pre_anneal": pre,
        "flat": (loss_80 - final[OLD]) / loss_80,
        "flat_from_tokens": at_80,
        # the same measure over the constant-LR phase alone (the last 20 % before the anneal)
        "flat_constant_lr": (loss_pre80 - pre[OLD]) / loss_pre80,
        "anneal_gain": (pre[OLD] - loss_anneal_end) / pre[OLD],
        # the hold at the floor LR after the anneal (0 without one)
        "hold_gain": (loss_anneal_end - final[OLD]) / loss_anneal_end,
        "params": int(base.meta.get("params", 0)),
        "wall_seconds": base.wall_seconds,
    }


def shift_summary(
    runs_by_seed: dict[int, dict[str, continual_runs.Run]],
    bases: dict[int, dict[str, Any]],
    new: str,
    folders: list[str],
) -> dict[str, Any]:
    """Per-run means/stds over seeds of one shift: losses, forgetting from both references."""
    table: dict[str, Any] = {}
    for folder in folders:
        per_seed: dict[str, list[float]] = {}
        for seed, seed_runs in runs_by_seed.items():
            if folder not in seed_runs:
                continue  # not finished (the benchmark was stopped): the row says how many seeds
            run = seed_runs[folder]
            after = run.final_eval
            base = bases[seed]
            d0_curve = [loss for _, loss in eval_curve(run, OLD)]
            values = {
                "seed": seed,
                "loss_old": after[OLD],
                "loss_new": after[new],
                "loss_avg": (after[OLD] + after[new]) / 2,
                "tokens": float(run.tokens),
                "forgetting_vs_base_final": after[OLD] - base["final"][OLD],
                "peak_forgetting_vs_base_final": max(d0_curve) - base["final"][OLD],
                "wall_seconds": run.wall_seconds or math.nan,
            }
            if run.meta.get("recipe") == "infinite+replay":
                fork = stage_outcome(run).before[OLD]
                values["forgetting_vs_fork"] = after[OLD] - fork
                values["peak_forgetting_vs_fork"] = max(d0_curve) - fork
            for key, value in values.items():
                per_seed.setdefault(key, []).append(value)
        if not per_seed:
            continue
        row: dict[str, Any] = {"seeds": len(per_seed["loss_avg"])}
        for key, values in per_seed.items():
            if key == "seed":
                continue
            stats = spread(values)
            row[key] = stats["mean"] if key != "tokens" else int(stats["mean"])
            if key not in ("tokens", "wall_seconds", "seed"):
                row[f"{key}_std"] = stats["std"]
        row["per_seed_loss_avg"] = dict(zip(per_seed["seed"], per_seed["loss_avg"], strict=True))
        table[folder] = row
    return table


def mean_curves(
    runs_by_seed: dict[int, dict[str, continual_runs.Run]], datasets: list[str], folders: list[str]
) -> dict[str, Any]:
    """Seed-mean loss curves of each run (the seeds evaluate at the same tokens)."""
    curves: dict[str, Any] = {}
    for folder in folders:
        entry: dict[str, Any] = {}
        for dataset in datasets:
            per_seed = [
                eval_curve(seed_runs[folder], dataset)
                for seed_runs in runs_by_seed.values()
                if folder in seed_runs
            ]
            if not per_seed:
                break
            length = min(len(c) for c in per_seed)
            entry["tokens"] = [per_seed[0][i][0] for i in range(length)]
            entry[dataset] = [statistics.fmean(c[i][1] for c in per_seed) for i in range(length)]
        if entry:
            curves[folder] = entry
    return curves


def verdict(gaps: list[float]) -> dict[str, Any]:
    """A paired difference (per seed) judged on its mean, with its spread: inside one standard
    deviation of zero is called no difference."""
    stats = spread(gaps)
    if abs(stats["mean"]) <= stats["std"]:
        reading = "no difference (inside the spread)"
    else:
        reading = "lower" if stats["mean"] < 0 else "higher"
    return {"mean": stats["mean"], "std": stats["std"], "per_seed": gaps, "reading": reading}


def criterion(
    table: dict[str, Any], runs_by_seed: dict[int, dict[str, continual_runs.Run]], new: str
) -> dict[str, Any]:
    """Is the best replay recipe within 1 % of retrain's average loss at <= 60 % of its tokens
    (judged on the seed means; the per-seed paired gap and its spread shown)?"""
    replay = [k for k in (ratio_name(DEFAULT_REPLAY), "infinite+replay") if k in table]
    if not replay or "retrain" not in table:
        return None
    best = min(replay, key=lambda k: table[k]["loss_avg"])
    gap = table[best]["loss_avg"] / table["retrain"]["loss_avg"] - 1
    share = table[best]["tokens"] / table["retrain"]["tokens"]
    ours, theirs = table[best]["per_seed_loss_avg"], table["retrain"]["per_seed_loss_avg"]
    per_seed = [ours[seed] / theirs[seed] - 1 for seed in ours if seed in theirs]
    return {
        "best_replay_recipe": "rewarm+replay" if best == ratio_name(DEFAULT_REPLAY) else best,
        "loss_gap_vs_retrain": gap,
        "loss_gap_vs_retrain_paired": verdict(per_seed),
        "tokens_vs_retrain": share,
        "within_1pct_at_most_60pct_tokens": bool(gap <= 0.01 and share <= 0.6),
    }


def recipe_table(table: dict[str, Any]) -> dict[str, Any]:
    """The five recipe rows (``rewarm+replay`` is the 25 % replay run of the sweep)."""
    rows = {}
    for recipe in RECIPES:
        folder = ratio_name(DEFAULT_REPLAY) if recipe == "rewarm+replay" else recipe
        if folder not in table:
            continue
        rows[recipe] = {k: v for k, v in table[folder].items() if k != "per_seed_loss_avg"}
        if recipe != "retrain" and "retrain" in table:
            ours, theirs = table[folder]["per_seed_loss_avg"], table["retrain"]["per_seed_loss_avg"]
            # paired per seed (the same seed's retrain), so the base's seed-to-seed spread cancels
            rows[recipe]["loss_avg_vs_retrain"] = verdict(
                [ours[seed] / theirs[seed] - 1 for seed in ours if seed in theirs]
            )
    return rows


def forgetting_table(table: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """Forgetting of every recipe from the base's final checkpoint, and from its own fork point
    where that differs (``infinite+replay``: the pre-anneal checkpoint), each labelled."""
    out = {}
    for recipe, row in recipe_table(table).items():
        entry = {
            "vs_base_final": {
                "mean": row["forgetting_vs_base_final"],
                "std": row["forgetting_vs_base_final_std"],
                "peak_mean": row["peak_forgetting_vs_base_final"],
                "peak_std": row["peak_forgetting_vs_base_final_std"],
                "reference": f"the base's final (annealed) checkpoint, {base['tokens']:,} tokens",
            }
        }
        if "forgetting_vs_fork" in row:
            entry["vs_fork_point"] = {
                "mean": row["forgetting_vs_fork"],
                "std": row["forgetting_vs_fork_std"],
                "peak_mean": row["peak_forgetting_vs_fork"],
                "peak_std": row["peak_forgetting_vs_fork_std"],
                "reference": "the base's pre-anneal (constant-LR) checkpoint it forks from, "
                f"{base['pre_anneal_tokens']:,} tokens",
            }
        if recipe == "retrain":
            entry["vs_base_final"]["note"] = (
                "retrain does not continue the base: its D0 loss minus the base's, for comparison"
            )
            # its curve starts at a random model's loss: a "peak rise" means nothing there
            entry["vs_base_final"]["peak_mean"] = entry["vs_base_final"]["peak_std"] = None
        out[recipe] = entry
    return out


def finished(run_dir: Path) -> bool:
    """Whether the continual runner recorded ``run_dir`` as finished."""
    meta = run_dir / continual_runs.META_FILE
    return meta.is_file() and bool(json.loads(meta.read_text()).get("finished"))


def branching_summary(
    root_by_seed: dict[int, Path], budgets: tuple[int, ...]
) -> dict[str, Any] | None:
    """WSD decay branches vs separate cosine runs on D0: seed means and stds, total compute
    (None when no seed finished them)."""
    if not root_by_seed:
        return None
    wsd: dict[int, list[float]] = {b: [] for b in budgets}
    cosine: dict[int, list[float]] = {b: [] for b in budgets}
    totals = {"wsd_branches": 0, "cosine_runs": 0}
    for index, root in enumerate(root_by_seed.values()):
        main = continual_runs.load_run(root / "wsd" / "main")
        decays = sorted(
            (p for p in (root / "wsd").iterdir() if p.name.startswith("decay-")),
            key=lambda p: int(p.name.split("-")[1]),
        )
        for budget, path in zip(sorted(budgets), decays, strict=True):
            run = continual_runs.load_run(path)
            wsd[budget].append(run.final_eval[OLD])
            cos = continual_runs.load_run(root / f"cosine-{budget}")
            cosine[budget].append(cos.final_eval[OLD])
            if index == 0:
                totals["wsd_branches"] += run.tokens
                totals["cosine_runs"] += cos.tokens
        if index == 0:
            totals["wsd_branches"] += main.tokens
    paired = {
        str(b): verdict([w - c for w, c in zip(wsd[b], cosine[b], strict=True)]) for b in budgets
    }
    return {
        "dataset": OLD,
        "budgets": list(budgets),
        "decay_fraction": BRANCH_DECAY_FRACTION,
        "seeds": len(root_by_seed),
        "wsd_branches": {str(b): spread(wsd[b]) for b in budgets},
        "cosine_runs": {str(b): spread(cosine[b]) for b in budgets},
        "wsd_minus_cosine": paired,
        "total_tokens": totals,
        "compute_saving": 1 - totals["wsd_branches"] / totals["cosine_runs"],
    }


def summary_paths(out: Path) -> dict[str, str]:
    """The prepared datasets' folders (as :func:`prepare_data` names them)."""
    return {name: str(out / "data" / name) for name in (OLD, *(d for d, _ in SHIFTS.values()))}


def summarise(out: Path, scale: Scale) -> dict[str, Any]:
    """The results JSON (without the demo/machine notes), read from the run folders."""
    runs_root = out / "runs"
    bases = {
        seed: base_summary(continual_runs.load_run(runs_root / f"seed-{seed}" / "base"))
        for seed in scale.seeds
        if finished(runs_root / f"seed-{seed}" / "base")
    }
    if not bases:
        raise SystemExit(f"no finished base run under {runs_root}: run the benchmark first")
    missing: list[str] = []
    shifts: dict[str, Any] = {}
    tables: dict[str, dict[str, Any]] = {}
    for shift, (new, label) in SHIFTS.items():
        folders = ["finetune", "infinite+replay", "retrain"]
        folders += [ratio_name(r) for r in scale.replay_ratios]
        runs_by_seed: dict[int, dict[str, continual_runs.Run]] = {}
        for seed in bases:
            runs_by_seed[seed] = {}
            for folder in folders:
                path = runs_root / f"seed-{seed}" / shift / folder
                if finished(path):
                    runs_by_seed[seed][folder] = continual_runs.load_run(path)
                else:
                    missing.append(f"seed-{seed}/{shift}/{folder}")
        table = shift_summary(runs_by_seed, bases, new, folders)
        tables[shift] = table
        base_new = spread([b["final"][new] for b in bases.values()])
        shifts[shift] = {
            "datasets": {"D0": D0_LABEL, "D1": label, "D1_name": new},
            "recipes": recipe_table(table),
            "criterion": criterion(table, runs_by_seed, new),
            "forgetting": forgetting_table(table, next(iter(bases.values()))),
            "base_loss_new": base_new,
            "curves": mean_curves(runs_by_seed, [OLD, new], folders),
        }
    sweeps = {
        shift: {
            f"{ratio:g}": {
                key: tables[shift][ratio_name(ratio)][key]
                for key in (
                    "loss_old",
                    "loss_old_std",
                    "loss_new",
                    "loss_new_std",
                    "loss_avg",
                    "loss_avg_std",
                    "forgetting_vs_base_final",
                    "forgetting_vs_base_final_std",
                )
            }  # fmt: skip
            for ratio in scale.replay_ratios
            if ratio_name(ratio) in tables[shift]
        }
        for shift in SHIFTS
    }
    for shift, sweep in sweeps.items():
        shifts[shift]["replay_sweep"] = sweep
    flat = spread([b["flat"] for b in bases.values()])
    data = {}
    for name, path in summary_paths(out).items():
        manifest = json.loads((Path(path) / "manifest.json").read_text())
        data[name] = {k: manifest["tokens"][k] for k in ("train", "val")}
    base_d0 = spread([b["final"][OLD] for b in bases.values()])
    strong = shifts["strong"]
    return {
        "recipes": strong["recipes"],
        "model_params": next(iter(bases.values()))["params"],
        "seeds": len(bases),
        "missing_runs": missing + [f"seed-{s}/base" for s in scale.seeds if s not in bases],
        "base_flat": flat["mean"],
        "base_flat_detail": {
            "std": flat["std"],
            "per_seed": [b["flat"] for b in bases.values()],
            "criterion": "relative D0 validation-loss improvement over the last 20 % of the "
            "base's tokens (from the evaluation nearest 80 %); flat when < 0.01",
            "flat": bool(flat["mean"] < 0.01),
            "constant_lr_phase": spread([b["flat_constant_lr"] for b in bases.values()]),
            "constant_lr_phase_note": "the same measure over the last 20 % of the tokens before "
            "the release anneal (constant LR)",
            "anneal_gain": spread([b["anneal_gain"] for b in bases.values()]),
            "hold_gain": spread([b["hold_gain"] for b in bases.values()]),
            "hold_gain_note": "relative D0 improvement over the hold at the floor LR after the "
            "anneal (the last base_hold_fraction of the tokens; base_flat's window lies inside it)",
            "anneal_gain_note": "relative D0 improvement of the release anneal (10 % of the "
            "base's tokens, from its pre-anneal checkpoint to the anneal's end): the part of the "
            "base's loss that any stage at a higher LR gives back",
        },
        "criterion": strong["criterion"],
        "forgetting": strong["forgetting"],
        "replay_sweep": sweeps["strong"],
        "replay_sweep_weak": sweeps["weak"],
        "shifts": shifts,
        "base": {
            "tokens": next(iter(bases.values()))["tokens"],
            "pre_anneal_tokens": next(iter(bases.values()))["pre_anneal_tokens"],
            "loss_old": base_d0["mean"],
            "loss_old_std": base_d0["std"],
            "loss_old_pre_anneal": spread([b["pre_anneal"][OLD] for b in bases.values()]),
            "wall_seconds": spread([b["wall_seconds"] or 0.0 for b in bases.values()]),
        },
        "branching": branching_summary(
            {
                seed: runs_root / f"seed-{seed}" / "branching"
                for seed in scale.seeds
                if all(
                    finished(runs_root / f"seed-{seed}" / "branching" / name)
                    for name in ["wsd/main", *(f"cosine-{b}" for b in scale.branch_budgets)]
                )
                and len(list((runs_root / f"seed-{seed}" / "branching" / "wsd").glob("decay-*/")))
                == len(scale.branch_budgets)
                and all(
                    finished(p)
                    for p in (runs_root / f"seed-{seed}" / "branching" / "wsd").glob("decay-*")
                )
            },
            scale.branch_budgets,
        ),
        "data": {
            "train_and_val_tokens": data,
            "epochs_of_train_split": {
                "base_on_D0": scale.base_tokens / data[OLD]["train"],
                **{
                    f"stage_on_{new}": scale.stage_tokens / data[new]["train"]
                    for new, _ in SHIFTS.values()
                },
            },
        },
        "scale": {
            **asdict(scale),
            "tokens_per_parameter_base": next(iter(bases.values()))["tokens"]
            / max(1, next(iter(bases.values()))["params"]),
        },
    }


def _pct(value: float) -> str:
    return f"{100 * value:+.2f}%"


def reading_notes(payload: dict[str, Any]) -> list[str]:
    """What the figures say, in sentences written from the figures themselves (so a re-run
    cannot leave a stale reading behind)."""
    notes = []
    flat, detail = payload["base_flat"], payload["base_flat_detail"]
    notes.append(
        f"base_flat = {flat:.4f} ± {detail['std']:.4f}: the base's D0 loss improved "
        f"{100 * flat:.1f}% over its last 20% of tokens, "
        + ("flat by the < 1% criterion" if flat < 0.01 else "NOT flat by the < 1% criterion")
        + f"; for scale, the constant-LR phase's last 20% gave "
        f"{100 * detail['constant_lr_phase']['mean']:.1f}%, the release anneal "
        f"{100 * detail['anneal_gain']['mean']:.1f}% and the whole hold at the floor LR after it "
        f"{100 * detail['hold_gain']['mean']:.1f}%"
    )
    for shift, entry in payload["shifts"].items():
        curves = entry["curves"].get("finetune")
        forgetting = entry["forgetting"].get("finetune")
        if curves and forgetting:
            base_d0 = payload["base"]["loss_old"]
            d0 = curves[OLD]
            sign = "positive" if forgetting["vs_base_final"]["mean"] > 0 else "NOT positive"
            notes.append(
                f"{shift} shift: finetune's forgetting on D0 vs the base's final checkpoint is "
                f"{forgetting['vs_base_final']['mean']:+.4f} ± {forgetting['vs_base_final']['std']:.4f} "
                f"({sign}); its seed-mean D0 curve goes {base_d0:.3f} (base) -> {d0[0]:.3f} "
                f"(first evaluation) -> min {min(d0):.3f} / max {max(d0):.3f} -> {d0[-1]:.3f} (end)"
            )
        crit = entry["criterion"]
        if crit:
            paired = crit["loss_gap_vs_retrain_paired"]
            notes.append(
                f"{shift} shift: best replay recipe {crit['best_replay_recipe']} vs retrain: "
                f"{_pct(crit['loss_gap_vs_retrain'])} average loss (paired per seed "
                f"{_pct(paired['mean'])} ± {100 * paired['std']:.2f}%: {paired['reading']}) at "
                f"{100 * crit['tokens_vs_retrain']:.0f}% of its tokens; within 1% at <= 60%: "
                f"{crit['within_1pct_at_most_60pct_tokens']}"
            )
    if payload.get("missing_runs"):
        notes.append(
            f"{len(payload['missing_runs'])} run(s) did not finish in the time box and are left "
            "out of the means: see missing_runs"
        )
    return notes


def _cell(row: dict[str, Any], key: str, digits: int = 3) -> str:
    std = row.get(f"{key}_std")
    value = row.get(key)
    if value is None:
        return "–"
    return f"{value:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{value:.{digits}f}"


def markdown_tables(payload: dict[str, Any]) -> str:
    """The README's tables (seed means ± sample std) from a results file."""
    lines = []
    for shift, entry in payload["shifts"].items():
        lines += [
            f"{shift}: D0 = {entry['datasets']['D0']} → D1 = {entry['datasets']['D1']}",
            "",
            "| recipe | loss D0 | loss D1 | average | average vs retrain (paired) | D0 forgetting vs base final | vs own fork |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for name, row in entry["recipes"].items():
            forgetting = entry["forgetting"][name]
            fork = forgetting.get("vs_fork_point")
            paired = row.get("loss_avg_vs_retrain")
            gap = (
                f"{_pct(paired['mean'])} ± {100 * paired['std']:.2f}%"
                + ("" if paired["reading"] in ("lower", "higher") else " (no difference)")
                if paired
                else ""
            )
            lines.append(
                f"| `{name}` | {_cell(row, 'loss_old')} | {_cell(row, 'loss_new')} | "
                f"{_cell(row, 'loss_avg')} | {gap} | "
                f"{forgetting['vs_base_final']['mean']:+.3f} ± {forgetting['vs_base_final']['std']:.3f} | "
                + (f"{fork['mean']:+.3f} ± {fork['std']:.3f}" if fork else "")
                + " |"
            )
        lines.append("")
    for shift, entry in payload["shifts"].items():
        lines += [
            f"replay sweep ({shift} shift, `rewarm` + replay ratio)",
            "",
            "| replay | loss D0 | loss D1 | average | D0 forgetting vs base final |",
            "| --- | --- | --- | --- | --- |",
        ]
        for ratio, row in entry.get("replay_sweep", {}).items():
            lines.append(
                f"| {ratio} | {_cell(row, 'loss_old')} | {_cell(row, 'loss_new')} | "
                f"{_cell(row, 'loss_avg')} | {_cell(row, 'forgetting_vs_base_final')} |"
            )
        lines.append("")
    branching = payload.get("branching")
    if branching:
        lines += [
            "",
            "| budget | WSD branch D0 | cosine run D0 | branch − cosine |",
            "| --- | --- | --- | --- |",
        ]
        for budget in branching["budgets"]:
            w, c = branching["wsd_branches"][str(budget)], branching["cosine_runs"][str(budget)]
            d = branching["wsd_minus_cosine"][str(budget)]
            lines.append(
                f"| {budget:,} | {w['mean']:.3f} ± {w['std']:.3f} | {c['mean']:.3f} ± "
                f"{c['std']:.3f} | {d['mean']:+.3f} ± {d['std']:.3f}"
                + (" |" if d["reading"] in ("lower", "higher") else " (no difference) |")
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", default=os.path.join(tempfile.gettempdir(), "evertrain-bench-continual-v3")
    )
    parser.add_argument("--workers", type=int, default=2, help="parallel runs (one thread each)")
    parser.add_argument("--results", default=str(RESULTS), help="the JSON file to write")
    parser.add_argument(
        "--skip-demo", action="store_true", help="accepted for old commands; the demo is not timed"
    )
    parser.add_argument(
        "--tables", action="store_true", help="print the README's tables from --results and exit"
    )
    parser.add_argument(
        "--summary-only", action="store_true", help="only re-read finished runs and write the JSON"
    )
    parser.add_argument(
        "--toy",
        action="store_true",
        help="tiny sizes, to check the script (prints, no results file)",
    )
    args = parser.parse_args()
    if args.workers < 1:
        print(f"--workers {args.workers} must be >= 1", file=sys.stderr)
        raise SystemExit(2)
    out = Path(args.out)
    scale = TOY if args.toy else BENCH
    results_path = Path(args.results)
    existing = json.loads(results_path.read_text()) if results_path.exists() else {}
    if args.tables:
        print(markdown_tables(existing))
        return
    started = time.perf_counter()
    wall_started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    paths = prepare_data(out, scale)
    if not args.summary_only:
        jobs, specs = plan_jobs(out, scale, paths)
        print(f"{len(jobs)} runs on {args.workers} worker(s) into {out}", flush=True)
        dispatch(jobs, specs, args.workers, out)
    payload = summarise(out, scale)
    payload["notes"] = reading_notes(payload)
    payload.update(
        {
            # the plain demo is not re-timed here: the value measured earlier is kept
            "demo_seconds": existing.get("demo_seconds"),
            "demo_seconds_note": existing.get("demo_seconds_note"),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "workers": args.workers,
                "torch_threads_per_run": 1,
                "note": "2-core machine shared with 7 other agents' work (tests, small runs) "
                "while measuring: wall times are of a busy machine",
            },
            "benchmark_seconds": time.perf_counter() - started,
            "benchmark_started": wall_started,
            "command": "python benchmarks/continual.py" + (" --toy" if args.toy else ""),
        }
    )
    if args.toy:
        print(json.dumps(payload, indent=2))
        return
    atomic_write_json(results_path, payload)
    print(json.dumps(payload["criterion"], indent=2))
    print(f"wrote {results_path}")


if __name__ == "__main__":
    sys.exit(main())
