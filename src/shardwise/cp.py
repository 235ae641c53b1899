"""Context parallelism: each sample's sequence split over ``parallel.cp`` ranks; attention still sees all of it.

Causal attention costs a query in proportion to its position, so cutting a sequence into ``cp``
contiguous pieces would give the last rank the most work. The sequence is cut into ``2·cp`` chunks
instead and rank ``c`` holds chunks ``c`` and ``2cp-1-c``, one from the front and its mirror from
the back (``sequence_order``), as in Megatron and TorchTitan: every rank computes the same number
of query/key pairs.

Everything but attention works per token and runs on the local tokens as it is: norms, MLPs,
sequence and tensor parallelism inside the chunk pair, the loss. Rotary embeddings read the local
tokens' global positions. Attention all-gathers K and V over the CP group (one collective for
both, per layer; its backward reduce-scatters their gradients back to the ranks that own the
tokens) and attends the local queries to every key. Rows without a document boundary under sdpa
need no mask (``chunk_pair_attention``): the keys are put back in token order, and each local chunk
is the last stretch of the keys up to it, so it attends to that prefix causally, aligned to the
bottom right, which flash attention computes without a mask and skipping the blocks above the
diagonal. Other rows get a mask that ``CausalLM`` builds from global token indices and document
ids (``shardwise.model.context_mask``): causal, inside each packed document, inside the layer's
sliding window; the gathered keys arrive rank by rank, i.e. in ``sequence_order``, and the mask's
columns follow that order, so nothing is permuted (where blocks are compiled on GPUs the mask is a flex
``BlockMask`` of the same rule, attended through ``shardwise.flex`` after the all-gather). With
``parallel.cp_exchange=ring``, rows that
need no mask pass K/V round the ring instead (``shardwise.ring``), keeping only this rank's K/V
for backward.

Hugging Face attention modules look their attention function up by the name in ``self.config``.
Context parallelism gives them a copy of the config naming ``CP_ATTENTION``, registered with
transformers' ``AttentionInterface``: it gathers K/V, then calls the implementation the model was
configured with, sdpa or the architecture's own eager function (Gemma's soft-capping included).
The model's own config, which masks, checkpoints and export read, still names sdpa or eager.
Flash and flex attention cannot take such a mask and are refused, as is a ``train.seq_len`` that does
not cut into ``2·cp`` chunks of ``tp`` token shards (``errors``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface, PretrainedConfig
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from shardwise import ring
from shardwise.plans.decoder import attend_through
from shardwise.tp import Group, gather_dim0

CP_ATTENTION = "shardwise_cp"
IMPLEMENTATIONS = ("sdpa", "eager")  # those that take an explicit mask of local queries x all keys


def sequence_order(seq: int, cp: int) -> torch.Tensor:
    """The global indices of a row's tokens as the CP ranks hold them, rank after rank: rank ``c`` holds
    chunks ``c`` and ``2cp-1-c`` of ``2cp`` equal chunks. ``seq`` must be a multiple of ``2cp``."""
    return ordered_token(torch.arange(seq), seq, cp)


def ordered_token(position: torch.Tensor, seq: int, cp: int) -> torch.Tensor:
    """The global index of the token at ``position`` of ``sequence_order(seq, cp)``, by arithmetic (a flex
    ``mask_mod`` computes it per tile, where an index tensor would be one more buffer for it to read)."""
    chunk = seq // (2 * cp)
    rank, offset = position // (2 * chunk), position % (2 * chunk)
    return torch.where(offset < chunk, rank * chunk + offset, (2 * cp - 1 - rank) * chunk + offset - chunk)


def local_indices(seq: int, cp: int, rank: int) -> torch.Tensor:
    """The global indices of the tokens CP rank ``rank`` holds, ascending."""
    return sequence_order(seq, cp).view(cp, -1)[rank]


def gather_kv(key: torch.Tensor, value: torch.Tensor, g: Group) -> tuple[torch.Tensor, torch.Tensor]:
    """Every CP rank's K and V ``(batch, heads, local_seq, head_dim)`` -> ``(batch, heads, seq, head_dim)`` in
    ``sequence_order``, with one all-gather (along the sequence, moved to dim 0); the backward reduce-scatters
    the gradients to the ranks owning the tokens."""
    kv = torch.stack([key, value]).movedim(3, 0)
    full = gather_dim0(kv, g).movedim(0, 3)
    return full[0], full[1]


def context_parallel_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                               attention_mask: torch.Tensor | None, **kwargs: Any) -> tuple[torch.Tensor, Any]:
    """The attention function registered as ``CP_ATTENTION``: this rank's queries attend to every rank's keys,
    without a mask for plain causal rows (``context_mask`` gives None; round the ring with
    ``parallel.cp_exchange=ring`` where a kernel for it runs, ``shardwise.ring``), else through the configured
    implementation (``module._cp_attention``) and a mask that covers all of them."""
    g = module._cp_group
    if attention_mask is None and module._cp_exchange == "ring" and not kwargs.get("dropout"):
        kernel = ring.kernel_for(query)
        if kernel is not None:
            return ring.ring_attention(query, key, value, g, kernel, kwargs.get("scaling")), None
    key, value = gather_kv(key, value, g)
    if attention_mask is None:
        return chunk_pair_attention(query, key, value, g, **kwargs), None
    return module._cp_attention(module, query, key, value, attention_mask, **kwargs)


def token_order(x: torch.Tensor, cp: int, dim: int) -> torch.Tensor:
    """``x`` whose dimension ``dim`` holds whole rows in ``sequence_order`` -> in token order: the ranks' front
    chunks as they come, then their back chunks from the last rank to the first (no index tensor to build)."""
    pairs = x.unflatten(dim, (cp, 2, -1))  # dim: rank, dim + 1: front/back, dim + 2: the chunk's tokens
    front, back = pairs.select(dim + 1, 0), pairs.select(dim + 1, 1).flip(dim)
    return torch.cat([front, back], dim=dim).flatten(dim, dim + 1)


def chunk_pair_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, g: Group,
                         dropout: float = 0.0, scaling: float | None = None, **_: Any) -> torch.Tensor:
    """Causal attention of this rank's chunks ``c`` and ``2cp-1-c`` (``query``, ``(batch, heads, 2·chunk,
    head_dim)``) over the gathered keys of whole rows with no document boundary; ``(batch, 2·chunk, heads,
    head_dim)`` as Hugging Face's attention functions return it.

    Chunk ``i`` sees the keys of chunks ``0..i``, causally within its own: the queries are the last
    ``chunk`` positions of that key prefix (``lower_right_causal``). Grouped K/V heads are repeated."""
    groups = query.shape[1] // key.shape[1]
    key, value = (token_order(t, g.size, 2).repeat_interleave(groups, dim=1) for t in (key, value))
    chunk = query.shape[2] // 2
    out = [lower_right_causal(query[:, :, part * chunk:(part + 1) * chunk], key[:, :, :(i + 1) * chunk],
                              value[:, :, :(i + 1) * chunk], dropout, scaling)
           for part, i in enumerate((g.rank, 2 * g.size - 1 - g.rank))]
    return torch.cat(out, dim=2).transpose(1, 2).contiguous()


def lower_right_causal(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, dropout: float,
                       scale: float | None) -> torch.Tensor:
    """Attention of queries that are the last positions of the keys' sequence, each seeing the keys up to its own.

    sdpa's ``is_causal`` aligns to the top left and takes flash attention only for square shapes, so this
    calls flash's own op, whose causal mask aligns to the bottom right (as ``torch.nn.attention.bias``
    does for ``causal_lower_right``, which torch.compile cannot trace). Where flash cannot run (CPU,
    fp32, odd head sizes), sdpa with the same mask written out."""
    head_dim = query.shape[-1]
    if query.is_cuda and query.dtype in (torch.float16, torch.bfloat16) and head_dim % 8 == 0 and head_dim <= 256:
        return torch.ops.aten._scaled_dot_product_flash_attention(query, key, value, dropout, True, scale=scale)[0]
    q_len, k_len = query.shape[2], key.shape[2]
    allowed = torch.ones(q_len, k_len, dtype=torch.bool, device=query.device).tril(k_len - q_len)
    return F.scaled_dot_product_attention(query, key, value, attn_mask=allowed, dropout_p=dropout, scale=scale)


AttentionInterface.register(CP_ATTENTION, context_parallel_attention)


def configured_attention(module: nn.Module, implementation: str) -> Callable[..., tuple[torch.Tensor, Any]]:
    """The function ``module`` would call for ``implementation``: sdpa as registered, or for eager the
    architecture's own ``eager_attention_forward`` (from the transformers module defining its class)."""
    if implementation == "sdpa":
        return ALL_ATTENTION_FUNCTIONS["sdpa"]
    hf_class = next(c for c in type(module).__mro__ if c.__module__.startswith("transformers."))
    return sys.modules[hf_class.__module__].eager_attention_forward


