"""Microbenchmark: linears sharing one input, separate against one GEMM over concatenated weights (fwd+bwd)."""
import torch, torch.nn.functional as F

def bench(fn, n=30):
    for _ in range(5): fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(n):
        s, e = torch.cuda.Event(True), torch.cuda.Event(True)
        s.record(); fn(); e.record(); torch.cuda.synchronize(); ts.append(s.elapsed_time(e))
    ts.sort(); return ts[len(ts)//2]

def case(name, M, K, Ns):
    x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    ws = [torch.randn(n, K, device="cuda", dtype=torch.bfloat16, requires_grad=True) for n in Ns]
    gs = [torch.randn(M, n, device="cuda", dtype=torch.bfloat16) for n in Ns]
    def sep():
        ys = [F.linear(x, w) for w in ws]
        torch.autograd.backward(ys, gs)
    def fused():
        y = F.linear(x, torch.cat(ws))
        torch.autograd.backward(y.split(Ns, dim=-1), gs)
    def fwd_sep():
        with torch.no_grad(): [F.linear(x, w) for w in ws]
    def fwd_fused():
        with torch.no_grad(): F.linear(x, torch.cat(ws)).split(Ns, dim=-1)
    a, b = bench(sep), bench(fused)
    c, d = bench(fwd_sep), bench(fwd_fused)
    flops = 6 * M * K * sum(Ns) / 1e12
    print(f"{name:28s} fwd+bwd sep {a:7.3f} ms ({flops/a*1e3:4.0f} TF/s)  fused {b:7.3f} ms ({flops/b*1e3:4.0f})  saving {a-b:+.3f} ms | fwd sep {c:.3f} fused {d:.3f}", flush=True)
    return a - b

print(torch.cuda.get_device_name(), torch.__version__)
tot = {}
for tag, M, div in [("dp2 mb4 (M=16384)", 16384, 1), ("tp2 mb8 (M=32768)", 32768, 2)]:
    s = case(f"{tag} qkv", M, 1536, [1536 // div, 256 // div, 256 // div])
    t = case(f"{tag} gate/up", M, 1536, [8960 // div, 8960 // div])
    tot[tag] = 28 * (s + t)
for k, v in tot.items():
    print(f"{k}: 28 layers would save {v:.1f} ms a step")
# Llama-3-8B, tp2 mb1 and dp2 mb1 (M=4096 per rank at seq 4096)
case("8B dp2 mb1 qkv", 4096, 4096, [4096, 1024, 1024]); case("8B dp2 mb1 gate/up", 4096, 4096, [14336, 14336])
case("8B tp2 mb2 qkv", 8192, 4096, [2048, 512, 512]); case("8B tp2 mb2 gate/up", 8192, 4096, [7168, 7168])
