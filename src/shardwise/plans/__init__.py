"""Per HF ``model_type``: the tensor-parallel plan, and the model-level forward ``CausalLM`` runs.

A plan names, for each submodule of a decoder block and of the model's top, the parallel style
that shards it (``shardwise.tp``). Llama, Qwen2, Mistral and Granite share one layout, Qwen2-MoE and
Mixtral another (Mixtral's file holds its stored names); every other architecture has its own file here.
``FORWARDS`` names the architectures whose top-level forward differs from Llama's
(``plans.decoder.DecoderForward``); ``STORED_AS`` those whose checkpoints store a parameter under another
name, or a fused one as one matrix per expert.
"""

from __future__ import annotations

from collections.abc import Callable

from transformers import PretrainedConfig

from shardwise.config import ConfigError
from shardwise.plans.decoder import DecoderForward, TPPlan, per_sequence
from shardwise.plans.gemma2 import GemmaForward, gemma2_plan
from shardwise.plans.gemma3 import Gemma3Forward, gemma3_plan
from shardwise.plans.granite import GraniteForward
from shardwise.plans.llama import llama_plan
from shardwise.plans.mixtral import STORED_AS as MIXTRAL_STORED_AS
from shardwise.plans.olmo2 import olmo2_plan
from shardwise.plans.olmoe import olmoe_plan
from shardwise.plans.phi3 import phi3_plan
from shardwise.plans.qwen2_moe import STORED_PER_EXPERT, qwen2_moe_plan
from shardwise.plans.qwen3 import qwen3_plan
from shardwise.plans.qwen3_moe import qwen3_moe_plan

PlanFn = Callable[[PretrainedConfig, bool, bool], TPPlan]

PLANS: dict[str, PlanFn] = {
    "llama": llama_plan,
    "qwen2": llama_plan,
    "mistral": llama_plan,
    "qwen3": qwen3_plan,
    "gemma2": gemma2_plan,
    "gemma3_text": gemma3_plan,
    "phi3": phi3_plan,
    "olmo2": olmo2_plan,
    "granite": llama_plan,
    "qwen2_moe": qwen2_moe_plan,
    "qwen3_moe": qwen3_moe_plan,
    "mixtral": qwen2_moe_plan,
    "olmoe": olmoe_plan,
}
FORWARDS: dict[str, type[DecoderForward]] = {
    "gemma2": GemmaForward,
    "gemma3_text": Gemma3Forward,
    "granite": GraniteForward,
}

# model_type -> {parameter's name suffix: the name(s) checkpoints store it under, after the same prefix}. One name
# without "{}": the parameter renamed. Names with "{}" (the expert's number): a fused parameter stored one matrix per
# expert and part; each part stacks its experts along dim 0 and the parts follow each other along dim 1.
STORED_AS: dict[str, dict[str, tuple[str, ...]]] = {
    "qwen2_moe": STORED_PER_EXPERT,
    "qwen3_moe": STORED_PER_EXPERT,
    "olmoe": STORED_PER_EXPERT,
    "mixtral": MIXTRAL_STORED_AS,
}


def get_plan(config: PretrainedConfig, sequence_parallel: bool, loss_parallel: bool, attention: str = "heads") -> TPPlan:
    """The plan for ``config.model_type``, its attention split by heads or computed per sequence
    (``parallel.tp_attention``); any other architecture is refused with the supported list."""
    model_type = config.model_type
    if model_type not in PLANS:
        raise ConfigError(
            f"architecture {model_type!r} is not supported; supported model_type values: {', '.join(sorted(PLANS))}"
        )
    plan = PLANS[model_type](config, sequence_parallel, loss_parallel)
    return plan if attention == "heads" else per_sequence(plan)


def model_forward(config: PretrainedConfig) -> DecoderForward:
    """What ``CausalLM`` runs around the blocks of ``config``'s architecture."""
    return FORWARDS.get(config.model_type, DecoderForward)(config)


__all__ = ["FORWARDS", "PLANS", "STORED_AS", "DecoderForward", "TPPlan", "get_plan", "model_forward"]
