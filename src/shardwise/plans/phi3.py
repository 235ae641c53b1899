"""Phi-3: fused ``qkv_proj`` and ``gate_up_proj``, each rank computing with whole pieces of every part.

A plain row split of ``qkv_proj`` would give rank 0 only query rows; each rank must instead
compute its query heads and its KV heads, and its slice of both gate and up. Three designs:

- ``_StridedShard`` placements describe an interleaved split, but only for equal parts (q is
  wider than k and v once heads outnumber KV heads), and a rank's rows are then no single
  block: DCP's (offset, shape) chunks and FSDP2's sharding on top of TP cannot express them.
- Storing the rows grouped per rank, as a ``Shard(0)`` of a permuted tensor, needs the
  permutation undone at every boundary that sees global tensors (initialization, DCP save and
  resume with optimizer states, resume on another ``tp``, loading a HF folder, export, verify),
  and makes the stored layout depend on ``tp``.
- Chosen: store ``Shard(0)`` of HF's own fused layout, so every boundary sees HF's shapes
  unchanged, and regroup the rows in the forward with one all-to-all of the local weight shard
  (``ColwiseParallel(heads=...)``, ``shardwise.tp.RowPlan``), whose backward returns the gradient
  rows. The cost is that all-to-all, about the local weight's size, per forward and backward.

The attention slices the fused output by its config's head counts, so the attention module gets
a config with this rank's counts. transformers' ``base_model_tp_plan`` splits the fused rows
plainly and gathers the outputs whole (``colwise_gather_output``): correct, but every rank then
computes every head and the whole MLP.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from transformers import PretrainedConfig

from shardwise.plans.decoder import TPPlan, head_dim
from shardwise.plans.llama import norms, top_plan
from shardwise.tp import AttentionParallel, ColwiseParallel, GatherInput, RowwiseParallel


@dataclass(frozen=True)
class Phi3AttentionParallel(AttentionParallel):
    """``AttentionParallel`` plus this rank's head counts where Phi-3's attention reads them: the query
    width from ``config.num_attention_heads``, the key width from ``num_key_value_heads``."""

    def apply(self, module: nn.Module, mesh: DeviceMesh) -> None:
        super().apply(module, mesh)
        tp, config = mesh.size(), module.config
        local = copy.copy(config)
        local.num_attention_heads = config.num_attention_heads // tp
        local.num_key_value_heads = max(config.num_key_value_heads // tp, 1)
        module.config = local
        module.num_key_value_heads = local.num_key_value_heads


def phi3_plan(config: PretrainedConfig, sequence_parallel: bool, loss_parallel: bool) -> TPPlan:
    sp, kv = sequence_parallel, config.num_key_value_heads
    block = {
        "self_attn": Phi3AttentionParallel(sp),
        "self_attn.qkv_proj": ColwiseParallel(heads=(config.num_attention_heads, kv, kv), rows_per_head=head_dim(config)),
        "self_attn.o_proj": RowwiseParallel(sp),
        "mlp": GatherInput(sp),
        "mlp.gate_up_proj": ColwiseParallel(heads=(config.intermediate_size,) * 2),
        "mlp.down_proj": RowwiseParallel(sp),
    } | norms(sp, "input_layernorm", "post_attention_layernorm")
    return TPPlan(top=top_plan(sp, loss_parallel), block=block)
