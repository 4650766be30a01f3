"""``evertrain demo``: the whole continual pre-training story in a few minutes on a laptop CPU.

1. prepares two distributions: D0 = standard-library English (docstrings and help topics) and
   D1 = standard-library code, capped slices of each, with one shared byte-level BPE tokenizer;
2. pre-trains a tiny GPT on D0 with an infinite schedule (warmup → cooldown → constant → a
   short release anneal), pinning the pre-anneal checkpoint;
3. continues it on D1 with ``finetune``, ``rewarm``, ``rewarm+replay`` and ``infinite+replay``
   (each evaluated on both distributions), and trains the ``retrain`` baseline from scratch on
   D0 ∪ D1 with the same total tokens;
4. writes the report (``report/index.html``) and prints its path.

Independent runs go to separate worker processes, one per CPU core (one torch thread each), so
two cores finish in about half the time of one. Everything is resumable: run the same command
again and finished runs are reused.
"""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evertrain._atomic import atomic_write_json
from evertrain.continual.recipes import infinite_schedule
from evertrain.continual.runner import ContinualError, Setup, lr_state

CONTINUAL_RECIPES = ("finetune", "rewarm", "rewarm+replay", "infinite+replay")
DEFAULT_SOURCES = ("stdlib-english", "stdlib-code")


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of one demo; :func:`demo_settings` scales them."""

    scale: float
    vocab_size: int
    max_bytes: int
    n_layer: int
    n_head: int
    d_model: int
    seq_len: int
    batch_size: int
    base_tokens: int
    stage_tokens: int
    peak: float
    eval_tokens: int
    eval_points: int
    seed: int = 0

    @property
    def model(self) -> dict[str, Any]:
        return {
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "d_model": self.d_model,
            "seq_len": self.seq_len,
        }


def demo_settings(scale: float = 1.0) -> DemoSettings:
    """The demo's sizes at ``scale``: tokens grow ×scale, width ×√scale, depth ×scale^¼
    (compute grows roughly ×scale²). ``scale=1`` took 134 s on the 2-core project machine."""
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and 0.05 <= scale <= 1000):
        raise ContinualError(
            f"scale={scale!r} must be a number in [0.05, 1000]; 1 is the default demo"
        )
    d_model = max(64, 64 * round(2 * math.sqrt(scale)))
    tokens = lambda base: int(base * scale)  # noqa: E731
    return DemoSettings(
        scale=float(scale),
        vocab_size=2048,
        max_bytes=max(1_000_000, int(3_000_000 * scale)),
        n_layer=max(1, round(2 * scale**0.25)),
        n_head=max(1, d_model // 32),
        d_model=d_model,
        # Short sequences and a 2e-3 peak learned fastest per CPU-second in a sweep at this size
        # (seq 64/128, batch 8/16, peak 1e-3/2e-3/3e-3/1e-2).
        seq_len=64,
        batch_size=16,
        base_tokens=tokens(240_000),
        stage_tokens=tokens(240_000),
        peak=2e-3,
        eval_tokens=16_384,
        eval_points=3,
    )


@dataclass
class DemoResult:
    out_dir: Path
    report: Path
    seconds: float
    settings: DemoSettings
    runs: dict[str, Path]
    rows: list[dict[str, Any]]


def prepare_data(
    out_dir: Path, sources: tuple[str, str], settings: DemoSettings, *, progress: bool = True
) -> dict[str, str]:
    """A shared tokenizer trained on both sources, then D0 and D1 prepared with it."""
    from evertrain.data import prepare, train_tokenizer

    data_dir = out_dir / "data"
    tokenizer = data_dir / "tokenizer.json"
    stamp = data_dir / "tokenizer.inputs.json"
    inputs = {
        "sources": list(sources),
        "vocab_size": settings.vocab_size,
        "max_bytes": settings.max_bytes,
    }
    if not tokenizer.exists() or not stamp.exists() or json.loads(stamp.read_text()) != inputs:
        if progress:
            print(
                f"training a {settings.vocab_size}-token BPE on {sources[0]} + {sources[1]} ...",
                flush=True,
            )
        train_tokenizer(list(sources), tokenizer, settings.vocab_size, max_bytes=settings.max_bytes)
        atomic_write_json(stamp, inputs)
    paths = {}
    for role, source in zip(("D0", "D1"), sources, strict=True):
        try:
            prepared = prepare(
                [source],
                data_dir / role,
                tokenizer=tokenizer,
                max_bytes=settings.max_bytes,
                seed=settings.seed,
                progress=progress,
                overwrite=True,
            )
        except ValueError as error:
            # Name which of the two --data sources failed; each needs a validation split.
            raise ContinualError(
                f"--data {role} ({source}): {error}. The demo evaluates on a held-out set of documents: "
                "pass a folder of .txt files or a .jsonl file with one document per line"
            ) from None
        paths[role] = str(prepared.path)
    return paths


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. under ``taskset`` or a
    container's cpuset), not the machine's total: more workers than cores only thrash."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS and Windows have no affinity mask
        return os.cpu_count() or 1


def _job(kind: str, kwargs: dict[str, Any], threads: int) -> dict[str, Any]:
    """Run one training job in a worker process (one torch thread per core)."""
    import torch

    torch.set_num_threads(threads)
    from evertrain.continual import runner

    setup = Setup(**kwargs.pop("setup"))
    if kind == "base":
        result = runner.train_base(setup, **kwargs)
    elif kind == "retrain":
        base = runner.R.BaseModelInfo(**kwargs.pop("base"))
        result = runner.run_recipe(kind, setup, base=base, **kwargs)
    else:
        result = runner.run_recipe(kind, setup, **kwargs)
    return {
        "name": result.name,
        "out_dir": str(result.out_dir),
        "tokens": result.tokens,
        "wall_seconds": result.wall_seconds,
        "params": result.params,
    }


def _tokens_trained(run_dirs: list[Path]) -> int:
    """Tokens logged so far by the given runs (read from their log.jsonl tails)."""
    total = 0
    for run_dir in run_dirs:
        log = run_dir / "log.jsonl"
        if not log.exists():
            continue
        with open(log, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 4096))
            tail = handle.read().decode("utf-8", "replace").splitlines()
        for line in reversed(tail):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("kind") == "train":
                total += int(record["tokens"])
                break
    return total


def run_demo(
    out_dir: str | Path = "evertrain-demo",
    *,
    scale: float = 1.0,
    data: tuple[str, str] | None = None,
    workers: int | None = None,
    device: str = "cpu",
    progress: bool = True,
    settings: DemoSettings | None = None,
) -> DemoResult:
    """Run the whole demo into ``out_dir``; return the report path and the final table.

    ``data`` = (D0, D1): files/folders of your own (.txt/.jsonl/.parquet) instead of the builtin
    corpora. ``workers``: parallel training processes (default: one per CPU core, at most 4).
    ``settings`` replaces the sizes that ``scale`` would pick (tests use a toy size).
    """
    from tqdm.auto import tqdm

    from evertrain.continual.report import write_report

    started = time.perf_counter()
    settings = settings or demo_settings(scale)
    sources = tuple(str(s) for s in data) if data else DEFAULT_SOURCES
    if len(sources) != 2:
        raise ContinualError(
            f"data={data!r}: give exactly two sources, the old (D0) and the new (D1) data"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "demo.json", {"settings": asdict(settings), "sources": list(sources)})

    paths = prepare_data(out, sources, settings, progress=progress)
    old, new = {"D0": paths["D0"]}, {"D1": paths["D1"]}
    setup = Setup(
        model=settings.model,
        train={
            "batch_size": settings.batch_size,
            "device": device,
            "seed": settings.seed,
            "eval_tokens": settings.eval_tokens,
        },
        eval=dict(paths),
        eval_points=settings.eval_points,
    )
    setup_dict = asdict(setup)
    runs_dir = out / "runs"
    base_dir = runs_dir / "base"
    run_dirs = {
        "base": base_dir,
        **{name: runs_dir / name for name in (*CONTINUAL_RECIPES, "retrain")},
    }
    base_tokens = setup.round_tokens(settings.base_tokens)
    stage_tokens = setup.round_tokens(settings.stage_tokens)
    total_tokens = 2 * base_tokens + (len(CONTINUAL_RECIPES) + 1) * stage_tokens

    cores = usable_cores()
    workers = workers or max(1, min(cores, 4))
    threads = max(1, cores // workers)
    recipe_kwargs = {
        name: {
            "setup": setup_dict,
            "base_dir": str(base_dir),
            "old": old,
            "new": new,
            "stage_tokens": stage_tokens,
            "out_dir": str(run_dirs[name]),
            "progress": False,
        }
        for name in (*CONTINUAL_RECIPES, "retrain")
    }
    # retrain only needs the base's peak LR and token count, known before the base trains.
    recipe_kwargs["retrain"]["base"] = asdict(
        lr_state(
            infinite_schedule(peak=settings.peak, tokens=base_tokens),
            base_tokens,
            setup.tokens_per_step,
        )
    )
    base_kwargs = {
        "setup": setup_dict,
        "out_dir": str(base_dir),
        "datasets": old,
        "tokens": base_tokens,
        "peak": settings.peak,
        "progress": False,
    }
    if progress:
        params = _approx_params(settings)
        print(
            f"training {len(run_dirs)} runs of a {params / 1e6:.2f}M-parameter GPT "
            f"({total_tokens:,} tokens) on {workers} worker(s) ...",
            flush=True,
        )
    bar = tqdm(
        total=total_tokens,
        unit="tok",
        unit_scale=True,
        desc="demo",
        disable=not progress,
        dynamic_ncols=True,
        mininterval=1.0,
    )
    try:
        if workers == 1:
            for kind in ("base", *CONTINUAL_RECIPES, "retrain"):
                bar.set_postfix_str(kind)
                _job(kind, dict(base_kwargs if kind == "base" else recipe_kwargs[kind]), threads)
                bar.n = _tokens_trained(list(run_dirs.values()))
                bar.refresh()
        else:
            import multiprocessing

            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures: dict[str, Future] = {
                    "base": pool.submit(_job, "base", base_kwargs, threads)
                }
                # retrain needs no base: it starts at once, next to the base.
                futures["retrain"] = pool.submit(_job, "retrain", recipe_kwargs["retrain"], threads)
                submitted_recipes, postfix = False, ""
                while True:
                    for future in futures.values():
                        if future.done():
                            future.result()  # a failed run stops the demo now, with its error
                    if futures["base"].done() and not submitted_recipes:
                        futures["base"].result()  # re-raise a base failure here
                        for name in CONTINUAL_RECIPES:
                            futures[name] = pool.submit(_job, name, recipe_kwargs[name], threads)
                        submitted_recipes = True
                    trained = _tokens_trained(list(run_dirs.values()))
                    # A pool pre-queues work, so Future.running() is true for waiting jobs too: a
                    # job is shown once its run has written its log.
                    running = ",".join(
                        k
                        for k, f in futures.items()
                        if not f.done() and (run_dirs[k] / "log.jsonl").exists()
                    )
                    if trained != bar.n or running != postfix:
                        bar.update(trained - bar.n)
                        bar.set_postfix_str(running, refresh=False)
                        postfix = running
                    if submitted_recipes and all(f.done() for f in futures.values()):
                        break
                    time.sleep(0.5)
                for future in futures.values():
                    future.result()
        bar.n = total_tokens
        bar.refresh()
    finally:
        bar.close()

    report = write_report(
        list(run_dirs.values()),
        out / "report",
        baseline="retrain",
        title="evertrain demo: English (D0) → code (D1)",
    )
    seconds = time.perf_counter() - started
    rows = json.loads((out / "report" / "report.json").read_text())["runs"]
    atomic_write_json(
        out / "demo.json",
        {
            "settings": asdict(settings),
            "sources": list(sources),
            "seconds": seconds,
            "report": str(report),
        },
    )
    return DemoResult(
        out_dir=out, report=report, seconds=seconds, settings=settings, runs=run_dirs, rows=rows
    )


def _approx_params(settings: DemoSettings) -> int:
    """Non-embedding parameters 12·L·d² plus the (tied) embedding V·d."""
    return 12 * settings.n_layer * settings.d_model**2 + settings.vocab_size * settings.d_model


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of the report's rows for the terminal."""
    header = f"{'run':<17}{'loss D0':>9}{'loss D1':>9}{'avg':>9}{'forget':>9}{'tokens':>11}{'vs retrain':>12}"
    lines = [header, "-" * len(header)]
    for row in rows:
        gap = row.get("loss_gap_vs_baseline")
        share = row.get("tokens_vs_baseline")
        forgetting = row.get("forgetting")
        vs = f"{gap * 100:+.1f}% @{share * 100:.0f}%" if gap is not None else ""
        lines.append(
            f"{row['run']:<17}{_num(row['after'].get('D0'))}{_num(row['after'].get('D1'))}{_num(row.get('loss_avg'))}"
            f"{_num(forgetting, '+.3f')}{row['tokens']:>11,}{vs:>12}"
        )
    return "\n".join(lines)


def _num(value: float | None, spec: str = ".3f") -> str:
    return f"{format(value, spec):>9}" if value is not None else f"{'-':>9}"
