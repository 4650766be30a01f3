"""Which method reaches a loss first? A time-to-target harness in the spirit of AlgoPerf, at CPU scale.

    python benchmarks/methods.py                  # ~40 min on 2 cores; writes results/methods.json
    python benchmarks/methods.py --toy --workers 1   # tiny sizes (~1 min), prints, writes nothing

Every run goes through the library (``evertrain.data`` prepares the corpora, ``evertrain.train``
trains, ``evertrain.schedules`` builds every schedule, ``evertrain.tune.ray_pbt`` runs PBT).

**Workloads** (evertrain's GPT, 512-token BPE trained on both corpora, batch 16 x 64 tokens):
``english-2x32`` (the standard library's English docstrings, 2 layers x 32 wide), ``code-2x32``
(the standard library's source code, same model) and ``english-4x48`` (English, 4 layers x 48).

**Target** of a workload: cosine (5 % linear warmup, decay to 0) with a *larger* tuning budget,
the :data:`TARGET_PEAKS` grid at seed 0 over ``target_tokens``; the best peak is re-run at two
more seeds, and the target is the median of the three final validation losses.

**Methods** train for ``run_tokens`` = 1.5 x ``target_tokens`` (a method may reach the target
before its end; AlgoPerf's runtime budget is likewise larger than the target-setting runs'). Each
fixed-schedule method gets the same small tuning budget: the three peaks :data:`TUNING_PEAKS` at
seed 0; the peak whose trial reaches the target first (or, if none does, has the lowest loss) is
re-run at seeds 1 and 2, and the method's ``tokens_to_target`` is the median over the three seeds
of the tokens at the first evaluation at or below the target (null when the median seed misses).

- ``cosine``, ``linear``: warmup, decay to 0 at the run's end;
- ``wsd-1sqrt``: warmup, constant, 1-sqrt cooldown over the last 20 %;
- ``constant+lawa``: warmup, constant LR, no decay; the model is LAWA's average of the last 5
  snapshots taken every 4 % of the run (``eval_avg``);
- ``schedulefree-adamw``: schedule-free AdamW, warmup then constant (its ``x`` is evaluated);
- ``refined``: refined from the gradient norms of the ``linear`` trial at the same peak and
  seed 0 (Defazio et al. 2023); that pilot run is the ``linear`` method's own tuning trial, so
  its tokens are not charged again;
- ``uba``: the unified budget-aware schedule with ``phi`` = :data:`UBA_PHI`, not tuned;
- ``autolrs`` (self-tuning: no peak grid): ``schedule: {name: auto}`` over [1e-3, 3e-2], three
  seeds; its candidate trials are counted in its tokens;
- ``pbt`` (self-tuning): a population of 4 on local Ray, constant LR with warmup, peak perturbed
  every sixth of the run, one seed; its tokens are the population's (4 x the tokens at which the
  first member reaches the target).

**Score**: AlgoPerf's performance profile. For workload w, method m's ratio is
``r = tokens_to_target(m, w) / min_m tokens_to_target(m, w)`` (infinite when m misses);
``rho_m(tau)`` is the fraction of workloads with ``r <= tau``, and the score is the area under
``rho_m`` over ``tau`` in [1, 4] divided by 3 (1: fastest everywhere; 0: never within 4x).
CPU seconds are secondary: the logged seconds of the training steps up to the target (evaluation
excluded; AutoLRS's search and PBT's population charged in proportion to their tokens).

Rerun with the same ``--out`` to continue: finished runs are re-read (a run folder is reused only
when its ``done.json`` holds the same config), unfinished ones start over.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import platform
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evertrain import _yaml
from evertrain._atomic import atomic_write_json, atomic_write_text

RESULTS = Path(__file__).parent / "results" / "methods.json"
PLOT = Path(__file__).parent / "results" / "methods_profiles.png"
AUTOTUNE = Path(__file__).parent / "results" / "autotune.json"
TUNING_PEAKS = (3e-3, 1e-2, 3e-2)
TARGET_PEAKS = (1e-3, 2e-3, 3e-3, 5e-3, 1e-2, 2e-2, 3e-2)
SEEDS = (0, 1, 2)
UBA_PHI = 1.0
TAU_MAX = 4.0
FIXED = ("cosine", "linear", "wsd-1sqrt", "constant+lawa", "schedulefree-adamw", "refined", "uba")
SELF_TUNING = ("autolrs", "pbt")
METHODS = FIXED + SELF_TUNING


@dataclass(frozen=True)
class Workload:
    name: str
    data: str  # "english" or "code"
    n_layer: int
    n_head: int
    d_model: int


@dataclass(frozen=True)
class Scale:
    """Every size of one harness run."""

    vocab_size: int
    max_bytes: int
    seq_len: int
    batch_size: int
    target_tokens: int
    evals: int  # evaluations over a method's run
    eval_tokens: int
    autolrs_stages: int
    autolrs_horizon: int
    pbt_population: int
    workloads: tuple[Workload, ...]
    seeds: tuple[int, ...] = SEEDS

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    @property
    def run_tokens(self) -> int:
        return self.target_tokens * 3 // 2

    @property
    def warmup_tokens(self) -> int:
        return self.target_tokens // 20


WORKLOADS = (
    Workload("english-2x32", "english", 2, 2, 32),
    Workload("code-2x32", "code", 2, 2, 32),
    Workload("english-4x48", "english", 4, 4, 48),
)
BENCH = Scale(512, 3_000_000, 64, 16, 409_600, 30, 8192, 10, 10, 4, WORKLOADS)
TOY = Scale(300, 60_000, 16, 4, 6_400, 5, 256, 3, 2, 2,
            (Workload("english-1x16", "english", 1, 1, 16), Workload("code-1x16", "code", 1, 1, 16),
             Workload("english-2x16", "english", 2, 1, 16)), seeds=(0, 1, 2))  # fmt: skip


# --------------------------------------------------------------------------------------------
# Configs


def schedule_spec(method: str, peak: float, scale: Scale, total: int) -> dict[str, Any]:
    """The schedule of a fixed method (all but ``refined``, whose spec comes from a pilot)."""
    common = {"peak": peak, "total": total, "warmup": scale.warmup_tokens, "unit": "tokens"}
    if method == "cosine":
        return {"name": "cosine", **common}
    if method == "linear":
        return {"name": "linear", **common}
    if method == "wsd-1sqrt":
        return {"name": "wsd", **common, "decay_fraction": 0.2, "decay_shape": "1-sqrt"}
    if method == "uba":
        return {"name": "uba", **common, "phi": UBA_PHI}
    if method in ("constant+lawa", "schedulefree-adamw", "pbt"):
        return {"name": "constant", "value": peak, "warmup": scale.warmup_tokens, "unit": "tokens"}
    raise ValueError(method)


def base_config(scale: Scale, workload: Workload, data: dict[str, str], *, out_dir: Path,
                seed: int, schedule: Any, budget: int, evals: int) -> dict[str, Any]:  # fmt: skip
    return {
        "out_dir": str(out_dir),
        "seed": seed,
        "device": "cpu",
        "threads": 1,
        "model": {"n_layer": workload.n_layer, "n_head": workload.n_head,
                  "d_model": workload.d_model, "seq_len": scale.seq_len},
        "data": {"train": {workload.data: data[workload.data]}, "eval_tokens": scale.eval_tokens},
        "schedule": schedule,
        "batch_size": scale.batch_size,
        "budget_tokens": budget,
        "eval_interval_tokens": max(scale.tokens_per_step, budget // evals),
        "checkpoint_interval_tokens": budget,
    }  # fmt: skip


def method_config(method: str, peak: float, seed: int, scale: Scale, workload: Workload,
                  data: dict[str, str], out_dir: Path, refined: dict[str, Any] | None = None
                  ) -> dict[str, Any]:  # fmt: skip
    total = scale.run_tokens
    if method == "refined":
        schedule = refined
    elif method == "autolrs":
        steps = total // scale.tokens_per_step
        warmup = scale.warmup_tokens // scale.tokens_per_step
        schedule = {"name": "auto", "lr_min": min(TUNING_PEAKS) / 3, "lr_max": max(TUNING_PEAKS),
                    "stages": scale.autolrs_stages, "candidates": 3,
                    "horizon": min(scale.autolrs_horizon, (steps - warmup) // scale.autolrs_stages),
                    "warmup": warmup, "unit": "steps"}  # fmt: skip
    else:
        schedule = schedule_spec(method, peak, scale, total)
    cfg = base_config(scale, workload, data, out_dir=out_dir, seed=seed, schedule=schedule,
                      budget=total, evals=scale.evals)  # fmt: skip
    if method == "constant+lawa":
        cfg["averaging"] = {"kind": "lawa", "k": 5, "interval_tokens": max(1, total // 25)}
    if method == "schedulefree-adamw":
        cfg["optimizer"] = {"name": "schedulefree_adamw"}
    return cfg


# --------------------------------------------------------------------------------------------
# Running (one process per run; a finished run folder is re-read)


def _done(out_dir: Path, config: dict[str, Any]) -> bool:
    marker = out_dir / "done.json"
    return marker.exists() and json.loads(marker.read_text()).get("config") == config


def train_one(config: dict[str, Any]) -> str:
    """Train one config into its (fresh) folder unless it is already done; the folder."""
    import torch

    from evertrain.train import TrainConfig, run

    torch.set_num_threads(1)
    out_dir = Path(config["out_dir"])
    if _done(out_dir, config):
        return str(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)  # an interrupted run: start it over (it is minutes at most)
    started = time.process_time()
    run(TrainConfig.model_validate(config), progress=False)
    atomic_write_json(out_dir / "done.json",
                      {"config": config, "cpu_seconds": time.process_time() - started})  # fmt: skip
    return str(out_dir)


def train_all(configs: list[dict[str, Any]], workers: int) -> None:
    todo = [c for c in configs if not _done(Path(c["out_dir"]), c)]
    if not todo:
        return
    print(f"training {len(todo)} runs ({len(configs) - len(todo)} done already) ...", flush=True)
    if workers <= 1:
        for config in todo:
            train_one(config)
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for folder in pool.map(train_one, todo):
            print(f"  done {folder}", flush=True)


# --------------------------------------------------------------------------------------------
# Reading runs


def _records(folder: Path, kind: str) -> list[dict[str, Any]]:
    from evertrain.train import history

    return history(folder, kind)


def eval_curve(folder: Path, key: str = "eval") -> list[tuple[int, float]]:
    """(tokens, validation loss) of every evaluation; ``key="eval_avg"``: the average's."""
    points = []
    for record in _records(folder, "eval"):
        values = record.get(key)
        if values:
            points.append((int(record["tokens"]), statistics.fmean(values.values())))
    return points


