"""evertrain's trainer against Hugging Face ``Trainer`` on the same Llama: losses and throughput.

Both sides train the same local ``save_pretrained`` Llama (loaded from the same directory, so
the same initial weights) on the same batches, in one process, fp32, with the same optimizer and
schedule:

- **batches**: the HF side is fed, in order, the rows evertrain's ``MixtureSampler`` draws for
  the run (same datasets, seed, batch and sequence length); the loss is the mean next-token
  cross-entropy over every position on both sides (``Trainer.compute_loss`` is overridden: the
  rows are already shifted, and HF's ``labels=`` would shift them again);
- **AdamW**: ``Trainer``'s own optimizer decays every parameter except biases and norm weights,
  embeddings included, while evertrain leaves embeddings undecayed (``train/optim.py``); the HF
  side is therefore given evertrain's ``param_groups`` explicitly (``optimizers=``), same lr,
  betas, eps and weight decay;
- **schedule**: the same evertrain schedule (step units), through
  ``evertrain.adapters.torch.ScheduleLR`` on the HF side: update k uses s(k) on both;
- **clipping**: both clip the global L2 norm to 1.0 (``max_grad_norm=1.0``, evertrain's
  ``grad_clip: 1.0``).

``parity_max_abs_loss_diff`` is the largest |loss_evertrain - loss_HF| over the steps on a tiny
Llama (tests/train/test_hf_parity.py asserts it). ``hf_trainer_ratio`` is evertrain tokens/s
over HF Trainer tokens/s on a ~10M-parameter Llama, end to end (model load, set-up, training; the
evertrain side also runs its final eval and checkpoint), median of interleaved repeats, with
the median-step ratio beside it.

- **determinism**: the parity runs are ``deterministic: true``. The throughput runs use both
  trainers' default, deterministic algorithms off (evertrain's ``deterministic: false``, the
  Trainer's ``full_determinism=False``): with them on, PyTorch fills the memory of each new
  tensor (NaN for floats; ``torch.utils.deterministic.fill_uninitialized_memory``), work the
  Trainer side does not do.
  ``hf_trainer_ratio_evertrain_deterministic`` is evertrain with ``deterministic: true`` against
  the same Trainer runs (how the ratio was measured up to 2026-12-01 13:00 UTC).

If ``benchmarks/hf_fsdp.py`` exists, its ``measure()`` adds its keys (FSDP resharding and
memory numbers) to the same JSON.

Run:  python benchmarks/hf.py            # CPU, one thread, writes benchmarks/results/hf.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from evertrain._atomic import atomic_write_json  # noqa: E402

#: Llama shapes: "tiny" for the parity check, "10M" for throughput.
MODELS = {
    "tiny": {"hidden_size": 32, "intermediate_size": 64, "layers": 2, "heads": 4, "kv_heads": 2},
    "10M": {"hidden_size": 384, "intermediate_size": 768, "layers": 6, "heads": 6, "kv_heads": 6},
}
OPTIMIZER = {"weight_decay": 0.1, "betas": [0.9, 0.95], "eps": 1e-8, "grad_clip": 1.0}


def write_llama(directory: Path, vocab_size: int, size: str = "tiny", seed: int = 0) -> Path:
    """A randomly initialised Llama of ``size`` written with ``save_pretrained``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = MODELS[size]
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=shape["hidden_size"],
        intermediate_size=shape["intermediate_size"],
        num_hidden_layers=shape["layers"],
        num_attention_heads=shape["heads"],
        num_key_value_heads=shape["kv_heads"],
        max_position_embeddings=256,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(directory)
    return directory


