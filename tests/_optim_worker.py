"""Run under torchrun: four steps with fused AdamW over the run's DTensor parameters (on CPU here, as on GPUs):
a finite step, a NaN loss, an infinite gradient, a finite step; rank 0 saves the weights and Adam state after each.
With ``"compare": true`` in the overrides instead: three steps with the update on the DTensors' local tensors and
three through the DTensors (``optim.on_local_tensors`` a no-op), fused and foreach AdamW, each step's state."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any
from unittest import mock

import torch
from _worker import run_worker

from shardwise import inject, optim
from shardwise.bench import synthetic_batches
from shardwise.config import load_config
from shardwise.optim import build_scheduler
from shardwise.run import build_run
from shardwise.train import forward_backward, optimizer_step
from shardwise.verify import full_copy


def state(run) -> dict[str, Any]:
    names = {p: n for n, p in run.model.named_parameters()}
    optim = {names[p]: {k: full_copy(v) for k, v in s.items()} for p, s in run.optimizer.state.items()}
    return {"weights": {n: full_copy(p) for n, p in run.model.named_parameters()}, "optim": optim}


def with_adamw(run, fused: bool):
    """The run with torch's AdamW, fused or foreach (the CPU default), over its param groups."""
    t = run.cfg.train
    groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in run.optimizer.param_groups]
    run.optimizer = torch.optim.AdamW(groups, lr=t.lr, betas=(t.beta1, t.beta2), fused=fused, foreach=not fused)
    run.scheduler = build_scheduler(run.optimizer, t)
    return run


def compare(overrides: dict) -> dict:
    out: dict[str, Any] = {}
    for fused in (True, False):
        for where, step_on in (("local", optim.on_local_tensors), ("dtensor", nullcontext)):
            torch.manual_seed(0)
            run = with_adamw(build_run(load_config(None, overrides | {"train.grad_clip": 0.01})), fused)
            seen: list[type] = []  # the type of tensor the optimizer updates, at each step
            step = run.optimizer.step

            def spy(*args, **kwargs):
                seen.append(type(run.optimizer.param_groups[0]["params"][0]))  # noqa: B023
                return step(*args, **kwargs)  # noqa: B023

            run.optimizer.step = spy
            states = []
            with mock.patch.object(optim, "on_local_tensors", step_on):
                for _ in range(3):
                    forward_backward(run, synthetic_batches(run))
                    optimizer_step(run)
                    states.append(state(run))
            out[f"{'fused' if fused else 'foreach'}-{where}"] = {"states": states, "updated": [t.__name__ for t in seen]}
    return out


def steps(overrides: dict) -> dict:
    if overrides.pop("compare", False):
        return compare(overrides)
    run = with_adamw(build_run(load_config(None, overrides)), fused=True)
    out: dict[str, Any] = {"states": [], "grad_norms": []}
    for fault in (None, "nan-loss", "inf-grad", None):
        loss = forward_backward(run, synthetic_batches(run))
        if fault == "nan-loss":
            loss = torch.full_like(loss, float("nan"))
        if fault == "inf-grad":
            inject._act(run, "inf-grad")  # what SHARDWISE_FAULT=inf-grad@STEP does: one gradient element made inf
        grad_norm, _ = optimizer_step(run, loss)
        out["grad_norms"].append(float(grad_norm))
        out["states"].append(state(run))
    return out


if __name__ == "__main__":
    run_worker(steps)
