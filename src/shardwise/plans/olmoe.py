"""OLMoE (OLMoE-1B-7B): OLMo 2's q/k norms over the whole projection, norms before attention and the
MLP as Llama's, and every block a mixture of experts laid out as Qwen2-MoE's.

The q/k norms span all heads, so they split like the projections and sum squares over TP ranks
(``plans.olmo2.projection_norms``); the router and experts run whole on each TP rank's own tokens
(``plans.qwen2_moe``), without a shared expert. Checkpoints store the experts one matrix per expert
under Qwen2-MoE's names. A config's ``clip_qkv`` clamps q/k/v elementwise, which each rank does to
its own columns.
"""

from __future__ import annotations

from transformers import PretrainedConfig

from shardwise.plans.decoder import TPPlan
from shardwise.plans.olmo2 import projection_norms
from shardwise.plans.qwen2_moe import qwen2_moe_plan


def olmoe_plan(config: PretrainedConfig, sequence_parallel: bool, loss_parallel: bool) -> TPPlan:
    plan = qwen2_moe_plan(config, sequence_parallel, loss_parallel)
    plan.block |= projection_norms(config)
    return plan
