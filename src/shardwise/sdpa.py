"""Grouped-query attention through sdpa in fp32 on GPUs.

Where no mask is given, transformers hands sdpa grouped K/V heads as they are (``enable_gqa``). On CUDA only
the flash and cuDNN kernels read grouped heads, and they take 16-bit inputs only, so fp32 compute
(``train.dtype=float32``) falls back to sdpa's math kernel: slower, and it keeps every score for backward, one
``(batch, heads, seq, seq)`` fp32 tensor per layer (1 GiB of a 3 GiB peak at ``gpu_archs.sh``'s Llama shapes on
one H200, BENCHMARKS.md session 37). Repeating K/V to the query heads first, as transformers itself does where it
gets a mask, lets the memory-efficient kernel, which takes fp32, run them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

REPEATED_KV = "shardwise_sdpa_repeated_kv"


def repeats_kv(query: torch.Tensor, key: torch.Tensor, attention_mask: Any) -> bool:
    """Whether sdpa would get grouped heads in fp32 on a GPU (see the module docstring)."""
    grouped = query.shape[1] != key.shape[1]
    return grouped and attention_mask is None and query.dtype == torch.float32 and query.is_cuda


def sdpa_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   attention_mask: Any, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' sdpa, K/V repeated to the query heads where ``repeats_kv``; ``(batch, seq, heads, head_dim)``."""
    if repeats_kv(query, key, attention_mask):
        groups = query.shape[1] // key.shape[1]
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    return ALL_ATTENTION_FUNCTIONS["sdpa"](module, query, key, value, attention_mask, **kwargs)


def needs_repeat(attn_implementation: str, dtype: torch.dtype, device_type: str, context: bool) -> bool:
    """Whether a run's sdpa layers should attend through ``sdpa_attention``: fp32 compute on GPUs without context
    parallelism (``shardwise.cp`` calls sdpa itself, K/V repeated already)."""
    return attn_implementation == "sdpa" and dtype == torch.float32 and device_type == "cuda" and not context


AttentionInterface.register(REPEATED_KV, sdpa_attention)
