"""``evertrain demo``: the whole continual pre-training story in a few minutes on a laptop CPU.

1. prepares two distributions, OLD (D0) and NEW (D1): by default the standard library's English
   (docstrings and help topics) and its code, or two sources of your own (``--data OLD NEW``),
   capped slices of each (``--max-bytes``; every cut is reported), with one shared byte-level
   BPE tokenizer;
2. pre-trains a tiny GPT on D0 with an infinite schedule (warmup → cooldown → constant → a
   short release anneal), pinning the pre-anneal checkpoint;
3. continues it on D1 with ``finetune``, ``rewarm``, ``rewarm+replay`` and ``infinite+replay``
   (each evaluated on both distributions), and trains the ``retrain`` baseline from scratch on
   D0 ∪ D1 with the same total tokens;
4. writes the report (``report/index.html``), naming the sources, model size and tokens.

Independent runs go to separate worker processes, one per CPU core (one torch thread each);
a free worker starts the longest run whose dependencies are met (:mod:`evertrain.continual.jobs`).
Everything is resumable: run the same command again and finished runs are re-used, but only for
the same inputs (sources and their files, settings, separator, device); other inputs in the same
folder are refused, naming what differs, until ``force=True`` (``--force``) starts over.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import re
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from evertrain._atomic import atomic_write_json
from evertrain._lock import FolderLock
from evertrain._progress import progress_bar
from evertrain.continual import runner
from evertrain.continual.jobs import Job, next_job
from evertrain.continual.report import write_report
from evertrain.continual.runner import ContinualError, Setup, base_schedule, planned_base_info
from evertrain.data import BUILTIN_CORPORA, prepare, train_tokenizer
from evertrain.data.corpora import TEXT_SUFFIXES, source_fingerprint, source_kind, txt_rule
from evertrain.train import lifeline
from evertrain.train.preempt import EXIT_PREEMPTED

CONTINUAL_RECIPES = ("finetune", "rewarm", "rewarm+replay", "infinite+replay")
DEFAULT_SOURCES = ("stdlib-english", "stdlib-code")
RUN_NAMES = ("base", *CONTINUAL_RECIPES, "retrain")
#: What the demo writes into its folder (``--force`` removes these and nothing else).
REPORT_FILES = (
    "index.html",
    "report.json",
    "curves.png",
    "curves.json",
    "summary.png",
    "summary.json",
)
#: The flags of ``evertrain demo`` that each recorded input comes from (for error messages).
_FLAGS = {"D0": "--data OLD", "D1": "--data NEW"}


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
        """The ``model:`` section of every run's TrainConfig (evertrain GPT fields)."""
        return {name: getattr(self, name) for name in ("n_layer", "n_head", "d_model", "seq_len")}


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
    #: one line: sources, model size, tokens and scale (the report's and the table's header)
    description: str = ""
    #: lines said on the console before training, e.g. that a source was cut at --max-bytes
    notices: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Inputs: checked before any work, recorded, and compared with an earlier demo's.


def source_label(source: str) -> str:
    """How a source is named on the page: a builtin corpus name, else the file/folder name."""

    return source if source in BUILTIN_CORPORA else (Path(source).name or str(source))


def check_source(role: str, source: str) -> str:
    """Raise a :class:`ContinualError` naming ``--data OLD``/``NEW`` unless ``source`` is a
    builtin corpus or an existing, readable file/folder whose kind is known; return the kind."""

    flag = _FLAGS[role]
    try:
        kind = source_kind(source)
    except ValueError as error:
        raise ContinualError(f"{flag}: {error}") from None
    if kind == "builtin":
        return kind
    path = Path(source)
    if not os.access(path, os.R_OK) or (path.is_dir() and not os.access(path, os.X_OK)):
        raise ContinualError(
            f"{flag}: {source} is not readable: fix its permissions or pass another path"
        )
    if kind == "folder" and not any(
        p.is_file() and p.suffix.lower() in TEXT_SUFFIXES for p in path.rglob("*")
    ):
        raise ContinualError(
            f"{flag}: folder {source} holds no .txt, .jsonl or .parquet file: pass a folder that does"
        )
    return kind


