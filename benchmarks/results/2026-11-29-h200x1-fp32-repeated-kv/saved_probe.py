"""``shardwise train`` with every tensor autograd saves for backward recorded (one per storage), printed largest
first by shape and dtype once the first step's forward of the first micro-batch is done: what a run keeps."""
import collections
import sys

import torch

seen, sizes = set(), collections.Counter()


def pack(t):
    if t.device.type == "cuda":
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        if key not in seen:
            seen.add(key)
            sizes[(tuple(t.shape), str(t.dtype).removeprefix("torch."))] += key[1]
    return t


done = False


def report(*_):
    global done
    if not done:
        done = True
        total = sum(sizes.values())
        print(f"saved for backward, first micro-batch: {total / 2**30:.3f} GiB in {len(seen)} storages", flush=True)
        for (shape, dtype), n in sizes.most_common(14):
            print(f"  {n / 2**20:9.1f} MiB  {dtype:9} {shape}", flush=True)


torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t).__enter__()
_backward = torch.Tensor.backward
torch.Tensor.backward = lambda self, *a, **k: (report(), _backward(self, *a, **k))[1]
from shardwise.cli import main  # noqa: E402

sys.exit(main(["train", *sys.argv[1:]]))
