"""Megatron layout for Llama-style decoders (Llama, Qwen2, Mistral).

q/k/v/gate/up are column-wise and o/down row-wise, so each block needs one all-reduce (or,
with sequence parallelism, one all-gather + reduce-scatter) per attention and per MLP, each way.
With sequence parallelism the norms and the residual stream hold this rank's slice of the tokens;
attention and the MLP gather them on entry and their row-wise projections reduce-scatter back.
The embedding and ``lm_head`` are split over the vocabulary (``shardwise.tp``).

``parallel.tp`` may exceed the KV heads (when it is a multiple of them): each KV head is then
computed by ``tp / num_key_value_heads`` ranks, which store a share of its rows each and regroup
them per forward (``ColwiseParallel(heads=...)``); their gradients are summed over the replicas.
This is transformers' ``base_model_tp_plan`` for these models plus sequence and loss parallelism
and the KV replication, which its plan (a plain column split of k/v) cannot do.
"""

from __future__ import annotations

from transformers import PretrainedConfig

from shardwise.plans.decoder import TPPlan, head_dim
from shardwise.tp import (
    AttentionParallel,
    ColwiseParallel,
    GatherInput,
    PartialGradReplica,
    RowwiseParallel,
    Style,
    VocabParallelEmbedding,
    VocabParallelHead,
)


def top_plan(sequence_parallel: bool, loss_parallel: bool) -> dict[str, Style]:
    """Vocab-parallel embedding and ``lm_head``; the final norm sees this rank's tokens under SP."""
    sp = sequence_parallel
    top: dict[str, Style] = {
        "hf.model.embed_tokens": VocabParallelEmbedding(sp),
        "hf.lm_head": VocabParallelHead(sp, loss_parallel),
    }
    if sp:
        top["hf.model.norm"] = PartialGradReplica()
    return top


def kv_proj(config: PretrainedConfig) -> ColwiseParallel:
    """k_proj/v_proj: whole KV heads per rank, replicated over ``tp / num_key_value_heads`` ranks if needed."""
    return ColwiseParallel(heads=(config.num_key_value_heads,), rows_per_head=head_dim(config))


def attention_plan(config: PretrainedConfig, sequence_parallel: bool) -> dict[str, Style]:
    # HF calls attention with keyword arguments and the MLP positionally. Each gathers its input
    # once, so q/k/v (gate/up) add their input gradients locally and the backward of that one
    # gather reduces them, instead of each projection reducing its own.
    return {
        "self_attn": AttentionParallel(sequence_parallel),
        "self_attn.q_proj": ColwiseParallel(),
        "self_attn.k_proj": kv_proj(config),
        "self_attn.v_proj": kv_proj(config),
        "self_attn.o_proj": RowwiseParallel(sequence_parallel),
    }


def mlp_plan(sequence_parallel: bool, prefix: str = "mlp") -> dict[str, Style]:
    """The Megatron MLP at ``prefix`` of the block ("": paths relative to the MLP module itself)."""
    def at(name: str) -> str:
        return f"{prefix}.{name}" if prefix else name

    return {
        prefix: GatherInput(sequence_parallel),
        at("gate_proj"): ColwiseParallel(),
        at("up_proj"): ColwiseParallel(),
        at("down_proj"): RowwiseParallel(sequence_parallel),
    }


def norms(sequence_parallel: bool, *names: str) -> dict[str, Style]:
    """Norms on the residual stream: under SP each sees this rank's tokens, so gradients sum over ranks."""
    return {name: PartialGradReplica() for name in names} if sequence_parallel else {}


def llama_plan(config: PretrainedConfig, sequence_parallel: bool, loss_parallel: bool) -> TPPlan:
    sp = sequence_parallel
    block = attention_plan(config, sp) | mlp_plan(sp) | norms(sp, "input_layernorm", "post_attention_layernorm")
    return TPPlan(top=top_plan(sp, loss_parallel), block=block)
