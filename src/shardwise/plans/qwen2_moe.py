"""Qwen2-MoE: Llama-style attention under tensor parallelism, mixture-of-experts blocks on each rank's tokens.

The experts are not split over TP ranks: every TP rank holds the whole MoE block (router,
experts, shared expert and its gate) and runs it on its own sequence-parallel tokens, so a
token is routed once, with the whole router, exactly as in one process; the parameters'
gradients are summed over TP ranks and FSDP shards them over data-parallel ranks
(``TokenLocalReplica``). Expert parallelism can come later. Layers the config keeps dense
(``mlp_only_layers``, ``decoder_sparse_step``) get the Megatron MLP.

transformers' ``base_model_tp_plan`` instead splits each expert's intermediate width over TP
ranks (``packed_colwise`` / ``moe_tp_experts``), which needs every token on every rank: no
sequence parallelism. The routers' load-balancing loss is ``shardwise.router``'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from transformers import PretrainedConfig

from shardwise.plans.decoder import TPPlan
from shardwise.plans.llama import attention_plan, mlp_plan, norms, top_plan
from shardwise.tp import TokenLocalReplica

# transformers 5 holds a block's experts fused: ``gate_up_proj`` (experts x 2*inner x hidden, gate rows first) and
# ``down_proj`` (experts x hidden x inner). Checkpoints, released ones and save_pretrained's alike, store one matrix
# per expert (transformers' conversion mapping for qwen2_moe); ``load`` reads this rank's block out of them.
STORED_PER_EXPERT = {
    "mlp.experts.gate_up_proj": ("mlp.experts.{}.gate_proj.weight", "mlp.experts.{}.up_proj.weight"),
    "mlp.experts.down_proj": ("mlp.experts.{}.down_proj.weight",),
}


@dataclass(frozen=True)
class SparseOrDenseMLP:
    """A block's ``mlp``: ``TokenLocalReplica`` for a sparse MoE block, the Megatron MLP for a dense one."""

    sequence_parallel: bool

    def apply(self, module: nn.Module, mesh: DeviceMesh) -> None:
        if hasattr(module, "experts"):
            TokenLocalReplica(self.sequence_parallel).apply(module, mesh)
            return
        for path, style in mlp_plan(self.sequence_parallel, prefix="").items():
            style.apply(module.get_submodule(path), mesh)


def qwen2_moe_plan(config: PretrainedConfig, sequence_parallel: bool, loss_parallel: bool) -> TPPlan:
    sp = sequence_parallel
    block = attention_plan(config, sp) | {"mlp": SparseOrDenseMLP(sp)}
    block |= norms(sp, "input_layernorm", "post_attention_layernorm")
    return TPPlan(top=top_plan(sp, loss_parallel), block=block)