def search_tokens_before(folder: Path) -> list[tuple[int, int]]:
    """AutoLRS: (tokens of the main path, search tokens spent up to then) per stage."""
    return [(int(r["tokens"]), int(r["search_tokens_total"])) for r in _records(folder, "autolrs")]


def train_seconds(folder: Path, up_to_tokens: float) -> float:
    """Seconds of the logged training steps up to ``up_to_tokens`` (evaluation excluded)."""
    seconds, previous = 0.0, 0
    for record in _records(folder, "train"):
        if record["tokens"] > up_to_tokens:
            break
        if record.get("tokens_per_s"):
            seconds += (record["tokens"] - previous) / record["tokens_per_s"]
        previous = record["tokens"]
    return seconds


@dataclass(frozen=True)
class Hit:
    """Where one run reached the target: its own tokens, the charged tokens and CPU seconds."""

    tokens: float  # math.inf when never
    charged: float
    seconds: float
    best_loss: float


def first_hit(curve: list[tuple[int, float]], target: float) -> int | None:
    return next((tokens for tokens, loss in curve if loss <= target), None)


def run_hit(folder: Path, method: str, target: float, population: int = 1) -> Hit:
    if method == "pbt":
        members = sorted((folder / "members").iterdir())
        curves = {m: eval_curve(m) for m in members}
        hits = {m: first_hit(c, target) for m, c in curves.items()}
        reached = {m: t for m, t in hits.items() if t is not None}
        best = min(loss for c in curves.values() for _, loss in c)
        if not reached:
            return Hit(math.inf, math.inf, math.inf, best)
        member = min(reached, key=reached.get)
        tokens = reached[member]
        return Hit(tokens, population * tokens, population * train_seconds(member, tokens), best)
    curve = eval_curve(folder, "eval_avg" if method == "constant+lawa" else "eval")
    best = min(loss for _, loss in curve)
    tokens = first_hit(curve, target)
    if tokens is None:
        return Hit(math.inf, math.inf, math.inf, best)
    seconds = train_seconds(folder, tokens)
    charged = float(tokens)
    if method == "autolrs":
        search = max((s for t, s in search_tokens_before(folder) if t <= tokens), default=0)
        seconds *= (tokens + search) / tokens
        charged += search
    return Hit(float(tokens), charged, seconds, best)


