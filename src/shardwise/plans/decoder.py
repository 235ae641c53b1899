"""What every architecture's plan is made of."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PretrainedConfig

from shardwise.tp import Style


@dataclass
class TPPlan:
    """``top`` applies to the CausalLM wrapper, ``block`` to each decoder layer; keys are submodule paths."""

    top: dict[str, Style]
    block: dict[str, Style]


def head_dim(config: PretrainedConfig) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads

