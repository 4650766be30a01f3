"""Train a tiny, randomly initialised GPT-2 with Hugging Face ``Trainer`` on an evertrain schedule.

Nothing is downloaded: the model config is built here and the data are random token ids.

    python examples/hf_trainer.py                # WSD in optimizer steps (EvertrainTrainer)
    python examples/hf_trainer.py --tokens       # WSD in tokens, fed by TokenCountingCallback
    python examples/hf_trainer.py --explicit     # Trainer(optimizers=create_optimizer_and_scheduler(...))

The native path is ``EvertrainTrainer(schedule=spec, args=TrainingArguments(...))``: the Trainer
builds its own optimizer (``optim``, ``learning_rate``, ``weight_decay``, ``adam_beta2`` are
honoured) and its ``create_scheduler`` builds the evertrain scheduler; the spec leaves ``peak``,
``warmup`` and ``total`` out, so ``learning_rate``, ``warmup_steps`` and ``max_steps`` fill them.
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Any

import torch


def make_dataset(
    n_examples: int, vocab_size: int, max_len: int, seed: int = 0
) -> list[dict[str, Any]]:
    """Random token sequences of varying length (so padding and token counting matter)."""
    generator = torch.Generator().manual_seed(seed)
    examples = []
    for _ in range(n_examples):
        length = int(torch.randint(max_len // 2, max_len + 1, (1,), generator=generator))
        ids = torch.randint(1, vocab_size, (length,), generator=generator).tolist()
        examples.append({"input_ids": ids})
    return examples


def pad_collate(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Right-pad with id 0; padding is masked out of attention and of the loss."""
    width = max(len(example["input_ids"]) for example in batch)
    input_ids = torch.zeros(len(batch), width, dtype=torch.long)
    attention_mask = torch.zeros(len(batch), width, dtype=torch.long)
    for row, example in enumerate(batch):
        ids = torch.tensor(example["input_ids"])
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def main(
    *,
    tokens: bool = False,
    max_steps: int = 12,
    batch_size: int = 4,
    grad_accum: int = 1,
    output_dir: str | None = None,
    save_steps: int | None = None,
    resume_from_checkpoint: str | None = None,
    explicit: bool = False,
) -> tuple[Any, Any]:
    """Run the Trainer; return ``(trainer, scheduler)`` so callers can inspect the logs."""
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    from evertrain.adapters.huggingface import (
        EvertrainTrainer,
        TokenCountingCallback,
        create_optimizer_and_scheduler,
    )

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=64,
        n_positions=32,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
    )
    model = GPT2LMHeadModel(config)
    dataset = make_dataset(max_steps * batch_size * grad_accum, config.vocab_size, max_len=24)
    if tokens:
        # ~1000 non-padding tokens per step of 4 x ~18 tokens: plan the schedule in tokens.
        planned_tokens = max_steps * batch_size * grad_accum * 18
        spec = {
            "name": "wsd",
            "total": planned_tokens,
            "warmup": planned_tokens // 6,
            "decay_fraction": 0.3,
            "decay_shape": "1-sqrt",
            "unit": "tokens",
        }
    else:
        # peak, warmup and total are left to learning_rate, warmup_steps and max_steps.
        spec = {"name": "wsd", "decay_fraction": 0.3, "decay_shape": "1-sqrt"}
    args = TrainingArguments(
        output_dir=output_dir or tempfile.mkdtemp(prefix="evertrain-hf-"),
        max_steps=max_steps,
        learning_rate=1e-3,
        warmup_steps=0 if tokens else 2,
        weight_decay=0.1,
        adam_beta2=0.95,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum,
        logging_steps=1,
        save_strategy="no" if save_steps is None else "steps",
        save_steps=save_steps or 500,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    common = dict(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=pad_collate,
        callbacks=[TokenCountingCallback()],
    )
    if explicit:
        spec = {**spec, "peak": 1e-3, "total": spec.get("total", max_steps)}
        spec.setdefault("warmup", 2)
        optimizer, scheduler = create_optimizer_and_scheduler(
            model, spec, weight_decay=0.1, betas=(0.9, 0.95)
        )
        trainer = Trainer(**common, optimizers=(optimizer, scheduler))
    else:
        trainer = EvertrainTrainer(schedule=spec, **common)
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    scheduler = trainer.lr_scheduler
    return trainer, scheduler


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", action="store_true", help="schedule in tokens instead of steps")
    parser.add_argument("--max-steps", type=int, default=12)
    parser.add_argument(
        "--explicit", action="store_true", help="build optimizer and scheduler by hand"
    )
    cli = parser.parse_args()
    trainer, scheduler = main(tokens=cli.tokens, max_steps=cli.max_steps, explicit=cli.explicit)
    for entry in trainer.state.log_history:
        if "learning_rate" in entry:
            print(
                f"step {entry['step']:3d}  lr {entry['learning_rate']:.3e}  loss {entry['loss']:.3f}"
            )
    print(f"progress: {scheduler.progress} {scheduler.unit}")
