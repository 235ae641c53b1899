"""Call 104: shardwise.tp.regroup (all_to_all_single with uneven splits, Phi-3's qkv_proj and gate_up_proj plans at
tp=2) on 2 GPUs over NCCL, eager and compiled (fullgraph, inductor), forward and backward, against the rows a single
process would pick; each case prints one line before it runs, so a crash names the case."""
import os
import sys

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh

from shardwise.tp import Group, RowPlan, head_rows, regroup

rank = int(os.environ["RANK"])
dev = "cuda" if torch.cuda.is_available() else "cpu"
if dev == "cuda":
    torch.cuda.set_device(rank)
mesh = init_device_mesh(dev, (2,))
g = Group.of(mesh)
cases = {"qkv": ((8, 4, 4), 64, 512), "gate_up": ((1408, 1408), 1, 512)}
for name, (heads, per, cols) in cases.items():
    total = sum(heads) * per
    torch.manual_seed(0)
    full = torch.randn(total, cols, device=dev, dtype=torch.bfloat16)
    plan = RowPlan.of(heads, per, 2, rank)
    want = torch.cat([full[a:b] for a, b in head_rows(heads, per, 2, rank)])
    local = full[rank * total // 2:(rank + 1) * total // 2].clone().requires_grad_()
    for mode in ("eager", "compiled"):
        print(f"rank {rank} {name} {mode} plan {plan.send_sizes} {plan.recv_sizes}", flush=True)
        fn = (lambda x: regroup(x, plan, g) * 2.0)
        if mode == "compiled":
            fn = torch.compile(fn, fullgraph=True)
        out = fn(local)
        out.sum().backward()
        torch.cuda.synchronize() if dev == "cuda" else None
        print(f"rank {rank} {name} {mode}: forward exact {torch.equal(out, 2 * want)}, grad {local.grad.float().abs().sum().item()}", flush=True)
        local.grad = None
dist.destroy_process_group()