def final_loss(folder: Path) -> float:
    return eval_curve(folder)[-1][1]


def median_hit(hits: list[Hit]) -> Hit:
    ordered = sorted(hits, key=lambda h: h.charged)
    return ordered[len(ordered) // 2]


def _number(value: float) -> float | None:
    return None if math.isinf(value) else value


# --------------------------------------------------------------------------------------------
# Performance profiles


def profile_scores(tokens: dict[str, dict[str, float]], tau_max: float = TAU_MAX
                   ) -> tuple[dict[str, float], dict[str, list[tuple[float, float]]]]:  # fmt: skip
    """AlgoPerf's performance-profile scores from ``tokens[method][workload]`` (inf = missed):
    the area under rho_m(tau) over [1, tau_max], divided by tau_max - 1; and each method's
    profile as (tau, rho) steps."""
    methods = list(tokens)
    workloads = sorted({w for row in tokens.values() for w in row})
    ratios: dict[str, list[float]] = {m: [] for m in methods}
    for workload in workloads:
        best = min(tokens[m][workload] for m in methods)
        for m in methods:
            value = tokens[m][workload]
            ratios[m].append(value / best if math.isfinite(value) else math.inf)
    scores, profiles = {}, {}
    for m in methods:
        # rho jumps by 1/len(workloads) at each finite ratio; integrate the step function exactly.
        steps = sorted(min(max(r, 1.0), tau_max) for r in ratios[m] if r <= tau_max)
        area = sum(tau_max - r for r in steps) / len(workloads)
        scores[m] = area / (tau_max - 1.0)
        profiles[m] = [(r, (i + 1) / len(workloads)) for i, r in enumerate(steps)]
    return scores, profiles


def seed_scores(per_seed: dict[str, dict[str, list[float]]], seeds: int) -> dict[str, list[float]]:
    """The score of every method from each seed's runs alone (seed i of every method and
    workload: one "study" each, as AlgoPerf scores studies); a method with fewer runs (PBT: one)
    uses its last for the other seeds. Their spread is the score's seed noise."""
    scores: dict[str, list[float]] = {m: [] for m in per_seed}
    for seed in range(seeds):
        tokens = {m: {w: runs[min(seed, len(runs) - 1)] for w, runs in row.items()}
                  for m, row in per_seed.items()}  # fmt: skip
        for m, score in profile_scores(tokens)[0].items():
            scores[m].append(score)
    return scores


def plot_profiles(profiles: dict[str, list[tuple[float, float]]], path: Path, title: str) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from evertrain._atomic import atomic_write_bytes

    figure, axes = plt.subplots(figsize=(8.4, 4.2))
    styles = ["-", "--", "-.", ":"]
    for index, (method, steps) in enumerate(sorted(profiles.items())):
        taus = [1.0] + [t for t, _ in steps] + [TAU_MAX]
        rhos = [0.0] + [r for _, r in steps] + [steps[-1][1] if steps else 0.0]
        # offset each line a hair so that equal profiles stay visible
        offset = (index - len(profiles) / 2) * 0.006
        axes.step(taus, [r + offset for r in rhos], where="post", label=method,
                  linestyle=styles[index % len(styles)], linewidth=1.6)  # fmt: skip
    axes.set_xlim(1.0, TAU_MAX)
    axes.set_ylim(-0.05, 1.05)
    axes.set_xlabel("tau (tokens to target / fastest method's)")
    axes.set_ylabel("fraction of workloads within tau")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))  # no line hidden
    axes.grid(alpha=0.3)
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=120)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


