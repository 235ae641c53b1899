"""Device call 81 experiments. mask: what sdpa keeps per layer for backward with a boolean mask (eager and compiled),
CP's shape (8192 local queries x 16384 keys) and a square one. flex: compile time and step time of flex forward +
backward for a square row (no index), CP's shape with index tensors (as model.document_block_mask), and CP's shape
with the indices computed arithmetically."""
import sys, time, json
import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import create_block_mask, flex_attention
from shardwise.model import document_block_mask, visible
from shardwise.cp import sequence_order

dev = "cuda"
H, KVH, D = 12, 2, 128


def sdpa_kept(q_len, kv_len, compiled, layers=3):
    f = lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m)
    if compiled:
        torch._dynamo.reset(); f = torch.compile(f)
    mask = (torch.rand(q_len, kv_len, device=dev) < 0.5)[None, None] | torch.eye(q_len, kv_len, dtype=torch.bool, device=dev)
    k = torch.randn(1, H, kv_len, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn_like(k, requires_grad=True)
    x = torch.randn(1, H, q_len, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
    f(x, k, v, mask).sum().backward()  # compile first
    torch.cuda.synchronize(); base = torch.cuda.memory_allocated()
    for _ in range(layers):
        x = f(x, k, v, mask) * 1.0
    torch.cuda.synchronize(); kept = torch.cuda.memory_allocated() - base
    per_layer = kept / layers - 2 * x.numel() * x.element_size()  # minus the output and its *1.0 copy
    x.sum().backward()
    return per_layer / mask.numel()


def doc_ids(n, doc):
    return (torch.arange(n, device=dev) // doc)[None] + 1


def arithmetic_mask(docs, seq, cp, rank):
    chunk = seq // (2 * cp)
    def allowed(b, h, q, kv):
        qi = torch.where(q < chunk, rank * chunk + q, (2 * cp - 1 - rank) * chunk + q - chunk)
        c, off = kv // (2 * chunk), kv % (2 * chunk)  # gathered keys: rank c's two chunks
        ki = torch.where(off < chunk, c * chunk + off, (2 * cp - 1 - c) * chunk + off - chunk)
        return visible(docs[b, qi] == docs[b, ki], qi - ki, None)
    return create_block_mask(allowed, 1, None, seq // cp, seq, device=dev, _compile=True)


def flex_time(kind, seq=16384, cp=2, doc=2048, steps=5):
    torch._dynamo.reset()
    docs = doc_ids(seq, doc)
    order = sequence_order(seq, cp).to(dev); local = order.view(cp, -1)[0]
    make = {"square": lambda: document_block_mask(docs, docs, None),
            "cp-index": lambda: document_block_mask(docs[:, local], docs[:, order], None, (local, order)),
            "cp-arith": lambda: arithmetic_mask(docs, seq, cp, 0)}[kind]
    q_len = seq if kind == "square" else seq // cp
    q = torch.randn(1, H, q_len, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(1, KVH, seq, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn_like(k, requires_grad=True)
    fx = torch.compile(flex_attention, dynamic=False)
    t0 = time.perf_counter()
    bm = make(); fx(q, k, v, block_mask=bm, enable_gqa=True).sum().backward(); torch.cuda.synchronize()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        bm = make(); fx(q, k, v, block_mask=bm, enable_gqa=True).sum().backward()
    torch.cuda.synchronize()
    return first, (time.perf_counter() - t0) / steps


part = sys.argv[1]
out = {}
if part == "mask":
    for q_len, kv_len in ((8192, 16384), (4096, 4096)):
        for compiled in (False, True):
            out[f"sdpa bool mask {q_len}x{kv_len} {'compiled' if compiled else 'eager'}"] = round(sdpa_kept(q_len, kv_len, compiled), 3)
else:
    for kind in ("square", "cp-index", "cp-arith", "cp-index"):
        first, step = flex_time(kind)
        out[f"flex {kind}" + (" again" if f"flex {kind}" in out else "")] = {"first_s": round(first, 1), "step_ms": round(step * 1e3, 2)}
print(json.dumps(out))
