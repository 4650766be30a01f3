"""FSDP2 evidence: resharding resumes and memory per rank (CPU, gloo, under ``torchrun``).

Two numbers, both produced through the same ``torchrun`` entry point users run:

``reshard_resume_max_abs_diff`` (target <= 1e-5)
    A tiny GPT trained with ``parallel.strategy: fsdp`` on 2 ranks for 12 steps is the
    reference. The same run is SIGKILLed on every rank after step 6 (the trainer's test kill hook;
    the newest checkpoint is step 4, a sharded DCP folder written by 2 ranks) and resumed with
    ``--resume`` on 1 rank and, separately, on 4 ranks. The number is the largest absolute
    difference between any resumed run's per-step training loss and the reference's, over all
    12 steps. ``single_process_max_abs_diff`` compares the reference with a one-process DDP-default
    run of the same config (FSDP == one process).

``fsdp_memory_ratio`` (target <= 0.65)
    Peak resident memory (the kernel's ``VmHWM``, whole process) of each rank of a 2-rank job
    building a ~75M-parameter GPT (fp32; parameters, gradients and AdamW moments ~1.2 GB per
    replica, activations of a 1 x 16-token micro-batch are small beside them) and running 2
    AdamW steps (the peak comes in the first: gradients and moments are all allocated there), FSDP over DDP (the larger rank of each). It measures the process honestly: the
    interpreter, torch and gloo baseline (``baseline_rss_bytes``, reported) counts on both sides,
    as do the full model each rank builds before ``fully_shard`` cuts it into shards, and DDP's
    gradient buckets. ``tensor_bytes`` beside it counts only the live parameters, gradients and
    optimizer state each rank holds after the last step (``to_local()`` of every DTensor).
    ``MALLOC_MMAP_THRESHOLD_`` is fixed for both sides so that freed tensors leave the resident
    set (glibc's adaptive threshold would otherwise keep them in the heap on one side only).

Run:  python benchmarks/hf_fsdp.py                 # writes benchmarks/results/hf_fsdp.json
      (``measure()`` returns the same dict; benchmarks/hf.py merges its keys into hf.json)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
STEPS = 12
KILL_AFTER = 6
# Parameters and AdamW moments dominate: wide layers, a short sequence, a small micro-batch.
MEMORY_MODEL = {"n_layer": 6, "n_head": 16, "d_model": 1024, "seq_len": 16, "vocab_size": 512}
MEMORY_BATCH_PER_RANK = 1
MEMORY_STEPS = 2


def _env(kill_at: str | None = None) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("EVERTRAIN_TEST_KILL_AT", None)
    if kill_at:
        env["EVERTRAIN_TEST_KILL_AT"] = kill_at
    src = HERE.parent / "src"
    if src.is_dir():  # this checkout's package, whatever the environment has installed
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    return env


def _torchrun(
    nproc: int, args: list[str], kill_at: str | None = None, extra_env: dict[str, str] | None = None
) -> int:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc_per_node", str(nproc), *args,
    ]  # fmt: skip
    completed = subprocess.run(
        command, env={**_env(kill_at), **(extra_env or {})}, capture_output=True, timeout=900
    )
    if kill_at is None and completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{completed.stderr.decode()[-3000:]}")
    return completed.returncode


def _train(config_path: Path, nproc: int, kill_at: str | None = None) -> int:
    args = ["-m", "evertrain.train", "run", str(config_path), "--resume", "--no-progress"]
    return _torchrun(nproc, args, kill_at)


def _losses(out_dir: Path) -> list[float]:
    records = [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]
    train = [r for r in records if r.get("kind") == "train"]
    if [r["step"] for r in train] != list(range(1, STEPS + 1)):
        raise RuntimeError(f"{out_dir}: expected train records for steps 1..{STEPS}")
    return [float(r["loss"]) for r in train]


def _write_config(root: Path, name: str, data_dir: Path, strategy: str) -> Path:
    tokens_per_step = 4 * 64
    cfg = {
        "out_dir": str(root / name),
        "device": "cpu",
        "seed": 0,
        "deterministic": True,
        "model": {"n_layer": 2, "n_head": 4, "d_model": 64, "seq_len": 64},
        "data": {"train": {"web": str(data_dir)}, "eval_tokens": 1024},
        "schedule": {
            "name": "cosine",
            "peak": 3e-3,
            "total": STEPS * tokens_per_step,
            "warmup": 3 * tokens_per_step,
            "unit": "tokens",
        },
        "batch_size": 4,  # splits over 1, 2 and 4 ranks: the global batch is the same
        "budget_tokens": STEPS * tokens_per_step,
        "eval_interval_tokens": 4 * tokens_per_step,
        "checkpoint_interval_tokens": 4 * tokens_per_step,
        "parallel": {"strategy": strategy},
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def measure_resharding(root: Path) -> dict[str, Any]:
    """Kill a 2-rank FSDP run after step 6, resume it on 1 and on 4 ranks; compare losses."""
    from evertrain.data import prepare

    data_dir = root / "data"
    prepare(["stdlib-english"], data_dir, vocab_size=512, max_bytes=400_000, progress=False)
    started = time.perf_counter()
    reference = _write_config(root, "reference", data_dir, "fsdp")
    _train(reference, 2)
    reference_losses = _losses(root / "reference")
    single = _write_config(root, "single", data_dir, "ddp")
    _train(single, 1)
    single_diff = max(
        abs(a - b) for a, b in zip(_losses(root / "single"), reference_losses, strict=True)
    )
    resumes = []
    for world_size in (1, 4):
        name = f"resume_on_{world_size}"
        config_path = _write_config(root, name, data_dir, "fsdp")
        status = _train(config_path, 2, kill_at=f"step:{KILL_AFTER}")
        if status == 0:
            raise RuntimeError("the kill hook did not stop the 2-rank run")
        checkpoints = sorted(p.name for p in (root / name / "checkpoints").iterdir())
        _train(config_path, world_size)
        diffs = [abs(a - b) for a, b in zip(_losses(root / name), reference_losses, strict=True)]
        resumes.append(
            {
                "written_by_ranks": 2,
                "resumed_on_ranks": world_size,
                "killed_after_step": KILL_AFTER,
                "checkpoints_at_kill": checkpoints,
                "max_abs_loss_diff": max(diffs),
            }
        )
    return {
        "reshard_resume_max_abs_diff": max(r["max_abs_loss_diff"] for r in resumes),
        "resharding": {
            "model": {"n_layer": 2, "n_head": 4, "d_model": 64, "seq_len": 64},
            "global_batch": 4,
            "steps": STEPS,
            "reference": "2-rank FSDP, uninterrupted",
            "resumes": resumes,
            "reference_losses": reference_losses,
            "single_process_max_abs_diff": single_diff,
            "wall_seconds": time.perf_counter() - started,
        },
    }


# ---------------------------------------------------------------------------- memory
def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _local_bytes(tensor: Any) -> int:
    local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
    return local.numel() * local.element_size()


def memory_worker(strategy: str, out_dir: Path) -> None:
    """One rank (under torchrun): build, shard or replicate, a few AdamW steps; write its memory."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from evertrain.train import fsdp
    from evertrain.train.config import ParallelConfig
    from evertrain.train.model import GPT, GPTConfig
    from evertrain.train.optim import build_optimizer

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    baseline = _status_bytes("VmRSS")
    torch.manual_seed(0)
    model = GPT(GPTConfig(**MEMORY_MODEL))
    fsdp.prepare_model(model, ParallelConfig(strategy=strategy), world_size, torch.device("cpu"))
    step_model = model if fsdp.is_sharded(model) else DistributedDataParallel(model)
    optimizer = build_optimizer(model, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8)
    generator = torch.Generator().manual_seed(rank)
    shape = (MEMORY_BATCH_PER_RANK, MEMORY_MODEL["seq_len"])
    tensor_bytes = {}
    for _ in range(MEMORY_STEPS):
        x = torch.randint(0, MEMORY_MODEL["vocab_size"], shape, generator=generator)
        _, loss = step_model(x, x)
        loss.backward()
        fsdp.clip_grad_norm(list(model.parameters()), 1.0)
        optimizer.step()
        tensor_bytes = {
            "parameters": sum(_local_bytes(p) for p in model.parameters()),
            "gradients": sum(
                _local_bytes(p.grad) for p in model.parameters() if p.grad is not None
            ),
            "optimizer_state": sum(
                _local_bytes(value)
                for state in optimizer.state.values()
                for value in state.values()
                if torch.is_tensor(value)
            ),
        }
        optimizer.zero_grad(set_to_none=True)
    record = {
        "rank": rank,
        "peak_rss_bytes": _status_bytes("VmHWM"),
        "baseline_rss_bytes": baseline,
        "tensor_bytes": tensor_bytes,
        "params": model.num_params(),
    }
    (out_dir / f"{strategy}-rank{rank}.json").write_text(json.dumps(record))
    dist.destroy_process_group()


