"""One process as rank 0 of a 2-rank world whose collectives move nothing (torch's FakeProcessGroup), running
``shardwise bench`` with the arguments given: the time of rank 0's share of a parallel step without its
communication, on one GPU (session 34: only a 1-GPU kind was lent). Outputs of gathers are left as allocated, so
losses are meaningless; shapes, kernels and their times are the real step's."""
import os
import sys

import torch.distributed as dist
from torch.testing._internal.distributed.fake_pg import FakeStore

os.environ.update(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                  MASTER_PORT="29599")
dist.init_process_group("fake", rank=0, world_size=2, store=FakeStore())
from shardwise.cli import main  # noqa: E402

sys.exit(main(["bench", *sys.argv[1:]]))
