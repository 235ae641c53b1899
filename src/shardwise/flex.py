"""Attention over packed rows through FlexAttention's block-sparse kernels, on GPUs.

With ``data.packing`` nearly every row holds a document boundary, and sdpa takes such rows only
with a dense ``(batch, 1, seq, seq)`` mask (``model.document_mask``): it leaves cuDNN and flash
for the memory-efficient kernel, transformers repeats K/V to every query head first (its
grouped-query path takes no mask), and every tile of the square is computed, those across
documents too. A ``BlockMask`` tells FlexAttention which tiles hold a pair a query may see: it
skips the others, and applies the rule (same document, not later, inside the window) only on
tiles that a boundary crosses. Qwen2-1.5B, seq 4096, documents of ~1024 tokens, compiled, on
2xH100: 1.29x the dense mask's step at dp_shard=2 and 1.24x at tp=2, 5.7 and 7.1 GiB less
(one layer's attention, forward and backward: 5.1 ms masked, 1.6 ms flex; BENCHMARKS.md, session 18).

The attention modules get a copy of their own config naming ``FLEX_ATTENTION``, registered with
transformers' ``AttentionInterface`` (``plans.decoder.attend_through``, as ``shardwise.cp`` does): a
``BlockMask`` goes to flex, anything else (None, for rows without a boundary) to sdpa as before. The
model's own config, which masks, checkpoints and export read, still names sdpa.

Under context parallelism the mask covers this rank's queries and every rank's keys
(``model.context_mask``, built by ``model.document_block_mask``) and flex is the function ``shardwise.cp``
calls after its K/V all-gather; the key tiles follow the gather's order, whose chunks are whole runs of
tokens, so tiles still fall inside or outside documents. Qwen2-1.5B, seq 16,384, documents of ~2048,
cp=2, compiled, on 2xH200: 1.89x and 2.08x the dense mask's step in two calls, 9.2 GiB less (BENCHMARKS.md,
session 20); from launch to the first record in 73 s once ``block_mask`` sorted with aten (session 21).

``model.packed_attention=auto`` takes flex where it can train (``refusals``) and the blocks are
compiled; ``flex`` asks for it (uncompiled runs compile flex alone) and is refused with the reason
where it cannot; ``mask`` keeps the dense mask.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import torch
from torch import nn
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention
from transformers import AttentionInterface, PretrainedConfig

from shardwise import sdpa
from shardwise.config import Config, ConfigError
from shardwise.plans.decoder import attend_through

FLEX_ATTENTION = "shardwise_flex"


def refusals(cfg: Config, config: PretrainedConfig, device_type: str) -> list[str]:
    """Why flex cannot train this run, one reason each (none if it can)."""
    out = []
    if device_type != "cuda":
        out.append("needs CUDA GPUs (FlexAttention has no backward on CPU)")
    if cfg.model.attn_implementation != "sdpa":
        out.append(f"replaces sdpa's masked path, not model.attn_implementation={cfg.model.attn_implementation}")
    if cfg.train.cudagraphs:
        out.append("cannot run in CUDA graphs of the blocks (a replay keeps the mask it was captured with)")
    if getattr(config, "attention_dropout", 0.0):
        out.append("has no attention dropout")
    return out


def uses_flex(cfg: Config, config: PretrainedConfig, device_type: str) -> bool:
    """Whether packed rows attend through flex: ``auto`` where it can train and the blocks are compiled (an
    uncompiled run compiles nothing, and flex outside a compiled block is compiled on its own, ~20 s on 2xH100),
    with or without context parallelism; ``flex`` wherever it can train, else a one-line error."""
    mode = cfg.model.packed_attention
    if mode == "mask":
        return False
    reasons = refusals(cfg, config, device_type)
    if mode == "flex" and reasons:
        raise ConfigError(f"model.packed_attention=flex {reasons[0]}; set model.packed_attention=auto or mask")
    return not reasons and (mode == "flex" or cfg.train.compiles(device_type))


def block_mask(mask_mod: Any, batch: int, queries: int, keys: int, device: torch.device) -> BlockMask:
    """``create_block_mask`` over every head, compiled on GPUs (``_compiled_block_mask``) so that the
    ``(queries, keys)`` grid of ``mask_mod`` is never materialized; eagerly on CPU (tests)."""
    build = _compiled_block_mask() if device.type == "cuda" else create_block_mask
    return build(mask_mod, batch, None, queries, keys, device=device)


@cache
def _compiled_block_mask() -> Any:
    """``torch.compile(create_block_mask)`` with aten's sort and static shapes. The mask's block indices come from an
    argsort along the key blocks, which inductor in torch < 2.13 writes as a Triton sort kernel for up to 512
    blocks, and that kernel compiled for 197 s at 128 blocks (16k keys) on 2xH200, against 6 s with aten's sort
    (BENCHMARKS.md, session 21; pytorch#182060; torch 2.13 sends the sort to aten itself). Without persistent
    reductions inductor leaves sorts to aten. A second shape (an evaluation batch) compiles its own graph: under
    automatic dynamic shapes it failed to compile."""
    return torch.compile(create_block_mask, dynamic=False, options={"triton.persistent_reductions": False})


@cache
def _compiled_flex() -> Any:
    """Flex for calls outside a compiled block: uncompiled it would materialize the scores."""
    return torch.compile(flex_attention, dynamic=False)


def flex_or_sdpa_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                           attention_mask: BlockMask | torch.Tensor | None, dropout: float = 0.0,
                           scaling: float | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """The function registered as ``FLEX_ATTENTION``: a ``BlockMask`` attends through flex (grouped K/V heads
    read in place), anything else through transformers' sdpa (``sdpa.sdpa_attention``, which keeps fp32 off its
    math kernel). Returns ``(batch, seq, heads, head_dim)``."""
    if not isinstance(attention_mask, BlockMask):
        return sdpa.sdpa_attention(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                   **kwargs)
    as_is = torch.compiler.is_compiling() or not query.is_cuda  # inside a compiled block; CPU: forward only (tests)
    attend = flex_attention if as_is else _compiled_flex()
    out = attend(query, key, value, block_mask=attention_mask, scale=scaling,
                 enable_gqa=query.shape[1] != key.shape[1])
    return out.transpose(1, 2).contiguous(), None


AttentionInterface.register(FLEX_ATTENTION, flex_or_sdpa_attention)


def attend_with_flex(attention: list[nn.Module], context: bool) -> None:
    """Make each attention module attend through ``flex_or_sdpa_attention``: by name (``attend_through``), or
    under context parallelism (``context``) as the function ``shardwise.cp`` calls once it has gathered K/V."""
    for module in attention:
        if context:
            module._cp_attention = flex_or_sdpa_attention
        else:
            attend_through(module, FLEX_ATTENTION)
