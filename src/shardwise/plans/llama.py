"""Megatron layout for Llama-style decoders (Llama, Qwen2, Mistral).

q/k/v/gate/up are column-wise and o/down row-wise, so each block needs one all-reduce (or,
with sequence parallelism, one all-gather + reduce-scatter) per attention and per MLP.
With sequence parallelism the norms and residual stream hold ``Shard(1)`` slices of the
sequence; attention and MLP gather them to ``Replicate`` on entry and reduce-scatter back.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    ParallelStyle,
    PrepareModuleInput,
    RowwiseParallel,
    SequenceParallel,
)


@dataclass
class TPPlan:
    """``top`` applies to the CausalLM wrapper, ``block`` to each decoder layer."""

    top: dict[str, ParallelStyle]
    block: dict[str, ParallelStyle]


def llama_plan(sequence_parallel: bool, loss_parallel: bool) -> TPPlan:
    seq = Shard(1) if sequence_parallel else Replicate()
    top: dict[str, ParallelStyle] = {
        "hf.model.embed_tokens": RowwiseParallel(input_layouts=Replicate(), output_layouts=seq),
        "hf.lm_head": ColwiseParallel(
            input_layouts=seq,
            output_layouts=Shard(-1) if loss_parallel else Replicate(),
            use_local_output=not loss_parallel,
        ),
    }
    block: dict[str, ParallelStyle] = {
        # HF calls attention with keyword arguments and the MLP positionally. Each block's input
        # becomes one Replicate DTensor (gathered from sequence shards with SP): q/k/v (gate/up)
        # then add their input gradients as one Partial, reduced once by the backward of this
        # step, instead of each projection all-reducing its own (measured by `shardwise plan`).
        "self_attn": PrepareModuleInput(
            input_kwarg_layouts={"hidden_states": seq},
            desired_input_kwarg_layouts={"hidden_states": Replicate()},
        ),
        "mlp": PrepareModuleInput(input_layouts=(seq,), desired_input_layouts=(Replicate(),)),
        "self_attn.q_proj": ColwiseParallel(),
        "self_attn.k_proj": ColwiseParallel(),
        "self_attn.v_proj": ColwiseParallel(),
        "self_attn.o_proj": RowwiseParallel(output_layouts=seq),
        "mlp.gate_proj": ColwiseParallel(),
        "mlp.up_proj": ColwiseParallel(),
        "mlp.down_proj": RowwiseParallel(output_layouts=seq),
    }
    if sequence_parallel:
        top["hf.model.norm"] = SequenceParallel()
        block |= {"input_layernorm": SequenceParallel(), "post_attention_layernorm": SequenceParallel()}
    return TPPlan(top=top, block=block)
