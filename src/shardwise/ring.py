"""Ring exchange for context parallelism (``parallel.cp_exchange=ring``): K/V blocks passed round the CP ranks.

The all-gather path (``shardwise.cp``) gives every rank all of a row's K/V at once, repeated to the
query heads, and autograd keeps them for backward: per layer ``2·cp·q_dim`` elements per local
token. Here step ``i`` holds the K/V of rank ``rank - i`` only, as the model wrote them (grouped
heads unrepeated), attends to them and has already sent them on to the next rank (a functional
all-to-all with one non-empty split each way, in flight while the block in hand is attended).
Backward keeps only this rank's own K/V (``2·kv_dim`` per token; compiled, also the first block
received) and travels the same ring, with the K/V gradients of each block one step behind it.

Each block's attention is one kernel call that returns its log-sum-exp; the blocks of a query
chunk merge by them (``_merge``): ``out = Σ exp(lse_b - lse)·out_b`` with ``lse`` the
``logaddexp`` of all, in fp32. Backward runs each block's kernel with the *merged* output and
log-sum-exp, which turns its probabilities into those of the whole softmax restricted to the
block's keys, so the blocks' query gradients add up to the whole one, and each block's K/V
gradient is exact.

Only rows that need no mask (``shardwise.model.needs_mask`` false: no document boundary, no
shorter sliding window, not eager) can take the ring; the others, fp32 on GPUs (no such kernel)
and dropout keep the all-gather path, which ``shardwise.cp`` chooses.
"""

from __future__ import annotations

from typing import Any

import torch

from shardwise.tp import Group

_aten = torch.ops.aten
_ops = torch.ops._c10d_functional

# The kernels run without dropout, so the backward ops get placeholders for the dropout RNG state, and None for the
# cumulative lengths of ragged batches. Each returns (out, lse) forward and (dq, dk, dv) backward.


def _flash_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale: float | None) -> tuple:
    out, lse, *_ = _aten._scaled_dot_product_flash_attention(q, k, v, 0.0, causal, False, scale=scale)
    return out, lse


def _flash_backward(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                    lse: torch.Tensor, causal: bool, scale: float | None) -> tuple:
    seed, offset = q.new_empty(2, dtype=torch.uint64), q.new_empty((), dtype=torch.uint64)
    return _aten._scaled_dot_product_flash_attention_backward(
        dout, q, k, v, out, lse, None, None, q.shape[2], k.shape[2], 0.0, causal, seed, offset, scale=scale)


def _cpu_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale: float | None) -> tuple:
    return _aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, causal, scale=scale)


def _cpu_backward(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                  lse: torch.Tensor, causal: bool, scale: float | None) -> tuple:
    return _aten._scaled_dot_product_flash_attention_for_cpu_backward(dout, q, k, v, out, lse, 0.0, causal,
                                                                      scale=scale)


KERNELS = {"flash": (_flash_forward, _flash_backward), "cpu": (_cpu_forward, _cpu_backward)}


def kernel_for(query: torch.Tensor) -> str | None:
    """The key of ``KERNELS`` that can attend these queries: flash attention on GPUs for 16-bit heads it takes,
    the CPU flash kernel on CPU (and meta tensors, for ``shardwise plan``), None otherwise (fp32 on GPUs)."""
    if not query.is_cuda:
        return "cpu"
    if query.dtype not in (torch.float16, torch.bfloat16) or query.shape[-1] % 8 or query.shape[-1] > 256:
        return None
    return "flash"