def check_sources(data: tuple[str, str] | list[str] | None) -> tuple[str, str]:
    """The two sources (OLD, NEW), each checked by :func:`check_source`."""
    sources = tuple(str(s) for s in data) if data else DEFAULT_SOURCES
    if len(sources) != 2:
        raise ContinualError(
            f"--data got {len(sources)} path(s) {list(sources)}: it takes exactly two, OLD and NEW "
            "(e.g. --data english.txt german.txt)"
        )
    for role, source in zip(("D0", "D1"), sources, strict=True):
        check_source(role, source)
    return sources  # type: ignore[return-value]


def _check_options(
    txt_separator: str | None, max_bytes: int | None, workers: int | None, device: str
) -> None:
    if txt_separator is not None and (not isinstance(txt_separator, str) or not txt_separator):
        raise ContinualError(
            f"--txt-separator {txt_separator!r} must be a non-empty string, e.g. '\\n\\n' for paragraphs"
        )
    if max_bytes is not None and (not isinstance(max_bytes, int) or max_bytes < 0):
        raise ContinualError(
            f"--max-bytes {max_bytes!r} must be a whole number >= 0 (0: all of each source)"
        )
    if workers is not None and (not isinstance(workers, int) or workers < 0):
        raise ContinualError(f"--workers {workers!r} must be >= 0 (0: one per CPU core, at most 4)")
    if device not in ("cpu", "cuda", "auto"):
        raise ContinualError(f"--device {device!r} must be cpu, cuda or auto")


def demo_inputs(
    sources: tuple[str, str], settings: DemoSettings, txt_separator: str | None, device: str
) -> dict[str, Any]:
    """What the demo's results depend on: the sources (and their files' sizes and modification
    times, or the Python whose standard library a builtin corpus reads), the settings, the
    separator and the device."""

    recorded = []
    for source in sources:
        content = source_fingerprint(source)
        path = content.get("path", source)  # a file or folder: its absolute path
        recorded.append({"source": source, "path": path, "content": content})
    record = {
        "sources": recorded,
        "settings": asdict(settings),
        "txt_separator": txt_separator,
        "device": device,
    }
    return json.loads(json.dumps(record, default=str))


def _recorded_inputs(record: dict[str, Any]) -> dict[str, Any]:
    """The inputs an earlier ``demo.json`` recorded (older versions kept sources and settings)."""
    if "inputs" in record:
        return record["inputs"]
    legacy: dict[str, Any] = {"settings": record.get("settings", {})}
    if "sources" in record:
        legacy["sources"] = [{"source": str(s)} for s in record["sources"]]
    return legacy


