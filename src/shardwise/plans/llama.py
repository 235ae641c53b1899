"""Megatron layout for Llama-style decoders (Llama, Qwen2, Mistral).

q/k/v/gate/up are column-wise and o/down row-wise, so each block needs one all-reduce (or,
with sequence parallelism, one all-gather + reduce-scatter) per attention and per MLP, each way.
With sequence parallelism the norms and the residual stream hold this rank's slice of the tokens;
attention and the MLP gather them on entry and their row-wise projections reduce-scatter back.
The embedding and ``lm_head`` are split over the vocabulary (``shardwise.tp``).
"""

from __future__ import annotations

from dataclasses import dataclass

from shardwise.tp import (
    ColwiseParallel,
    GatherInput,
    PartialGradReplica,
    RowwiseParallel,
    Style,
    VocabParallelEmbedding,
    VocabParallelHead,
)


@dataclass
class TPPlan:
    """``top`` applies to the CausalLM wrapper, ``block`` to each decoder layer; keys are submodule paths."""

    top: dict[str, Style]
    block: dict[str, Style]


def llama_plan(sequence_parallel: bool, loss_parallel: bool) -> TPPlan:
    sp = sequence_parallel
    top: dict[str, Style] = {
        "hf.model.embed_tokens": VocabParallelEmbedding(sp),
        "hf.lm_head": VocabParallelHead(sp, loss_parallel),
    }
    block: dict[str, Style] = {
        # HF calls attention with keyword arguments and the MLP positionally. Each gathers its input
        # once, so q/k/v (gate/up) add their input gradients locally and the backward of that one
        # gather reduces them, instead of each projection reducing its own.
        "self_attn": GatherInput(sp, kwarg="hidden_states", restore_batch=True),
        "mlp": GatherInput(sp),
        "self_attn.q_proj": ColwiseParallel(),
        "self_attn.k_proj": ColwiseParallel(),
        "self_attn.v_proj": ColwiseParallel(),
        "self_attn.o_proj": RowwiseParallel(sp),
        "mlp.gate_proj": ColwiseParallel(),
        "mlp.up_proj": ColwiseParallel(),
        "mlp.down_proj": RowwiseParallel(sp),
    }
    if sp:
        top["hf.model.norm"] = PartialGradReplica()
        block |= {"input_layernorm": PartialGradReplica(), "post_attention_layernorm": PartialGradReplica()}
    return TPPlan(top=top, block=block)
