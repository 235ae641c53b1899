"""Qwen3: the Llama layout plus per-head RMSNorms on q and k.

Column-wise q/k projections leave each rank with a subset of heads, so ``q_norm``/``k_norm``
see only this rank's heads. Their weights stay replicated DTensors whose gradients are summed
over TP ranks; left as plain tensors, each rank would update them from its own heads only and
the replicas would drift apart (``tests/test_verify.py`` shows ``verify`` catching exactly that).
"""

from __future__ import annotations

from transformers import PretrainedConfig

from shardwise.plans.llama import TPPlan, llama_plan
from shardwise.tp import PartialGradReplica, Style


def head_norms() -> dict[str, Style]:
    """Per-head ``q_norm``/``k_norm``: replicated, their gradients summed over the TP ranks' heads."""
    return {"self_attn.q_norm": PartialGradReplica(), "self_attn.k_norm": PartialGradReplica()}


def qwen3_plan(config: PretrainedConfig, sequence_parallel: bool, loss_parallel: bool) -> TPPlan:
    plan = llama_plan(config, sequence_parallel, loss_parallel)
    plan.block |= head_norms()
    return plan
