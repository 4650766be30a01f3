"""A compact GPT decoder, nanoGPT style.

Pre-norm transformer blocks (LayerNorm -> causal self-attention -> residual, LayerNorm -> MLP ->
residual), rotary (RoPE, Su et al. 2021, arXiv:2104.09864) or learned absolute positions, token
embeddings tied to the output projection (Press & Wolf 2017), attention through
``F.scaled_dot_product_attention`` (flash / memory-efficient kernels where the device has them).

Initialisation follows GPT-2 (Radford et al. 2019): every weight ~ N(0, 0.02), and the two
projections that write into the residual stream are scaled by 1/sqrt(2 * n_layer) so the residual
variance does not grow with depth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class GPTConfig:
    """Shape of the model. ``d_model`` must be divisible by ``n_head``."""

    vocab_size: int
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 128
    seq_len: int = 128
    positional: str = "rope"  # "rope" | "learned"
    tie_embeddings: bool = True
    dropout: float = 0.0
    rope_base: float = 10000.0

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head


def _rope_tables(seq_len: int, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [seq_len, head_dim/2] for rotating pairs (x[2i], x[2i+1]) by angle t * base^(-2i/d)."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float64), inv_freq)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` [batch, heads, time, head_dim] with the half-split (GPT-NeoX / Llama) layout."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    cos = cos[: x.shape[-2]].to(x.dtype)
    sin = sin[: x.shape[-2]].to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=False)
        self.proj.residual_scaled_init = True  # type: ignore[attr-defined]
        self.resid_dropout = nn.Dropout(config.dropout)
        self.use_rope = config.positional == "rope"

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None
    ) -> torch.Tensor:
        batch, time, channels = x.shape
        q, k, v = self.qkv(x).split(channels, dim=2)
        # [batch, time, channels] -> [batch, heads, time, head_dim]
        q = q.view(batch, time, self.n_head, -1).transpose(1, 2)
        k = k.view(batch, time, self.n_head, -1).transpose(1, 2)
        v = v.view(batch, time, self.n_head, -1).transpose(1, 2)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        y = y.transpose(1, 2).contiguous().view(batch, time, channels)
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.d_model, 4 * config.d_model, bias=False)
        self.proj = nn.Linear(4 * config.d_model, config.d_model, bias=False)
        self.proj.residual_scaled_init = True  # type: ignore[attr-defined]
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config)

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rope)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Decoder-only transformer language model.

    ``forward(idx, targets=None)`` returns ``(logits, loss)``; ``loss`` is the mean next-token
    cross-entropy (nats) when ``targets`` is given, else ``None``.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if config.d_model % config.n_head != 0:
            raise ValueError(
                f"n_head={config.n_head} does not divide d_model={config.d_model}; choose n_head dividing d_model"
            )
        if config.positional not in ("rope", "learned"):
            raise ValueError(f"positional={config.positional!r}: choose 'rope' or 'learned'")
        if config.positional == "rope" and config.head_dim % 2:
            raise ValueError(
                f"RoPE needs an even head dimension, got d_model/n_head={config.head_dim}"
            )
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.d_model)
        self.wpe = (
            nn.Embedding(config.seq_len, config.d_model) if config.positional == "learned" else None
        )
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        if config.positional == "rope":
            cos, sin = _rope_tables(config.seq_len, config.head_dim, config.rope_base)
            # Not persistent: derived from the config, so checkpoints hold only learned weights.
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            std = 0.02
            if getattr(module, "residual_scaled_init", False):
                std = 0.02 / math.sqrt(2 * self.config.n_layer)
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count (tied weights counted once); ``non_embedding`` drops the position table."""
        total = sum(p.numel() for p in self.parameters())
        if non_embedding and self.wpe is not None:
            total -= self.wpe.weight.numel()
        return total

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, time = idx.shape
        if time > self.config.seq_len:
            raise ValueError(f"sequence of length {time} exceeds seq_len={self.config.seq_len}")
        x = self.wte(idx)
        rope = None
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(time, device=idx.device))
        else:
            rope = (self.rope_cos, self.rope_sin)
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, rope)
        logits = self.lm_head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss
