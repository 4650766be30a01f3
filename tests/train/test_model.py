"""GPT model and optimizer groups: shapes, causality, RoPE against transformers, init, decay groups."""

from __future__ import annotations

import math

import pytest
import torch

from evertrain.train.model import GPT, GPTConfig, _rope_tables, apply_rope
from evertrain.train.optim import build_optimizer, param_groups


def tiny(**overrides) -> GPT:
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=97, n_layer=2, n_head=4, d_model=32, seq_len=16, **overrides)
    return GPT(config)


@pytest.mark.parametrize("positional", ["rope", "learned"])
def test_loss_at_init_is_near_uniform(positional: str) -> None:
    model = tiny(positional=positional)
    idx, targets = torch.randint(0, 97, (4, 16)), torch.randint(0, 97, (4, 16))
    logits, loss = model(idx, targets)
    assert logits.shape == (4, 16, 97)
    # GPT-2 init keeps logits small: the loss starts within 0.1 nat of ln(vocab).
    assert abs(loss.item() - math.log(97)) < 0.1


@pytest.mark.parametrize("positional", ["rope", "learned"])
def test_future_tokens_do_not_change_past_logits(positional: str) -> None:
    model = tiny(positional=positional).eval()
    idx = torch.randint(0, 97, (1, 16))
    changed = idx.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % 97
    a, _ = model(idx)
    b, _ = model(changed)
    torch.testing.assert_close(a[:, :10], b[:, :10], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_rope_matches_transformers_llama() -> None:
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    torch.manual_seed(1)
    q, k = torch.randn(2, 3, 8, 16), torch.randn(2, 3, 8, 16)
    cos, sin = _rope_tables(8, 16, 10000.0)
    # transformers duplicates the half tables: cos = cat(freqs, freqs).cos()
    hf_cos = torch.cat([cos, cos], dim=-1)[None]
    hf_sin = torch.cat([sin, sin], dim=-1)[None]
    hf_q, hf_k = apply_rotary_pos_emb(q, k, hf_cos, hf_sin)
    torch.testing.assert_close(apply_rope(q, cos, sin), hf_q, rtol=0, atol=1e-6)
    torch.testing.assert_close(apply_rope(k, cos, sin), hf_k, rtol=0, atol=1e-6)


def test_rope_preserves_norm_and_relative_positions() -> None:
    cos, sin = _rope_tables(32, 8, 10000.0)
    q, k = torch.randn(8), torch.randn(8)
    rotated = lambda v, t: apply_rope(v.expand(1, 1, 32, 8), cos, sin)[0, 0, t]  # noqa: E731
    assert torch.allclose(rotated(q, 5).norm(), q.norm(), atol=1e-5)
    # <R_m q, R_n k> depends only on m - n.
    assert torch.allclose(rotated(q, 7) @ rotated(k, 3), rotated(q, 20) @ rotated(k, 16), atol=1e-4)


def test_tied_embeddings_share_storage_and_count_once() -> None:
    model = tiny()
    assert model.lm_head.weight is model.wte.weight
    d, layers, vocab = 32, 2, 97
    # Per block: qkv 3d^2 + proj d^2 + mlp 8d^2, two LayerNorms (2d each); final LayerNorm 2d.
    expected = vocab * d + layers * (12 * d * d + 4 * d) + 2 * d
    assert model.num_params() == expected
    untied = tiny(tie_embeddings=False)
    assert untied.num_params() == expected + vocab * d


def test_gpt2_init_scales_residual_projections() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=512, n_layer=8, n_head=4, d_model=256, seq_len=16))
    assert model.blocks[0].attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.blocks[0].mlp.proj.weight.std().item() == pytest.approx(
        0.02 / math.sqrt(16), rel=0.05
    )


def test_bad_shapes_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="n_head=3 does not divide d_model=32"):
        GPT(GPTConfig(vocab_size=10, n_head=3, d_model=32))
    with pytest.raises(ValueError, match="exceeds seq_len=16"):
        tiny()(torch.zeros(1, 17, dtype=torch.long))


def test_weight_decay_only_on_linear_matrices() -> None:
    model = tiny(positional="learned")
    decay, no_decay = param_groups(model, 0.1)
    decayed = {id(p) for p in decay["params"]}
    names = {name for name, p in model.named_parameters() if id(p) in decayed}
    assert names == {
        f"blocks.{i}.{m}.weight"
        for i in range(2)
        for m in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")
    }
    assert id(model.wte.weight) not in decayed and id(model.wpe.weight) not in decayed
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    total = sum(p.numel() for group in (decay, no_decay) for p in group["params"])
    assert total == model.num_params()


def test_optimizer_matches_torch_adamw_on_decayed_matrix() -> None:
    model = tiny()
    optimizer = build_optimizer(model, lr=1e-2, weight_decay=0.1)
    weight = model.blocks[0].attn.qkv.weight
    reference = weight.detach().clone().requires_grad_(True)
    reference_opt = torch.optim.AdamW(
        [reference], lr=1e-2, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8
    )
    idx = torch.randint(0, 97, (2, 16))
    for _ in range(3):
        optimizer.zero_grad()
        model(idx, idx)[1].backward()
        reference.grad = weight.grad.clone()
        optimizer.step()
        reference_opt.step()
    torch.testing.assert_close(weight, reference, rtol=0, atol=0)
