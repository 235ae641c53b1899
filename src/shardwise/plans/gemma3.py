"""Gemma 3 text (``gemma3_text``): Gemma 2's layout plus per-head q/k norms and a rotary table per layer type.

Sliding layers use a local rotary base, full layers a global one, so each layer gets the table
of its type. The per-head q/k norms see this rank's heads only, so their gradients are summed
over TP ranks (as transformers' ``base_model_tp_plan`` says: ``replicated_with_grad_allreduce``).
Bidirectional attention (``use_bidirectional_attention``, for embedding models) is refused.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig

from shardwise.plans.decoder import TPPlan
from shardwise.plans.gemma2 import GemmaForward, gemma2_plan
from shardwise.plans.qwen3 import head_norms


def gemma3_plan(config: PretrainedConfig, sequence_parallel: bool, loss_parallel: bool) -> TPPlan:
    plan = gemma2_plan(config, sequence_parallel, loss_parallel)
    plan.block |= head_norms()
    return plan


class Gemma3Forward(GemmaForward):
    def errors(self) -> list[str]:
        errors = super().errors()
        if getattr(self.config, "use_bidirectional_attention", False):
            errors.append("gemma3_text with use_bidirectional_attention=true is not a causal decoder; "
                          "shardwise trains causal language models only")
        return errors

    def position_embeddings(self, base: nn.Module, hidden: torch.Tensor,
                            position_ids: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        types = self.config.layer_types[: self.config.num_hidden_layers]
        tables = {kind: base.rotary_emb(hidden, position_ids, kind) for kind in sorted(set(types))}
        return [tables[kind] for kind in types]
