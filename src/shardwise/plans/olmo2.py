"""OLMo 2: the Llama layout with norms after attention and MLP, and q/k norms over the whole projection.

Its ``q_norm``/``k_norm`` normalize each token's full q (k) projection, all heads together, so
under tensor parallelism the mean of squares spans ranks: ``ColwiseRMSNorm`` splits the weight
like the projection and all-reduces a sum of squares per token (forward and backward). That
keeps attention head-parallel where transformers' ``base_model_tp_plan`` gathers the q/k/v
outputs whole (``colwise_gather_output``), which makes every rank compute every head.
"""

from __future__ import annotations

from transformers import PretrainedConfig

from shardwise.plans.decoder import TPPlan, head_dim
from shardwise.plans.llama import attention_plan, mlp_plan, norms, top_plan
from shardwise.tp import ColwiseRMSNorm, Style


def projection_norms(config: PretrainedConfig) -> dict[str, Style]:
    """``q_norm``/``k_norm`` over each token's whole q (k) projection, split over TP ranks like it."""
    hd = head_dim(config)
    return {
        "self_attn.q_norm": ColwiseRMSNorm(heads=(config.num_attention_heads,), rows_per_head=hd),
        "self_attn.k_norm": ColwiseRMSNorm(heads=(config.num_key_value_heads,), rows_per_head=hd),
    }


def olmo2_plan(config: PretrainedConfig, sequence_parallel: bool, loss_parallel: bool) -> TPPlan:
    sp = sequence_parallel
    block = attention_plan(config, sp) | projection_norms(config)
    block |= mlp_plan(sp) | norms(sp, "post_attention_layernorm", "post_feedforward_layernorm")
    return TPPlan(top=top_plan(sp, loss_parallel), block=block)