# --------------------------------------------------------------------------------------------
# The harness


def prepare_data(out: Path, scale: Scale) -> dict[str, str]:
    from evertrain.data import prepare, train_tokenizer

    data = out / "data"
    stamp = data / "inputs.json"
    inputs = {"python": platform.python_version(), "vocab_size": scale.vocab_size,
              "max_bytes": scale.max_bytes}  # fmt: skip
    paths = {"english": str(data / "english"), "code": str(data / "code")}
    if stamp.exists() and json.loads(stamp.read_text()) == inputs:
        return paths
    sources = {"english": "stdlib-english", "code": "stdlib-code"}
    tokenizer = train_tokenizer(list(sources.values()), data / "tokenizer.json", scale.vocab_size,
                                max_bytes=scale.max_bytes)  # fmt: skip
    for name, source in sources.items():
        prepare([source], paths[name], tokenizer=tokenizer, max_bytes=scale.max_bytes,
                progress=False, overwrite=True)  # fmt: skip
    atomic_write_json(stamp, inputs)
    return paths


def refined_spec(pilot: Path, peak: float, scale: Scale) -> dict[str, Any]:
    from evertrain.schedules.refine import refine_from_norms
    from evertrain.schedules.refine_input import read_grad_norms

    norms = read_grad_norms(pilot / "log.jsonl", unit="tokens")
    schedule = refine_from_norms(norms.progress, norms.grad_norms, peak=peak, knots=64,
                                 warmup=scale.warmup_tokens, unit="tokens",
                                 source=str(pilot / "log.jsonl"))  # fmt: skip
    return schedule.to_spec()


