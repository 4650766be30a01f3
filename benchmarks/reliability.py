"""Fault injection on a small training run: every SIGKILL resumes bit-exact, no fallback is silent.

The run: the trainer's tiny GPT (2 layers, d_model 64, seq 64, batch 4 = 256 tokens a step) on two
small prepared datasets, ``--steps`` steps (300), a checkpoint and an eval every 20 steps,
``keep_last: 2``, deterministic kernels, dropout 0.1 (so the restored RNG state matters). Every
training process is ``evertrain train run CONFIG --resume`` (the CLI), in a forked copy of this
process (one torch thread, no interpreter start-up per run).

Trials are chains: a run is SIGKILLed, the resume is killed again, and so on until the chain is
spent; then it resumes to the end and is compared with an uninterrupted reference run (the train
and eval log records minus wall-clock fields, and the final checkpoint's weights sha256). A
chain's kills count as bit-exact only if that final comparison holds and no temp folder is left.

- ``random_x3``: three SIGKILLs at random wall-clock moments;
- ``step_x3``: ``EVERTRAIN_TEST_KILL_AT=step:<n>`` three times (right after random steps);
- ``writer_x4``: ``EVERTRAIN_TEST_KILL_AT=checkpoint:<step>:<point>`` four times inside the
  checkpoint writer (after the weights, after the state, before the rename, after the rename),
  often twice in a row at the same checkpoint as the resume re-writes it.

Quick mode (the test's smoke run): 20 steps, a checkpoint every 5, one kill in the writer, two
fallback cases.

Fallback cases (a run killed at step ~3/4, then its checkpoints damaged, then ``--resume``): the
newest checkpoint's ``meta.json`` deleted / truncated / non-UTF-8 / garbage JSON, its weights or
state corrupted, a garbage line in ``log.jsonl``, every checkpoint corrupt, and the run folder
moved elsewhere. A case is a *silent fallback* when the resume exits 0 using something other than
the newest checkpoint (or dropping log lines) without a warning line naming what it skipped; an
all-corrupt run must refuse (exit 2). Fallback resumes are compared bit-exact as well.

``orphans_left``: with ``--torchrun`` (on in the full sweep), an ``evertrain demo`` parent (2
workers) and a 2-rank ``torchrun ... evertrain train run`` launcher, each SIGKILLed once its
children train (benchmarks/_orphans.py, which the orphan tests use too); the children still alive
10 s later are counted (then killed). Without ``--torchrun`` the key counts processes left by the
killed single-process runs (their children, which should be none).

Run:  python benchmarks/reliability.py            # the full sweep, writes benchmarks/results/reliability.json
      python benchmarks/reliability.py --quick --out /tmp/r.json   # seconds: the test's smoke run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from evertrain._atomic import atomic_write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/_orphans.py
from _orphans import alive, kill_parent  # noqa: E402
from _orphans import children as children_of  # noqa: E402
from evertrain.data import prepare
from evertrain.train import history

RESULTS = Path(__file__).resolve().parent / "results" / "reliability.json"
WORDS = "the quick brown fox jumps over a lazy dog and the cat runs far away from home".split()
CODE = ["def f(x):", "    return x + 1", "for i in range(10):", "    print(i)", "import os"]
WRITER_POINTS = ["after_weights", "after_state", "before_rename", "after_rename"]
TOKENS_PER_STEP = 256


# ------------------------------------------------------------------ set-up


def prepare_data(root: Path) -> dict[str, str]:
    root.mkdir(parents=True)
    rng = random.Random(0)
    prose = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60))) for _ in range(400)]
    code = ["\n".join(rng.choice(CODE) for _ in range(rng.randint(2, 12))) for _ in range(400)]
    paths = {}
    for name, docs in (("prose", prose), ("code", code)):
        source = root / f"{name}.jsonl"
        source.write_text("\n".join(json.dumps({"text": d}) for d in docs), encoding="utf-8")
        paths[name] = source
    first = prepare([paths["prose"]], root / "prose", vocab_size=300, progress=False)
    prepare([paths["code"]], root / "code", tokenizer=first.tokenizer_path, progress=False)
    return {"prose": str(root / "prose"), "code": str(root / "code")}


def write_config(
    path: Path, out_dir: Path, data: dict[str, str], steps: int, interval: int
) -> Path:
    budget = steps * TOKENS_PER_STEP
    config = {
        "out_dir": str(out_dir),
        "device": "cpu",
        "seed": 0,
        "deterministic": True,
        "model": {"n_layer": 2, "n_head": 4, "d_model": 64, "seq_len": 64, "dropout": 0.1},
        "data": {"train": data, "eval_tokens": 512},
        "schedule": {
            "name": "cosine",
            "peak": 3e-3,
            "total": budget,
            "warmup": budget // 10,
            "unit": "tokens",
        },
        "batch_size": 4,
        "budget_tokens": budget,
        "eval_interval_tokens": interval * TOKENS_PER_STEP,
        "checkpoint_interval_tokens": interval * TOKENS_PER_STEP,
        "keep_last": 2,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# ------------------------------------------------------------------ one training process


def start(config: Path, stderr_path: Path, kill_at: str | None = None) -> int:
    """Fork ``evertrain train run CONFIG --resume`` (stderr to a file); return its pid."""
    pid = os.fork()
    if pid == 0:  # child: never return into the benchmark
        code = 1
        try:
            fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 2)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.environ.pop("EVERTRAIN_TEST_KILL_AT", None)
            if kill_at:
                os.environ["EVERTRAIN_TEST_KILL_AT"] = kill_at
            torch.set_num_threads(1)
            from evertrain.cli import app

            app(["train", "run", str(config), "--resume", "--no-progress"], prog_name="evertrain")
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:  # noqa: BLE001 - report, then leave with status 1
            import traceback

            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    return pid


def wait(pid: int, timeout: float | None = None) -> int | None:
    """Exit status as subprocess reports it (-signal), or None if still running at ``timeout``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG if deadline else 0)
        if done:
            return os.waitstatus_to_exitcode(status)
        if deadline and time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


