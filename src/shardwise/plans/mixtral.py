"""Mixtral (Mixtral-8x7B, 8x22B): Mistral's attention, every block a mixture of experts.

The layout is Qwen2-MoE's without a shared expert (``plans.qwen2_moe``): router and experts whole
on each TP rank's own tokens, gradients summed over TP ranks, FSDP sharding them over data-parallel
ranks. Each expert is ``intermediate_size`` wide (there is no ``moe_intermediate_size``).

Checkpoints keep Mixtral's original names: the block is ``block_sparse_moe``, its router
``gate``, and each expert stores ``w1`` (gate), ``w3`` (up) and ``w2`` (down) as its own matrix,
which transformers 5 fuses into ``mlp.experts.gate_up_proj`` (gate rows first) and
``mlp.experts.down_proj`` on load and splits again in ``save_pretrained``; ``STORED_AS`` says so
to the loader. A router's training noise (``router_jitter_noise``) is HF's own and draws on each
rank's random state.
"""

from __future__ import annotations

STORED_AS = {
    "mlp.gate.weight": ("block_sparse_moe.gate.weight",),
    "mlp.experts.gate_up_proj": ("block_sparse_moe.experts.{}.w1.weight", "block_sparse_moe.experts.{}.w3.weight"),
    "mlp.experts.down_proj": ("block_sparse_moe.experts.{}.w2.weight",),
}
