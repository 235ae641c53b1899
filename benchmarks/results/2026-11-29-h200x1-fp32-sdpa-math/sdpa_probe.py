"""Which sdpa kernel takes a dense boolean mask (transformers' packed-row mask, K/V repeated to the query heads) in fp32
and bf16 on this GPU, and what each keeps for backward: gpu_archs.sh's shapes (micro-batch 4, 8 heads, seq 1024,
head_dim 64)."""
import warnings

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

b, h, s, d = 4, 8, 1024, 64
mask = torch.ones(s, s, dtype=torch.bool, device="cuda").tril().expand(b, 1, s, s)
for dtype in (torch.float32, torch.bfloat16):
    for name, backends in (("default", [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH]), ("efficient", [SDPBackend.EFFICIENT_ATTENTION]),
                           ("cudnn", [SDPBackend.CUDNN_ATTENTION]), ("math", [SDPBackend.MATH])):
        q, k, v = (torch.randn(b, h, s, d, device="cuda", dtype=dtype, requires_grad=True) for _ in range(3))
        torch.cuda.synchronize(); before = torch.cuda.memory_allocated()
        try:
            with warnings.catch_warnings(record=True) as caught, sdpa_kernel(backends):
                warnings.simplefilter("always")
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            kept = torch.cuda.memory_allocated() - before - out.nbytes
            out.sum().backward()
            why = "; ".join(str(w.message)[:160] for w in caught)
            print(f"{str(dtype):15} {name:9} ok    kept {kept / 2**20:8.1f} MiB beyond the output {why}")
        except RuntimeError as e:
            print(f"{str(dtype):15} {name:9} FAIL  {str(e).splitlines()[0][:120]}")
        del q, k, v
print(f"one fp32 score tensor: {b * h * s * s * 4 / 2**20:.0f} MiB")
