"""Continue a Hugging Face model on new data with evertrain, and hand it back to Hugging Face.

Nothing is downloaded: a tiny Llama (2 layers, width 32) and its 300-token tokenizer are built
here and written with ``save_pretrained``, as your own model directory would be. Then:

1. the old data (standard-library English, standing for the base's pre-training data) and the new
   data (standard-library code) are prepared with the model's own tokenizer and EOS;
2. a continual plan re-warms the model on the new data with 25 % replay of the old
   (``rewarm`` + ``replay: 0.25``, the ``rewarm+replay`` recipe) and writes its report;
3. the stage's last checkpoint is exported to a ``save_pretrained`` directory, which
   ``AutoModelForCausalLM.from_pretrained`` reloads with the checkpoint's logits.

    python examples/continual_hf.py                    # in a temp folder
    python examples/continual_hf.py --out my-run       # keep the outputs

See docs/models.md for every option.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here needs the hub


def build_model(directory: Path) -> Path:
    """Write a tiny Llama and its byte-level BPE tokenizer (EOS ``<|eot|>``) to ``directory``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    text = Path(json.__file__).read_text()  # any text will do: the json module's source
    bpe.train_from_iterator(
        [text] * 20,
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=["<|eot|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|eot|>")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=320,  # a few more embedding rows than tokens, as real models often have
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        eos_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def continual_plan(root: Path, model: Path, tokens: int) -> dict[str, Any]:
    """One rewarm+replay stage on the new data, continuing the model directory's weights."""
    return {
        "out_dir": str(root / "runs"),
        "model": {"hf": str(model), "seq_len": 32},
        # An external base has no recorded LR history: say what its peak LR was.
        "base": {"peak_lr": 1e-3, "datasets": {"english": str(root / "data" / "english")}},
        "train": {"batch_size": 4, "device": "cpu", "eval_tokens": 512},
        "stages": [
            {
                "name": "code",
                "datasets": {"code": str(root / "data" / "code")},
                "tokens": tokens,
                "schedule": "rewarm",
                "replay": 0.25,
            }
        ],
    }


def main(out: Path | None = None, tokens: int = 4096) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evertrain.continual import load_plan, run_plan, write_report
    from evertrain.data import prepare
    from evertrain.train import checkpoint as ckpt
    from evertrain.train.hf_model import export_checkpoint, rebuild_from_record

    root = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="continual-hf-"))
    model_dir = build_model(root / "tiny-llama")
    for name, source in (("english", "stdlib-english"), ("code", "stdlib-code")):
        prepare(
            [source], root / "data" / name, tokenizer=model_dir, max_bytes=40_000, progress=False
        )

    plan = load_plan(continual_plan(root, model_dir, tokens))
    stages = run_plan(plan, progress=False)
    report = write_report([s.out_dir for s in stages], root / "runs" / "report", baseline=None)

    exported = export_checkpoint(stages[-1].out_dir, root / "exported")
    reloaded = AutoModelForCausalLM.from_pretrained(exported).eval()
    tokenizer = AutoTokenizer.from_pretrained(exported)
    ids = torch.tensor(
        [tokenizer("def main():\n    return 0", add_special_tokens=False)["input_ids"]]
    )
    checkpoint = ckpt.resolve_checkpoint(stages[-1].out_dir)
    state = ckpt.load_checkpoint(checkpoint)
    trained = rebuild_from_record(state["model_config"])
    ckpt.load_checkpoint(checkpoint, trained)
    with torch.no_grad():
        diff = (reloaded(input_ids=ids).logits - trained.eval()(ids)[0]).abs().max().item()
    summary = {
        "final_eval": stages[-1].final_eval,
        "tokens": stages[-1].tokens,
        "report": str(report),
        "exported": str(exported),
        "eos_token": tokenizer.eos_token,
        "max_abs_logit_diff": diff,
    }
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: a temp one)"
    )
    parser.add_argument("--tokens", type=int, default=4096, help="tokens of the continual stage")
    args = parser.parse_args()
    main(args.out, args.tokens)