def errors(config: PretrainedConfig, seq_len: int, cp: int, tp: int) -> list[str]:
    """Why context parallelism cannot run this model at this length, one line each naming the fix (none if it can).

    A row must cut into ``2·cp`` equal chunks of ``tp`` equal token shards. Unlike TP alone, CP refuses
    to pad: up to ``2·cp·tp - 1`` padding tokens per row would be computed, gathered and masked for nothing,
    and the chunks' balance assumes real tokens in each."""
    if cp == 1:
        return []
    out = []
    implementation = config._attn_implementation
    if implementation not in IMPLEMENTATIONS:
        out.append(f"model.attn_implementation={implementation} cannot attend across the chunks of parallel.cp={cp} "
                   f"(it takes no mask of local queries x all keys); use {' or '.join(IMPLEMENTATIONS)}, "
                   "or parallel.cp=1")
    multiple = 2 * cp * tp
    if seq_len % multiple:
        out.append(f"train.seq_len={seq_len} is not divisible by 2*parallel.cp*parallel.tp={multiple} (each sequence "
                   f"is cut into 2*cp chunks of tp shards); use train.seq_len={-(-seq_len // multiple) * multiple}")
    return out


def attend_over_context(attention: list[nn.Module], config: PretrainedConfig, g: Group, exchange: str) -> None:
    """Make each attention module exchange K/V over the CP group ``g`` (``exchange``: ``allgather``, or ``ring``
    for rows that need no mask) and call ``config``'s implementation."""
    implementation = config._attn_implementation
    for module in attention:
        module._cp_attention = configured_attention(module, implementation)
        module._cp_group = g
        module._cp_exchange = exchange
        attend_through(module, CP_ATTENTION)


@torch.no_grad()
def gather_sequence(x: torch.Tensor, g: Group) -> torch.Tensor:
    """This CP rank's ``(batch, local_seq, ...)`` of every row -> the whole rows ``(batch, seq, ...)`` in token
    order (e.g. logits to compare with one process); no autograd."""
    if g.size == 1:
        return x
    return token_order(gather_dim0(x.movedim(1, 0), g), g.size, 0).movedim(0, 1)
