"""Gemma 2: the Llama layout with four norms per block, scaled embeddings and soft-capped logits.

Every norm (before and after attention, before and after the MLP) works on the residual stream,
so under sequence parallelism each sees this rank's tokens and sums its gradient over TP ranks.
The embedding scale (``sqrt(hidden)``) lives in HF's embedding module, whose forward the
vocab-parallel embedding runs; it is a non-persistent buffer, recomputed after the meta build.
Attention soft-capping and the sliding windows' ``layer_types`` stay HF's (windows become masks
in ``CausalLM``); the final soft-capping is elementwise, so it applies to vocab-sharded logits
as they are. transformers' ``base_model_tp_plan`` is the Llama one; this adds sequence and loss
parallelism and KV replication.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig

from shardwise.plans.decoder import DecoderForward, TPPlan, soft_cap
from shardwise.plans.llama import attention_plan, mlp_plan, norms, top_plan

BLOCK_NORMS = ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm")


def gemma2_plan(config: PretrainedConfig, sequence_parallel: bool, loss_parallel: bool) -> TPPlan:
    sp = sequence_parallel
    block = attention_plan(config, sp) | mlp_plan(sp) | norms(sp, *BLOCK_NORMS)
    return TPPlan(top=top_plan(sp, loss_parallel), block=block)


class GemmaForward(DecoderForward):
    """Final logit soft-capping; the embedding scale buffer restored; sdpa refused where attention is capped."""

    def errors(self) -> list[str]:
        cap = getattr(self.config, "attn_logit_softcapping", None)
        if cap is not None and self.config._attn_implementation == "sdpa":
            return [(f"{self.config.model_type} soft-caps attention logits (attn_logit_softcapping={cap}), which "
                     "sdpa cannot (older transformers skip the cap silently); set model.attn_implementation=eager")]
        return []

    def logits(self, logits: torch.Tensor) -> torch.Tensor:
        return soft_cap(logits, self.config.final_logit_softcapping)

    def reset_buffers(self, base: nn.Module, device: torch.device) -> None:
        super().reset_buffers(base, device)
        embed = base.embed_tokens
        embed.embed_scale.fill_(embed.scalar_embed_scale)
