"""Preemption: SIGTERM/SIGINT finish the current step, save a checkpoint and exit 75; a second
signal quits at once; every DDP rank stops after the same step; the resume is bit-exact.

Runs are forked copies of this process (no interpreter start-up, as in test_resume.py) that run
the real CLI entry point (`python -m evertrain.train run CONFIG --resume`); the signals are real
ones, sent by this process at random moments after the child's log shows a chosen step.
"""

from __future__ import annotations

import gc
import json
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch.nn.parallel import DistributedDataParallel

from evertrain.train import TrainConfig, run
from evertrain.train import loop as train_loop
from evertrain.train.checkpoint import latest_valid_checkpoint, list_checkpoints
from evertrain.train.logging import read_log
from evertrain.train.preempt import (
    DUPLICATE_WINDOW_S,
    EXIT_PREEMPTED,
    PreemptionGuard,
    RunPreempted,
)

from .conftest import fork_child, make_config, rank_env, stack_then_kill
from .test_distributed import free_port
from .test_resume import comparable, one_thread

STEPS = 48  # long enough that a signal sent after step <= 12 lands well before the end
STEP_TOKENS = 256
CHILD_TIMEOUT_S = 180.0


def preempt_config(out_dir: Path, data: dict[str, str], **overrides: Any) -> dict[str, Any]:
    """Deterministic tiny run with dropout on (the restored RNG state matters) and periodic
    checkpoints every 8 steps, so most signals land between two of them."""
    settings: dict[str, Any] = {
        "deterministic": True,
        "model__dropout": 0.1,
        "budget_tokens": STEPS * STEP_TOKENS,
        "eval_interval_tokens": 8 * STEP_TOKENS,
        "checkpoint_interval_tokens": 8 * STEP_TOKENS,
        **overrides,
    }
    return make_config(out_dir, data, **settings)


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def final_weights(out_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    newest, _ = latest_valid_checkpoint(out_dir / "checkpoints")
    return load_file(newest / "model.safetensors")


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ---------------------------------------------------------------------- forked children


def cli_body(config_path: Path) -> Callable[[], int]:
    def body() -> int:
        from evertrain.train.__main__ import main

        sys.argv = [
            "python -m evertrain.train",
            "run",
            str(config_path),
            "--resume",
            "--no-progress",
        ]
        main()
        return 0

    return body


def wait_all(pids: list[int], timeout: float = CHILD_TIMEOUT_S) -> list[int]:
    """Exit statuses as subprocess reports them (-N: killed by signal N); kill and fail on a hang
    (a rank that stopped at another step than its peers would wait in a collective forever)."""
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    while len(statuses) < len(pids):
        for pid in pids:
            if pid in statuses:
                continue
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                statuses[pid] = (
                    -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
                )
        if time.monotonic() > deadline:
            hung = [pid for pid in pids if pid not in statuses]
            for pid in hung:
                stack_then_kill(pid)
            pytest.fail(
                f"children {hung} hung (stacks above, in stderr); killed; ended: {statuses}"
            )
        time.sleep(0.01)
    return [statuses[pid] for pid in pids]


def wait_for_step(out_dir: Path, step: int, pids: list[int]) -> None:
    """Poll the child's log until it shows a train record at ``step`` or later."""
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    log = out_dir / "log.jsonl"
    while time.monotonic() < deadline:
        records = read_log(log)
        if any(r.get("kind") == "train" and r["step"] >= step for r in records):
            return
        for pid in pids:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                pytest.fail(f"child {pid} ended before step {step}")
        time.sleep(0.002)
    pytest.fail(f"no step {step} in {log} after {CHILD_TIMEOUT_S} s")


def assert_stopped_after_a_whole_step(out_dir: Path, first_possible: int, signal_name: str) -> int:
    """No work lost beyond the current step: the newest checkpoint is at the last logged step.

    Returns that step.
    """
    records = read_log(out_dir / "log.jsonl")
    last_logged = max(r["step"] for r in records if r["kind"] == "train")
    stops = [r for r in records if r["kind"] == "preempted"]
    newest, meta = latest_valid_checkpoint(out_dir / "checkpoints")
    assert first_possible <= last_logged < STEPS
    assert meta["step"] == last_logged
    assert [(r["step"], r["signal"], r["checkpoint"]) for r in stops] == [
        (last_logged, signal_name, str(newest))
    ]
    assert not [p for p in (out_dir / "checkpoints").iterdir() if p.name.startswith(".")]
    return last_logged


# ---------------------------------------------------------------------- the reference run


@pytest.fixture(scope="module")
def reference(tiny_data: dict[str, str], tmp_path_factory: pytest.TempPathFactory):
    """The uninterrupted run: its train/eval log and final weights."""
    out = tmp_path_factory.mktemp("reference") / "run"
    with one_thread():
        run(preempt_config(out, tiny_data), progress=False)
    return comparable(out), final_weights(out)


def resume_in_process(config_path: Path) -> None:
    with one_thread():
        result = run(TrainConfig.from_yaml(config_path), resume=True, progress=False)
    assert result.steps == STEPS and not result.preempted


# ---------------------------------------------------------------------- single process


@pytest.mark.parametrize(
    ("signum", "seed"),
    [(signal.SIGTERM, 0), (signal.SIGTERM, 1), (signal.SIGTERM, 2), (signal.SIGINT, 3)],
    ids=["SIGTERM-seed0", "SIGTERM-seed1", "SIGTERM-seed2", "SIGINT-seed3"],
)
def test_signal_at_a_random_moment_saves_exits_75_and_resumes_exactly(
    signum: int,
    seed: int,
    reference,
    tiny_data: dict[str, str],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    rng = random.Random(seed)
    out = tmp_path / "run"
    config_path = write_config(tmp_path / "config.yaml", preempt_config(out, tiny_data))
    after = rng.randint(2, 12)
    pid = fork_child(cli_body(config_path))
    wait_for_step(out, after, [pid])
    time.sleep(rng.uniform(0.0, 0.02))  # somewhere inside a later step, eval or checkpoint
    os.kill(pid, signum)
    assert wait_all([pid]) == [EXIT_PREEMPTED]
    name = signal.Signals(signum).name
    stopped = assert_stopped_after_a_whole_step(out, after, name)
    stderr = capfd.readouterr().err
    assert f"preempted by {name} at step {stopped} of {STEPS}" in stderr
    assert "done:" not in stderr
    assert comparable(out) != reference[0]  # it really was cut short

    resume_in_process(config_path)
    assert comparable(out) == reference[0]
    assert_same_weights(final_weights(out), reference[1])


def kill_self_at(step: int, *signums: int) -> Callable[[int], None]:
    """A replacement for the loop's per-step test hook that sends real signals to this process."""

    def hook(current: int) -> None:
        if current == step:
            for signum in signums:
                os.kill(os.getpid(), signum)

    return hook


def test_in_process_sigint_raises_run_preempted_and_restores_handlers(
    reference, tiny_data: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The library path: a Ctrl-C in a notebook ends run() with RunPreempted (after saving),
    not with a KeyboardInterrupt that loses the work, and run() leaves no handler behind."""
    out = tmp_path / "run"
    config_path = write_config(tmp_path / "config.yaml", preempt_config(out, tiny_data))
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    # Two deliveries at once (a terminal's Ctrl-C plus torchrun forwarding it): one request.
    monkeypatch.setattr(train_loop, "_kill_hook", kill_self_at(5, signal.SIGINT, signal.SIGINT))
    with one_thread(), pytest.raises(RunPreempted) as stop:
        run(TrainConfig.from_yaml(config_path), progress=False)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    result = stop.value.result
    assert stop.value.signal_name == "SIGINT"
    assert result.preempted and result.steps == 5 and result.tokens == 5 * STEP_TOKENS
    assert result.last_checkpoint == out / "checkpoints" / "step_00000005"
    assert "saved checkpoint" in str(stop.value) and "--resume" in str(stop.value)
    assert_stopped_after_a_whole_step(out, 5, "SIGINT")
    monkeypatch.setattr(train_loop, "_kill_hook", lambda step: None)
    resume_in_process(config_path)
    assert comparable(out) == reference[0]
    assert_same_weights(final_weights(out), reference[1])


def test_signal_at_a_periodic_checkpoint_step_saves_once(
    tiny_data: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At a step that writes its periodic checkpoint anyway the stop adds no second one."""
    out = tmp_path / "run"
    monkeypatch.setattr(train_loop, "_kill_hook", kill_self_at(8, signal.SIGTERM))
    with one_thread(), pytest.raises(RunPreempted) as stop:
        run(preempt_config(out, tiny_data), progress=False)
    assert stop.value.result.last_checkpoint == out / "checkpoints" / "step_00000008"
    assert [meta["step"] for _, meta in list_checkpoints(out / "checkpoints")] == [8]
    # The periodic checkpoint kept its eval losses (the stop itself evaluates nothing).
    assert list_checkpoints(out / "checkpoints")[0][1]["eval"]


def test_signal_in_the_last_step_finishes_normally(
    tiny_data: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal during the final step: the run is complete, nothing to requeue."""
    out = tmp_path / "run"
    monkeypatch.setattr(train_loop, "_kill_hook", kill_self_at(4, signal.SIGTERM))
    with one_thread():
        result = run(make_config(out, tiny_data, budget_tokens=4 * STEP_TOKENS), progress=False)
    assert result.steps == 4 and not result.preempted
    assert not [r for r in read_log(out / "log.jsonl") if r["kind"] == "preempted"]


@pytest.mark.parametrize(
    ("signum", "status"),
    [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, 130)],
    ids=["SIGTERM-killed", "SIGINT-exit130"],
)
def test_second_signal_while_saving_quits_at_once_and_keeps_older_checkpoints(
    signum: int, status: int, reference, tiny_data: dict[str, str], tmp_path: Path
) -> None:
    """First signal after step 10 (delivered twice at once, as under torchrun: one request);
    another one, later, while the stop's checkpoint is being written: the process ends at once
    (SIGTERM: killed by it, 143 in a shell; SIGINT: the CLI exits 130) without finishing that
    checkpoint, and the periodic one at step 8 is intact and resumes exactly."""
    from evertrain.train import checkpoint as ckpt

    out = tmp_path / "run"
    config_path = write_config(tmp_path / "config.yaml", preempt_config(out, tiny_data))

    def body() -> int:
        armed = threading.Event()
        write = ckpt._write_synced

        def write_then_signal(path: Path, data: bytes) -> str:
            digest = write(path, data)
            if armed.is_set():  # inside the stop's checkpoint, after its weights file
                time.sleep(DUPLICATE_WINDOW_S + 0.2)
                os.kill(os.getpid(), signum)
                time.sleep(30)  # never reached: the signal ends the process (or raises)
            return digest

        def first_signal(step: int) -> None:
            if step == 10:
                armed.set()
                os.kill(os.getpid(), signum)
                os.kill(os.getpid(), signum)

        ckpt._write_synced = write_then_signal
        train_loop._kill_hook = first_signal
        return cli_body(config_path)()

    assert wait_all([fork_child(body)]) == [status]
    # The step-10 checkpoint never got its meta.json: only a temp dir, which is no candidate.
    assert latest_valid_checkpoint(out / "checkpoints")[1]["step"] == 8
    assert [p.name for p in (out / "checkpoints").iterdir() if p.name.startswith(".")] != []
    assert not [r for r in read_log(out / "log.jsonl") if r["kind"] == "preempted"]
    resume_in_process(config_path)
    assert comparable(out) == reference[0]
    assert_same_weights(final_weights(out), reference[1])


# ---------------------------------------------------------------------- the guard itself


@pytest.fixture
def recorder():
    """A SIGTERM handler that records calls, installed for the test and removed after it."""
    calls: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    yield calls
    signal.signal(signal.SIGTERM, previous)


def test_guard_installs_and_restores_the_previous_handlers(recorder: list[int]) -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with PreemptionGuard() as guard:
        assert guard.installed
        assert signal.getsignal(signal.SIGTERM) == guard._handle
        assert signal.getsignal(signal.SIGINT) == guard._handle
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGTERM)  # the same request forwarded again: absorbed
        assert guard.requested == signal.SIGTERM and guard.signal_name == "SIGTERM"
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    assert recorder == []  # the first two signals only set the flag


def test_second_signal_after_the_window_goes_to_the_previous_handler(recorder: list[int]) -> None:
    with PreemptionGuard(duplicate_window_s=0.0) as guard:
        signal.raise_signal(signal.SIGTERM)
        assert recorder == []
        signal.raise_signal(signal.SIGTERM)
        assert recorder == [signal.SIGTERM]  # re-delivered to what was there before
        assert not guard.installed
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_second_sigint_raises_keyboard_interrupt() -> None:
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt), PreemptionGuard(duplicate_window_s=0.0):
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_run_preempted_survives_pickling(tmp_path: Path) -> None:
    """A worker process of a pool sends its exception back pickled."""
    import pickle

    from evertrain.train import RunResult

    result = RunResult(tmp_path, 512, 2, 0.1, {}, tmp_path / "step_00000002", preempted=True)
    copy = pickle.loads(pickle.dumps(RunPreempted("preempted by SIGTERM", result, "SIGTERM")))
    assert (str(copy), copy.result, copy.signal_name) == ("preempted by SIGTERM", result, "SIGTERM")


def test_ignored_signal_stays_ignored() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with PreemptionGuard() as guard:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            signal.raise_signal(signal.SIGINT)
            assert guard.requested == 0
    finally:
        signal.signal(signal.SIGINT, previous)


def test_run_outside_the_main_thread_trains_unguarded(
    tiny_data: dict[str, str], tmp_path: Path
) -> None:
    """signal.signal is main-thread only: run() in a worker thread must simply train."""
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    outcome: dict[str, Any] = {}

    def train() -> None:
        with PreemptionGuard() as guard:
            outcome["installed"] = guard.installed
        try:
            outcome["steps"] = run(
                make_config(tmp_path / "run", tiny_data, budget_tokens=2 * STEP_TOKENS),
                progress=False,
            ).steps
        except BaseException as error:  # noqa: BLE001 -- reported by the assertion below
            outcome["error"] = repr(error)

    worker = threading.Thread(target=train)
    worker.start()
    worker.join()
    assert outcome == {"installed": False, "steps": 2}
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


# ---------------------------------------------------------------------- DDP


DDP_STEPS = 24


def ddp_config(out_dir: Path, data: dict[str, str]) -> dict[str, Any]:
    # No dropout: rank 0's RNG state is the one saved, so dropout draws of rank 1 would differ
    # after a resume (docs/train.md, Distributed).
    return make_config(
        out_dir,
        data,
        deterministic=True,
        budget_tokens=DDP_STEPS * STEP_TOKENS,
        eval_interval_tokens=8 * STEP_TOKENS,
        checkpoint_interval_tokens=8 * STEP_TOKENS,
    )


def ddp_ranks(
    config_path: Path, report_dir: Path, env: dict[int, dict[str, str]] | None = None
) -> list[int]:
    """Fork two gloo ranks running the config (resume=True); each writes how it ended.
    ``env``: extra variables per rank."""
    port = str(free_port())
    pids = []
    for rank in range(2):

        def body(rank: int = rank) -> int:
            cfg = TrainConfig.from_yaml(config_path)
            alive: list[int] = []
            teardown = train_loop.distributed.teardown

            def counting_teardown(info: Any) -> None:
                # DDP wrappers still alive when the group goes: their reducer would free it
                # later with the GIL held, which can deadlock in gloo (distributed.teardown).
                gc.collect()
                alive.append(sum(isinstance(o, DistributedDataParallel) for o in gc.get_objects()))
                teardown(info)

            train_loop.distributed.teardown = counting_teardown
            try:
                result, code = run(cfg, resume=True, progress=False), 0
            except RunPreempted as stop:
                result, code = stop.result, EXIT_PREEMPTED
            outcome = {"steps": result.steps, "preempted": result.preempted, "code": code,
                       "ddp_alive_at_teardown": alive}  # fmt: skip
            (report_dir / f"rank{rank}.json").write_text(json.dumps(outcome))
            return code

        pids.append(fork_child(body, {**rank_env(rank, port), **(env or {}).get(rank, {})}))
    return pids


def test_ddp_one_rank_signalled_both_stop_at_the_same_step_and_resume_exactly(
    tiny_data: dict[str, str], tmp_path: Path
) -> None:
    reference_path = write_config(
        tmp_path / "reference.yaml", ddp_config(tmp_path / "ref", tiny_data)
    )
    assert wait_all(ddp_ranks(reference_path, tmp_path)) == [0, 0]
    assert json.loads((tmp_path / "rank1.json").read_text())["ddp_alive_at_teardown"] == [0]
    reference_log, reference_weights = comparable(tmp_path / "ref"), final_weights(tmp_path / "ref")

    out = tmp_path / "run"
    config_path = write_config(tmp_path / "config.yaml", ddp_config(out, tiny_data))
    # Only rank 1 is told (SIGTERM to itself right after step 3; a signal sent from here could
    # land after the last step on a loaded machine, where a 24-step run takes under a second);
    # rank 0 writes the files.
    pids = ddp_ranks(config_path, tmp_path, env={1: {"EVERTRAIN_TEST_KILL_AT": "sigterm:3"}})
    assert wait_all(pids) == [EXIT_PREEMPTED, EXIT_PREEMPTED]
    ends = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert ends[0] == ends[1] and ends[0]["preempted"]
    assert ends[0]["ddp_alive_at_teardown"] == [0]  # the traceback does not keep the reducer
    records = read_log(out / "log.jsonl")
    stopped = max(r["step"] for r in records if r["kind"] == "train")
    assert ends[0]["steps"] == stopped < DDP_STEPS
    assert latest_valid_checkpoint(out / "checkpoints")[1]["step"] == stopped
    # Rank 0 never got the signal but names it: the vote carries the signal number.
    assert [(r["step"], r["signal"]) for r in records if r["kind"] == "preempted"] == [
        (stopped, "SIGTERM")
    ]

    assert wait_all(ddp_ranks(config_path, tmp_path)) == [0, 0]
    assert comparable(out) == reference_log
    assert_same_weights(final_weights(out), reference_weights)