def input_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``flag: old -> new`` for every input that differs (only keys both records hold)."""
    found: list[str] = []
    for role, was, now in zip(
        ("D0", "D1"), old.get("sources", []), new.get("sources", []), strict=False
    ):
        same_source = (
            was.get("path", was.get("source")) == now.get("path", now.get("source"))
            if "path" in was
            else was.get("source") == now.get("source")
        )
        if not same_source:
            found.append(f"{_FLAGS[role]}: {was.get('source')} -> {now.get('source')}")
        elif "content" in was and was["content"] != now.get("content"):
            content = was["content"]
            if "builtin" in content:  # the corpus is read from the running Python's stdlib
                python = now.get("content", {}).get("python")
                found.append(
                    f"{_FLAGS[role]}: {now.get('source')} is read from another Python "
                    f"({content.get('python')} -> {python})"
                )
            else:
                found.append(
                    f"{_FLAGS[role]}: {now.get('source')} changed since (file sizes or times)"
                )
    old_settings, new_settings = old.get("settings", {}), new.get("settings", {})
    if old_settings.get("scale") != new_settings.get("scale"):
        # every size follows from the scale: name the scale, not each size it changed
        found.append(f"--scale: {old_settings.get('scale')} -> {new_settings.get('scale')}")
    else:
        for key, value in new_settings.items():
            if key in old_settings and old_settings[key] != value:
                flag = "--max-bytes" if key == "max_bytes" else f"settings.{key}"
                found.append(f"{flag}: {old_settings[key]} -> {value}")
    for key, flag in (("txt_separator", "--txt-separator"), ("device", "--device")):
        if key in old and old[key] != new.get(key):
            found.append(f"{flag}: {old[key]!r} -> {new.get(key)!r}")
    return found


def _has_runs(out: Path) -> bool:
    """Whether an earlier demo trained (or started training) anything in ``out``."""
    return any(
        (out / "runs" / name / marker).exists()
        for name in RUN_NAMES
        for marker in ("continual.json", "log.jsonl", "checkpoints")
    )


def check_reuse(out: Path, inputs: dict[str, Any]) -> None:
    """Refuse a folder whose runs were trained on other inputs, naming what differs."""
    record_path = out / "demo.json"
    if not record_path.exists() or not _has_runs(out):
        return  # nothing trained yet: there is nothing to re-use or to protect
    try:
        record = json.loads(record_path.read_text())
    except (OSError, json.JSONDecodeError):
        record = {}
    changed = input_differences(_recorded_inputs(record), inputs)
    if changed:
        raise ContinualError(
            f"--out {out} holds a demo of other inputs ({'; '.join(changed)}): pass --force to "
            "start over there, or choose another --out"
        )


def clear_demo_outputs(out: Path) -> list[Path]:
    """Remove what an earlier demo wrote into ``out`` (``--force``) and return it: its runs
    (folders holding ``continual.json``), its prepared data, its report files and ``demo.json``.
    Anything else in ``out`` (files of your own, the lock) stays."""
    removed: list[Path] = []

    def remove_tree(path: Path) -> None:
        # Rename first so an interrupted delete never leaves a half run that looks resumable.
        doomed = path.with_name(f".del-{path.name}-{os.getpid()}")
        os.replace(path, doomed)
        shutil.rmtree(doomed)
        removed.append(path)

    for name in RUN_NAMES:
        run = out / "runs" / name
        if run.is_dir() and ((run / "continual.json").exists() or (run / "log.jsonl").exists()):
            remove_tree(run)
    data = out / "data"
    for role in ("D0", "D1"):
        if (data / role).is_dir() and (
            (data / role / "manifest.json").exists() or not any((data / role).iterdir())
        ):
            remove_tree(data / role)
    for path in [data / "tokenizer.json", data / "tokenizer.inputs.json", out / "demo.json"] + [
        out / "report" / name for name in REPORT_FILES
    ]:
        if path.is_file():
            path.unlink()
            removed.append(path)
    for folder in (out / "runs", data, out / "report"):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return removed


# --------------------------------------------------------------------------------------------
# Data.


def prepare_data(
    out_dir: Path,
    sources: tuple[str, str],
    settings: DemoSettings,
    *,
    progress: bool = True,
    txt_separator: str | None = None,
) -> dict[str, str]:
    """A shared tokenizer trained on both sources, then D0 and D1 prepared with it.

    ``settings.max_bytes`` caps the bytes read from each source (0: all of it);
    ``txt_separator`` splits .txt files into documents (None: the data area's default).
    """

    data_dir = out_dir / "data"
    tokenizer = data_dir / "tokenizer.json"
    stamp = data_dir / "tokenizer.inputs.json"
    max_bytes = settings.max_bytes or None
    inputs = json.loads(
        json.dumps(
            {
                "sources": list(sources),
                "content": [source_fingerprint(s) for s in sources],
                "vocab_size": settings.vocab_size,
                "max_bytes": settings.max_bytes,
                "txt_separator": txt_separator,
                # The rule itself, not only the flag: a new default splits .txt files otherwise.
                "txt_rule": txt_rule(txt_separator),
            },
            default=str,
        )
    )
    if not tokenizer.exists() or not stamp.exists() or json.loads(stamp.read_text()) != inputs:
        if progress:
            print(
                f"training a {settings.vocab_size}-token BPE on {source_label(sources[0])} + "
                f"{source_label(sources[1])} ...",
                flush=True,
            )
        try:
            train_tokenizer(
                list(sources),
                tokenizer,
                settings.vocab_size,
                max_bytes=max_bytes,
                txt_separator=txt_separator,
            )
        except ValueError as error:
            raise ContinualError(f"--data: training the tokenizer failed: {error}") from None
        atomic_write_json(stamp, inputs)
    paths = {}
    for role, source in zip(("D0", "D1"), sources, strict=True):
        try:
            prepared = prepare(
                [source],
                data_dir / role,
                tokenizer=tokenizer,
                max_bytes=max_bytes,
                seed=settings.seed,
                txt_separator=txt_separator,
                progress=progress,
                overwrite=True,
            )
        except ValueError as error:
            raise ContinualError(_prepare_advice(role, source, str(error), txt_separator)) from None
        paths[role] = str(prepared.path)
    return paths


def _prepare_advice(role: str, source: str, message: str, txt_separator: str | None) -> str:
    """The data area's error, with advice that names only flags ``evertrain demo`` has."""
    flag = f"{_FLAGS[role]} ({source})"
    if "txt_separator" in message or "val_fraction" in message:
        # The data area advises its own keywords; the demo's fix is its separator or more documents.
        count = re.search(r"has (\d+) document", message)
        found = f"has only {count.group(1)} document(s)" if count else "has too few documents"
        separator = (
            f"a --txt-separator that occurs in the text (not {txt_separator!r}"
            if txt_separator is not None
            else "--txt-separator (e.g."
        )
        return (
            f"{flag} {found}, and the demo holds out whole documents to evaluate on: pass "
            f"{separator}; --txt-separator '\\n\\n' splits .txt files at blank lines), or a "
            "folder of .txt files or a .jsonl file with one document per line"
        )
    return f"{flag}: {message}"


def available_bytes(source: str) -> int | None:
    """About how many bytes of text ``source`` holds, from file sizes alone (parquet: the
    uncompressed size of its columns); None for a builtin corpus (it is read lazily)."""

    if source in BUILTIN_CORPORA:
        return None
    path = Path(source)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    total = 0
    for file in files:
        suffix = file.suffix.lower()
        if suffix not in TEXT_SUFFIXES:
            continue
        if suffix == ".parquet":
            try:
                import pyarrow.parquet as pq

                meta = pq.ParquetFile(file).metadata
                total += sum(meta.row_group(g).total_byte_size for g in range(meta.num_row_groups))
                continue
            except Exception:  # noqa: BLE001 -- no pyarrow or an odd file: its size will do
                pass
        total += file.stat().st_size
    return total


def truncation_notices(
    paths: dict[str, str], sources: tuple[str, str], max_bytes: int
) -> list[str]:
    """One line per source that ``max_bytes`` cut, with the share of it used (from the prepared
    manifests' per-source stats and the sources' file sizes)."""
    notices = []
    for role, source in zip(("D0", "D1"), sources, strict=True):
        try:
            manifest = json.loads((Path(paths[role]) / "manifest.json").read_text())
        except (OSError, json.JSONDecodeError, KeyError):
            continue
        stats = manifest.get("sources", [{}])[0]
        used = int(stats.get("bytes", 0))
        cut = bool(stats.get("truncated_at_max_bytes")) or (max_bytes > 0 and used >= max_bytes)
        if not cut:
            continue
        available = stats.get("available_bytes") or available_bytes(source)
        share = (
            f" of about {available:,} ({100 * used / available:.0f} %)"
            if available and available > used
            else ""
        )
        notices.append(
            f"{role} {source_label(source)}: using the first {used:,} bytes{share} "
            f"(--max-bytes {max_bytes}; --max-bytes 0 uses all of it)"
        )
    return notices


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
    try:
        return _train_job(kind, kwargs)
    finally:
        # The demo died (the run stopped and saved on its SIGTERM): end instead of returning to
        # a pool that would wait for a next job forever.
        lifeline.exit_if_orphaned(EXIT_PREEMPTED)


def _train_job(kind: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    kwargs = dict(kwargs)
    setup = Setup(**kwargs.pop("setup"))
    if kind == "base":
        result = runner.train_base(setup, **kwargs)
    else:
        # retrain and infinite+replay get the base's LR state from its planned schedule, so
        # they need not wait for the base to finish.
        base = runner.R.BaseModelInfo(**kwargs.pop("base")) if "base" in kwargs else None
        result = runner.run_recipe(kind, setup, base=base, **kwargs)
    return {
        "name": result.name,
        "out_dir": str(result.out_dir),
        "tokens": result.tokens,
        "wall_seconds": result.wall_seconds,
        "params": result.params,
    }


def demo_jobs(base_tokens: int, stage_tokens: int, pre_anneal: int) -> list[Job]:
    """The demo's runs as jobs: lengths in tokens; the continuations wait for the base's final
    checkpoint, ``infinite+replay`` only for its pre-anneal one, ``retrain`` for nothing."""
    after_base = {"base": 1.0}
    return [
        Job("base", base_tokens),
        Job("finetune", stage_tokens, after_base),
        Job("rewarm", stage_tokens, after_base),
        Job("rewarm+replay", stage_tokens, after_base),
        Job("infinite+replay", stage_tokens, {"base": pre_anneal / base_tokens}),
        Job("retrain", base_tokens + stage_tokens),
    ]


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
    txt_separator: str | None = None,
    max_bytes: int | None = None,
    force: bool = False,
) -> DemoResult:
    """Run the whole demo into ``out_dir``; return the report path and the final table.

    ``data`` = (OLD, NEW): files/folders of your own (.txt/.jsonl/.parquet) or builtin corpus
    names instead of the standard library's English and code. ``workers``: parallel training
    processes (default: one per CPU core, at most 4). ``settings`` replaces the sizes that
    ``scale`` would pick (tests use a toy size). ``txt_separator`` splits .txt files into
    documents; ``max_bytes`` caps each source (0: all; default: the settings' cap).
    ``force`` removes an earlier demo's outputs from ``out_dir`` first; without it, a folder
    whose runs were trained on other inputs is refused (a :class:`ContinualError` naming what
    differs). Every input is checked before anything is written.
    """
    started = time.perf_counter()
    settings = settings or demo_settings(scale)
    _check_options(txt_separator, max_bytes, workers, device)
    if max_bytes is not None:
        settings = replace(settings, max_bytes=max_bytes)
    _check_base_holds_a_pre_anneal_point(settings)
    sources = check_sources(data)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ContinualError(f"--out {out} is a file: pass a folder (it is created if missing)")
    inputs = demo_inputs(sources, settings, txt_separator, device)

    with FolderLock(out, what="demo folder"):
        if force:
            removed = clear_demo_outputs(out)
            if progress and removed:
                print(f"--force: removed the earlier demo's outputs in {out}", flush=True)
        else:
            check_reuse(out, inputs)
        return _run_demo_locked(
            out, sources, settings, inputs, workers, device, progress, txt_separator, started
        )


def _check_base_holds_a_pre_anneal_point(settings: DemoSettings) -> None:
    """``infinite+replay`` starts from the base's pre-anneal checkpoint: refuse sizes whose base
    is too short to have one before training, not after the base."""
    setup = Setup(model=settings.model, train={"batch_size": settings.batch_size}, eval={})
    tokens = setup.whole_steps(settings.base_tokens)
    if base_schedule(setup, tokens, settings.peak)[1] >= tokens:
        raise ContinualError(
            f"settings.base_tokens={settings.base_tokens} is {tokens // setup.tokens_per_step} "
            "optimizer step(s): too few for a pre-anneal checkpoint before the base's last step; "
            f"use at least {8 * setup.tokens_per_step} tokens"
        )


def _run_demo_locked(
    out: Path,
    sources: tuple[str, str],
    settings: DemoSettings,
    inputs: dict[str, Any],
    workers: int | None,
    device: str,
    progress: bool,
    txt_separator: str | None,
    started: float,
) -> DemoResult:

    record = {"inputs": inputs, "settings": asdict(settings), "sources": list(sources)}
    atomic_write_json(out / "demo.json", record)

    paths = prepare_data(out, sources, settings, progress=progress, txt_separator=txt_separator)
    notices = truncation_notices(paths, sources, settings.max_bytes)
    if progress:
        for line in notices:
            print(line, flush=True)
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
    run_dirs = {name: runs_dir / name for name in RUN_NAMES}
    base_tokens = setup.whole_steps(settings.base_tokens)
    stage_tokens = setup.whole_steps(settings.stage_tokens)
    total_tokens = 2 * base_tokens + (len(CONTINUAL_RECIPES) + 1) * stage_tokens
    planned = planned_base_info(setup, base_tokens, settings.peak)

    cores = usable_cores()
    workers = workers or max(1, min(cores, 4))
    threads = max(1, cores // workers)
    job_kwargs: dict[str, dict[str, Any]] = {
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
    for name in ("retrain", "infinite+replay"):
        job_kwargs[name]["base"] = asdict(planned)
    job_kwargs["base"] = {
        "setup": setup_dict,
        "out_dir": str(base_dir),
        "datasets": old,
        "tokens": base_tokens,
        "peak": settings.peak,
        "progress": False,
    }
    pre_anneal = base_schedule(setup, base_tokens, settings.peak)[1]
    jobs = demo_jobs(base_tokens, stage_tokens, pre_anneal)
    pre_anneal_meta = base_dir / "checkpoints" / f"tokens_{pre_anneal}" / "meta.json"

    def reached(name: str, fraction: float, done: set[str]) -> bool:
        # The base's checkpoint is renamed into place whole, so its meta.json marks it complete.
        return name in done or (name == "base" and fraction < 1 and pre_anneal_meta.is_file())

    labels = (source_label(sources[0]), source_label(sources[1]))
    if progress:
        print(
            f"training {len(run_dirs)} runs of a {_approx_params(settings) / 1e6:.2f}M-parameter GPT "
            f"on {labels[0]} (D0) -> {labels[1]} (D1) ({total_tokens:,} tokens) on {workers} worker(s) ...",
            flush=True,
        )
    bar = progress_bar(  # a bar at a terminal, plain lines in a log file
        total_tokens,
        enabled=progress,
        unit="tok",
        unit_scale=True,
        desc="demo",
        dynamic_ncols=True,
        mininterval=1.0,
    )
    try:
        results = _dispatch(jobs, job_kwargs, workers, threads, reached, bar, run_dirs)
        bar.n = total_tokens
        bar.refresh()
    finally:
        bar.close()

    params = int(results.get("base", {}).get("params") or _approx_params(settings))
    trained = sum(int(r.get("tokens", 0)) for r in results.values()) or total_tokens
    description = describe_demo(labels, params, trained, len(run_dirs), settings)
    report = write_report(
        list(run_dirs.values()),
        out / "report",
        baseline="retrain",
        title=f"evertrain demo: {labels[0]} (D0) → {labels[1]} (D1)",
        subtitle=description,
    )
    seconds = time.perf_counter() - started
    rows = json.loads((out / "report" / "report.json").read_text())["runs"]
    atomic_write_json(
        out / "demo.json",
        {**record, "seconds": seconds, "report": str(report), "description": description},
    )
    return DemoResult(
        out_dir=out,
        report=report,
        seconds=seconds,
        settings=settings,
        runs=run_dirs,
        rows=rows,
        description=description,
        notices=notices,
    )


def _dispatch(
    jobs: list[Job],
    job_kwargs: dict[str, dict[str, Any]],
    workers: int,
    threads: int,
    reached: Callable[[str, float, set[str]], bool],
    bar: Any,
    run_dirs: dict[str, Path],
) -> dict[str, dict[str, Any]]:
    """Train ``jobs``: whenever a worker is free, start the longest job whose dependencies are
    met (:func:`evertrain.continual.jobs.next_job`); return each job's result by name."""
    pending, done, results = list(jobs), set(), {}

    def ready(job: Job) -> bool:
        return all(reached(name, fraction, done) for name, fraction in job.after.items())

    if workers == 1:
        while pending:
            job = next_job(pending, ready)
            if job is None:  # pragma: no cover - demo_jobs never waits on a job not yet run
                raise ContinualError(f"runs {[j.name for j in pending]} wait on each other")
            pending.remove(job)
            bar.set_postfix_str(job.name)
            results[job.name] = _job(job.name, job_kwargs[job.name], threads)
            done.add(job.name)
            bar.n = _tokens_trained(list(run_dirs.values()))
            bar.refresh()
        return results

    context = multiprocessing.get_context("spawn")
    running: dict[str, Future] = {}
    postfix = ""
    # Each worker stops with this process (lifeline.py): a killed demo leaves no worker behind.
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=lifeline.stop_with_parent,
        initargs=(os.getpid(),),
    ) as pool:
        while pending or running:
            for name, future in list(running.items()):
                if future.done():
                    results[name] = future.result()  # a failed run stops the demo, with its error
                    done.add(name)
                    del running[name]
            # Submit only to a free worker, so the choice is made when the run can start.
            while pending and len(running) < workers:
                job = next_job(pending, ready)
                if job is None:
                    break
                pending.remove(job)
                running[job.name] = pool.submit(_job, job.name, job_kwargs[job.name], threads)
            trained = _tokens_trained(list(run_dirs.values()))
            names = ",".join(running)
            if trained != bar.n or names != postfix:
                bar.update(trained - bar.n)
                bar.set_postfix_str(names, refresh=False)
                postfix = names
            if pending or running:
                time.sleep(0.2)
    return results


def describe_demo(
    labels: tuple[str, str], params: int, tokens: int, runs: int, settings: DemoSettings
) -> str:
    """One line naming what the demo trained: sources, model size, tokens and scale."""
    scale = f", scale {settings.scale:g}" if settings.scale > 0 else ""
    return (
        f"{labels[0]} (D0) → {labels[1]} (D1): a {params / 1e6:.2f}M-parameter GPT "
        f"({settings.n_layer} layer{'s' if settings.n_layer != 1 else ''} × {settings.d_model}), "
        f"{tokens:,} tokens in {runs} runs{scale}"
    )


def _approx_params(settings: DemoSettings) -> int:
    """Non-embedding parameters 12·L·d² plus the (tied) embedding V·d."""
    return 12 * settings.n_layer * settings.d_model**2 + settings.vocab_size * settings.d_model


def format_table(
    rows: list[dict[str, Any]], title: str = "", baseline: str | None = "retrain"
) -> str:
    """A plain-text table of the report's rows for the terminal, under ``title`` if given: the
    final loss on each dataset (``D0``/``D1`` in the demo; a plan's or a comparison's own names),
    the average, the forgetting, the tokens and, with a ``baseline``, the gap and compute share
    against it. ``evertrain demo``, ``continual run`` and ``continual compare`` print it."""
    datasets: list[str] = []
    for row in rows:
        datasets += [name for name in row.get("after", {}) if name not in datasets]
    width = {name: max(9, len(name) + 6) for name in datasets}
    run_width = max([17, *(len(str(row["run"])) + 1 for row in rows)])
    header = f"{'run':<{run_width}}" + "".join(f"{'loss ' + d:>{width[d]}}" for d in datasets)
    header += f"{'avg':>9}{'forget':>9}{'tokens':>11}"
    if baseline:
        header += f"{'vs ' + baseline:>12}"
    lines = ([title] if title else []) + [header, "-" * len(header)]
    for row in rows:
        gap = row.get("loss_gap_vs_baseline")
        share = row.get("tokens_vs_baseline")
        vs = (
            f"{gap * 100:+.1f}% @{share * 100:.0f}%"
            if gap is not None and share is not None
            else ""
        )
        line = f"{row['run']:<{run_width}}"
        line += "".join(_num(row["after"].get(d), width=width[d]) for d in datasets)
        line += f"{_num(row.get('loss_avg'))}{_num(row.get('forgetting'), '+.3f')}"
        line += f"{row['tokens']:>11,}"
        if baseline:
            line += f"{vs:>12}"
        lines.append(line)
    return "\n".join(lines)


def _num(value: float | None, spec: str = ".3f", width: int = 9) -> str:
    return f"{format(value, spec):>{width}}" if value is not None else f"{'-':>{width}}"
