"""Rank 0's share of a 2-rank step on one GPU: ``shardwise bench`` with the arguments given, in one process as rank 0
of a world whose collectives move nothing (torch's ``FakeProcessGroup``).

Usage: python benchmarks/fake_peer.py --model.preset=qwen2-1.5b --parallel.tp=2 ... (from the repository root, src on
PYTHONPATH)

What it measures is the step without its communication, where only a 1-GPU machine is at hand (sessions 34-38). Gathers
leave their outputs as allocated, so losses are meaningless and, since a GPU's speed depends on the values it computes
with, two layouts' times are no measure of each other (BENCHMARKS.md, session 34); one layout before and after a change,
in one call, is.
"""

import os
import sys

import torch.distributed as dist
from torch.testing._internal.distributed.fake_pg import FakeStore

os.environ.update(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                  MASTER_PORT="29599")
dist.init_process_group("fake", rank=0, world_size=2, store=FakeStore())
from shardwise.cli import main

sys.exit(main(["bench", *sys.argv[1:]]))