def run_config(
    model_dir: Path,
    data_dir: Path,
    out_dir: Path,
    *,
    steps: int,
    batch: int,
    seq_len: int,
    deterministic: bool = True,
) -> dict[str, Any]:
    """The evertrain train config both sides mirror (the HF side reads the same fields)."""
    return {
        "out_dir": str(out_dir),
        "device": "cpu",
        "seed": 0,
        "deterministic": deterministic,
        "model": {"hf": str(model_dir), "seq_len": seq_len},
        "data": {"train": {"web": str(data_dir)}, "eval_tokens": batch * seq_len},
        "schedule": {"name": "cosine", "peak": 1e-3, "total": steps, "warmup": max(1, steps // 10)},
        "optimizer": dict(OPTIMIZER),
        "batch_size": batch,
        "budget_tokens": steps * batch * seq_len,
        "eval_interval_tokens": 10**15,
        "checkpoint_interval_tokens": 10**15,
    }


def evertrain_side(config: dict[str, Any]) -> dict[str, Any]:
    """Train with ``evertrain.train.run``: per-step losses, end-to-end and median-step tokens/s."""
    from evertrain.train import history, run

    start = time.perf_counter()
    result = run(config, progress=False)
    wall = time.perf_counter() - start
    records = history(config["out_dir"])
    return {
        "losses": [r["loss"] for r in records],
        "wall": result.tokens / wall,
        "steady": statistics.median(r["tokens_per_s"] for r in records if r.get("tokens_per_s")),
    }


def sampler_rows(config: dict[str, Any]) -> list[tuple[Any, Any]]:
    """The (x, y) batches evertrain's trainer draws for ``config``, in order: the sampler is built
    exactly as the loop builds it (one process)."""
    from evertrain.data import MixtureSampler, PreparedDataset

    data = config["data"]
    sets = {name: PreparedDataset(path) for name, path in data["train"].items()}
    sampler = MixtureSampler(
        sets,
        weights={name: 1.0 for name in sets},
        seq_len=config["model"]["seq_len"],
        batch_size=config["batch_size"],
        seed=config["seed"],
    )
    steps = config["budget_tokens"] // (config["batch_size"] * config["model"]["seq_len"])
    return [sampler.next_batch() for _ in range(steps)]


def hf_trainer_side(
    config: dict[str, Any], out_dir: Path, equal_work: bool = False
) -> dict[str, Any]:
    """Train the same model with ``transformers.Trainer`` on the same batches, optimizer and
    schedule: per-step losses, end-to-end and median-step tokens/s.

    ``equal_work``: the Trainer also does what ``evertrain.train.run`` does at the end of a run,
    with its own machinery: it saves a checkpoint at the last step (``save_strategy="steps"``:
    weights, optimizer, scheduler, RNG) and evaluates the model once on ``eval_tokens`` tokens
    (one batch here, as on the evertrain side)."""
    from transformers import (
        AutoModelForCausalLM,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from evertrain.adapters.torch import ScheduleLR
    from evertrain.schedules import from_spec
    from evertrain.train.optim import param_groups

    start = time.perf_counter()
    batches = sampler_rows(config)
    batch = config["batch_size"]
    tokens_per_step = batch * config["model"]["seq_len"]

    class Rows(torch.utils.data.IterableDataset):
        """The sampler's rows in order; the Trainer's DataLoader regroups them into the batches."""

        def __iter__(self):  # noqa: ANN204
            for x, y in batches:
                for row in range(len(x)):
                    yield {
                        "input_ids": torch.from_numpy(x[row]),
                        "targets": torch.from_numpy(y[row]),
                    }

    def collate(rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {key: torch.stack([row[key] for row in rows]) for key in ("input_ids", "targets")}

    losses: list[float] = []
    step_seconds: list[float] = []

    class SameLoss(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001, ANN201
            logits = model(input_ids=inputs["input_ids"], use_cache=False).logits
            loss = F.cross_entropy(
                logits.float().view(-1, logits.size(-1)), inputs["targets"].reshape(-1)
            )
            losses.append(float(loss.detach()))
            return (loss, logits) if return_outputs else loss

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
            step_seconds.append(time.perf_counter() - self.started)

    model = AutoModelForCausalLM.from_pretrained(
        config["model"]["hf"], local_files_only=True, dtype=torch.float32
    )
    opt = config["optimizer"]
    optimizer = torch.optim.AdamW(
        param_groups(model, opt["weight_decay"]),  # evertrain's grouping, not the Trainer's
        lr=0.0,
        betas=tuple(opt["betas"]),
        eps=opt["eps"],
    )
    scheduler = ScheduleLR(optimizer, from_spec(config["schedule"]))
    args = TrainingArguments(
        output_dir=str(out_dir),
        per_device_train_batch_size=batch,
        max_steps=len(batches),
        max_grad_norm=opt["grad_clip"],
        gradient_accumulation_steps=1,
        logging_strategy="no",
        save_strategy="steps" if equal_work else "no",
        save_steps=len(batches),
        report_to="none",
        use_cpu=True,
        seed=config["seed"],
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
    )
    trainer = SameLoss(
        model=model,
        args=args,
        train_dataset=Rows(),
        data_collator=collate,
        optimizers=(optimizer, scheduler),
        callbacks=[StepTimer()],
    )
    # The Trainer side runs at its default, deterministic algorithms off (full_determinism=False;
    # run() restores the setting it changed, so none leaks in from an evertrain run before).
    assert not torch.are_deterministic_algorithms_enabled()
    trainer.train()
    if equal_work:  # the final evaluation evertrain runs: one batch's forward, no gradient
        eval_rows = config["data"]["eval_tokens"] // config["model"]["seq_len"]
        x_eval = torch.from_numpy(batches[0][0][:eval_rows])
        model.eval()
        with torch.no_grad():
            model(input_ids=x_eval, use_cache=False)
    wall = time.perf_counter() - start
    return {
        "losses": losses,
        "wall": len(batches) * tokens_per_step / wall,
        "steady": tokens_per_step / statistics.median(step_seconds),
    }


def prepare_data(root: Path, vocab_size: int, max_bytes: int) -> Path:
    """Prepared stdlib English with a trained byte-level BPE of ``vocab_size``."""
    from evertrain.data import prepare

    prepare(
        ["stdlib-english"],
        root / "data",
        vocab_size=vocab_size,
        max_bytes=max_bytes,
        progress=False,
    )
    return root / "data"


def parity(root: Path, steps: int = 20) -> dict[str, Any]:
    """Both sides on a tiny Llama for ``steps`` steps: the losses and their largest difference."""
    data = prepare_data(root, 512, 400_000)
    model_dir = write_llama(root / "tiny-llama", 512, "tiny")
    config = run_config(model_dir, data, root / "parity-ours", steps=steps, batch=4, seq_len=32)
    ours = evertrain_side(config)["losses"]
    theirs = hf_trainer_side(config, root / "parity-hf")["losses"]
    return {
        "steps": steps,
        "evertrain_losses": ours,
        "hf_trainer_losses": theirs,
        "parity_max_abs_loss_diff": max(abs(a - b) for a, b in zip(ours, theirs, strict=True)),
    }


def throughput(root: Path, repeats: int, steps: int, batch: int, seq_len: int) -> dict[str, Any]:
    """Tokens/s of both sides on the ~10M Llama, interleaved repeats after a warm-up of each."""
    data = prepare_data(root, 4096, 3_000_000)
    model_dir = write_llama(root / "llama-10m", 4096, "10M")
    from safetensors.torch import load_file

    params = sum(t.numel() for t in load_file(str(model_dir / "model.safetensors")).values())
    counter = iter(range(10**6))

    def one(side: str, n_steps: int) -> dict[str, Any]:
        out = root / f"{side}-{next(counter)}"
        config = run_config(
            model_dir,
            data,
            out,
            steps=n_steps,
            batch=batch,
            seq_len=seq_len,
            deterministic=side == "ours_deterministic",  # both trainers' default is off
        )
        if side.startswith("ours"):
            return evertrain_side(config)
        return hf_trainer_side(config, out, equal_work=side == "hf")

    # "hf": the Trainer doing the same work as run() (training, a final checkpoint, a final
    # evaluation); "hf_train_only": its training loop alone (no checkpoint, no evaluation);
    # "ours_deterministic": evertrain with deterministic: true (the Trainer has it off).
    sides = ("ours", "hf", "hf_train_only", "ours_deterministic")
    for side in sides:
        one(side, 3)  # warm-up: imports, allocator, first-call kernels
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    load: list[float] = []  # the 1-minute load average after each repeat (2 cores here)
    for repeat in range(repeats):
        # Rotate which goes first so drifting machine load biases no side.
        shift = repeat % len(sides)
        for side in sides[shift:] + sides[:shift]:
            result = one(side, steps)
            runs[side].append({"wall": result["wall"], "steady": result["steady"]})
        load.append(os.getloadavg()[0])
        print(
            f"repeat {repeat} (load {load[-1]:.1f}): evertrain {runs['ours'][-1]['wall']:,.0f} tok/s "
            f"(deterministic: true {runs['ours_deterministic'][-1]['wall']:,.0f}), "
            f"HF Trainer {runs['hf'][-1]['wall']:,.0f} tok/s "
            f"(training loop alone {runs['hf_train_only'][-1]['wall']:,.0f})",
            flush=True,
        )

    def median(side: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[side])

    def spread(side: str, key: str) -> list[float]:
        values = [r[key] for r in runs[side]]
        return [min(values), max(values)]

    return {
        "params": params,
        "shape": MODELS["10M"],
        "vocab_size": 4096,
        "batch_size": batch,
        "seq_len": seq_len,
        "steps": steps,
        "repeats": repeats,
        "tokens_per_s": median("ours", "wall"),
        "hf_trainer_tokens_per_s": median("hf", "wall"),
        "hf_trainer_ratio": median("ours", "wall") / median("hf", "wall"),
        "hf_trainer_ratio_definition": (
            f"end to end, equal work: both train the {steps} steps, save a checkpoint at the "
            "end (weights + optimizer state) and evaluate once on the same number of tokens; "
            "deterministic algorithms off on both (each trainer's default)"
        ),
        "hf_trainer_ratio_evertrain_deterministic": median("ours_deterministic", "wall")
        / median("hf", "wall"),
        "evertrain_deterministic_tokens_per_s": median("ours_deterministic", "wall"),
        "hf_trainer_train_only_tokens_per_s": median("hf_train_only", "wall"),
        "hf_trainer_ratio_vs_train_only": median("ours", "wall") / median("hf_train_only", "wall"),
        "steady_ratio": median("ours", "steady") / median("hf", "steady"),
        "spread_tokens_per_s": {
            "evertrain": spread("ours", "wall"),
            "hf_trainer": spread("hf", "wall"),
            "hf_trainer_train_only": spread("hf_train_only", "wall"),
            "evertrain_deterministic": spread("ours_deterministic", "wall"),
        },
        # Each repeat's two runs ran back to back: their ratio is less exposed to load drifting
        # between repeats than the ratio of the medians.
        "paired_ratios": [
            o["wall"] / h["wall"] for o, h in zip(runs["ours"], runs["hf"], strict=True)
        ],
        "paired_ratios_evertrain_deterministic": [
            o["wall"] / h["wall"]
            for o, h in zip(runs["ours_deterministic"], runs["hf"], strict=True)
        ],
        "runs": runs,
        "load_average_per_repeat": load,
    }


def fsdp_numbers() -> dict[str, Any]:
    """``benchmarks/hf_fsdp.py``'s ``measure()`` if that module exists (the FSDP numbers)."""
    path = Path(__file__).with_name("hf_fsdp.py")
    if not path.is_file():
        return {}
    spec = importlib.util.spec_from_file_location("hf_fsdp", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return dict(module.measure())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12, help="steps per timed run (10M Llama)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (as train.py)"
    )
    parser.add_argument("--skip-fsdp", action="store_true", help="do not run benchmarks/hf_fsdp.py")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "hf.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="evertrain-bench-hf-"))
    print(f"working in {root} ...", flush=True)
    started = time.perf_counter()
    load_at_start = os.getloadavg()[0]  # other processes share the cores: say how many ran
    parity_result = parity(root / "parity")
    print(f"parity: max |loss diff| {parity_result['parity_max_abs_loss_diff']:.3g}", flush=True)
    speed = throughput(root / "speed", args.repeats, args.steps, args.batch_size, args.seq_len)
    import transformers

    result = {
        "benchmark": "evertrain.train.run vs transformers.Trainer (same Llama, data, AdamW, schedule, one process)",
        "command": "python benchmarks/hf.py "
        + " ".join(
            f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}")  # a switch has no value
            for k, v in vars(args).items()
            if v not in (None, False) and k != "out"
        ),
        "device": "cpu",
        "dtype": "float32",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": load_at_start,
        "hf_trainer_ratio": speed["hf_trainer_ratio"],
        "parity_max_abs_loss_diff": parity_result["parity_max_abs_loss_diff"],
        "parity": parity_result,
        "throughput_10M": speed,
    }
    if not args.skip_fsdp:
        result.update(fsdp_numbers())
    result["seconds"] = round(time.perf_counter() - started, 1)
    atomic_write_json(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
