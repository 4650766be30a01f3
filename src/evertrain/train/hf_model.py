"""Hugging Face causal LMs as the trainer's model, and checkpoints back to Hugging Face.

:func:`build_hf_model` turns a validated ``model: {hf: DIR}`` / ``model: {hf_config: FILE}``
(:mod:`evertrain.train.hf_spec`) into an :class:`HFCausalLM`: a thin module whose
``forward(idx, targets)`` returns ``(logits, loss)`` exactly as evertrain's GPT does (the loss is
the mean next-token cross-entropy over every position, computed here from the logits, because
the loop's targets are already shifted and Hugging Face's ``labels=`` would shift them again).

Everything is read from local files (``local_files_only=True`` and ``HF_HUB_OFFLINE=1``): a hub
name that is no local directory is a :class:`~evertrain.train.config.ConfigError` saying to pass
one. Weights are float32 whatever dtype the directory stores (master weights; the run's
``dtype`` is the autocast dtype, as for the GPT).

:func:`export_checkpoint` writes an evertrain checkpoint of such a model as a
``save_pretrained`` directory (tokenizer beside it), atomically.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from evertrain._atomic import fsync_dir
from evertrain._hashing import file_sha256
from evertrain._paths import check_output_dir
from evertrain.train.config import ConfigError
from evertrain.train.hf_spec import HFModelSpec, HFPretrained

#: ``model_config["kind"]`` in a checkpoint's state.pt for a Hugging Face model.
HF_KIND = "hf"
#: Files of a Hugging Face tokenizer directory that export copies next to the weights.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
)


class ExportError(ValueError):
    """A checkpoint cannot be exported (or the output folder is unusable); says how to fix it."""


def _offline_transformers() -> Any:
    """``transformers``, imported with the hub switched off: nothing is ever downloaded."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    import transformers

    transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bar per stage
    return transformers


def local_model_dir(path: str, field: str) -> Path:
    """``path`` as a local ``save_pretrained`` directory; a ConfigError for anything else."""
    directory = Path(path).expanduser()
    if not directory.exists():
        raise ConfigError(
            f"{field}: {path!r} is not a local directory; evertrain never downloads models: "
            "pass a local directory written by save_pretrained (config.json + safetensors)"
        )
    if not (directory / "config.json").is_file():
        raise ConfigError(
            f"{field}: {path} has no config.json; pass a directory written by save_pretrained"
        )
    return directory


def load_hf_config(spec: HFModelSpec) -> Any:
    """The ``transformers`` config of ``spec`` (from its directory or its config.json)."""
    transformers = _offline_transformers()
    if isinstance(spec, HFPretrained):
        directory = local_model_dir(spec.hf, "model.hf")
        return transformers.AutoConfig.from_pretrained(directory, local_files_only=True)
    path = Path(spec.hf_config).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise ConfigError(
            f"model.hf_config: {spec.hf_config!r} is not a local config.json (nor a directory "
            "holding one); evertrain never downloads: pass a local file"
        )
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"model.hf_config: {path} is not valid JSON ({error})") from None
    return config_from_dict(values, f"model.hf_config: {path}")


def config_from_dict(values: dict[str, Any], where: str) -> Any:
    """A ``transformers`` config from its ``to_dict()`` (``model_type`` picks the class)."""
    transformers = _offline_transformers()
    model_type = values.get("model_type") if isinstance(values, dict) else None
    if model_type not in transformers.CONFIG_MAPPING:
        raise ConfigError(
            f"{where}: model_type {model_type!r} is not a Hugging Face architecture this "
            "transformers knows; pass the config.json of a causal LM"
        )
    return transformers.CONFIG_MAPPING[model_type].from_dict(values)


@dataclass(frozen=True)
class HFModelRecord:
    """What a checkpoint records about a Hugging Face model (``state["model_config"]``): enough to
    rebuild the architecture without the directory it was first loaded from."""

    kind: str
    architecture: str
    config: dict[str, Any]


