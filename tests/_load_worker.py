"""Run under torchrun: load each checkpoint through ``build_run`` and save the full logits of one batch.

``safe_open`` is wrapped so that every element a rank gets out of a file is counted here, not by
the loader, and so that a whole-tensor read (``get_tensor``) would fail: the test can then tell
sliced reads from full ones independently of the loader's own count.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor
from typing_extensions import Self

import shardwise.load
from shardwise.config import load_config
from shardwise.launch import exit_finished_worker
from shardwise.load import load_weights
from shardwise.model import num_params
from shardwise.run import build_run

_real_safe_open = shardwise.load.safe_open
elements_read = 0


class _CountingSlice:
    def __init__(self, inner: Any):
        self.inner = inner

    def get_shape(self) -> list[int]:
        return self.inner.get_shape()

    def __getitem__(self, index: Any) -> torch.Tensor:
        global elements_read
        block = self.inner[index]
        elements_read += block.numel()
        return block


class _CountingHandle:
    """A safe_open handle with only ``keys`` and ``get_slice``: no way to read a whole tensor."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.inner = _real_safe_open(*args, **kwargs)

    def __enter__(self) -> Self:
        self.inner.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.inner.__exit__(*exc)

    def keys(self) -> list[str]:
        return self.inner.keys()

    def get_slice(self, name: str) -> _CountingSlice:
        return _CountingSlice(self.inner.get_slice(name))


def fixed_batch() -> torch.Tensor:
    """Two sequences of 24 tokens (a multiple of tp, as sequence parallelism needs), seeded."""
    return torch.randint(0, 320, (2, 24), generator=torch.Generator().manual_seed(0))


def run_checkpoint(path: str, layout: dict[str, object]) -> dict:
    """Load through ``build_run``, reload to check the returned count, then one forward pass."""
    global elements_read
    overrides = {"model.path": path, "train.dtype": "float32", "output.progress": "false",
                 **{k: str(v) for k, v in layout.items()}}
    run = build_run(load_config(None, overrides))
    elements_read = 0
    returned = load_weights(run.model, path, run.device)
    ids = fixed_batch()
    with torch.no_grad():
        logits = run.model(ids, torch.arange(ids.shape[1]).expand_as(ids))
    logits = logits.full_tensor() if isinstance(logits, DTensor) else logits
    counts = [None] * dist.get_world_size()
    dist.all_gather_object(counts, (elements_read, returned))
    return {"logits": logits.detach().clone(), "num_params": num_params(run.model), "read": counts}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoints", required=True, help="JSON list of model folders")
    parser.add_argument("--layout", required=True, help="JSON dict of parallel.* overrides")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    shardwise.load.safe_open = _CountingHandle
    layout = json.loads(args.layout)
    results = {path: run_checkpoint(path, layout) for path in json.loads(args.checkpoints)}
    if dist.get_rank() == 0:
        torch.save(results, args.out)
    dist.destroy_process_group()
    exit_finished_worker()  # gloo's threads can abort the interpreter's finalization (SIGABRT), as in _worker.py


if __name__ == "__main__":
    main()
