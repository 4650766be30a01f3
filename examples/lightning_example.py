"""A tiny LightningModule trained on CPU with an evertrain schedule stepped every optimizer step.

    python examples/lightning_example.py            # cosine in steps
    python examples/lightning_example.py --tokens   # WSD in tokens, counted per batch

``configure_optimizers`` returns ``lightning_scheduler_config(...)``: ``interval="step"``, so
Lightning calls ``ScheduleLR.step()`` after each optimizer step; its ``state_dict()`` (spec and
progress) goes into Lightning checkpoints.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch


def make_module(spec: Any) -> Any:
    """Build a LightningModule that records the LR each update used (in ``used_lrs``)."""
    import lightning.pytorch as pl

    from evertrain.adapters.lightning import lightning_scheduler_config

    class TinyRegressor(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1)
            )
            self.used_lrs: list[float] = []

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            self.used_lrs.append(self.optimizers().param_groups[0]["lr"])
            return torch.nn.functional.mse_loss(self.net(x), y)

        def configure_optimizers(self) -> dict[str, Any]:
            optimizer = torch.optim.AdamW(self.parameters(), lr=spec_peak(spec), weight_decay=0.01)
            return {
                "optimizer": optimizer,
                "lr_scheduler": lightning_scheduler_config(optimizer, spec),
            }

    return TinyRegressor()


def spec_peak(spec: Any) -> float:
    from evertrain.adapters._common import resolve_schedule

    return float(resolve_schedule(spec).to_spec().get("peak", 1e-3))


def make_loader(n_batches: int, batch_size: int, seed: int = 0) -> torch.utils.data.DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n_batches * batch_size, 8, generator=generator)
    y = x.sum(dim=1, keepdim=True)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch_size)


def main(
    *, tokens: bool = False, max_steps: int = 20, batch_size: int = 4, root_dir: str | None = None
) -> Any:
    """Train ``max_steps`` optimizer steps; return the module (``used_lrs``) and trainer."""
    import tempfile

    import lightning.pytorch as pl

    from evertrain.adapters.lightning import LightningTokenCounter

    torch.manual_seed(0)
    if tokens:
        # "Tokens" here are rows x features of each batch (LightningTokenCounter counts the size
        # of the first tensor): 32 per batch of 4.
        spec = {
            "name": "wsd",
            "peak": 1e-2,
            "total": max_steps * batch_size * 8,
            "warmup": 64,
            "decay_fraction": 0.25,
            "unit": "tokens",
        }
    else:
        spec = {"name": "cosine", "peak": 1e-2, "total": max_steps, "warmup": 4, "floor": 1e-4}
    module = make_module(spec)
    trainer = pl.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[LightningTokenCounter()] if tokens else [],
        default_root_dir=root_dir or tempfile.mkdtemp(prefix="evertrain-lightning-"),
    )
    trainer.fit(module, make_loader(max_steps, batch_size))
    return module, trainer


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", action="store_true")
    cli = parser.parse_args()
    module, trainer = main(tokens=cli.tokens)
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    for step, lr in enumerate(module.used_lrs):
        print(f"update {step:3d}  lr {lr:.4e}")
    print(f"progress: {scheduler.progress} {scheduler.unit}")
