"""Run under torchrun: four steps with fused AdamW over the run's DTensor parameters (on CPU here, as on GPUs):
a finite step, a NaN loss, an infinite gradient, a finite step; rank 0 saves the weights and Adam state after each."""

from __future__ import annotations

from typing import Any

import torch
from _worker import run_worker

from shardwise import inject
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


def steps(overrides: dict) -> dict:
    run = build_run(load_config(None, overrides))
    t = run.cfg.train
    groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in run.optimizer.param_groups]
    run.optimizer = torch.optim.AdamW(groups, lr=t.lr, betas=(t.beta1, t.beta2), fused=True)
    run.scheduler = build_scheduler(run.optimizer, t)
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
