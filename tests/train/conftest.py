"""Tiny prepared datasets and configs for the trainer tests (built once per session, ~0.3 s)."""

from __future__ import annotations

import contextlib
import copy
import faulthandler
import json
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

WORDS = "the quick brown fox jumps over a lazy dog and the cat runs far away from home while birds sing".split()
CODE = [
    "def f(x):",
    "    return x + 1",
    "for i in range(10):",
    "    print(i)",
    "class A:",
    "    pass",
    "import os",
]


@pytest.fixture(scope="session", autouse=True)
def default_sigint_handler() -> Iterator[None]:
    """The preemption tests send SIGINT and expect Python's default handler before the guard.
    A pytest started as a background job of a non-interactive shell (``cmd &``, ``nohup``)
    inherits SIGINT ignored, and the guard rightly leaves an ignored SIGINT ignored; so the
    suite restores Python's default for its own process (and the ranks it forks)."""
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    if previous is signal.SIG_IGN:
        signal.signal(signal.SIGINT, previous)


def _write_jsonl(path: Path, documents: list[str]) -> Path:
    path.write_text("\n".join(json.dumps({"text": doc}) for doc in documents), encoding="utf-8")
    return path


@pytest.fixture(scope="session", autouse=True)
def single_torch_thread():
    """One intra-op thread: the tiny models gain nothing from two, and on a loaded shared machine
    OpenMP threads waiting on each other make every matmul many times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two prepared datasets sharing one 300-token BPE: 'prose' (~28k tokens) and 'code' (~32k)."""
    from evertrain.data import prepare

    root = tmp_path_factory.mktemp("data")
    rng = random.Random(0)
    prose = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60))) for _ in range(400)]
    code = ["\n".join(rng.choice(CODE) for _ in range(rng.randint(2, 12))) for _ in range(400)]
    first = prepare(
        [_write_jsonl(root / "prose.jsonl", prose)], root / "prose", vocab_size=300, progress=False
    )
    prepare(
        [_write_jsonl(root / "code.jsonl", code)],
        root / "code",
        tokenizer=first.tokenizer_path,
        progress=False,
    )
    return {"prose": str(root / "prose"), "code": str(root / "code")}


def make_config(out_dir: Path, data: dict[str, str], **overrides: Any) -> dict[str, Any]:
    """A tiny run: 2 layers, d_model 64, seq 64, batch 4 -> 256 tokens/step, 12 steps."""
    cfg: dict[str, Any] = {
        "out_dir": str(out_dir),
        "device": "cpu",
        "seed": 0,
        "model": {"n_layer": 2, "n_head": 4, "d_model": 64, "seq_len": 64},
        "data": {"train": dict(data), "eval_tokens": 1024},
        "schedule": {
            "name": "cosine",
            "peak": 3e-3,
            "total": 12 * 256,
            "warmup": 3 * 256,
            "unit": "tokens",
        },
        "batch_size": 4,
        "budget_tokens": 12 * 256,
        "eval_interval_tokens": 4 * 256,
        "checkpoint_interval_tokens": 4 * 256,
        "keep_last": 2,
    }
    for key, value in overrides.items():
        node = cfg
        *parents, leaf = key.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = copy.deepcopy(value)
    if "schedule" not in overrides:  # the default schedule spans the whole (possibly shorter) run
        cfg["schedule"]["total"] = cfg["budget_tokens"]
        cfg["schedule"]["warmup"] = cfg["budget_tokens"] // 4
    return cfg


def fork_child(body: Callable[[], int], env: dict[str, str] | None = None) -> int:
    """Run ``body`` in a forked copy of this process (one torch thread, ``env`` set); its return
    value, or the status of a ``SystemExit`` it raises, is the child's exit status (1 if it raises
    anything else). Returns the child's pid."""
    import torch

    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            # A hung child prints every thread's Python stack on SIGUSR1 (stack_then_kill).
            faulthandler.register(signal.SIGUSR1, all_threads=True)
            os.environ.update(env or {})
            torch.set_num_threads(1)
            code = body()
        except SystemExit as exit_:  # the CLI ends with sys.exit(status)
            code = exit_.code if isinstance(exit_.code, int) else 1
        finally:
            os._exit(code)
    return pid


def stack_then_kill(pid: int) -> None:
    """Ask a hung :func:`fork_child` for its threads' stacks (to this stderr), then SIGKILL it:
    a test that fails on a hang then shows where the child waited."""
    try:
        os.kill(pid, signal.SIGUSR1)
        time.sleep(1.0)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)


def rank_env(rank: int, port: str, world_size: int = 2) -> dict[str, str]:
    """The variables torchrun sets for ``rank`` of a ``world_size`` gloo job on localhost."""
    return {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world_size),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": port,
    }


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One torch thread inside: the same kernels as the OMP_NUM_THREADS=1 child processes, so
    an in-process run and a resumed subprocess compare bit for bit."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
