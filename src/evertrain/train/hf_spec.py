"""The ``model:`` field of a train config when the model is a Hugging Face causal LM.

Two shapes, told apart by their key (torch- and transformers-free, so configs validate fast):

- ``model: {hf: DIR, seq_len: 256}``: a local directory written by ``save_pretrained``
  (``config.json`` + safetensors), loaded with ``AutoModelForCausalLM.from_pretrained`` from
  local files only;
- ``model: {hf_config: FILE_OR_DIR, seq_len: 256}``: a ``config.json`` (or a directory holding
  one) for a fresh random initialisation (seeded by the run's ``seed``).

Anything else under ``model:`` is evertrain's own GPT (:class:`evertrain.train.config.ModelConfig`).
Nothing is ever downloaded: a hub name such as ``meta-llama/Llama-3.2-1B`` that is no local
directory is a one-line error (see :mod:`evertrain.train.hf_model`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Tag of each ``model:`` shape (the key that selects it), for the config's discriminated union.
GPT_TAG, HF_TAG, HF_CONFIG_TAG = "gpt", "hf", "hf_config"


class _Strict(BaseModel):
    # Unknown keys are typos far more often than intent: reject them (as config.py does).
    model_config = ConfigDict(extra="forbid")


class HFPretrained(_Strict):
    """A local ``save_pretrained`` directory: its architecture and its weights."""

    hf: str = Field(description="local directory with config.json + model.safetensors")
    seq_len: int = Field(gt=0, description="training sequence length (<= max_position_embeddings)")

    @field_validator("hf")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("empty path; pass a local directory written by save_pretrained")
        return value


class HFFromConfig(_Strict):
    """A Hugging Face architecture from its ``config.json``, randomly initialised."""

    hf_config: str = Field(description="a config.json file, or a directory holding one")
    seq_len: int = Field(gt=0, description="training sequence length (<= max_position_embeddings)")

    @field_validator("hf_config")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("empty path; pass a config.json file or a directory holding one")
        return value


HFModelSpec = HFPretrained | HFFromConfig


def model_kind(value: Any) -> str | None:
    """Which ``model:`` shape ``value`` is (the union's discriminator): ``hf`` / ``hf_config`` by
    their key, else evertrain's GPT; ``None`` (an error naming both keys) when both are given."""
    if isinstance(value, HFPretrained):
        return HF_TAG
    if isinstance(value, HFFromConfig):
        return HF_CONFIG_TAG
    if isinstance(value, dict):
        has_hf, has_config = HF_TAG in value, HF_CONFIG_TAG in value
        if has_hf and has_config:
            return None
        if has_hf:
            return HF_TAG
        if has_config:
            return HF_CONFIG_TAG
    return GPT_TAG


def is_hf(spec: Any) -> bool:
    """True when a validated ``model:`` field is a Hugging Face model."""
    return isinstance(spec, HFPretrained | HFFromConfig)
