"""``python -m shardwise.cli`` for torchrun workers that share one GPU: gloo instead of NCCL (which refuses two ranks
on one device), every rank on cuda:0. Real collectives, real values, so losses compare with one GPU's; times do not
(gloo copies through the host)."""
import os
import sys

import torch
import torch.distributed as dist

os.environ["LOCAL_RANK"] = "0"
torch.cuda.set_device(0)
dist.init_process_group("gloo")
from shardwise.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
