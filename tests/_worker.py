"""The shared shape of the test workers that torchrun starts: JSON config overrides in, results of rank 0 out."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from shardwise.bench import synthetic_batches
from shardwise.launch import exit_finished_worker
from shardwise.run import Run
from shardwise.train import forward_backward, optimizer_step
from shardwise.verify import full_copy


def run_worker(compute: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Parse ``--overrides`` (a JSON dict) and ``--out``, run ``compute(overrides)`` on every rank, save rank 0's
    results to ``--out``, leave the process group and exit as the trainer's workers do (``exit_finished_worker``)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--overrides", required=True, help="JSON dict of config overrides")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    results = compute(json.loads(args.overrides))
    if dist.get_rank() == 0:
        torch.save(results, args.out)
    dist.destroy_process_group()
    exit_finished_worker()


def train_steps(run: Run, steps: int = 2) -> dict[str, Any]:
    """``steps`` training steps on the run's synthetic batches: each step's loss and gradients (whole tensors), then
    the weights."""
    out: dict[str, Any] = {"losses": [], "grads": []}
    for _ in range(steps):
        out["losses"].append(float(forward_backward(run, synthetic_batches(run))))
        out["grads"].append({n: full_copy(p.grad) for n, p in run.model.named_parameters()})
        optimizer_step(run)
    out["weights"] = {n: full_copy(p) for n, p in run.model.named_parameters()}
    return out