def measure_memory(root: Path, repeats: int = 1) -> dict[str, Any]:
    """Peak RSS per rank of 2-rank FSDP over 2-rank DDP, same model and steps."""
    runs: dict[str, list[list[dict[str, Any]]]] = {"fsdp": [], "ddp": []}
    malloc = {"MALLOC_MMAP_THRESHOLD_": str(1 << 20)}  # both sides alike
    for repeat in range(repeats):
        for strategy in ("ddp", "fsdp") if repeat % 2 == 0 else ("fsdp", "ddp"):
            out_dir = Path(tempfile.mkdtemp(dir=root))
            worker = [str(Path(__file__).resolve()), "--memory-worker", strategy, str(out_dir)]
            _torchrun(2, worker, extra_env=malloc)
            runs[strategy].append(
                [json.loads((out_dir / f"{strategy}-rank{r}.json").read_text()) for r in range(2)]
            )

    def peak(strategy: str) -> int:  # the larger rank, the smallest repeat (least disturbed)
        return min(max(rank["peak_rss_bytes"] for rank in job) for job in runs[strategy])

    def tensors(strategy: str) -> int:
        return max(sum(rank["tensor_bytes"].values()) for rank in runs[strategy][0])

    return {
        "fsdp_memory_ratio": peak("fsdp") / peak("ddp"),
        "memory": {
            "measure": "peak RSS (VmHWM) per rank, whole process, larger of the 2 ranks; "
            "min over repeats",
            "model": MEMORY_MODEL,
            "params": runs["ddp"][0][0]["params"],
            "batch_per_rank": MEMORY_BATCH_PER_RANK,
            "steps": MEMORY_STEPS,
            "world_size": 2,
            "repeats": repeats,
            "malloc_mmap_threshold": malloc["MALLOC_MMAP_THRESHOLD_"],
            "fsdp_peak_rss_bytes": peak("fsdp"),
            "ddp_peak_rss_bytes": peak("ddp"),
            "tensor_bytes_ratio": tensors("fsdp") / tensors("ddp"),
            "runs": runs,
        },
    }


