"""Granite: the Llama layout with four multipliers.

The residual and attention multipliers act inside HF's blocks; the embedding multiplier and the
logits scaling act in HF's top-level forward, which ``CausalLM`` does not call, so they are
applied here. Both are elementwise: the scaled embeddings may be this rank's tokens (sequence
parallelism) and the scaled logits a vocab-sharded DTensor (loss parallelism). transformers'
``base_model_tp_plan`` is the Llama one.
"""

from __future__ import annotations

import torch
from torch import nn

from shardwise.plans.decoder import DecoderForward


class GraniteForward(DecoderForward):
    def embed(self, base: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
        return base.embed_tokens(input_ids) * self.config.embedding_multiplier

    def logits(self, logits: torch.Tensor) -> torch.Tensor:
        return logits / self.config.logits_scaling
