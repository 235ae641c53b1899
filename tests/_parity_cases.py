"""The shared setup of the parity tests: model variants (as model presets) and the run they train."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from shardwise.config import ModelConfig
from shardwise.model import hf_config
from shardwise.plans.decoder import expert_width, has_dense_mlp, num_experts
from shardwise.verify import preset_spec, resize

# Trained in every layout, tied and untied: "<preset>-2l" as shipped but with 2 layers, "<preset>-2l-flip"
# with the tie flipped. New names, so the shipped presets stay as they are for every other test.
BASE_PRESETS = ("tiny-qwen2", "tiny-llama", "tiny-qwen3", "tiny-mistral")
VARIANTS = [v for p in BASE_PRESETS for v in (f"{p}-2l", f"{p}-2l-flip")]
# Trained in the layouts that tell (SP and loss parallel on tp=2 and dp2 x tp=2, SP off on tp=2), tied and
# untied only where the family ships both (Phi-3 and Phi-4-mini); their presets keep their sliding windows,
# soft-capping, multipliers and experts.
FAMILY_PRESETS = {"tiny-gemma2": False, "tiny-gemma3": False, "tiny-phi3": True, "tiny-olmo2": False,
                  "tiny-granite": False, "tiny-qwen2-moe": False, "tiny-qwen3-moe": False, "tiny-mixtral": False,
                  "tiny-olmoe": False}
FAMILY_VARIANTS = [v for p, flip in FAMILY_PRESETS.items() for v in (f"{p}-2l", f"{p}-2l-flip")[: 1 + flip]]
# KV-head replication at tp=4: 2 KV heads (each on 2 ranks: plain, fused q/k/v, full-width k norm) and 1
# (on all 4, with q/k/v biases).
KV1_VARIANT = "tiny-qwen2-2l-kv1"
REPLICATED_VARIANTS = ["tiny-llama-2l", KV1_VARIANT, "tiny-phi3-2l", "tiny-olmo2-2l"]
# Attention computed per sequence (parallel.tp_attention=sequences) splits no heads: 3 query heads and 1 KV head
# (Qwen3's explicit head_dim, per-head q/k norms) at tp=4.
HEADS3_VARIANT = "tiny-qwen3-2l-h3"
# Context parallelism: Qwen2 tied and Llama untied, and Gemma 2 (eager attention, soft-capping, sliding windows)
# where CP meets TP; the model code CP touches is attention, which these cover.
CP_VARIANTS = ["tiny-qwen2-2l", "tiny-llama-2l"]
CP_EAGER_VARIANT = "tiny-gemma2-2l"
# Phi-3's attention reads this rank's head counts from a config of its own (plans.phi3), which CP must keep.
CP_PHI3_VARIANT = "tiny-phi3-2l"
# The routers' load-balancing loss (every mixture of experts here trains with it, ``router_loss``) sums over the
# ranks sharing a micro-batch's tokens: CP's and TP's together (OLMoE), and again in checkpointed blocks' recomputation
# (Qwen2-MoE: a shared expert, a dense layer).
CP_MOE_VARIANT = "tiny-olmoe-2l"
MOE_AC_VARIANT = "tiny-qwen2-moe-2l"
# Gemma 2 soft-caps attention logits, which only eager attention does.
VARIANT_OVERRIDES = {v: {"model.attn_implementation": "eager"} for v in FAMILY_VARIANTS if v.startswith("tiny-gemma2")}

# seq_len 31 is odd so that sequence parallelism must pad; 8 sequences in micro-batches of 2
# gives 4 micro-batches per rank at dp=1 and 2 at dp=2.
RUN = {
    "train.seq_len": 31, "train.global_batch_size": 8, "train.micro_batch_size": 2,
    "train.steps": 3, "train.lr": 1e-2, "train.warmup_steps": 1, "train.seed": 7,
    "train.dtype": "float32", "data.max_bytes": 200_000, "output.progress": False,
}
# The families run 2 steps of 4 sequences (2 micro-batches per rank at dp=1, 1 at dp=2): what they add is
# in the model, and gradient accumulation over more micro-batches and steps is proven by the variants above.
FAMILY_RUN = {"train.steps": 2, "train.global_batch_size": 4}
WINDOW = 8  # sliding windows (Gemma) cut into RUN's sequences


def variant_presets() -> dict[str, dict[str, Any]]:
    """Each variant as a ``model.preset`` spec (for ``verify.register_presets``), with 2 layers to keep it fast."""
    presets = {}
    for preset, flip in [(p, True) for p in BASE_PRESETS] + list(FAMILY_PRESETS.items()):
        config = hf_config(ModelConfig(preset=preset))
        window = {"sliding_window": WINDOW} if getattr(config, "sliding_window", None) else {}
        for variant, tied in ((f"{preset}-2l", config.tie_word_embeddings),
                              (f"{preset}-2l-flip", not config.tie_word_embeddings))[: 1 + flip]:
            presets[variant] = preset_spec(resize(config, num_hidden_layers=2, tie_word_embeddings=tied, **window,
                                                  **unused_width(config), **router_loss(config)))
    kv1 = resize(hf_config(ModelConfig(preset="tiny-qwen2")), num_hidden_layers=2, num_key_value_heads=1)
    heads3 = resize(hf_config(ModelConfig(preset="tiny-qwen3")), num_hidden_layers=2, num_attention_heads=3,
                    num_key_value_heads=1)
    return presets | {KV1_VARIANT: preset_spec(kv1), HEADS3_VARIANT: preset_spec(heads3)}


def router_loss(config: PretrainedConfig) -> dict[str, object]:
    """Mixtures of experts train with the routers' load-balancing loss as transformers adds it (``shardwise.router``),
    at a coefficient of 1 so that its gradients weigh as much as the cross-entropy's: at the released models' 0.001
    to 0.02 a fault in it would hide within the tolerances."""
    return {"output_router_logits": True, "router_aux_loss_coef": 1.0} if num_experts(config) else {}


def unused_width(config: PretrainedConfig) -> dict[str, int]:
    """An odd ``intermediate_size`` where no block is that wide (Qwen3-MoE's are all experts of
    ``moe_intermediate_size``): tensor parallelism splits no such width, so tp=2 must take it. (Mixtral's and
    OLMoE's experts are that wide, and grouped matmuls need rows of a multiple of 16 bytes.)"""
    unused = not has_dense_mlp(config) and expert_width(config) != config.intermediate_size
    return {"intermediate_size": config.intermediate_size // 2 * 2 - 1} if unused else {}


def case_overrides(variant: str, layout: dict[str, object]) -> dict[str, object]:
    """The config overrides of one case: the shared run (shorter for the families), the variant (and what it
    needs), the layout."""
    run = {**RUN, **FAMILY_RUN} if variant in FAMILY_VARIANTS else RUN
    return {**run, "model.preset": variant, **VARIANT_OVERRIDES.get(variant, {}), **layout}
