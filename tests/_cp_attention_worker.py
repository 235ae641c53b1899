"""Run under torchrun: context-parallel attention of whole causal rows, by the chunk-pair path (K/V all-gathered, no
mask), round the ring (``shardwise.ring``; each eager and compiled as one graph) and by the masked path, against sdpa
over the whole rows in one process; forward and the gradients of Q, K and V; and the bytes each unmasked path keeps
for backward.

On CPU (gloo, fp32) for the tests; ``{"device": "cuda"}`` runs it on GPUs (NCCL, bf16, flash attention's
bottom-right causal op and flash kernels for the ring), the check ``benchmarks`` scripts make before timing CP there."""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from _worker import run_worker
from torch.distributed.device_mesh import init_device_mesh
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from shardwise import ring
from shardwise.cp import context_parallel_attention, local_indices
from shardwise.model import context_mask, document_ids
from shardwise.tp import Group


def reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, groups: int) -> torch.Tensor:
    k, v = (t.repeat_interleave(groups, dim=1) for t in (k, v))
    return F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2)


def errors(overrides: dict[str, Any]) -> dict[str, Any]:
    cuda = overrides.get("device") == "cuda"
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    g = Group.of(init_device_mesh(device.type, (dist.get_world_size(),)))
    batch, heads, kv_heads, head_dim, chunk = overrides["shape"]
    seq, dtype = 2 * g.size * chunk, torch.bfloat16 if cuda else torch.float32
    torch.manual_seed(0)  # the same whole rows on every rank
    q, k, v = (torch.randn(batch, h, seq, head_dim, device=device).to(dtype) for h in (heads, kv_heads, kv_heads))
    weight = torch.randn(batch, seq, heads, head_dim, device=device)
    full = [t.float().requires_grad_() for t in (q, k, v)]
    (reference(*full, heads // kv_heads) * weight).sum().backward()
    ref = reference(*full, heads // kv_heads).detach()
    index = local_indices(seq, g.size, g.rank).to(device)
    gather, ring_module = (SimpleNamespace(_cp_group=g, _cp_attention=ALL_ATTENTION_FUNCTIONS["sdpa"],
                                           _cp_exchange=exchange, num_key_value_groups=heads // kv_heads)
                           for exchange in ("allgather", "ring"))
    documents = document_ids(torch.arange(seq, device=device).expand(batch, seq))
    compiled = torch.compile(context_parallel_attention, fullgraph=True, backend="aot_eager")  # one graph or raise
    paths = {"chunk_pair": (context_parallel_attention, gather, None), "chunk_pair_compiled": (compiled, gather, None),
             "ring": (context_parallel_attention, ring_module, None), "ring_compiled": (compiled, ring_module, None),
             "masked": (context_parallel_attention, gather, context_mask(documents, g, "sdpa", dtype, packed=True))}
    out: dict[str, Any] = {}
    saved: dict[str, int] = {}
    for path, (attention, module, mask) in paths.items():
        local = [t[:, :, index].detach().requires_grad_() for t in (q, k, v)]
        with torch.autograd.graph.saved_tensors_hooks(*saved_bytes(saved, path)):
            attended = attention(module, *local, mask)[0]
        (attended.float() * weight[:, index]).sum().backward()
        pairs = [(attended, ref[:, index])] + [(t.grad, f.grad[:, :, index]) for t, f in zip(local, full)]
        out[path] = [((a.float() - b).abs().max() / b.abs().max()).item() for a, b in pairs]
    gathered: list[Any] = [None] * g.size
    dist.all_gather_object(gathered, out)
    return {"ranks": gathered, "dtype": str(dtype), "kernel": ring.kernel_for(q), "saved": saved}


def saved_bytes(saved: dict[str, int], path: str) -> tuple:
    """Hooks that add up, as ``saved[path]``, the bytes of the distinct storages autograd keeps for backward."""
    seen: set[int] = set()
    saved[path] = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            saved[path] += storage.nbytes()
        return t

    return pack, lambda t: t


if __name__ == "__main__":
    run_worker(errors)
