# Experiment (not product code): how fast are the TP collectives of the benchmarked shapes on 2 GPUs, through NCCL
# (as configured by the environment) and as plain peer copies through symmetric memory (copy engine)?
# torchrun --nproc-per-node=2 .carry/nccl_bw.py TAG
import json
import os
import sys

import torch
import torch.distributed as dist

tag = sys.argv[1]
rank = int(os.environ["RANK"])
torch.cuda.set_device(rank)
dist.init_process_group("nccl")
dev = torch.device("cuda", rank)
SIZES = {"1.5b-mb4": 4 * 4096 * 1536, "8b-mb1": 4096 * 4096, "8b-mb2": 2 * 4096 * 4096}  # gathered elements


def timed(fn, iters=30):
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters * 1000  # us


rows = {}
for name, n in SIZES.items():
    full = torch.randn(n, device=dev, dtype=torch.bfloat16)
    half = torch.randn(n // 2, device=dev, dtype=torch.bfloat16)
    rows[f"{name} all_gather"] = timed(lambda: dist.all_gather_into_tensor(full, half))
    rows[f"{name} reduce_scatter"] = timed(lambda: dist.reduce_scatter_tensor(half, full))
    rows[f"{name} all_reduce"] = timed(lambda: dist.all_reduce(full))
if os.environ.get("BW_WINDOW") == "1":  # NCCL's registered windows: buffers from symmetric memory on NCCL
    try:
        import torch.distributed._symmetric_memory as symm_mem
        symm_mem.set_backend("NCCL")
        group = dist.group.WORLD.group_name
        for name, n in SIZES.items():
            full, half = symm_mem.empty(n, device=dev, dtype=torch.bfloat16), symm_mem.empty(n // 2, device=dev, dtype=torch.bfloat16)
            symm_mem.rendezvous(full, group); symm_mem.rendezvous(half, group)
            rows[f"{name} all_gather (window)"] = timed(lambda: dist.all_gather_into_tensor(full, half))
            rows[f"{name} reduce_scatter (window)"] = timed(lambda: dist.reduce_scatter_tensor(half, full))
    except Exception as e:  # noqa: BLE001
        rows["window error"] = repr(e)[:300]
if tag == "default":
    try:
        import torch.distributed._symmetric_memory as symm_mem
        for name, n in SIZES.items():
            buf = symm_mem.empty(n // 2, device=dev, dtype=torch.bfloat16)
            handle = symm_mem.rendezvous(buf, dist.group.WORLD.group_name)
            peer = handle.get_buffer(1 - rank, (n // 2,), torch.bfloat16)
            out = torch.empty(n // 2, device=dev, dtype=torch.bfloat16)
            mine = torch.randn(n // 2, device=dev, dtype=torch.bfloat16)
            rows[f"{name} peer copy (CE)"] = timed(lambda: out.copy_(peer))
            rows[f"{name} peer add (SM)"] = timed(lambda: torch.add(mine, peer, out=out))
            handle.barrier()
    except Exception as e:  # noqa: BLE001
        rows["symm_mem error"] = repr(e)[:200]
if rank == 0:
    for k, v in rows.items():
        bytes_moved = SIZES[k.split()[0]] * 2 / 2 if isinstance(v, float) else 0
        print(f"{tag:24} {k:34} {v:9.1f} us  {bytes_moved / v / 1e3 if v else 0:7.1f} GB/s per direction"
              if isinstance(v, float) else f"{tag} {k} {v}")
    with open(os.environ.get("BW_OUT", "/tmp/bw.jsonl"), "a") as f:
        f.write(json.dumps({"tag": tag, "us": rows}) + "\n")
dist.destroy_process_group()