def run_pbt(out: Path, scale: Scale, workload: Workload, data: dict[str, str]) -> Path:
    from evertrain.tune.pbt import prepare
    from evertrain.tune.ray_pbt import run_pbt as ray_run

    folder = out / workload.name / "pbt"
    config = method_config("pbt", TUNING_PEAKS[1], 0, scale, workload, data, folder / "base-run")
    if _done(folder, config):
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    atomic_write_text(folder / "config.yaml", _yaml.dump(config))
    setup = prepare(folder / "config.yaml", out=folder, population=scale.pbt_population,
                    perturb="peak", interval_tokens=scale.run_tokens // 6, seed=0)  # fmt: skip
    started = time.perf_counter()
    ray_run(setup, cpus=2)
    atomic_write_json(folder / "done.json",
                      {"config": config, "wall_seconds": time.perf_counter() - started})  # fmt: skip
    return folder


def measure(out: Path, scale: Scale, workers: int, pbt: bool) -> dict[str, Any]:
    started = time.perf_counter()
    data = prepare_data(out, scale)

    def folder(workload: Workload, method: str, peak: float | None, seed: int) -> Path:
        tag = "self" if peak is None else f"peak{peak:g}"
        return out / workload.name / method / f"{tag}-seed{seed}"

    def config(workload: Workload, method: str, peak: float | None, seed: int,
               refined: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
        return method_config(method, peak or 0.0, seed, scale, workload, data,
                             folder(workload, method, peak, seed), refined)  # fmt: skip

    def target_config(workload: Workload, peak: float, seed: int) -> dict[str, Any]:
        out_dir = out / workload.name / "target-cosine" / f"peak{peak:g}-seed{seed}"
        spec = schedule_spec("cosine", peak, scale, scale.target_tokens)
        return base_config(scale, workload, data, out_dir=out_dir, seed=seed, schedule=spec,
                           budget=scale.target_tokens, evals=4)  # fmt: skip

    # Phase 1: the target grid and every seed-0 trial that needs no other run first.
    phase1 = []
    for w in scale.workloads:
        phase1 += [target_config(w, p, 0) for p in TARGET_PEAKS]
        phase1 += [config(w, m, p, 0) for m in FIXED if m != "refined" for p in TUNING_PEAKS]
        phase1 += [config(w, "autolrs", None, s) for s in scale.seeds]
    train_all(phase1, workers)

    # Phase 2: the target's other seeds and the refined trials (from the linear pilots).
    targets: dict[str, dict[str, Any]] = {}
    refined_specs: dict[tuple[str, float], dict[str, Any]] = {}
    phase2 = []
    for w in scale.workloads:
        grid = {p: final_loss(Path(target_config(w, p, 0)["out_dir"])) for p in TARGET_PEAKS}
        best_peak = min(grid, key=grid.get)
        targets[w.name] = {"peak": best_peak, "grid_seed0": {f"{p:g}": v for p, v in grid.items()}}
        phase2 += [target_config(w, best_peak, s) for s in scale.seeds[1:]]
        for p in TUNING_PEAKS:
            refined_specs[(w.name, p)] = refined_spec(folder(w, "linear", p, 0), p, scale)
            phase2.append(config(w, "refined", p, 0, refined_specs[(w.name, p)]))
    train_all(phase2, workers)
    for w in scale.workloads:
        peak = targets[w.name]["peak"]
        finals = [final_loss(Path(target_config(w, peak, s)["out_dir"])) for s in scale.seeds]
        targets[w.name].update(target=statistics.median(finals), per_seed=finals)

    # Phase 3: each fixed method's chosen peak at the other seeds.
    chosen: dict[tuple[str, str], float] = {}
    phase3 = []
    for w in scale.workloads:
        target = targets[w.name]["target"]
        for m in FIXED:
            trials = {p: run_hit(folder(w, m, p, 0), m, target) for p in TUNING_PEAKS}
            peak = min(trials, key=lambda p: (trials[p].charged, trials[p].best_loss))
            chosen[(w.name, m)] = peak
            refined = refined_specs[(w.name, peak)] if m == "refined" else None
            phase3 += [config(w, m, peak, s, refined) for s in scale.seeds[1:]]
    train_all(phase3, workers)
    pbt_folders = {w.name: run_pbt(out, scale, w, data) for w in scale.workloads} if pbt else {}

    methods: dict[str, dict[str, Any]] = {}
    charged: dict[str, dict[str, float]] = {}
    per_seed: dict[str, dict[str, list[float]]] = {}
    for m in METHODS:
        if m == "pbt" and not pbt:
            continue
        row: dict[str, Any] = {"tokens_to_target": {}, "cpu_seconds_to_target": {},
                               "per_seed_tokens": {}, "peak": {}, "best_loss": {}}  # fmt: skip
        charged[m], per_seed[m] = {}, {}
        for w in scale.workloads:
            target = targets[w.name]["target"]
            if m == "pbt":
                hits = [run_hit(pbt_folders[w.name], m, target, scale.pbt_population)]
                row["peak"][w.name] = f"perturbed from {TUNING_PEAKS[1]:g}"
            elif m == "autolrs":
                hits = [run_hit(folder(w, m, None, s), m, target) for s in scale.seeds]
                row["peak"][w.name] = "searched"
            else:
                peak = chosen[(w.name, m)]
                hits = [run_hit(folder(w, m, peak, s), m, target) for s in scale.seeds]
                row["peak"][w.name] = peak
            hit = median_hit(hits)
            charged[m][w.name] = hit.charged
            per_seed[m][w.name] = [h.charged for h in hits]
            row["tokens_to_target"][w.name] = _number(hit.charged)
            row["cpu_seconds_to_target"][w.name] = _number(round(hit.seconds, 2))
            row["per_seed_tokens"][w.name] = [_number(h.charged) for h in hits]
            row["best_loss"][w.name] = [round(h.best_loss, 5) for h in hits]
        methods[m] = row
    scores, profiles = profile_scores(charged)
    by_seed = seed_scores(per_seed, len(scale.seeds))
    for m, score in scores.items():
        spread = by_seed[m]
        methods[m] = {"score": round(score, 4), "score_per_seed": [round(v, 4) for v in spread],
                      "score_std": round(statistics.stdev(spread), 4), **methods[m]}  # fmt: skip
    spreads = [max(runs) / min(runs) for m in FIXED for runs in per_seed[m].values()
               if all(math.isfinite(r) for r in runs)]  # fmt: skip
    return {
        "workloads": [w.name for w in scale.workloads],
        "methods": methods,
        "seed_spread": {
            "median_max_over_min": round(statistics.median(spreads), 3) if spreads else None,
            "largest_max_over_min": round(max(spreads), 3) if spreads else None,
            "note": "per fixed-schedule method and workload, the slowest seed's tokens to target "
            "over the fastest's (runs that all reach it): the seed noise of one cell",
        },
        "notes": NOTES,
        "targets": targets,
        "profiles": {m: [[round(t, 4), r] for t, r in steps] for m, steps in profiles.items()},
        "setup": {
            **{k: v for k, v in asdict(scale).items() if k != "workloads"},
            "workloads": [asdict(w) for w in scale.workloads],
            "run_tokens": scale.run_tokens,
            "warmup_tokens": scale.warmup_tokens,
            "tuning_peaks": list(TUNING_PEAKS),
            "target_peaks": list(TARGET_PEAKS),
            "uba_phi": UBA_PHI,
            "threads_per_run": 1,
            "workers": workers,
            "data": "stdlib-english (docstrings) and stdlib-code (source) of the running Python",
        },
        "protocol": __doc__.split("**Target**")[1].split("Rerun with")[0].strip(),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "train_cpu_seconds": round(
            sum(
                json.loads(done.read_text()).get("cpu_seconds", 0.0)
                for done in out.glob("*/*/*/done.json")
            ),
            1,
        ),
        "machine": {
            "python": platform.python_version(),
            "processor": platform.processor(),
            "cpus": multiprocessing.cpu_count(),
        },
    }


NOTES = [
    "Toy scale: GPTs of 41k-150k parameters, 600 optimizer steps of 1,024 tokens, under 1.5 epochs "
    "of 1-1.3M-token corpora, fp32 on CPU. The loss still falls steeply at the end of every run, "
    "so the target is an early-training loss; at scale, targets sit where schedules differ by "
    "much less, and the ranking here need not hold.",
    "Seed noise: a seed changes the init and the data order; one cell's tokens to target vary "
    "across seeds by the seed_spread factors, and score_per_seed shows how much the scores move. "
    "Differences between methods inside that spread are no difference.",
    "Tuning: three peaks half a decade apart for every fixed method, the same for all; the "
    "optimum of a method can fall between them (the target's cosine had seven).",
    "Self-tuning methods pay their search in tokens: AutoLRS's candidate trials (+50 % tokens at "
    "10 stages x 3 candidates x 10 steps), PBT's whole population (4 members). On a cluster PBT's "
    "wall-clock is one member's; its compute is not.",
    "refined is charged only its own run: its pilot is the linear method's tuning trial. Its "
    "schedule ends at the pilot's last logged update, one step before the budget (the trainer "
    "warns; that step runs at LR 0).",
    "uba: evertrain's formula, unverified against the paper (see schedules/uba.py); phi = 1.0, "
    "not tuned.",
    "CPU seconds are secondary: one thread per run, two runs at a time, on a 2-core machine that "
    "other work shared.",
]

RATIO_NOTE = (
    "tokens to the methods.json target, search included (AutoLRS's candidate trials, PBT's whole "
    "population), over the cosine method's (the median of its 3 seeds at the peak its 3-trial "
    "tuning chose; those trials not charged); geometric mean over the workloads where both reach "
    "it; lower is better"
)


def tokens_ratios(payload: dict[str, Any], method: str) -> dict[str, Any]:
    """``method``'s tokens to target (search included) / cosine's, per workload, and their
    geometric mean over the workloads where both reach the target."""
    own = payload["methods"][method]["tokens_to_target"]
    cosine = payload["methods"]["cosine"]["tokens_to_target"]
    per = {w: (own[w] / cosine[w] if own[w] and cosine[w] else None) for w in payload["workloads"]}
    finite = [r for r in per.values() if r is not None]
    mean = math.exp(statistics.fmean(math.log(r) for r in finite)) if finite else None
    return {"value": mean, "per_workload": per}


def tuner_ratios(payload: dict[str, Any], source: str) -> dict[str, Any]:
    """``autolrs_tokens_ratio`` / ``pbt_tokens_ratio`` with their per-workload values and notes,
    as ``autotune.json`` holds them, for the tuners ``payload`` measured."""
    ratios: dict[str, Any] = {}
    for method, key in (("autolrs", "autolrs_tokens_ratio"), ("pbt", "pbt_tokens_ratio")):
        if method in payload["methods"]:
            ratio = tokens_ratios(payload, method)
            ratios[key], ratios[f"{key}_per_workload"] = ratio["value"], ratio["per_workload"]
            ratios[f"{key}_note"] = f"{RATIO_NOTE}; from {source}"
    return ratios


def update_autotune(payload: dict[str, Any], path: Path = AUTOTUNE) -> None:
    record = json.loads(path.read_text()) if path.exists() else {}
    atomic_write_json(path, {**record, **tuner_ratios(payload, RESULTS.name)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--toy", action="store_true", help="tiny sizes; print, write nothing")
    parser.add_argument("--out", type=Path, help="folder for the runs (default: a temp folder)")
    parser.add_argument("--workers", type=int, default=2, help="runs trained at once")
    parser.add_argument("--no-pbt", action="store_true", help="leave PBT (and Ray) out")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    scale = TOY if args.toy else BENCH
    pbt = not args.no_pbt
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        payload = measure(args.out, scale, args.workers, pbt)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            payload = measure(Path(tmp), scale, args.workers, pbt)
    payload["command"] = " ".join(["python", "benchmarks/methods.py", *sys.argv[1:]])
    if not args.toy:
        atomic_write_json(args.results, payload)
        plot_profiles(payload["profiles"], PLOT,
                      f"time-to-target performance profiles, {len(payload['workloads'])} "
                      "workloads (benchmarks/methods.py)")  # fmt: skip
        update_autotune(payload)
    print(json.dumps({m: {"score": v["score"], "tokens_to_target": v["tokens_to_target"]}
                      for m, v in payload["methods"].items()}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
