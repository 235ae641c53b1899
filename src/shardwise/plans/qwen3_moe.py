"""Qwen3-MoE (Qwen3-30B-A3B, Qwen3-235B-A22B): Qwen3's attention, Qwen2-MoE's expert blocks.

Attention carries Qwen3's per-head q/k norms (``plans.qwen3``); each sparse block's router and
experts run whole on each TP rank's own tokens, as Qwen2-MoE's do (``plans.qwen2_moe``). There is
no shared expert, and the router may renormalize its top-k weights (``norm_topk_prob``), which is
HF's own forward. Checkpoints store the experts one matrix per expert under Qwen2-MoE's names.
"""

from __future__ import annotations

from transformers import PretrainedConfig

from shardwise.plans.decoder import TPPlan
from shardwise.plans.qwen2_moe import qwen2_moe_plan
from shardwise.plans.qwen3 import head_norms


def qwen3_moe_plan(config: PretrainedConfig, sequence_parallel: bool, loss_parallel: bool) -> TPPlan:
    plan = qwen2_moe_plan(config, sequence_parallel, loss_parallel)
    plan.block |= head_norms()
    return plan