class HFCausalLM(nn.Module):
    """A Hugging Face ``*ForCausalLM`` with the trainer's interface.

    ``forward(idx, targets=None) -> (logits, loss)``; ``num_params()``; ``vocab_size`` (rows of
    the input embedding). The wrapped model is ``self.hf`` (what export saves).
    """

    def __init__(self, hf_model: nn.Module) -> None:
        super().__init__()
        self.hf = hf_model

    @property
    def vocab_size(self) -> int:
        return model_vocab_size(self)

    def num_params(self) -> int:
        """Parameter count, tied weights counted once."""
        return sum(p.numel() for p in self.parameters())

    def record(self) -> HFModelRecord:
        config = self.hf.config
        return HFModelRecord(HF_KIND, type(self.hf).__name__, config.to_dict())

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = self.hf(input_ids=idx, use_cache=False).logits
        loss = None
        if targets is not None:
            # The GPT's loss exactly: every position's next token, mean over all of them.
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss


def model_vocab_size(model: nn.Module) -> int:
    """Rows of ``model``'s input embedding: the largest token id + 1 it can read.

    One function for every model the trainer builds (evertrain's GPT or :class:`HFCausalLM`),
    for the data-vocabulary check (``evertrain.data.check_vocabulary(dataset, vocab_size, name)``).
    """
    inner = model.hf if isinstance(model, HFCausalLM) else model
    if hasattr(inner, "get_input_embeddings"):
        return int(inner.get_input_embeddings().num_embeddings)
    return int(inner.wte.num_embeddings)  # evertrain.train.model.GPT


def hf_vocab_size(spec: HFModelSpec) -> int:
    """The input-embedding rows of ``spec``'s model, read from its config alone (no weights are
    loaded), so the data-vocabulary check runs before a large model loads; equal to
    :func:`model_vocab_size` of the built model."""
    return int(load_hf_config(spec).vocab_size)


def _check_seq_len(config: Any, seq_len: int) -> None:
    limit = getattr(config, "max_position_embeddings", None)
    if isinstance(limit, int) and seq_len > limit:
        raise ConfigError(
            f"model.seq_len: {seq_len} exceeds the model's max_position_embeddings={limit}; "
            f"use seq_len <= {limit}"
        )


def build_hf_model(spec: HFModelSpec, device: torch.device | str = "cpu") -> HFCausalLM:
    """The model of a ``model: {hf: ...}`` / ``{hf_config: ...}`` config, in float32 on ``device``.

    ``hf``: the directory's weights (``AutoModelForCausalLM.from_pretrained``, local files only);
    ``hf_config``: a random initialisation of that architecture (``from_config``), drawn from
    torch's global RNG (the loop seeds it with the run's ``seed``). Raises ConfigError for a
    missing directory / file, a hub name, an architecture that is no causal LM, or a
    ``seq_len`` beyond the model's positions; all before any training.
    """
    transformers = _offline_transformers()
    config = load_hf_config(spec)
    _check_seq_len(config, spec.seq_len)
    auto = transformers.AutoModelForCausalLM
    try:
        if isinstance(spec, HFPretrained):
            model = auto.from_pretrained(
                local_model_dir(spec.hf, "model.hf"), local_files_only=True, dtype=torch.float32
            )
        else:
            model = auto.from_config(config, dtype=torch.float32)
    except (OSError, ValueError) as error:
        field = "model.hf" if isinstance(spec, HFPretrained) else "model.hf_config"
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(
            f"{field}: cannot build a causal LM from it ({first}); pass a causal LM's directory"
        ) from None
    # from_pretrained returns a model in eval mode; the trainer expects train mode from step 1
    # (dropout on, as for its GPT), not only after the first evaluation switches it back.
    return HFCausalLM(model).to(device).train()


def rebuild_from_record(record: dict[str, Any]) -> HFCausalLM:
    """An (untrained) :class:`HFCausalLM` of the architecture a checkpoint recorded."""
    transformers = _offline_transformers()
    config = config_from_dict(record["config"], "checkpoint model_config")
    return HFCausalLM(transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32))


