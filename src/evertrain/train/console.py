"""What the trainer says on the console (with ``progress=True``; ``--no-progress`` is quiet).

Once at start: the parameter count, where the run starts from (a new run, a resume from which
checkpoint and step, a fork of which parent) and the resolved config; then each evaluation's
losses as they are measured. The numbers are those written to ``log.jsonl``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def start_message(
    cfg: Any,
    *,
    params: int,
    total_steps: int,
    step: int,
    tokens: int,
    resume: bool,
    resumed_from: Path | None,
    parent: dict[str, Any] | None,
) -> str:
    """The lines printed once before the first step."""
    if resumed_from is not None:
        where = f"resuming from checkpoint {resumed_from} at step {step} ({tokens:,} tokens)"
    elif resume:
        where = f"--resume: no checkpoint in {cfg.out_dir} yet, starting at step 0"
    elif parent:
        where = (
            f"forked from {parent.get('checkpoint')} (its step {parent.get('step')}, "
            f"{int(parent.get('tokens') or 0):,} tokens); this run starts at step 0"
        )
    else:
        where = f"new run in {cfg.out_dir}"
    head = (
        f"model: {params / 1e6:.2f}M parameters ({params:,}); {where}; "
        f"{total_steps - step} steps of {cfg.tokens_per_step:,} tokens to go"
    )
    body = "\n".join(f"  {line}" for line in cfg.to_yaml().rstrip().splitlines())
    return f"{head}\nconfig (resolved):\n{body}"


def eval_message(step: int, tokens: int, losses: dict[str, float]) -> str:
    """``eval step 40 (10,240 tokens): prose 3.2104, code 4.0127``"""
    values = ", ".join(f"{name} {loss:.4f}" for name, loss in losses.items())
    return f"eval step {step} ({tokens:,} tokens): {values or 'no eval sets'}"
