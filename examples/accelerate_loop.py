"""A plain Hugging Face Accelerate training loop on an evertrain schedule, with gradient
accumulation and a resumable checkpoint (``accelerator.save_state`` / ``load_state``).

    python examples/accelerate_loop.py                  # 12 updates of 4 micro-batches each
    python examples/accelerate_loop.py --resume-at 6    # stop at update 6, resume, finish

``prepare_scheduler(accelerator, optimizer, spec)`` steps the schedule once per optimizer update,
so ``scheduler.step()`` may be called on every micro-batch (inside ``accelerator.accumulate``).
"""

from __future__ import annotations

import argparse
import tempfile

import torch

SPEC = "wsd:peak=1e-2,total=12,warmup=3,decay_fraction=0.5,floor=1e-3"


def main(
    *,
    updates: int = 12,
    accumulation: int = 4,
    checkpoint_dir: str | None = None,
    resume: bool = False,
    stop_after: int | None = None,
) -> list[float]:
    """Train; return the LR of each optimizer update taken in this call."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from evertrain.adapters.accelerate import prepare_scheduler

    AcceleratorState._reset_state(True)  # several loops in one process (the tests, --resume-at)
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=accumulation)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0, weight_decay=0.1)
    model, optimizer = accelerator.prepare(model, optimizer)
    scheduler = prepare_scheduler(accelerator, optimizer, SPEC)
    if resume:
        accelerator.load_state(checkpoint_dir)  # weights, optimizer and the schedule's progress
    generator = torch.Generator().manual_seed(1)
    lrs: list[float] = []
    while scheduler.scheduler.steps < (stop_after or updates):
        x = torch.randn(4, 8, generator=generator)
        with accelerator.accumulate(model):
            loss = torch.nn.functional.mse_loss(model(x), x.sum(1, keepdim=True))
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()  # every micro-batch: the schedule moves once per update
            optimizer.zero_grad()
    if checkpoint_dir is not None:
        accelerator.save_state(checkpoint_dir)
    return lrs


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resume-at", type=int, default=None)
    cli = parser.parse_args()
    if cli.resume_at is None:
        lrs = main()
    else:
        folder = tempfile.mkdtemp(prefix="evertrain-accelerate-")
        lrs = main(checkpoint_dir=folder, stop_after=cli.resume_at)
        lrs += main(checkpoint_dir=folder, resume=True)
    print(" ".join(f"{lr:.4g}" for lr in lrs))
