"""Device calls 84 and 87 (argv: builder [seq]): where flex's cold compile at 16k goes (argv: builder = torch | aten). Each builder in a fresh
process with its own empty inductor and Triton caches: the BlockMask of square rows of 16,384 tokens, documents of
2048 (128 x 128 tiles), built by torch.compile(create_block_mask) as torch 2.11 does (`torch`, what `_compile=True`
does) or by shardwise.flex's builder (`aten`: the same without persistent reductions, so the argsort of the block
indices is aten's, not a Triton sort); first call and steady call timed apart from flex's forward + backward
compile. `aten` also checks its masks (square, and cp=2 ranks 0 and 1 through model.document_block_mask) against
the eager builder's, index tensor by index tensor."""
import json, sys, time
import torch
from torch.nn.attention.flex_attention import create_block_mask, flex_attention
from shardwise import flex
from shardwise.model import document_block_mask

dev, H, KVH, D, DOC = "cuda", 12, 2, 128, 2048
SEQ = int(sys.argv[2]) if len(sys.argv) > 2 else 16384  # call 87: 16384 and 32768
NAMES = ("kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices",
         "q_num_blocks", "q_indices", "full_q_num_blocks", "full_q_indices")


def timed(fn):
    torch.cuda.synchronize(); t = time.perf_counter(); out = fn(); torch.cuda.synchronize()
    return out, time.perf_counter() - t


builder = sys.argv[1]
build = torch.compile(create_block_mask) if builder == "torch" else flex._compiled_block_mask()
docs = (torch.arange(SEQ, device=dev) // DOC)[None] + 1
def square(b, h, q, kv):
    return (docs[b, q] == docs[b, kv]) & (q >= kv)
res = {"builder": builder, "seq": SEQ, "torch": torch.__version__}
bm, res["mask_first_s"] = timed(lambda: build(square, 1, None, SEQ, SEQ, device=dev))
_, res["mask_again_ms"] = timed(lambda: build(square, 1, None, SEQ, SEQ, device=dev)); res["mask_again_ms"] *= 1e3
print(json.dumps(res), flush=True)
if builder == "aten":
    eager = create_block_mask(square, 1, None, SEQ, SEQ, device=dev)
    res["square_equal"] = all(torch.equal(getattr(bm, n), getattr(eager, n)) for n in NAMES)
    for rank in (0, 1):
        got, t = timed(lambda: document_block_mask(docs, None, 2, rank))
        ref = create_block_mask(got.mask_mod, 1, None, SEQ // 2, SEQ, device=dev)
        res[f"cp2_rank{rank}_equal"] = all(torch.equal(getattr(got, n), getattr(ref, n)) for n in NAMES)
        res[f"cp2_rank{rank}_first_s"] = round(t, 1)
q = torch.randn(1, H, SEQ, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
k = torch.randn(1, KVH, SEQ, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
v = torch.randn_like(k, requires_grad=True)
fx = torch.compile(flex_attention, dynamic=False)
step = lambda: fx(q, k, v, block_mask=bm, enable_gqa=True).sum().backward()
_, res["flex_first_s"] = timed(step)
_, t = timed(lambda: [step() for _ in range(5)]); res["flex_step_ms"] = t / 5 * 1e3
print(json.dumps({k: round(x, 2) if isinstance(x, float) else x for k, x in res.items()}), flush=True)
