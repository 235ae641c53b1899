"""Tensor-parallel plans, one per HF ``model_type``.

A plan names, for each submodule of a decoder block and of the model's top, the DTensor
parallel style that shards it. Llama, Qwen2 and Mistral share one layout; Qwen3 adds its
per-head q/k norms.
"""

from __future__ import annotations

from collections.abc import Callable

from shardwise.config import ConfigError
from shardwise.plans.llama import TPPlan, llama_plan
from shardwise.plans.qwen3 import qwen3_plan

PlanFn = Callable[[bool, bool], TPPlan]

PLANS: dict[str, PlanFn] = {
    "llama": llama_plan,
    "qwen2": llama_plan,
    "mistral": llama_plan,
    "qwen3": qwen3_plan,
}


def get_plan(model_type: str, sequence_parallel: bool, loss_parallel: bool) -> TPPlan:
    """The plan for ``model_type``; anything else is refused with the supported list."""
    if model_type not in PLANS:
        raise ConfigError(
            f"architecture {model_type!r} is not supported; supported model_type values: {', '.join(sorted(PLANS))}"
        )
    return PLANS[model_type](sequence_parallel, loss_parallel)


__all__ = ["PLANS", "TPPlan", "get_plan"]
