"""Tiny Hugging Face causal LMs and tokenizers built locally (nothing is downloaded).

``tiny_tokenizer`` trains a ~300-token byte-level BPE with ``tokenizers`` whose EOS is
``<|eot|>`` (none of the end-of-text names evertrain guesses, so a test sees that the model
directory's own EOS is used); ``tiny_model_dir`` writes a 2-layer Llama / Qwen2 / GPT-2 of width
32 with that tokenizer beside it (``save_pretrained``), as a user's model directory looks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

EOS = "<|eot|>"
BOS = "<|bos|>"
TEXT = (
    "the quick brown fox jumps over a lazy dog and the cat runs far away from home "
    "while birds sing def f(x): return x + 1 for i in range(10): print(i) class A: pass "
)


def tiny_tokenizer(vocab_size: int = 300) -> Any:
    """A ``PreTrainedTokenizerFast`` around a byte-level BPE trained on :data:`TEXT`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([TEXT] * 20, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS, bos_token=BOS)


def tiny_config(arch: str, vocab_size: int, max_positions: int = 64) -> Any:
    """A 2-layer, width-32 config of ``arch`` (llama | qwen2 | gpt2)."""
    from transformers import GPT2Config, LlamaConfig, Qwen2Config

    if arch == "llama":
        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=max_positions,
            tie_word_embeddings=False,
        )
    if arch == "qwen2":
        return Qwen2Config(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=max_positions,
            tie_word_embeddings=True,
        )
    if arch == "gpt2":
        return GPT2Config(
            vocab_size=vocab_size,
            n_embd=32,
            n_layer=2,
            n_head=4,
            n_positions=max_positions,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
        )
    raise ValueError(f"unknown arch {arch!r}")


def tiny_model_dir(
    directory: Path, arch: str = "llama", seed: int = 0, extra_vocab: int = 20
) -> Path:
    """Write a tiny ``arch`` model and its tokenizer to ``directory`` (save_pretrained)."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = tiny_tokenizer()
    # Models often have a few more embedding rows than the tokenizer has tokens (padding).
    config = tiny_config(arch, len(tokenizer) + extra_vocab)
    config.eos_token_id = tokenizer.eos_token_id
    config.bos_token_id = tokenizer.bos_token_id
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return Path(directory)


def documents(count: int = 60, seed: int = 0) -> list[str]:
    """Short documents of the tokenizer's words."""
    import random

    rng = random.Random(seed)
    words = TEXT.split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(20, 60))) for _ in range(count)]


def write_jsonl(path: Path, texts: list[str]) -> Path:
    import json

    path.write_text("\n".join(json.dumps({"text": t}) for t in texts), encoding="utf-8")
    return path