# ------------------------------------------------------------------ comparing


def comparable(out_dir: Path) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in record.items() if k != "tokens_per_s"}
        for record in history(out_dir, "train") + history(out_dir, "eval")
    ]


def final_weights_sha(out_dir: Path, steps: int) -> str | None:
    path = out_dir / "checkpoints" / f"step_{steps:08d}" / "model.safetensors"
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


class Sweep:
    def __init__(
        self, root: Path, data: dict[str, str], steps: int, interval: int, rng: random.Random
    ) -> None:
        self.root, self.data, self.steps, self.rng = root, data, steps, rng
        self.interval = interval
        self.count = 0
        self.kills_tried = 0
        self.kills_bit_exact = 0
        self.orphans = 0
        self.trials: list[dict[str, Any]] = []
        self.cases: list[dict[str, Any]] = []
        ref = self.new_run("reference")
        began = time.perf_counter()
        status = wait(start(ref["config"], ref["stderr"]))
        self.run_seconds = time.perf_counter() - began
        if status != 0:
            raise SystemExit(f"reference run failed:\n{ref['stderr'].read_text()[-3000:]}")
        self.reference = comparable(ref["out"])
        self.reference_sha = final_weights_sha(ref["out"], steps)

    def new_run(self, label: str) -> dict[str, Path]:
        self.count += 1
        folder = self.root / f"{self.count:03d}-{label}"
        folder.mkdir()
        out = folder / "run"
        config = write_config(folder / "config.yaml", out, self.data, self.steps, self.interval)
        return {"folder": folder, "out": out, "config": config, "stderr": folder / "stderr.txt"}

    def bit_exact(self, out: Path) -> bool:
        return (
            comparable(out) == self.reference
            and final_weights_sha(out, self.steps) == self.reference_sha
        )

    def finish(self, run: dict[str, Path]) -> int:
        status = wait(start(run["config"], run["stderr"]))
        return status if status is not None else -1

    def kill_once(self, run: dict[str, Path], kill_at: str | None) -> bool:
        """One killed process: by the hook ``kill_at``, else at a random moment (within the first
        third of a whole run's time, so that a chain of kills lands before the run ends). True if
        it was killed (a hook the run never reaches lets it finish)."""
        pid = start(run["config"], run["stderr"], kill_at)
        if kill_at:
            status = wait(pid)
        else:
            status = wait(pid, timeout=self.rng.uniform(0.3, max(0.5, self.run_seconds / 3)))
            if status is None:
                os.kill(pid, signal.SIGKILL)
                status = wait(pid)
        killed = status == -signal.SIGKILL
        if killed:
            self.orphans += sum(alive(child) for child in children_of(pid))
        return killed

    def trial(self, kind: str, kill_ats: list[str | None]) -> None:
        run = self.new_run(kind)
        kills = sum(self.kill_once(run, kill_at) for kill_at in kill_ats)
        status = self.finish(run)
        exact = status == 0 and self.bit_exact(run["out"])
        leftovers = [p.name for p in (run["out"] / "checkpoints").glob(".tmp-*")]
        self.kills_tried += kills
        self.kills_bit_exact += kills if exact and not leftovers else 0
        self.trials.append(
            {
                "kind": kind,
                "kill_at": [k or "random" for k in kill_ats],
                "kills": kills,
                "exit": status,
                "bit_exact": exact,
                "temp_folders_left": leftovers,
            }
        )
        shutil.rmtree(run["folder"])

    # -------------------------------------------------------------- fallback cases
    def damaged_base(self) -> tuple[dict[str, Path], Path]:
        """A run killed between checkpoints at ~3/4 of the way (the last two checkpoints kept);
        each fallback case resumes its own copy of it."""
        run = self.new_run("killed-base")
        every = self.interval
        kill_step = (self.steps * 3 // 4) // every * every + every // 2
        self.kill_once(run, f"step:{kill_step}")
        return run, Path("checkpoints") / f"step_{kill_step - every // 2:08d}"

    def damaged_case(
        self,
        base: tuple[dict[str, Path], Path],
        name: str,
        damage: Any,
        expect_refusal: bool = False,
    ) -> None:
        run = self.new_run(f"case-{name}")
        shutil.copytree(base[0]["out"], run["out"])
        target_out = damage(run["out"], run["out"] / base[1]) or run["out"]
        if target_out != run["out"]:  # the run folder was moved: resume it where it is now
            write_config(run["config"], target_out, self.data, self.steps, self.interval)
        status = self.finish(run)
        said = run["stderr"].read_text(errors="replace") if run["stderr"].exists() else ""
        lines = [
            line for line in said.splitlines() if line.startswith(("evertrain: warning:", "error:"))
        ]
        messaged = [line for line in lines if "skipped" in line or "unusable" in line]
        fell_back = name != "moved_run_folder"
        silent = status == 0 and fell_back and not messaged
        if expect_refusal:
            silent = status == 0  # exiting 0 here means it restarted from step 0
        exact = status == 0 and self.bit_exact(target_out)
        self.cases.append(
            {
                "case": name,
                "exit": status,
                "expected_exit": 2 if expect_refusal else 0,
                "message": messaged[0] if messaged else None,
                "silent_fallback": silent,
                "bit_exact": exact if not expect_refusal else None,
                "traceback": "Traceback" in said,
            }
        )
        shutil.rmtree(run["folder"])

    def fallback_cases(self, quick: bool) -> None:
        def meta(content: bytes | None):  # noqa: ANN202
            def damage(out: Path, newest: Path) -> None:
                if content is None:
                    (newest / "meta.json").unlink()
                else:
                    (newest / "meta.json").write_bytes(content)

            return damage

        def file_damage(filename: str):  # noqa: ANN202
            def damage(out: Path, newest: Path) -> None:
                data = (newest / filename).read_bytes()
                (newest / filename).write_bytes(data[: len(data) // 2])

            return damage

        def all_corrupt(out: Path, newest: Path) -> None:
            for folder in (out / "checkpoints").iterdir():
                if not folder.name.startswith("."):
                    (folder / "state.pt").write_bytes(b"torn")

        def log_garbage(out: Path, newest: Path) -> None:
            lines = (out / "log.jsonl").read_bytes().splitlines(keepends=True)
            lines.insert(len(lines) // 2, b"\xff\xfe not a record\n")
            (out / "log.jsonl").write_bytes(b"".join(lines))

        def moved(out: Path, newest: Path) -> Path:
            target = out.parent / "moved" / "run"
            shutil.copytree(out, target)
            shutil.rmtree(out)
            return target

        cases = {
            "meta_truncated": meta(b'{"format": 1, "step": 2'),
            "all_checkpoints_corrupt": all_corrupt,
        }
        if not quick:
            cases |= {
                "meta_deleted": meta(None),
                "meta_non_utf8": meta(b'{"format": 1, "name": "\xff"}'),
                "meta_garbage_json": meta(b"[1, 2, 3]"),
                "weights_truncated": file_damage("model.safetensors"),
                "state_truncated": file_damage("state.pt"),
                "log_garbage_line": log_garbage,
                "moved_run_folder": moved,
            }
        base = self.damaged_base()
        for name, damage in cases.items():
            self.damaged_case(base, name, damage, expect_refusal=name == "all_checkpoints_corrupt")
        shutil.rmtree(base[0]["folder"])


# ------------------------------------------------------------------ torchrun parent death


def parent_kill_orphans(work: Path) -> dict[str, Any]:
    """SIGKILL an `evertrain demo` parent and a 2-rank torchrun launcher once their children
    train; count the children alive 10 s later (benchmarks/_orphans.py, shared with the tests)."""
    found: dict[str, Any] = {}
    for kind in ("demo", "torchrun"):
        outcome = kill_parent(kind, signal.SIGKILL, work / kind, grace_s=10.0)
        found[kind] = {
            "children_seen": len(outcome.children),
            "alive_10s_after_parent_sigkill": len(outcome.orphans),
            "seconds_to_gone": outcome.seconds_to_gone,
        }
    return found


# ------------------------------------------------------------------ main


def plan_trials(
    steps: int, interval: int, quick: bool, rng: random.Random
) -> list[tuple[str, list[str | None]]]:
    checkpoints = list(range(interval, steps + 1, interval))

    def writer(step: int | None = None, point: str | None = None) -> str:
        return f"checkpoint:{step or rng.choice(checkpoints)}:{point or rng.choice(WRITER_POINTS)}"

    if quick:
        return [("writer", [writer(interval * 2, "after_state")])]
    trials: list[tuple[str, list[str | None]]] = []
    # Chains: every process of a trial is killed until the chain is spent, then it finishes.
    trials += [("random_x3", [None, None, None]) for _ in range(6)]
    for _ in range(2):
        first = rng.randint(1, steps // 3)
        trials.append(
            ("step_x3", [f"step:{first + k * rng.randint(1, steps // 4)}" for k in range(3)])
        )
    for _ in range(5):
        chain, step = [], rng.choice(checkpoints[: len(checkpoints) // 2])
        for _ in range(4):
            point = rng.choice(WRITER_POINTS)
            chain.append(writer(step, point))
            # Before the rename the resume re-writes the same checkpoint: kill it there again
            # (twice in a row), or at a later one; after the rename only a later one is left.
            if point == "after_rename" or rng.random() < 0.5:
                step = min(step + interval * rng.randint(1, 3), checkpoints[-1])
        trials.append(("writer_x4", chain))
    return trials


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run of seconds (the test)")
    parser.add_argument("--steps", type=int, default=None, help="steps per run (300; quick 20)")
    parser.add_argument(
        "--interval", type=int, default=None, help="steps between checkpoints (20; quick 5)"
    )
    parser.add_argument("--torchrun", action=argparse.BooleanOptionalAction, default=None,
                        help="kill a torchrun launcher and count orphaned ranks (full sweep: on)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    steps = args.steps or (20 if args.quick else 300)
    interval = args.interval or (5 if args.quick else 20)
    use_torchrun = (not args.quick) if args.torchrun is None else args.torchrun
    rng = random.Random(args.seed)
    began = time.perf_counter()
    # Import once here what every forked run would import again: the CLI, and torch._inductor,
    # which the first torch.use_deterministic_algorithms call imports (~10 s on a loaded CPU).
    import evertrain.cli  # noqa: F401

    torch.use_deterministic_algorithms(torch.are_deterministic_algorithms_enabled())
    with tempfile.TemporaryDirectory(prefix="evertrain-reliability-") as tmp:
        root = Path(tmp)
        data = prepare_data(root / "data")
        sweep = Sweep(root, data, steps, interval, rng)
        for kind, kill_ats in plan_trials(steps, interval, args.quick, rng):
            sweep.trial(kind, kill_ats)
        sweep.fallback_cases(args.quick)
        torchrun = None
        if use_torchrun:
            try:
                torchrun = parent_kill_orphans(root / "parent-kill")
            except (OSError, subprocess.SubprocessError, TimeoutError) as error:  # say so
                torchrun = {"error": str(error)}
    orphans = sweep.orphans + sum(
        entry.get("alive_10s_after_parent_sigkill", 0)
        for entry in (torchrun or {}).values()
        if isinstance(entry, dict)
    )
    silent = sum(case["silent_fallback"] for case in sweep.cases)
    payload = {
        "what": "fault-injection sweep of `evertrain train run --resume` (benchmarks/reliability.py)",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "mode": "quick" if args.quick else "full",
        "run": {
            "steps": steps,
            "checkpoint_every_steps": interval,
            "tokens_per_step": TOKENS_PER_STEP,
            "keep_last": 2,
            "model": "GPT 2 layers, d_model 64, seq 64, batch 4, dropout 0.1, deterministic",
            "uninterrupted_run_seconds": round(sweep.run_seconds, 2),
        },
        "kills_tried": sweep.kills_tried,
        "kills_bit_exact": sweep.kills_bit_exact,
        "silent_fallbacks": silent,
        "orphans_left": orphans,
        "orphans_check": (
            "children of each SIGKILLed run (none expected)"
            + (
                " + workers of a SIGKILLed `evertrain demo` and ranks of a SIGKILLed 2-rank torchrun"
                " launcher alive 10 s later"
                if torchrun
                else ""
            )
        ),
        "parent_kill": torchrun,
        "trials": len(sweep.trials),
        "fallback_cases": len(sweep.cases),
        "fallback_cases_bit_exact": sum(bool(c["bit_exact"]) for c in sweep.cases),
        "fallback_cases_with_traceback": sum(c["traceback"] for c in sweep.cases),
        "wall_seconds": round(time.perf_counter() - began, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
        "seed": args.seed,
        "trial_details": sweep.trials,
        "case_details": sweep.cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, payload)
    summary = {k: v for k, v in payload.items() if not isinstance(v, (list, dict))}
    print(json.dumps(summary, indent=2))
    return payload


if __name__ == "__main__":
    main()