# ---------------------------------------------------------------------------------- export
def _dataset_tokenizer(train_config: dict[str, Any]) -> tuple[Path, dict[str, Any]] | None:
    """The tokenizer the checkpoint was trained on: the first train dataset's tokenizer.json and
    its manifest record (None when that dataset is gone)."""
    for directory in ((train_config.get("data") or {}).get("train") or {}).values():
        manifest_path = Path(directory) / "manifest.json"
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        record = manifest.get("tokenizer") or {}
        path = Path(directory) / str(record.get("file", "tokenizer.json"))
        if path.is_file():
            return path, record
    return None


def _write_tokenizer(target: Path, train_config: dict[str, Any]) -> str:
    """Write the checkpoint's tokenizer into ``target``; return where it came from.

    The data's tokenizer is the one whose ids the model learnt. When the model's own directory
    holds the same tokenizer.json (prepared with ``--tokenizer MODEL_DIR``), its tokenizer files
    are copied as they are (config, special tokens, chat template kept); otherwise the data's
    tokenizer.json is wrapped in a ``PreTrainedTokenizerFast`` with the EOS the data used.
    """
    found = _dataset_tokenizer(train_config)
    model_dir = (train_config.get("model") or {}).get("hf")
    if found is None:
        raise ExportError(
            "the checkpoint's train datasets (and their tokenizer.json) are gone: export needs the "
            "tokenizer the model was trained with; restore the prepared dataset folders"
        )
    tokenizer_path, record = found
    if model_dir and (Path(model_dir) / "tokenizer.json").is_file():
        if file_sha256(Path(model_dir) / "tokenizer.json") == file_sha256(tokenizer_path):
            for name in TOKENIZER_FILES:
                if (Path(model_dir) / name).is_file():
                    shutil.copy2(Path(model_dir) / name, target / name)
            return f"{model_dir} (the model's own tokenizer)"
    transformers = _offline_transformers()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_path), eos_token=record.get("eos_token")
    )
    tokenizer.save_pretrained(str(target))
    return str(tokenizer_path)


def _export_target(out: Path) -> None:
    """Refuse, before any work, an output that is a file, unwritable, or a non-empty folder."""
    check_output_dir(out, "-o", error=ExportError)
    if out.is_dir() and any(out.iterdir()):
        raise ExportError(
            f"-o {out} already exists and is not empty; choose a new output directory"
        )


def export_checkpoint(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Write ``checkpoint`` (a checkpoint or run directory; a run's newest valid checkpoint, and
    named branch / release checkpoints alike) as a Hugging Face directory ``out`` that
    ``AutoModelForCausalLM.from_pretrained(out)`` and ``AutoTokenizer.from_pretrained(out)`` load.

    Written into a temp directory beside ``out`` and renamed into place: ``out`` appears complete
    or not at all. Only checkpoints of Hugging Face models (``model: {hf: ...}`` or
    ``{hf_config: ...}``) export; evertrain's GPT is an :class:`ExportError` saying why.
    """
    from evertrain.train import checkpoint as ckpt

    out = Path(out)
    _export_target(out)
    try:
        path = ckpt.resolve_checkpoint(checkpoint)
        state = ckpt.load_checkpoint(path)  # verified: checksums, before anything is built
    except ckpt.CheckpointError as error:
        raise ExportError(str(error)) from None
    record = state.get("model_config") or {}
    if record.get("kind") != HF_KIND:
        raise ExportError(
            f"{path} is a checkpoint of evertrain's GPT, which no Hugging Face architecture matches "
            "exactly (LayerNorm + GELU blocks with its own RoPE); export supports Hugging Face "
            "models: train with model: {hf: DIR} or {hf_config: FILE}"
        )
    model = rebuild_from_record(record)
    ckpt.load_checkpoint(path, model)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-export-{out.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        model.hf.save_pretrained(str(tmp))
        _write_tokenizer(tmp, state.get("config") or {})
        meta = state["meta"]
        (tmp / "evertrain_export.json").write_text(
            json.dumps(
                {
                    "checkpoint": str(path.resolve()),
                    "step": meta.get("step"),
                    "tokens": meta.get("tokens"),
                    "eval": meta.get("eval", {}),
                },
                indent=2,
            )
            + "\n"
        )
        for file in tmp.iterdir():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(tmp)
        if out.exists():
            out.rmdir()  # an empty directory (checked above): the rename takes its place
        os.replace(tmp, out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
