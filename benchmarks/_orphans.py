"""Kill a parent that trains through children; count the children still alive afterwards.

    from _orphans import count_orphans_after_parent_kill   # benchmarks/ on sys.path
    count_orphans_after_parent_kill("demo")        # `evertrain demo` parent, 2 workers
    count_orphans_after_parent_kill("torchrun")    # torchrun launcher, 2 gloo ranks

Each scenario starts the parent in its own process group, waits until its children train (a
``log.jsonl`` record), lists the children (``/proc``, or psutil where installed), kills the
parent with ``signum`` and waits up to ``grace_s`` for every child to end; what is still alive
then is an orphan. The tests of ``tests/continual/test_orphans.py`` and
``tests/train/test_orphans.py`` use it, and ``benchmarks/reliability.py`` reports it as
``orphans_left``. Sources: this checkout's ``src`` (PYTHONPATH).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The demo at a toy size, but long enough that its workers are mid-run when the parent dies.
_DEMO_PARENT = """
import sys
from evertrain.continual.demo import DemoSettings, run_demo
settings = DemoSettings(
    scale=0.01, vocab_size=300, max_bytes=60_000, n_layer=1, n_head=2, d_model=32, seq_len=32,
    batch_size=4, base_tokens=4_000_000, stage_tokens=4_000_000, peak=3e-3, eval_tokens=256,
    eval_points=2,
)
run_demo(sys.argv[1], settings=settings, workers=2, progress=False)
"""


def _status_and_ppid(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of a live process; None when it is gone."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            process = psutil.Process(pid)
            state = "Z" if process.status() == psutil.STATUS_ZOMBIE else "R"
            return state, process.ppid()
        except psutil.Error:
            return None
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces and parentheses
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """A process that runs (a zombie, dead and not yet reaped, does not)."""
    found = _status_and_ppid(pid)
    return found is not None and found[0] != "Z"


def children(pid: int) -> list[int]:
    """The live child processes of ``pid``."""
    try:
        import psutil

        with contextlib.suppress(psutil.Error):
            return [child.pid for child in psutil.Process(pid).children() if alive(child.pid)]
        return []
    except ImportError:
        pass
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            status = _status_and_ppid(int(entry.name))
            if status is not None and status[1] == pid and status[0] != "Z":
                found.append(int(entry.name))
    return found


@dataclass
class Outcome:
    """What one kill left: ``children`` listed before it, ``orphans`` alive ``grace_s`` later."""

    children: list[int]
    orphans: list[int]
    seconds_to_gone: float | None  # None when some child outlived grace_s
    work_dir: Path
    logs: list[Path] = field(default_factory=list)


def _train_records(folder: Path) -> int:
    count = 0
    for log in folder.rglob("log.jsonl"):
        with contextlib.suppress(OSError):
            count += log.read_text().count('"kind": "train"')
    return count


def _wait(
    condition: Callable[[], bool], timeout_s: float, what: str, parent: subprocess.Popen
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if parent.poll() is not None:
            raise RuntimeError(f"the parent exited ({parent.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout_s:g} s")
        time.sleep(0.1)


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def _torchrun_command(work: Path) -> list[str]:
    import yaml

    from evertrain.data import prepare

    words = "the quick brown fox jumps over a lazy dog and the cat runs far away".split()
    documents = [" ".join(words[(i + j) % len(words)] for j in range(40)) for i in range(200)]
    corpus = work / "docs.jsonl"
    corpus.write_text("\n".join(json.dumps({"text": doc}) for doc in documents))
    data = prepare([corpus], work / "data", vocab_size=300, progress=False)
    step_tokens, steps = 4 * 64, 100_000
    config = {
        "out_dir": str(work / "run"), "device": "cpu", "seed": 0,
        "model": {"n_layer": 1, "n_head": 2, "d_model": 32, "seq_len": 64},
        "data": {"train": {"docs": str(data.path)}, "eval_tokens": 256},
        "schedule": {"name": "cosine", "peak": 1e-3, "total": steps * step_tokens, "warmup": step_tokens,
                     "unit": "tokens"},
        "batch_size": 4, "budget_tokens": steps * step_tokens,
        "eval_interval_tokens": steps * step_tokens, "checkpoint_interval_tokens": 50 * step_tokens,
    }  # fmt: skip
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "evertrain.train", "run", str(work / "config.yaml"), "--no-progress",
    ]  # fmt: skip


def kill_parent(
    kind: str = "demo",
    signum: int = signal.SIGKILL,
    work_dir: Path | None = None,
    grace_s: float = 30.0,
    start_timeout_s: float = 240.0,
) -> Outcome:
    """Start the ``kind`` parent ("demo" or "torchrun"), kill it once its children train, and
    report which children outlived it by ``grace_s`` (see the module docstring)."""
    work = (
        Path(work_dir)
        if work_dir is not None
        else Path(tempfile.mkdtemp(prefix=f"orphans-{kind}-"))
    )
    work.mkdir(parents=True, exist_ok=True)
    if kind == "demo":
        command, watched, wanted = (
            [sys.executable, "-c", _DEMO_PARENT, str(work / "demo")],
            work / "demo",
            2,
        )
    elif kind == "torchrun":
        command, watched, wanted = _torchrun_command(work), work / "run", 2
    else:
        raise ValueError(f"kind={kind!r}: use 'demo' or 'torchrun'")
    logs = [work / "parent.stdout", work / "parent.stderr"]
    with open(logs[0], "wb") as out, open(logs[1], "wb") as err:
        parent = subprocess.Popen(
            command, stdout=out, stderr=err, env=_env(), start_new_session=True
        )
    trainers: list[int] = []
    try:
        # Children that train: `wanted` of them, and log.jsonl records written by them.
        _wait(lambda: len(children(parent.pid)) >= wanted and _train_records(watched) > 0,
              start_timeout_s, "child training", parent)  # fmt: skip
        trainers = children(parent.pid)
        os.kill(parent.pid, signum)
        parent.wait()
        killed_at = time.monotonic()
        deadline = killed_at + grace_s
        while any(alive(pid) for pid in trainers) and time.monotonic() < deadline:
            time.sleep(0.1)
        orphans = [pid for pid in trainers if alive(pid)]
        gone = None if orphans else time.monotonic() - killed_at
        return Outcome(trainers, orphans, gone, work, logs)
    finally:
        # Never leave the orphans this measures behind: the test or benchmark cleans up.
        for pid in [parent.pid, *trainers]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            parent.wait(timeout=5)


def count_orphans_after_parent_kill(
    kind: str = "demo",
    signum: int = signal.SIGKILL,
    work_dir: Path | None = None,
    grace_s: float = 30.0,
) -> int:
    """How many of the parent's children still run ``grace_s`` after it was killed (0: none)."""
    return len(kill_parent(kind, signum, work_dir, grace_s).orphans)


if __name__ == "__main__":
    results = {}
    for name in ("demo", "torchrun"):
        outcome = kill_parent(name)
        results[name] = {"children": len(outcome.children), "orphans": len(outcome.orphans),
                         "seconds_to_gone": outcome.seconds_to_gone}  # fmt: skip
    print(json.dumps(results, indent=2))
