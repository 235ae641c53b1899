"""What every architecture provides: its tensor-parallel plan's shape and its model-level forward.

``CausalLM`` never calls Hugging Face's top-level forward (see ``shardwise.model``), so whatever
that forward does around the decoder blocks (scaling the embeddings, per-layer masks and rotary
tables, capping or scaling the logits) is re-done by a ``DecoderForward``. The default is the
Llama-style one; an architecture that differs subclasses it in its own plan file. It runs at
every TP degree, tp=1 included.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PretrainedConfig

from shardwise.tp import SequenceAttention, Style


@dataclass
class TPPlan:
    """``top`` applies to the CausalLM wrapper, ``block`` to each decoder layer; keys are submodule paths."""

    top: dict[str, Style]
    block: dict[str, Style]


def per_sequence(plan: TPPlan) -> TPPlan:
    """``plan`` with attention computed by each TP rank over its own whole sequences (``SequenceAttention``):
    every style the architecture gives ``self_attn`` or its submodules (head splits, fused q/k/v, q/k norms) is
    replaced by that one, which replicates them all."""
    block = {path: style for path, style in plan.block.items() if path.split(".")[0] != "self_attn"}
    return TPPlan(top=plan.top, block=block | {"self_attn": SequenceAttention()})


def attend_through(module: nn.Module, implementation: str) -> None:
    """Make an attention module call ``implementation`` (a name in transformers' ``AttentionInterface``): a
    shallow copy of the module's own config names it. Its own, not the model's: a plan may have given the
    module this rank's head counts (``plans.phi3``), which its forward reads from its config."""
    config = copy.copy(module.config)
    config._attn_implementation = implementation
    module.config = config


def num_experts(config: PretrainedConfig) -> int:
    """Routed experts per sparse block (``num_experts``; Mixtral's ``num_local_experts``); 0 for a dense model."""
    return getattr(config, "num_experts", None) or getattr(config, "num_local_experts", None) or 0


def expert_width(config: PretrainedConfig) -> int:
    """One routed expert's intermediate width: ``moe_intermediate_size``, or Mixtral's ``intermediate_size``."""
    return getattr(config, "moe_intermediate_size", None) or config.intermediate_size


def has_dense_mlp(config: PretrainedConfig) -> bool:
    """Whether some block keeps a dense MLP, the one tensor parallelism splits (``intermediate_size`` wide): every
    block of a dense model, a mixture of experts' ``mlp_only_layers`` and the layers ``decoder_sparse_step`` skips
    (Qwen2/3-MoE), none of Mixtral's or OLMoE's, whose ``intermediate_size`` is each unsplit expert's width. The
    rule is transformers' own for building the blocks."""
    if not num_experts(config):
        return True
    step, dense = getattr(config, "decoder_sparse_step", 1) or 1, set(getattr(config, "mlp_only_layers", None) or ())
    return any(layer in dense or (layer + 1) % step for layer in range(config.num_hidden_layers))


def head_dim(config: PretrainedConfig) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


class DecoderForward:
    """The top-level forward of a Llama-style decoder: plain embedding, one rotary table for every layer,
    per-layer sliding windows from the config, logits as ``lm_head`` gives them."""

    def __init__(self, config: PretrainedConfig):
        self.config = config

    def errors(self) -> list[str]:
        """Settings this architecture cannot train with, one line each naming the fix (none here)."""
        return []

    def embed(self, base: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
        return base.embed_tokens(input_ids)

    def windows(self) -> list[int | None]:
        """Each layer's sliding window (keys at most ``window - 1`` tokens back), None for full attention.

        As HF builds its masks: ``layer_types`` (Gemma, Qwen2) picks the sliding layers; without them,
        a ``sliding_window`` applies to every layer (Mistral, Phi-3).
        """
        window, layers = getattr(self.config, "sliding_window", None), self.config.num_hidden_layers
        types = getattr(self.config, "layer_types", None)
        if types is None:
            return [window] * layers
        return [window if kind == "sliding_attention" else None for kind in types[:layers]]

    def position_embeddings(self, base: nn.Module, hidden: torch.Tensor,
                            position_ids: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each layer's rotary (cos, sin) for the full-sequence ``position_ids``."""
        return [base.rotary_emb(hidden, position_ids)] * self.config.num_hidden_layers

    def logits(self, logits: torch.Tensor) -> torch.Tensor:
        """``lm_head``'s output (a vocab-sharded DTensor under loss parallelism) -> the model's logits."""
        return logits

    def reset_buffers(self, base: nn.Module, device: torch.device) -> None:
        """Recompute non-persistent buffers, which building on the meta device leaves without values."""
        rotary_cls = type(base.rotary_emb)
        with torch.device(device):  # the constructor's device argument differs between transformers versions
            base.rotary_emb = rotary_cls(config=self.config)


def soft_cap(x: torch.Tensor, cap: float | None) -> torch.Tensor:
    """Gemma's logit soft-capping ``cap * tanh(x / cap)``; None leaves ``x`` as it is."""
    return x if cap is None else torch.tanh(x / cap) * cap
