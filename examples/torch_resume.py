"""Plain PyTorch: a token-unit WSD schedule, a batch-size change, a crash and an exact resume.

    python examples/torch_resume.py

Trains a tiny model in two ways -- uninterrupted, and stopped half-way, checkpointed (atomically)
and resumed in a fresh process state with a larger batch -- and checks that every update used the
same learning rate: ``ScheduleLR.state_dict()`` carries the spec and the tokens seen.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import torch

from evertrain._atomic import atomic_write_bytes
from evertrain.adapters.torch import ScheduleLR

SEQ_LEN = 32
SPEC = {
    "name": "wsd",
    "peak": 3e-3,
    "total": 40 * 8 * SEQ_LEN,  # planned in tokens: 40 steps of 8 sequences ...
    "warmup": 4 * 8 * SEQ_LEN,
    "decay_fraction": 0.25,
    "decay_shape": "1-sqrt",
    "floor": 3e-5,
    "unit": "tokens",
}


def batch_size_at(step: int) -> int:
    """8 sequences per step, then 16 from step 12 on (so the run needs fewer steps)."""
    return 8 if step < 12 else 16


def build() -> tuple[torch.nn.Module, torch.optim.Optimizer, ScheduleLR]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(64, 32), torch.nn.Linear(32, 64))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0, weight_decay=0.1)
    return model, optimizer, ScheduleLR(optimizer, SPEC)


def train(model, optimizer, scheduler, start: int, stop: int) -> list[float]:
    """Steps ``start..stop-1`` on deterministic random tokens; returns the LR each update used."""
    used = []
    for step in range(start, stop):
        generator = torch.Generator().manual_seed(step)
        tokens = torch.randint(0, 64, (batch_size_at(step), SEQ_LEN + 1), generator=generator)
        logits = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 64), tokens[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step(tokens=tokens[:, :-1].numel())  # the tokens this update consumed
    return used


def save(path: Path, model, optimizer, scheduler) -> None:
    buffer = io.BytesIO()
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
        },
        buffer,
    )
    atomic_write_bytes(path, buffer.getvalue())  # a crash mid-write never leaves a torn checkpoint


def main(steps: int = 26, stop_at: int = 10) -> tuple[list[float], list[float]]:
    uninterrupted = train(*build(), 0, steps)

    model, optimizer, scheduler = build()
    first = train(model, optimizer, scheduler, 0, stop_at)
    path = Path(tempfile.mkdtemp(prefix="evertrain-resume-")) / "checkpoint.pt"
    save(path, model, optimizer, scheduler)
    del model, optimizer, scheduler  # "crash"

    model, optimizer, scheduler = build()
    state = torch.load(path, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    resumed = first + train(model, optimizer, scheduler, stop_at, steps)
    return uninterrupted, resumed


if __name__ == "__main__":
    uninterrupted, resumed = main()
    for step, (a, b) in enumerate(zip(uninterrupted, resumed, strict=True)):
        print(f"step {step:2d}  batch {batch_size_at(step):2d}  lr {a:.6e}  resumed {b:.6e}")
    assert uninterrupted == resumed, "resume changed the learning rates"
    print("identical learning rates at every step")
