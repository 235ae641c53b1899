# Experiment (not product code): the TP collectives of Qwen2-1.5B's step (micro-batch 4 and 8, bf16) through NCCL
# against symmetric memory's SM kernels without multicast (two-shot all-reduce, reduce-scatter, an SM pull for the
# all-gather), each including the copy into the symmetric buffer that a step would need.
# torchrun --nproc-per-node=2 .carry/symm_bw.py
import json
import os

import torch
import torch.distributed as dist
import torch.distributed._symmetric_memory as symm_mem

rank = int(os.environ["RANK"])
torch.cuda.set_device(rank)
dist.init_process_group("nccl")
dev = torch.device("cuda", rank)
group = dist.group.WORLD.group_name
SIZES = {"mb4": 4 * 4096 * 1536, "mb8": 8 * 4096 * 1536}  # gathered elements


def timed(fn, iters=30):
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    dist.barrier()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters * 1000  # us


rows, errors = {}, {}


def row(name, fn):
    try:
        rows[name] = timed(fn)
    except Exception as e:  # noqa: BLE001
        errors[name] = repr(e)[:300]


for name, n in SIZES.items():
    full = torch.randn(n, device=dev, dtype=torch.bfloat16)
    half = torch.randn(n // 2, device=dev, dtype=torch.bfloat16)
    out_full = torch.empty_like(full)
    out_half = torch.empty_like(half)
    row(f"{name} nccl all_gather", lambda: dist.all_gather_into_tensor(out_full, half))
    row(f"{name} nccl reduce_scatter", lambda: dist.reduce_scatter_tensor(out_half, full))
    row(f"{name} nccl all_reduce", lambda: dist.all_reduce(full))
    buf = symm_mem.empty(n, device=dev, dtype=torch.bfloat16)
    handle = symm_mem.rendezvous(buf, group)
    buf.copy_(full)
    ops = torch.ops.symm_mem
    row(f"{name} symm two_shot_all_reduce_ (in place)", lambda: ops.two_shot_all_reduce_(buf, "sum", group))
    row(f"{name} symm copy + two_shot_all_reduce_out", lambda: (buf.copy_(full), ops.two_shot_all_reduce_out(buf, "sum", group, out_full)))
    row(f"{name} symm one_shot_all_reduce_copy", lambda: ops.one_shot_all_reduce_copy(buf, full, "sum", group))
    row(f"{name} symm reduce_scatter_out", lambda: ops.reduce_scatter_out(buf, group, False, out_half))
    row(f"{name} symm copy + reduce_scatter_out", lambda: (buf.copy_(full), ops.reduce_scatter_out(buf, group, False, out_half)))
    peer = handle.get_buffer(1 - rank, (n,), torch.bfloat16)
    zero = torch.zeros((), device=dev, dtype=torch.bfloat16)
    mine, theirs = slice(rank * (n // 2), (rank + 1) * (n // 2)), slice((1 - rank) * (n // 2), (2 - rank) * (n // 2))

    def gather_sm():  # the local half into my buffer, barrier, pull the peer's half through SMs, barrier
        buf[mine].copy_(half)
        handle.barrier(channel=0)
        torch.add(peer[theirs], zero, out=out_full[theirs])
        out_full[mine].copy_(half)
        handle.barrier(channel=1)

    def gather_ce():  # the same, the pull a copy-engine copy
        buf[mine].copy_(half)
        handle.barrier(channel=0)
        out_full[theirs].copy_(peer[theirs])
        out_full[mine].copy_(half)
        handle.barrier(channel=1)

    row(f"{name} symm all_gather (SM pull)", gather_sm)
    row(f"{name} symm all_gather (CE pull)", gather_ce)
    row(f"{name} symm barrier x2", lambda: (handle.barrier(channel=0), handle.barrier(channel=1)))
    # correctness of the two-shot all-reduce and the reduce-scatter against NCCL's
    x = torch.randn(n, device=dev, dtype=torch.bfloat16) * (rank + 1)
    ref = x.clone(); dist.all_reduce(ref)
    buf.copy_(x); got = ops.two_shot_all_reduce_out(buf, "sum", group, torch.empty_like(x))
    ref_rs = torch.empty(n // 2, device=dev, dtype=torch.bfloat16); dist.reduce_scatter_tensor(ref_rs, x.clone())
    buf.copy_(x); got_rs = ops.reduce_scatter_out(buf, group, False, torch.empty_like(ref_rs))
    rows[f"{name} max |two_shot - nccl|"] = float((got.float() - ref.float()).abs().max())
    rows[f"{name} max |symm rs - nccl|"] = float((got_rs.float() - ref_rs.float()).abs().max())
    del buf, handle, peer
    torch.cuda.synchronize()

if rank == 0:
    for k, v in rows.items():
        print(f"{k:48} {v:10.2f}")
    for k, v in errors.items():
        print(f"{k:48} ERROR {v}")
    with open(os.path.join(os.environ.get("OUT", "/tmp"), "symm_bw.json"), "w") as f:
        json.dump({"rows": rows, "errors": errors, "torch": torch.__version__}, f, indent=1)
dist.destroy_process_group()
