"""Run under torchrun: one step of a layout with its blocks compiled (``fullgraph``, ``aot_eager``: dynamo and AOT
autograd, no C++ toolchain) and the same step eager; rank 0 saves both losses and gradients and dynamo's counts."""

from __future__ import annotations

import torch
from _worker import run_worker
from torch._dynamo.utils import counters

from shardwise.config import load_config
from shardwise.run import build_run
from shardwise.train import forward_backward
from shardwise.verify import full_copy, step_batches


def one_step(overrides: dict[str, str], compiled: bool) -> dict:
    cfg = load_config(None, overrides)
    run = build_run(cfg)
    if compiled:  # as parallelize.apply_compile does, with a backend that needs no compiler
        for layer in run.model.layers:
            layer.forward = torch.compile(layer.forward, fullgraph=True, backend="aot_eager")
    loss = float(forward_backward(run, step_batches(cfg, run.meshes.dp.get_local_rank(), run.layout.dp)(0)))
    return {"loss": loss, "grads": {n: full_copy(p.grad) for n, p in run.model.named_parameters()}}


def compare(overrides: dict) -> dict:
    return {"eager": one_step(overrides, False), "compiled": one_step(overrides, True),
            "graphs": counters["stats"]["unique_graphs"], "breaks": sum(counters["graph_break"].values())}


if __name__ == "__main__":
    run_worker(compare)