def measure(repeats: int = 1) -> dict[str, Any]:
    """Both measurements (about 4 minutes on 2 busy CPU cores): ``reshard_resume_max_abs_diff``,
    ``fsdp_memory_ratio`` and their details, the keys benchmarks/hf.py merges into hf.json."""

    root = Path(tempfile.mkdtemp(prefix="evertrain-bench-fsdp-"))
    try:
        result = _measure_in(root, repeats)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return result


def _measure_in(root: Path, repeats: int) -> dict[str, Any]:
    import torch

    result = {
        "benchmark": "FSDP2 resharding resume and memory per rank (CPU, gloo, torchrun)",
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    result.update(measure_resharding(root))
    result.update(measure_memory(root, repeats=repeats))
    result["targets"] = {"reshard_resume_max_abs_diff": 1e-5, "fsdp_memory_ratio": 0.65}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=1, help="memory jobs per strategy")
    parser.add_argument("--out", default=str(HERE / "results" / "hf_fsdp.json"))
    parser.add_argument(
        "--memory-worker", nargs=2, metavar=("STRATEGY", "DIR"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.memory_worker:
        memory_worker(args.memory_worker[0], Path(args.memory_worker[1]))
        return
    from evertrain._atomic import atomic_write_json

    result = measure(repeats=args.repeats)
    result["command"] = f"python benchmarks/hf_fsdp.py --repeats {args.repeats}"
    atomic_write_json(args.out, result)
    print(
        json.dumps(
            {k: result[k] for k in ("reshard_resume_max_abs_diff", "fsdp_memory_ratio")}
            | {"tensor_bytes_ratio": result["memory"]["tensor_bytes_ratio"]}
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
