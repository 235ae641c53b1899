"""Attention fwd+bwd at Qwen2-1.5B shapes (B=4, 12 q heads, 2 kv heads, S=4096, D=128, bf16) on one GPU:
cuDNN causal (no documents), HF's masked sdpa path for packed rows (repeat_kv + dense bool mask), flex with a
document block mask."""
import torch, torch.nn.functional as F
from torch.nn.attention.flex_attention import flex_attention, create_block_mask
torch.manual_seed(0)
B, H, KV, S, D = 4, 12, 2, 4096, 128
flex = torch.compile(flex_attention, dynamic=False)

def bench(fn, n=20):
    for _ in range(3): fn()
    torch.cuda.synchronize(); ts = []
    for _ in range(n):
        s, e = torch.cuda.Event(True), torch.cuda.Event(True)
        s.record(); fn(); e.record(); torch.cuda.synchronize(); ts.append(s.elapsed_time(e))
    ts.sort(); return ts[len(ts) // 2]

q = torch.randn(B, H, S, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
k = torch.randn(B, KV, S, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
v = torch.randn(B, KV, S, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
g = torch.randn(B, H, S, D, device="cuda", dtype=torch.bfloat16)

def causal():
    F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True).backward(g)
print(torch.cuda.get_device_name(), torch.__version__)
print(f"cuDNN causal, no documents        {bench(causal):7.2f} ms")
for mean in (4096, 1024, 256):
    cuts = torch.rand(B, S, device="cuda") < 1 / mean
    cuts[:, 0] = True
    doc = cuts.cumsum(1)
    allowed = ((doc[:, :, None] == doc[:, None, :]) & torch.ones(S, S, dtype=torch.bool, device="cuda").tril())[:, None]
    def masked():
        kk, vv = (t.repeat_interleave(H // KV, dim=1) for t in (k, v))
        F.scaled_dot_product_attention(q, kk, vv, attn_mask=allowed).backward(g)
    def mask_mod(b, h, qi, ki):
        return (doc[b, qi] == doc[b, ki]) & (qi >= ki)
    def make():
        return create_block_mask(mask_mod, B, None, S, S, device="cuda")
    bm = make()
    def flexed():
        flex(q, k, v, block_mask=bm, enable_gqa=True).backward(g)
    o1 = flex(q, k, v, block_mask=bm, enable_gqa=True)
    kk, vv = (t.repeat_interleave(H // KV, dim=1) for t in (k, v))
    o2 = F.scaled_dot_product_attention(q, kk, vv, attn_mask=allowed)
    print(f"docs of ~{mean:5d}: masked sdpa {bench(masked):7.2f} ms | flex {bench(flexed):7.2f} ms | "
          f"block mask build {bench(make):6.2f} ms | max |flex - sdpa| {(o1 - o2).abs().max().item():.2e}")
