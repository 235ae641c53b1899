"""Run under torchrun: one step of a layout with its blocks compiled (``fullgraph``, AOT autograd with no compiler
behind it, so no C++ toolchain; with ``"fuse": true`` among the overrides, ``shardwise.fuse``'s pass over each graph
as inductor would run it) and the same step eager; rank 0 saves both losses and gradients, dynamo's counts, per
all-gather in a compiled forward how many matmuls read its result directly, and each graph's matmuls."""

from __future__ import annotations

import torch
from _worker import run_worker
from functorch.compile import make_boxed_func, min_cut_rematerialization_partition
from torch._dynamo.backends.common import aot_autograd
from torch._dynamo.utils import counters

from shardwise.config import load_config
from shardwise.fuse import ADDMM, MM, fuse_siblings
from shardwise.run import build_run
from shardwise.train import forward_backward
from shardwise.verify import full_copy, step_batches

FORWARDS: list[torch.fx.GraphModule] = []
MATMULS: dict[str, list[int]] = {"forward": [], "backward": []}
FUSE = False


def _recorder(kind: str) -> object:
    def record(gm: torch.fx.GraphModule, _inputs: list) -> object:
        if FUSE:
            fuse_siblings(gm.graph)
            gm.recompile()
        if kind == "forward":
            FORWARDS.append(gm)
        MATMULS[kind].append(sum(n.target in (MM, ADDMM) for n in gm.graph.nodes))
        return make_boxed_func(gm.forward)
    return record


# aot_eager with inductor's partitioner (which also merges common subexpressions), keeping each forward graph (aten
# ops, as inductor's post-grad passes see them)
RECORDING = aot_autograd(fw_compiler=_recorder("forward"), bw_compiler=_recorder("backward"),
                         partition_fn=min_cut_rematerialization_partition)


def _matmuls_reading(node: torch.fx.Node) -> int:
    """Matmuls taking ``node`` as their input as it is, or with its leading dims flattened (a linear layer on a
    3-d input): the two forms inductor's async-TP pass follows an all-gather into."""
    flatten = (torch.ops.aten.view.default, torch.ops.aten.reshape.default)
    return sum(1 if user.target is MM and user.args[0] is node else
               _matmuls_reading(user) if user.target in flatten and node.meta["val"].ndim > 2 else 0
               for user in node.users)


def gather_readers(graphs: list[torch.fx.GraphModule]) -> list[int]:
    """Per all-gather, the matmuls that read its (waited-for) result as ``_matmuls_reading`` says."""
    ag, wait = torch.ops._c10d_functional.all_gather_into_tensor.default, torch.ops._c10d_functional.wait_tensor.default
    return [_matmuls_reading(w) for gm in graphs for n in gm.graph.nodes if n.target is ag for w in n.users
            if w.target is wait]


def one_step(overrides: dict[str, str], compiled: bool) -> dict:
    cfg = load_config(None, overrides)
    run = build_run(cfg)
    if compiled:  # as parallelize.apply_compile does, with a backend that needs no compiler
        for layer in run.model.layers:
            layer.forward = torch.compile(layer.forward, fullgraph=True, backend=RECORDING)
    loss = float(forward_backward(run, step_batches(cfg, run.meshes.dp.get_local_rank(), run.layout.dp)(0)))
    return {"loss": loss, "grads": {n: full_copy(p.grad) for n, p in run.model.named_parameters()}}


def compare(overrides: dict) -> dict:
    global FUSE
    FUSE = overrides.pop("fuse", False)
    return {"eager": one_step(overrides, False), "compiled": one_step(overrides, True),
            "graphs": counters["stats"]["unique_graphs"], "breaks": sum(counters["graph_break"].values()),
            "gather_readers": gather_readers(FORWARDS), "matmuls": MATMULS}


if __name__ == "__main__":
    run_worker(compare)
