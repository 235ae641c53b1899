"""Run under torchrun: two steps of a TP-only layout with its blocks eager, and the same two steps through
``shardwise.graphs`` with a CPU stand-in for ``torch.cuda.make_graphed_callables``; rank 0 saves both runs'
losses, gradients and weights. With ``"what": "released"``: ``shardwise.train.train`` through the stand-in, and
how many of its graphs are still alive when ``train`` returns (the process group is destroyed next).

The stand-in keeps the contract a CUDA graph puts on its caller: inputs are copied into the buffers the
graph was captured with unless they are already there (a parameter's leaves share its storage), every call
computes as the capture did (parameters read through ``tp.capturing``), and outputs and gradients are written
into tensors that the next call overwrites — what makes a replay's gradient unsafe to keep as a parameter's
``.grad``.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from typing import Any

import torch
from _worker import run_worker, train_steps

from shardwise import graphs, parallelize
from shardwise.config import load_config
from shardwise.run import build_run
from shardwise.tp import capturing
from shardwise.train import train

CALLS = {"captures": 0}
GRAPHS: list[weakref.ref] = []  # every stand-in graph made


def replayed(fn: Callable[..., torch.Tensor], static: tuple[torch.Tensor, ...]) -> Callable[..., torch.Tensor]:
    """One callable as ``make_graphed_callables`` returns it, with its pool's reuse, on the CPU."""
    wants_grad = [i for i, t in enumerate(static) if t.requires_grad]
    with capturing():
        out = fn(*static).detach().clone()
    grad_out = torch.empty_like(out)
    grads = [torch.empty_like(static[i]) for i in wants_grad]

    class Replay(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, *inputs: torch.Tensor) -> torch.Tensor:
            for buffer, tensor in zip(static, inputs, strict=True):
                if buffer.data_ptr() != tensor.data_ptr():
                    buffer.copy_(tensor)
            hidden = static[0].detach().requires_grad_(static[0].requires_grad)
            with torch.enable_grad(), capturing():
                ctx.result = fn(hidden, *static[1:])
            ctx.targets = tuple(hidden if i == 0 else inputs[i] for i in wants_grad)  # leaves: the storage captured
            out.copy_(ctx.result.detach())
            return out.detach()

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
            grad_out.copy_(grad)
            for buffer, g in zip(grads, torch.autograd.grad(ctx.result, ctx.targets, grad_out), strict=True):
                buffer.copy_(g)
            by_input = dict(zip(wants_grad, grads, strict=True))
            return tuple(by_input[i].detach() if i in by_input else None for i in range(len(static)))

    GRAPHS.append(weakref.ref(Replay))
    return lambda *inputs: Replay.apply(*inputs)


def cpu_graphed_callables(callables: tuple, sample_args: tuple) -> tuple:
    CALLS["captures"] += 1
    return tuple(replayed(fn, args) for fn, args in zip(callables, sample_args, strict=True))


def two_steps(overrides: dict, graphed: bool) -> dict:
    run = build_run(load_config(None, overrides))
    if graphed:  # what parallelize does on a GPU
        run.cfg.train.cudagraphs = True
        run.model.graphs = graphs.BlockGraphs()
    return {**train_steps(run), "captures": len(run.model.graphs.captured) if graphed else 0}


def compare(overrides: dict) -> dict:
    graphs.make_graphed_callables = cpu_graphed_callables
    return {"eager": two_steps(overrides, False), "graphed": two_steps(overrides, True), **CALLS}


def released(overrides: dict) -> dict:
    """Python's collector off, as the trainer keeps it between scheduled collections, so only what ``train`` frees
    itself is gone; ``check_cudagraphs`` refuses CPUs, so it is skipped here."""
    gc.disable()
    graphs.make_graphed_callables = cpu_graphed_callables
    parallelize.check_cudagraphs = lambda *args: None
    records = train(load_config(None, overrides))
    return {"steps": len(records), "made": len(GRAPHS), "alive": sum(ref() is not None for ref in GRAPHS)}


if __name__ == "__main__":
    run_worker(lambda overrides: released(overrides) if overrides.pop("what", None) == "released" else compare(overrides))
