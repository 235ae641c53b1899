"""Qwen3: the Llama layout plus per-head RMSNorms on q and k.

Column-wise q/k projections leave each rank with a subset of heads, so ``q_norm``/``k_norm``
see inputs sharded on the head dim (dim 2 of ``(batch, seq, heads, head_dim)``). Treating them
as sequence-parallel along dim 2 keeps their weight a replicated DTensor whose gradient is
summed over TP ranks; left as plain tensors, each rank would update it from its own heads only
and the replicas would drift apart.
"""

from __future__ import annotations

from torch.distributed.tensor.parallel import SequenceParallel

from shardwise.plans.llama import TPPlan, llama_plan


def qwen3_plan(sequence_parallel: bool, loss_parallel: bool) -> TPPlan:
    plan = llama_plan(sequence_parallel, loss_parallel)
    plan.block |= {
        "self_attn.q_norm": SequenceParallel(sequence_dim=2, use_local_output=True),
        "self_attn.k_norm": SequenceParallel(sequence_dim=2, use_local_output=True),
    }
    return plan