def _merge(acc: tuple[torch.Tensor, torch.Tensor] | None, out: torch.Tensor,
           lse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold one block's output and log-sum-exp into a query chunk's running ones (fp32)."""
    lse = lse.view(*out.shape[:-1], 1)
    if acc is None:
        return out.float(), lse
    total = torch.logaddexp(acc[1], lse)
    return acc[0] * (acc[1] - total).exp() + out.float() * (lse - total).exp(), total


def _as_written(merged: tuple[torch.Tensor, torch.Tensor], out: torch.Tensor,
                lse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A merged output and log-sum-exp in the dtypes, shapes and layouts one kernel call wrote (``out``, ``lse``):
    what the kernels' backward reads (fused kernels may assume their own layouts)."""
    return torch.empty_like(out).copy_(merged[0]), torch.empty_like(lse).copy_(merged[1].view(lse.shape))


Block = tuple[int, int, bool]  # (query chunk, key chunk, causal): chunk 0 is a rank's front chunk, 1 its back one


def ring_blocks(rank: int, source: int) -> list[Block]:
    """Which of this rank's query chunks see which key chunks of ``source``'s, under the front/back split.

    Own keys: the front chunk causally, the back chunk the front whole and itself causally. An earlier
    rank's keys (``source < rank``): both query chunks see its front chunk whole, none its back one. A later
    rank's: only the back query chunk sees them, both whole. Every step but the first is half the queries
    over all the keys or all the queries over half the keys: the same work on every rank."""
    if source == rank:
        return [(0, 0, True), (1, 0, False), (1, 1, True)]
    return [(0, 0, False), (1, 0, False)] if source < rank else [(1, 0, False), (1, 1, False)]


def _start_shift(x: torch.Tensor, g: Group) -> torch.Tensor:
    """Send ``x`` to the next rank of the ring and receive the previous one's, without waiting (one all-to-all
    with a single non-empty split each way); ``wait_tensor`` before reading the result."""
    n, peers = x.shape[0], range(g.size)
    send = [n if p == (g.rank + 1) % g.size else 0 for p in peers]
    recv = [n if p == (g.rank - 1) % g.size else 0 for p in peers]
    return _ops.all_to_all_single(x.contiguous(), recv, send, g.name)


def _held(kv: torch.Tensor, groups: int) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """The block in hand as (front, back) key chunks and value chunks, K/V heads repeated to the query heads."""
    k, v = (t.repeat_interleave(groups, dim=1).chunk(2, dim=2) for t in kv)
    return k, v


class _RingAttention(torch.autograd.Function):
    """Causal attention of this rank's chunk pair ``q`` over every rank's ``k``/``v``, round the ring."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: Group, kernel: str,
                scale: float | None) -> torch.Tensor:
        forward, groups = KERNELS[kernel][0], q.shape[1] // k.shape[1]
        qs, kv = q.chunk(2, dim=2), torch.stack([k, v])
        acc: list[tuple[torch.Tensor, torch.Tensor] | None] = [None, None]
        like: list[tuple[torch.Tensor, torch.Tensor] | None] = [None, None]  # per query chunk, a kernel call's outputs
        for i in range(g.size):
            pending = _start_shift(kv, g) if i < g.size - 1 else None
            ks, vs = _held(kv, groups)
            for qi, ki, causal in ring_blocks(g.rank, (g.rank - i) % g.size):
                out, lse = forward(qs[qi], ks[ki], vs[ki], causal, scale)
                acc[qi], like[qi] = _merge(acc[qi], out, lse), like[qi] or (out, lse)
            kv = _ops.wait_tensor(pending) if pending is not None else kv
        (out_f, lse_f), (out_b, lse_b) = (_as_written(a, *first) for a, first in zip(acc, like, strict=True))
        ctx.save_for_backward(q, k, v, out_f, out_b, lse_f, lse_b)
        ctx.g, ctx.kernel, ctx.scale = g, kernel, scale
        return torch.cat((out_f, out_b), dim=2)

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        """The same ring. The K/V gradients of a block add up in an fp32 accumulator that follows the block one
        step behind: the message a rank sends at step ``i`` holds the block it attends to then and the
        accumulator of the block it attended to at step ``i - 1``, its own part added. After the last step,
        one more message brings each rank the accumulator of its last block, and one hop returns that, whole,
        to the block's owner. (Compiled, a shift of K/V alone depends on forward values only, and the
        partitioner would move it into the forward graph and keep what it receives for backward: the
        accumulator in every message after the first keeps the shifts in backward.)"""
        q, k, v, *saved = ctx.saved_tensors
        outs, lses, g = saved[:2], saved[2:], ctx.g
        backward, groups = KERNELS[ctx.kernel][1], q.shape[1] // k.shape[1]
        qs, douts = q.chunk(2, dim=2), [torch.empty_like(o).copy_(d) for o, d in zip(outs, dout.chunk(2, dim=2))]
        dq = [torch.zeros_like(part, dtype=torch.float32) for part in qs]
        kv = torch.stack([k, v])
        carried: torch.Tensor | None = None  # the accumulator of the last step's block, from the ranks before
        mine: torch.Tensor | None = None  # this rank's K/V gradients for the last step's block
        message: _Message | None = None
        for i in range(g.size):
            if message is not None:
                kv, *rest = message.received()
                carried = rest[0] if rest else None
            parts = [kv] if i < g.size - 1 else []
            if mine is not None:
                parts.append(mine if carried is None else carried + mine)
            message = _Message.send(parts, g) if parts else None
            mine = torch.zeros_like(kv, dtype=torch.float32)
            ks, vs = _held(kv, groups)
            for qi, ki, causal in ring_blocks(g.rank, (g.rank - i) % g.size):
                dq_b, dk_b, dv_b = backward(douts[qi], qs[qi], ks[ki], vs[ki], outs[qi], lses[qi], causal, ctx.scale)
                dq[qi] += dq_b
                for j, grad in enumerate((dk_b, dv_b)):
                    mine[j].narrow(2, ki * grad.shape[2], grad.shape[2]).add_(grad.unflatten(1, (-1, groups)).sum(2))
        (carried,) = message.received()
        dkv = _ops.wait_tensor(_start_shift(carried + mine, g))  # the last block's owner is the next rank
        return torch.cat(dq, dim=2).to(q.dtype), dkv[0].to(k.dtype), dkv[1].to(v.dtype), None, None, None


class _Message:
    """Tensors shifted one rank on round the ring together, as one all-to-all: a single tensor as it is,
    several as the bytes of each, concatenated."""

    def __init__(self, pending: torch.Tensor, parts: list[torch.Tensor]):
        self.pending, self.parts = pending, parts

    @classmethod
    def send(cls, parts: list[torch.Tensor], g: Group) -> _Message:
        if len(parts) == 1:
            return cls(_start_shift(parts[0], g), parts)
        flat = torch.cat([p.contiguous().view(-1).view(torch.uint8) for p in parts])
        return cls(_start_shift(flat, g), parts)

    def received(self) -> list[torch.Tensor]:
        """The previous rank's parts, shaped as the ones this rank sent (every rank sends the same kinds)."""
        got = _ops.wait_tensor(self.pending)
        if len(self.parts) == 1:
            return [got]
        out, at = [], 0
        for p in self.parts:
            size = p.numel() * p.element_size()
            out.append(got[at:at + size].view(p.dtype).view(p.shape))
            at += size
        return out


def ring_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, g: Group, kernel: str,
                   scale: float | None) -> torch.Tensor:
    """Causal attention of this rank's chunk pair (``query``, ``(batch, heads, 2·chunk, head_dim)``) over whole
    rows with no document boundary; ``(batch, 2·chunk, heads, head_dim)`` as Hugging Face's attention functions
    return it. ``kernel`` from ``kernel_for(query)``."""
    return _RingAttention.apply(query, key, value, g, kernel, scale).transpose(1, 2).contiguous()
